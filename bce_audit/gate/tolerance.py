"""How much worse each gated figure may get against the baseline before a case fails.

The defaults come from the figures' declarations (``figures.FIGURES``); the config's
``[tolerance]`` table and each ``--tolerance FIGURE:+N`` go on top. The stable range may never
shrink, and improvements are always allowed (and reported).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from bce_audit.errors import UsageError
from bce_audit.figures import BY_NAME, GATED_COUNTS, GATED_FLOATS
from bce_audit.report.numbers import compact

# the figures a tolerance may be set for: every gated figure but the stable range
TOLERANCE_KEYS = (*GATED_FLOATS, *GATED_COUNTS)


def _defaults() -> tuple[tuple[str, float], ...]:
    return tuple((name, BY_NAME[name].tolerance or 0) for name in TOLERANCE_KEYS)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """allowances: (figure, how much worse it may get) for every figure of TOLERANCE_KEYS:
    ULPs for max_ulp and p99_ulp, bits for mean_bits, points for the counts."""

    allowances: tuple[tuple[str, float], ...] = dataclasses.field(default_factory=_defaults)

    def allowed(self, figure: str) -> float:
        return dict(self.allowances)[figure]

    def __str__(self) -> str:
        parts = [f"{f} +{compact(self.allowed(f))}" for f in GATED_FLOATS]
        counts = {self.allowed(f) for f in GATED_COUNTS}
        if len(counts) == 1:
            parts.append(f"counts +{compact(counts.pop())}")
        else:
            parts += [f"{f} +{compact(self.allowed(f))}" for f in GATED_COUNTS]
        return ", ".join(parts)  # the stable range may never shrink


ZERO_TOLERANCE = Tolerance(tuple((k, 0) for k in TOLERANCE_KEYS))


def _tolerance_value(key: str, value: Any, what: str) -> float:
    if key not in TOLERANCE_KEYS:
        hint = " (the stable range may never shrink)" if key == "stable_range" else ""
        raise UsageError(f"{what}: unknown figure {key!r}{hint}; choose from {', '.join(TOLERANCE_KEYS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or math.isinf(value):
        raise UsageError(f"{what}: {key} must be a number >= 0, got {value!r}")
    if key in GATED_COUNTS:
        if value != int(value):
            raise UsageError(f"{what}: {key} must be a whole number of points, got {value!r}")
        return int(value)
    return float(value)


def parse_tolerance(table: Any, flags: Sequence[str], where: str) -> Tolerance:
    """Defaults, then the config's [tolerance] table, then each --tolerance FIGURE:+N on top."""
    values = dict(Tolerance().allowances)
    if table is not None:
        if not isinstance(table, dict):
            raise UsageError(f"{where}: tolerance must be a table ([tolerance])")
        for key, value in table.items():
            values[key] = _tolerance_value(key, value, f"{where}: tolerance")
    for text in flags:
        key, sep, amount = text.partition(":")
        try:
            value = float(amount.strip()) if sep else None
        except ValueError:
            value = None
        if value is None:
            raise UsageError(f"--tolerance {text!r} is not of the form FIGURE:+N (for example max_ulp:+2)")
        values[key.strip()] = _tolerance_value(key.strip(), value, f"--tolerance {text!r}")
    return Tolerance(tuple(values.items()))
