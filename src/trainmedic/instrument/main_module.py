"""Run a script as ``__main__`` exactly as ``python SCRIPT ARGS...`` would, so instrumentation changes nothing
the script can see.

What CPython 3.11 gives a script, measured with ``python sub/train.py`` (and ``./sub/train.py``, a symlink,
a folder holding ``__main__.py``):

* ``__file__``: the path as typed, made absolute by joining the working directory, without normalising it
  (``/w/./sub/train.py``) and without resolving symlinks; a folder gives ``<that>/__main__.py``;
* ``sys.argv[0]``: the path exactly as typed;
* ``sys.path[0]``: for a file, the folder of the file with symlinks resolved (``os.path.realpath``); for a
  folder or a zip, the path as typed, made absolute; the launcher's own first entry (the ``bin`` folder of
  the ``trainmedic`` command, or the working directory under ``python -m trainmedic``) is not there;
* the globals of a file script: ``__name__ == "__main__"``, ``__package__`` and ``__spec__`` None,
  ``__loader__`` a ``SourceFileLoader``, ``__builtins__`` the ``builtins`` module, and the script's module is
  ``sys.modules["__main__"]`` (pickles of its classes name ``__main__``).

``runpy.run_path`` differs (on a file ``__package__ == ""``, ``__builtins__`` a dict, no loader, the path
kept relative; on a folder ``sys.argv[0]`` rewritten to the folder's absolute path), so the ``__main__``
module is built and executed here, the way CPython builds it.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import os
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path

from trainmedic.errors import UsageError

PYTHON_SUFFIXES = (".py", ".pyw")


@dataclass(frozen=True)
class MainScript:
    """A script to run as ``__main__``: what python would set for it (see the module docstring)."""

    given: str  # as typed: sys.argv[0]
    kind: str  # "file", "folder" or "zip"
    main_file: str  # __file__ of the code that runs first
    path0: str  # sys.path[0]

    @property
    def stem(self) -> str:
        return Path(self.given.rstrip("/\\")).stem or "script"

    def real_main_file(self) -> str:
        """``__file__`` with symlinks resolved: how a traceback frame of the script is recognised."""
        return os.path.realpath(self.main_file)


def _absolute(given: str) -> str:
    """CPython's ``_Py_abspath``: join the working directory, normalise nothing."""
    return given if os.path.isabs(given) else os.path.join(os.getcwd(), given)


def _looks_like_python(path: Path) -> bool:
    """A file python would run: a ``.py``/``.pyw`` file, a zip application with ``__main__.py``, or a file
    without suffix that starts with a python shebang or compiles as Python source."""
    suffix = path.suffix.lower()
    if suffix in PYTHON_SUFFIXES:
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return "__main__.py" in z.namelist()
    if suffix:
        return False
    try:
        source = path.read_bytes()
    except OSError:
        return False
    if source.startswith(b"#!") and b"python" in source.split(b"\n", 1)[0]:
        return True
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def resolve(script: str) -> MainScript:
    """What python would run for ``script``; a :class:`UsageError` (one line, exit 2) if it is not a script."""
    path = Path(script)
    hint = "trainmedic run takes a Python script: a .py file, or a folder or zip holding __main__.py"
    if path.is_dir():
        if not (path / "__main__.py").is_file():
            raise UsageError(f"not a Python script: {script} is a folder without __main__.py ({hint})")
        folder = _absolute(script)
        return MainScript(script, "folder", os.path.join(folder, "__main__.py"), folder)
    if not path.exists():
        raise UsageError(f"no such script: {script}")
    if not path.is_file() or not _looks_like_python(path):
        extra = "; convert a notebook with `jupyter nbconvert --to script`" if path.suffix == ".ipynb" else ""
        raise UsageError(f"not a Python script: {script} ({hint}{extra})")
    if zipfile.is_zipfile(path):
        archive = _absolute(script)
        return MainScript(script, "zip", os.path.join(archive, "__main__.py"), archive)
    return MainScript(script, "file", _absolute(script), os.path.dirname(os.path.realpath(script)))


def launcher_entry_is_needed() -> bool:
    """True when trainmedic itself is imported from ``sys.path[0]`` (run from a source folder): that entry
    must stay for trainmedic's own lazy imports, so the script's folder goes in front of it instead."""
    if not sys.path:
        return False
    here = Path(__file__).resolve().parents[2]  # the folder holding the trainmedic package
    try:
        return Path(sys.path[0] or os.getcwd()).resolve() == here
    except OSError:
        return False


def set_path(target: MainScript) -> None:
    """``sys.path`` as python would have it for ``target`` (the caller saves and restores it)."""
    if sys.path and not launcher_entry_is_needed():
        sys.path[0] = target.path0
    else:
        sys.path.insert(0, target.path0)


def _main_module(target: MainScript) -> tuple[types.ModuleType, types.CodeType]:
    """The ``__main__`` module python would create for ``target``, and the code to run in it."""
    if target.kind == "file":
        filename = target.main_file
        main = types.ModuleType("__main__")  # __package__ and __spec__ stay None, as for `python file.py`
        main.__file__ = filename
        main.__cached__ = None  # type: ignore[attr-defined]
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
        with open(filename, "rb") as f:
            code = compile(f.read(), filename, "exec", dont_inherit=True)
    else:  # a folder or zip: its __main__ module as the path importer finds it (as runpy does for python)
        spec = importlib.machinery.PathFinder.find_spec("__main__", [target.path0])
        if spec is None or spec.loader is None:
            raise ImportError(f"can't find '__main__' module in {target.given!r}")
        main = importlib.util.module_from_spec(spec)
        code = spec.loader.get_code("__main__")  # type: ignore[attr-defined]
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    return main, code


def run_main(target: MainScript) -> None:
    """Execute the script as ``__main__`` (exceptions, ``SystemExit`` included, propagate to the caller)."""
    main, code = _main_module(target)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved
        else:
            sys.modules.pop("__main__", None)
