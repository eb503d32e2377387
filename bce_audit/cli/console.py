"""The one place that owns the output streams: reports on stdout, progress and errors on stderr.

NO_COLOR and non-terminal output give plain text (rich honours both). Consoles are made per call
so that they follow the current sys.stdout / sys.stderr (click's CliRunner swaps them in tests).
A closed stream (``bce-audit sweep >&-``, a reader that went away) ends that output quietly,
never the run: its exit code and the files it writes do not depend on who reads the report.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


class _ClosedPipeSafe:
    """A stream whose reader may go away (`bce-audit check | head -1`): the output then ends
    quietly instead of the command."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
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

    return Console(file=_stream(sys.stdout), highlight=False, soft_wrap=True)


def stderr() -> Console:
    from rich.console import Console

    return Console(file=_stream(sys.stderr), highlight=False, soft_wrap=True)


def report_width(stream: IO[str] | None = None) -> int | None:
    """The width reports are laid out for: $COLUMNS when set, else the terminal's, else None
    (output to a file, a pipe or a CI log: tables at their natural width, lines unwrapped)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.strip().isdigit() and int(columns) > 0:
        return int(columns)
    stream = sys.stdout if stream is None else stream
    try:
        if stream is not None and stream.isatty():
            return shutil.get_terminal_size((80, 24)).columns
    except (ValueError, AttributeError, OSError):
        pass
    return None


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
