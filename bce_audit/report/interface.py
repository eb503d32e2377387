from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from bce_audit.sweep.result import AuditResult

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.gate.interface import Verdict


class Format(abc.ABC):
    """Turns a sweep result into the text of one report."""

    @abc.abstractmethod
    def render(self, result: AuditResult) -> str: ...


class VerdictFormat(abc.ABC):
    """Turns the verdict of `bce-audit check` into the text of one report."""

    @abc.abstractmethod
    def render(self, verdict: Verdict) -> str: ...
