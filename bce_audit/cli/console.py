"""The one place that owns the output streams: reports on stdout, progress and errors on stderr.

NO_COLOR and non-terminal output give plain text (rich honours both). Consoles are made per call
so that they follow the current sys.stdout / sys.stderr (click's CliRunner swaps them in tests).
A closed stream (``bce-audit sweep >&-``, a reader that went away) ends that output quietly,
never the run: its exit code and the files it writes do not depend on who reads the report.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


class _ClosedPipeSafe:
    """A stream whose reader may go away (`bce-audit check | head -1`) or that cannot take more
    (`> /dev/full`, a disk that filled up): the output then ends quietly instead of the command."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):  # BrokenPipeError, ENOSPC, EIO; ValueError: the stream was closed
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._silence()

    def _silence(self) -> None:
        # Point the descriptor at /dev/null too, so the interpreter's own flush at exit is quiet.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        self._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (ValueError, AttributeError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stream(stream: TextIO | None) -> IO[str]:
    if stream is None:  # the descriptor was closed when Python started: nowhere to write
        return open(os.devnull, "w")  # noqa: SIM115
    return cast(IO[str], _ClosedPipeSafe(stream))  # a proxy: what it does not define, it forwards


def stdout() -> Console:
    from rich.console import Console

    return Console(file=_stream(sys.stdout), highlight=False, soft_wrap=True, width=_console_width())


def stderr() -> Console:
    from rich.console import Console

    return Console(file=_stream(sys.stderr), highlight=False, soft_wrap=True, width=_console_width())


def _columns() -> int | None:
    """$COLUMNS when it is a usable width, else None (unset, empty, 0, not a number, absurd)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdecimal() and 0 < int(columns) <= _MAX_COLUMNS:
        return int(columns)
    return None


# Wider than any screen: a bigger COLUMNS is a mistake, and would only make rich pad lines to it.
_MAX_COLUMNS = 10_000


def _console_width() -> int | None:
    """The width rich should use: None (rich's own choice) unless COLUMNS is set to something rich
    would take literally and that hides everything (COLUMNS=0), which is then ignored."""
    if "COLUMNS" not in os.environ or _columns() is not None:
        return None
    return _terminal_columns(sys.__stdout__) or 80


def _terminal_columns(stream: IO[str] | TextIO | None) -> int | None:
    """The width of the terminal ``stream`` writes to; None when it is not a terminal."""
    try:
        if stream is not None and stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (OSError, ValueError, AttributeError):
        pass
    return None


def report_width(stream: IO[str] | None = None) -> int | None:
    """The width reports are laid out for: $COLUMNS when set, else the terminal's, else None
    (output to a file, a pipe or a CI log: tables at their natural width, lines unwrapped)."""
    return _columns() or _terminal_columns(sys.stdout if stream is None else stream)


def ensure_standard_descriptors() -> None:
    """Open /dev/null on any of descriptors 0, 1 and 2 that is closed (`bce-audit sweep >&-`),
    so that no file bce-audit opens later can take its number and receive stray output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
