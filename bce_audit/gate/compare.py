"""A run against its baseline: which figures moved, by how much, and whether beyond the tolerance.

Lower is better for every gated figure; an undefined figure (NaN) is worse than any number; the
stable range may never shrink. A lost case (not evaluated) is reported apart, never judged.
"""

from __future__ import annotations

import math

from bce_audit.figures import GATED_COUNTS, GATED_FLOATS
from bce_audit.gate.interface import CaseComparison, CaseRecord, Change, Direction, FigureDelta, Tolerance
from bce_audit.sweep.result import CaseKey


def _nan(x: object) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _move(old: float, new: float, allowed: float) -> Direction | None:
    """How a lower-is-better figure moved; an undefined (NaN) figure is worse than any number."""
    if old == new or (_nan(old) and _nan(new)):
        return None
    if _nan(new):
        return Direction.WORSE
    if _nan(old) or new < old:
        return Direction.BETTER
    return Direction.TOLERATED if new - old <= allowed else Direction.WORSE


def _range_move(old: tuple[float, float], new: tuple[float, float]) -> Direction | None:
    if old == new or (_nan(old[0]) and _nan(new[0])):
        return None
    if _nan(new[0]):
        return Direction.WORSE
    if _nan(old[0]):
        return Direction.BETTER
    shrunk = new[0] > old[0] or new[1] < old[1]
    return Direction.WORSE if shrunk else Direction.BETTER


def figure_deltas(old: CaseRecord, new: CaseRecord, tolerance: Tolerance) -> tuple[FigureDelta, ...]:
    """The gated figures that moved from ``old`` to ``new``."""
    if old.error is None and new.error is not None:
        return (FigureDelta("error", None, new.error, None, Direction.WORSE),)
    if old.error is not None:
        if new.error is None:
            return (FigureDelta("error", old.error, None, None, Direction.BETTER),)
        return ()  # still raising: no figures to compare
    deltas = []
    if new.points == 0:  # nothing evaluated: never as good as anything
        return (FigureDelta("points", old.points, new.points, None, Direction.WORSE),)
    if old.points != new.points:  # another input grid: the counts are not comparable
        deltas.append(FigureDelta("points", old.points, new.points, None, Direction.WORSE))
    for figure in (*GATED_FLOATS, *GATED_COUNTS):
        a, b, allowed = old.value(figure), new.value(figure), tolerance.allowed(figure)
        assert not isinstance(a, tuple) and not isinstance(b, tuple)  # a number, not a range
        direction = _move(a, b, allowed)
        if direction is not None:
            deltas.append(FigureDelta(figure, a, b, allowed, direction))
    old_range, new_range = old.value("stable_range"), new.value("stable_range")
    assert isinstance(old_range, tuple) and isinstance(new_range, tuple)  # (lo, hi)
    direction = _range_move(old_range, new_range)
    if direction is not None:
        deltas.append(FigureDelta("stable_range", old_range, new_range, None, direction))
    return tuple(deltas)


def compare(
    old: dict[CaseKey, CaseRecord],
    new: dict[CaseKey, CaseRecord],
    tolerance: Tolerance,
    allow_missing: bool,
) -> tuple[CaseComparison, ...]:
    """Every case of the run against the baseline (run order), then the baseline's missing ones."""
    out = []
    for key, fig in new.items():
        if fig.lost is not None:
            out.append(CaseComparison(key, Change.LOST, lost=fig.lost))
            continue
        if key not in old:
            out.append(CaseComparison(key, Change.NEW, (), fig.worst_input))
            continue
        old_error = old[key].error
        if old_error is not None and fig.error is not None:
            out.append(CaseComparison(key, Change.STILL_RAISES, errors=(old_error, fig.error)))
            continue
        deltas = figure_deltas(old[key], fig, tolerance)
        directions = {d.direction for d in deltas}
        if Direction.WORSE in directions:
            change = Change.REGRESSED
        elif Direction.BETTER in directions:
            change = Change.IMPROVED
        else:
            change = Change.UNCHANGED
        out.append(CaseComparison(key, change, deltas, fig.worst_input))
    gone = Change.MISSING_ALLOWED if allow_missing else Change.MISSING
    out += [CaseComparison(key, gone) for key in old if key not in new]
    return tuple(out)
