"""Status bands: where along the input a case fails, as contiguous runs of one status.

The plots draw them (``report.plot``). This is the one place they are computed, from the sampled
points' statuses, behind a small interface: ``bands(case) -> list[Band]``; an exact failure map
(refined edges between samples) can replace the body without touching the plots.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bce_audit.sweep.result import CaseResult
from bce_audit.vocabulary import Status


@dataclasses.dataclass(frozen=True)
class Band:
    """A run of consecutive sampled finite inputs, lo to hi (both sampled, lo <= hi), that all
    have one status that is not ok; the next sampled input on either side (if any) has another."""

    lo: float
    hi: float
    status: Status


def bands(case: CaseResult) -> list[Band]:
    """The status bands of a case, in increasing input order; none for an ok case, a case
    without details, or one that raised (its every point is an error: one band, the whole range)."""
    d = case.details
    if d is None:
        return []
    n = case.figures.points if case.figures is not None else int(np.count_nonzero(np.isfinite(d.inputs)))
    inputs, statuses = d.inputs[:n], d.statuses[:n]
    found: list[Band] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or statuses[i] != statuses[start]:
            if statuses[start] != Status.OK.value:
                found.append(Band(float(inputs[start]), float(inputs[i - 1]), Status(str(statuses[start]))))
            start = i
    return found
