"""Where ``fit`` writes: checked before the work, written all-or-nothing after it.

A fit can take minutes; learning only at the end that ``--out`` cannot be written (a file in the way, no
permission, a read-only disk) wastes them. :func:`check_writable_dir` is called before any work and says
so in one line. :func:`commit_files` then writes the results in two phases: every file is first written
completely into a hidden staging folder inside ``--out`` (this is where a full disk fails), and only then
renamed into place, which needs no space. A failure in the first phase removes the staging folder (and any
folder the fit created), so ``--out`` stays exactly as it was. After the renames, files a previous fit
wrote into the same folder and this one did not (a ``submission.csv`` of a fit with ``--test``, say) are
removed, so the folder never mixes the results of two fits. Only names that ``fit`` itself writes are
ever removed: other files in the folder are left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from trainmedic.errors import UsageError

STAGING_PREFIX = ".fit-staging-"


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_dir(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """Raise UsageError unless ``path`` is, or can be made as, a directory we can write files in.

    Nothing is left behind: the write test creates and removes one empty file in the nearest existing
    folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} exists and is not a directory; give a directory path")
    anc = _nearest_existing(path)
    if not anc.is_dir():
        raise UsageError(f"{flag} {path}: {anc} is a file, so no directory can be made under it; "
                         f"give a directory path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {anc} (no permission); choose another directory")
    try:  # access() says yes to root on a read-only file system: try it
        fd, probe = tempfile.mkstemp(dir=anc, prefix=".trainmedic-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {anc} ({exc.strerror or exc}); "
                         f"choose another directory") from None


def _write(path: Path, data: str | bytes) -> None:
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def commit_files(out: str | os.PathLike[str], files: dict[str, str | bytes], owned: tuple[str, ...],
                 flag: str = "--out") -> dict[str, str]:
    """Write ``files`` (name -> content) into ``out`` all-or-nothing, and remove the ``owned`` names that
    this set does not contain. Returns name -> path. Raises UsageError (``out`` as it was) on a write error.
    """
    out = Path(out)
    created: list[Path] = []
    p = out
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    stage: Path | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out, prefix=STAGING_PREFIX))
        for name, data in files.items():
            _write(stage / name, data)
    except OSError as exc:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for d in created:  # innermost first: only the folders this call made, and only if still empty
            try:
                d.rmdir()
            except OSError:
                break
        raise UsageError(f"could not write the results into {flag} {out} ({exc.strerror or exc}); "
                         f"it was left as it was") from None
    for name in files:
        os.replace(stage / name, out / name)
    stage.rmdir()
    for name in owned:
        if name not in files:
            try:
                (out / name).unlink()
            except FileNotFoundError:
                pass
    return {name: str(out / name) for name in files}


__all__ = ["check_writable_dir", "commit_files"]
