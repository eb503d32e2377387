from __future__ import annotations

import abc

from bce_audit.result import SweepResult


class Format(abc.ABC):
    """Turns a sweep result into the text of one report."""

    @abc.abstractmethod
    def render(self, result: SweepResult) -> str: ...


def number(x: float) -> str:
    """A float as text that parses back to the exact same value (Python's repr)."""
    return repr(float(x))
