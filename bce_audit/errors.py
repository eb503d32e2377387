"""Exit codes, defined once, and the one-line form of an error message."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    REGRESSION = 1  # a threshold or the baseline failed (bce-audit check)
    USAGE = 2  # bad flag, bad config, unwritable output
    INTERNAL = 3  # a bug in bce-audit itself
    INCOMPLETE = 4  # check: a planned case could not be evaluated (a user's function died or hung)
    INTERRUPTED = 130  # Ctrl-C: the shell convention (128 + SIGINT); nothing half-written is left
    TERMINATED = 143  # SIGTERM: 128 + 15; children ended, nothing half-written is left


class BceAuditError(Exception):
    """An error bce-audit reports as one line on stderr, with its own exit code, never a traceback."""

    exit_code = ExitCode.INTERNAL


class UsageError(BceAuditError):
    """A user mistake: reported as one line on stderr with exit code 2, never a traceback."""

    exit_code = ExitCode.USAGE


class IncompleteRun(BceAuditError):
    """A planned case could not be evaluated (a user's function died, hung or ran out of
    memory), so the run cannot be judged or recorded: exit 4."""

    exit_code = ExitCode.INCOMPLETE


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that every cleanup (child processes,
    temporary files) runs on the way out, as it does for Ctrl-C."""


def describe(exc: BaseException) -> str:
    """An exception on one line, ``Type: message`` (a multi-line message would break a table cell
    or the one-line rule of diagnostics)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
