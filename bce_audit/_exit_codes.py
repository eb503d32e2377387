"""Exit codes, defined once (DESIGN: Interface), and the one-line form of an error message."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    REGRESSION = 1  # a threshold or the baseline failed (bce-audit check)
    USAGE = 2  # bad flag, bad config, unwritable output
    INTERNAL = 3  # a bug in bce-audit itself
    INTERRUPTED = 130  # Ctrl-C: the shell convention (128 + SIGINT); nothing half-written is left


class UsageError(Exception):
    """A user mistake: reported as one line on stderr with exit code 2, never a traceback."""


def describe(exc: BaseException) -> str:
    """An exception on one line, ``Type: message`` (a multi-line message would break a table cell
    or the one-line rule of diagnostics)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
