"""The one place that owns the rich Consoles: reports on stdout, progress and errors on stderr.

NO_COLOR and non-terminal output give plain text (rich honours both); COLUMNS pins the width.
Consoles are made per call so that they follow the current sys.stdout / sys.stderr (click's
CliRunner swaps them in tests).
"""

from __future__ import annotations

import os
import sys


class _ClosedPipeSafe:
    """A stream whose reader may go away (`bce-audit check | head -1`): the output then ends
    quietly instead of the command, whose exit code and files still to be written must not
    depend on who reads the report."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
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

    def __getattr__(self, name):
        return getattr(self._stream, name)


def stdout():
    from rich.console import Console

    return Console(file=_ClosedPipeSafe(sys.stdout), highlight=False, soft_wrap=False)


def stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)
