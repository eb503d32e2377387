"""The failure map of a case: the maximal input intervals of each status, and how each edge is known.

A case's evaluated inputs (the sampled grid, plus the pairs of neighbouring floats that
``sweep.refine`` found at each status transition) are sorted by bit pattern and cut into runs of
one status. Each run is an interval [lo, hi] whose ends are evaluated inputs. An end is *exact*
when the representable value just beyond it (on the other side) was evaluated too and has another
status, or when there is no value of the grid beyond it (the end of the grid's range); otherwise
it is *sampled*: the status changes somewhere between it and the next evaluated input. An interval
is *enumerated* when every representable value in it was evaluated (``evaluated == floats``);
otherwise its interior was sampled, and a failure between two ok samples can hide there.

-0 and +0 are distinct inputs (the sweep evaluates both): ``floats`` counts both, so [-0, 0]
holds 2 floats (see ``floats.position``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bce_audit.floats import position
from bce_audit.sweep.result import FailureInterval
from bce_audit.vocabulary import Domain, FloatFormat, Status


def _run_starts(statuses: np.ndarray) -> np.ndarray:
    if not len(statuses):
        return np.empty(0, dtype=np.int64)
    return np.concatenate([[0], np.nonzero(statuses[1:] != statuses[:-1])[0] + 1])


def _worst_of_runs(x: np.ndarray, err: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """(input, ULP error) of the largest ULP error of each run [starts[k], ends[k]] (the first
    input of equals, as np.nanargmax gives it), or (NaN, NaN) where none of the run's errors is
    defined: for every run at once."""
    if not len(starts):
        return []
    e = np.where(np.isnan(err), -np.inf, err)  # ULP errors are >= 0 or +inf: -inf marks NaN
    top = np.maximum.reduceat(e, starts)
    index = np.where(e == np.repeat(top, ends - starts + 1), np.arange(len(e)), len(e))
    at = np.minimum.reduceat(index, starts)
    return [
        (float(x[k]), float(t)) if t > -np.inf else (math.nan, math.nan)
        for k, t in zip(at.tolist(), top.tolist(), strict=True)
    ]


def ends_near(inputs: np.ndarray, statuses: np.ndarray, fmt: FloatFormat, centre: float) -> set[float]:
    """The ends of the intervals ``build_map`` would make that hold ``centre``, and of their two
    neighbours: where a stable range (or an "all but the centre") is read from. The same
    intervals, without building them."""
    x = np.asarray(inputs, dtype=np.float64)
    order = np.argsort(position(x, fmt), kind="stable")
    x, st = x[order], np.asarray(statuses, dtype=object)[order]
    starts = _run_starts(st)
    if not len(starts):
        return set()
    ends = np.concatenate([starts[1:] - 1, [len(st) - 1]])
    lo, hi = x[starts], x[ends]
    at = np.nonzero((lo <= centre) & (centre <= hi))[0]
    if not len(at):
        return set()
    near = slice(max(int(at[0]) - 1, 0), min(int(at[-1]) + 2, len(starts)))
    return set(lo[near].tolist()) | set(hi[near].tolist())


def build_map(
    inputs: np.ndarray,
    statuses: np.ndarray,
    ulp_errors: np.ndarray,
    fmt: FloatFormat,
    bounds: tuple[float, float] | None,
    alone: dict[float, Status] | None = None,
) -> tuple[FailureInterval, ...]:
    """The intervals of one case, in input order.

    inputs: the evaluated finite inputs (any order, distinct bit patterns); statuses: their Status
    values (str); ulp_errors: NaN where undefined. bounds: the first and last representable input
    of the grid's range (an interval end there is exact), None when not known. alone: refined
    edge inputs whose status alone differs from their status in a batch, with that status.
    """
    x = np.asarray(inputs, dtype=np.float64)
    pos = position(x, fmt)
    order = np.argsort(pos, kind="stable")
    x, pos = x[order], pos[order]
    st = np.asarray(statuses, dtype=object)[order]
    err = np.asarray(ulp_errors, dtype=np.float64)[order]
    first, last = (None, None) if bounds is None else position(np.array(bounds), fmt).tolist()
    alone = alone or {}
    starts = _run_starts(st)
    ends = np.concatenate([starts[1:] - 1, [len(st) - 1]]) if len(st) else starts
    worst = _worst_of_runs(x, err, starts, ends)
    intervals = []
    # Python numbers from here on: indexing numpy arrays one element at a time costs more
    pos_list, x_list, n = pos.tolist(), x.tolist(), len(st)
    for i, j, (worst_input, worst_ulp) in zip(starts.tolist(), ends.tolist(), worst, strict=True):
        p_lo, p_hi = pos_list[i], pos_list[j]
        lo_exact = (i > 0 and p_lo - pos_list[i - 1] == 1) or (i == 0 and p_lo == first)
        hi_exact = (j < n - 1 and pos_list[j + 1] - p_hi == 1) or (j == n - 1 and p_hi == last)
        ends_alone = tuple((v, alone[v]) for v in dict.fromkeys((x_list[i], x_list[j])) if v in alone) if alone else ()
        intervals.append(
            FailureInterval(
                status=Status(st[i]),
                lo=x_list[i],
                hi=x_list[j],
                lo_exact=bool(lo_exact),
                hi_exact=bool(hi_exact),
                floats=p_hi - p_lo + 1,
                evaluated=j - i + 1,
                worst_input=worst_input,
                worst_ulp=worst_ulp,
                alone=ends_alone,
            )
        )
    return tuple(intervals)


def error_map(inputs: np.ndarray, fmt: FloatFormat, bounds: tuple[float, float] | None) -> tuple[FailureInterval, ...]:
    """The map of a case whose formulation raised (or could not be run): one `error` interval."""
    n = len(inputs)
    return build_map(inputs, np.full(n, Status.ERROR.value, dtype=object), np.full(n, np.nan), fmt, bounds)


@dataclasses.dataclass(frozen=True)
class StableRange:
    """The widest interval around the domain's centre on which every evaluated input is ok.

    lo, hi: NaN when there is none. but_centre: the centre's own value (z = ±0 on logits,
    p = 0.5 on probabilities) is not ok but every other evaluated input in [lo, hi] is: an
    isolated failure at the centre, which is not "fails everywhere".
    """

    lo: float
    hi: float
    but_centre: bool = False


def stable_range(intervals: tuple[FailureInterval, ...], domain: Domain) -> StableRange:
    """The stable range from a case's map. Its ends are the map's interval ends: exact where the
    transitions were refined, and the interior sampled unless enumerated."""
    centre = domain.centre
    at = [k for k, iv in enumerate(intervals) if iv.contains(centre)]
    none = StableRange(math.nan, math.nan)
    if not at:
        return none
    if all(not intervals[k].failing for k in at):
        return StableRange(intervals[at[0]].lo, intervals[at[-1]].hi)
    # the centre fails: only its own value (both zeros on logits), with exact edges, and ok
    # on both sides
    below, above = at[0] - 1, at[-1] + 1
    own = all(intervals[k].lo == centre == intervals[k].hi for k in at)
    exact = intervals[at[0]].lo_exact and intervals[at[-1]].hi_exact
    if not (own and exact and below >= 0 and above < len(intervals)):
        return none
    if intervals[below].failing or intervals[above].failing:
        return none
    return StableRange(intervals[below].lo, intervals[above].hi, but_centre=True)


def enumerated_map(
    runs: list[tuple[float, float, Status]], worst: list[tuple[float, float]], fmt: FloatFormat
) -> tuple[FailureInterval, ...]:
    """The map of a case whose every input of the range was evaluated (exhaustive float32): its
    status runs (``sweep.streaming.StatusRuns``, in input order, consecutive floats) are the
    intervals, every one enumerated: both ends exact (the float beyond each end has another
    status, or is outside the range) and every float inside evaluated."""
    if not runs:
        return ()
    ends = position(np.array([[lo, hi] for lo, hi, _ in runs]), fmt)
    return tuple(
        FailureInterval(
            status=status,
            lo=lo,
            hi=hi,
            lo_exact=True,
            hi_exact=True,
            floats=int(p_hi - p_lo + 1),
            evaluated=int(p_hi - p_lo + 1),
            worst_input=worst_input,
            worst_ulp=worst_ulp,
        )
        for (lo, hi, status), (worst_input, worst_ulp), (p_lo, p_hi) in zip(runs, worst, ends.tolist(), strict=True)
    )
