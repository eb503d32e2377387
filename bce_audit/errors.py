"""Every error bce-audit raises, and the exit code of each, defined once.

The command line turns a ``BceAuditError`` into one line on stderr and its ``exit_code``; the
Python API lets it propagate. Anything else that escapes is a bug (exit 3).
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Iterable


class ExitCode(enum.IntEnum):
    """The exit codes of every command."""

    OK = 0
    REGRESSION = 1  # check: a threshold or the baseline failed
    USAGE = 2  # a bad flag, config, target or output path
    INTERNAL = 3  # a bug in bce-audit itself
    INCOMPLETE = 4  # check: a planned case could not be evaluated (a user's function died or hung)
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT; nothing half-written is left
    TERMINATED = 143  # SIGTERM: 128 + SIGTERM; children ended, nothing half-written is left


# What each exit code means, for --help and the docs.
EXIT_CODE_MEANINGS = {
    ExitCode.OK: "done (check: every planned case was evaluated, and every rule and the baseline hold)",
    ExitCode.REGRESSION: "check: a threshold rule or the baseline failed",
    ExitCode.USAGE: "a usage or configuration error (a bad flag, config, target, baseline or output path)",
    ExitCode.INTERNAL: "a bug in bce-audit",
    ExitCode.INCOMPLETE: "check: nothing failed, but a planned case could not be evaluated (a user's function "
    "died, hung past --timeout or ran out of memory)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitCode.TERMINATED: "terminated (SIGTERM)",
}


def exit_codes_text() -> str:
    """Every exit code and its meaning, one sentence each."""
    return "; ".join(f"{int(code)} {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()) + "."


class BceAuditError(Exception):
    """An error reported as one line, never a traceback, with its own exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(BceAuditError):
    """A user mistake (a flag, a config, a target, an output path): exit 2."""

    exit_code = ExitCode.USAGE


class ArgumentError(UsageError, TypeError, ValueError):
    """A Python API function got an argument it cannot take (``audit(42)``): a UsageError naming
    the argument and what it expects, and, for a caller's ``except``, the TypeError or ValueError
    Python itself raises for a wrong argument."""


class MissingExtra(UsageError):
    """A selected formulation needs a framework that is not installed (JAX, TensorFlow, Keras);
    the message names the pip command that installs it."""


class OutputsNotWritten(UsageError):
    """Writing the outputs failed; the message says why and which outputs were written."""


class IncompleteRun(BceAuditError):
    """A planned case could not be evaluated (a user's function died, hung or ran out of memory),
    so the run can be neither judged nor recorded as a baseline: exit 4."""

    exit_code = ExitCode.INCOMPLETE


class OracleError(BceAuditError):
    """The oracle's precision loop did not converge: a bug in the oracle, never a user error."""


class EvaluationLost(BceAuditError):
    """A request to the sandbox process got no answer (a time limit, a death); the message says why."""


class CorruptCacheFile(BceAuditError):
    """A truth cache file that must not be trusted; the message says why (it is recomputed)."""


class LinkRefused(OSError):
    """A path inside a directory bce-audit owns is a symbolic link or another non-regular file: the
    tool did not create it, so it neither reads through it nor writes through it."""


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread, like KeyboardInterrupt for Ctrl-C, so that every
    cleanup (child processes, temporary files) runs on the way out."""


def stops_the_run(exc: BaseException) -> bool:
    """Whether an exception that came out of someone else's code (a formulation, an import) is the
    run being stopped rather than that code's failure: a SIGTERM the run received (``Terminated``,
    raised by bce-audit's handler wherever the main thread is) or a Ctrl-C the user typed. Where
    SIGINT is ignored (the sandbox), no Ctrl-C can arrive, so a KeyboardInterrupt was raised by
    the code itself."""
    import signal

    if isinstance(exc, Terminated):
        return True
    return isinstance(exc, KeyboardInterrupt) and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def exit_code_of(exc: BaseException) -> ExitCode:
    """The exit code that ends a command on ``exc``."""
    if isinstance(exc, BceAuditError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, Terminated):
        return ExitCode.TERMINATED
    return ExitCode.INTERNAL


def describe(exc: BaseException) -> str:
    """An exception on one line, ``Type: message`` (a multi-line message would break a table cell
    or the one-line rule of diagnostics)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""


def is_reduced(values: int, inputs: int) -> bool:
    """Whether a loss that returned ``values`` values for ``inputs`` inputs reduced them: fewer
    values, each standing for an equal share of the inputs (one for the batch, one per row of a
    ``(1, N)`` layout). A count that does not divide the inputs (``loss[1:]``) is a wrong shape,
    not a reduction."""
    return 0 < values < inputs and inputs % values == 0


class ReducedLoss(ValueError):
    """A loss returned fewer values than it was given inputs, an equal share each (one for the
    batch, one per row of a ``(1, N)`` layout; ``is_reduced``): it reduces (a mean or a sum), so its elementwise
    accuracy cannot be audited. Raised by an engine on the call's result; the sandbox's check of
    a user's loss turns it into a UsageError before any sweep work (never a silently audited mean)."""

    def __init__(self, shape: tuple[int, ...], n: int):
        size = math.prod(shape)
        what = "a scalar" if not shape else f"{size} value{'s' if size != 1 else ''}"
        super().__init__(
            f"returned {what} (shape {shape}) for {n} inputs: it reduces (mean or sum), which cannot be "
            'audited elementwise; call it with reduction="none" (in init or parameters), or with '
            'shape = "(N, 1)" if it averages over its last axis (Keras)'
        )
