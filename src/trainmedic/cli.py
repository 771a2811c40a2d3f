"""The ``trainmedic`` command line. Each front end adds its subcommands through ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from trainmedic.errors import TrainmedicError

# Modules that contribute subcommands; each has ``register(subparsers)`` setting ``func`` on its parser.
COMMAND_MODULES = (
    "trainmedic.commands.explain",
    "trainmedic.commands.demo",
    "trainmedic.commands.report",
    "trainmedic.commands.run",
    "trainmedic.commands.lr_find",
    "trainmedic.tabular.cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what went wrong, and where the help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"trainmedic: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from trainmedic import __version__

    parser = _Parser(
        prog="trainmedic",
        description="A medic for PyTorch training: finds what goes wrong, explains it, repairs what it can.",
    )
    parser.add_argument("--version", action="version", version=f"trainmedic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that front end is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; misuse ends in one line on stderr and exit 2, a closed pipe ends quietly."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        try:
            return int(args.func(args) or 0)
        except TrainmedicError as exc:
            print(f"trainmedic: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("trainmedic: interrupted", file=sys.stderr)
            return 130
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader went away (``trainmedic explain --list | head -1``): stop quietly, as ``seq | head`` does.

    What is still buffered for the closed pipe would fail again when Python flushes it at exit, printing
    "Exception ignored ... BrokenPipeError"; pointing both streams at os.devnull lets that flush succeed.
    The exit status is the one of a process ended by SIGPIPE in a shell (128 + 13 = 141), as coreutils give.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (captured, closed): nothing to flush
            pass
    os.close(devnull)
    sigpipe = getattr(signal, "SIGPIPE", None)
    return 128 + int(sigpipe) if sigpipe is not None else 1


if __name__ == "__main__":
    sys.exit(main())
