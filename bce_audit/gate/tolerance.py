"""How much worse each gated figure may get against the baseline before a case fails.

The defaults come from the figures' declarations (``figures.FIGURES``); the config's
``[tolerance]`` table and each ``--tolerance FIGURE:+N`` go on top. The stable range may never
shrink, and improvements are always allowed (and reported).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bce_audit.errors import UsageError
from bce_audit.figures import GATED_COUNTS
from bce_audit.gate.interface import TOLERANCE_KEYS, Tolerance

ZERO_TOLERANCE = Tolerance(tuple((k, 0) for k in TOLERANCE_KEYS))


def _tolerance_value(key: str, value: Any, what: str) -> float:
    if key not in TOLERANCE_KEYS:
        hint = " (the stable range may never shrink)" if key == "stable_range" else ""
        raise UsageError(f"{what}: unknown figure {key!r}{hint}; choose from {', '.join(TOLERANCE_KEYS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or math.isinf(value):
        raise UsageError(f"{what}: {key} must be a finite number >= 0, got {value!r}")
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
