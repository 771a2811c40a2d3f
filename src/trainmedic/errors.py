"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits with code 2."""


class TrainmedicError(Exception):
    """Base class of trainmedic's user-facing errors."""


class UsageError(TrainmedicError, ValueError):
    """Bad input: a missing file, an unknown column, a wrong argument. The message says what to do."""
