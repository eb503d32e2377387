"""Where the truth crosses a threshold of a dtype: the inputs on either side, found exactly.

Breakdowns cluster where the exact result crosses one of the dtype's thresholds (the largest
finite value, the smallest normal, the smallest subnormal and half of it) or where an
intermediate of the usual formulas does (exp(z) overflows or underflows, sigmoid(z) rounds to 1).
Such bands can be a single ULP wide or span one unit of z out of 2^32 bit patterns, so uniform
sampling misses them; ``sweep.grid`` adds the inputs found here to every grid.

Thresholds of the truth. For a quantity q (the loss or the gradient) of one (dtype, domain,
label), each threshold is a predicate on the truth as the oracle returns it (correctly rounded):

* ``nonzero``: q rounded to the dtype is not ±0 (the exact |q| passes half the smallest subnormal);
* ``smallest subnormal``: q rounded to float64 reaches the dtype's smallest subnormal in magnitude;
* ``smallest normal``: q rounded to the dtype reaches its smallest normal in magnitude;
* ``largest finite``: q rounded to the dtype reaches its largest finite value (or overflows);
* ``overflow``: q rounded to the dtype is ±inf;
* ``sign`` (gradient only): the gradient changes sign (the loss's minimum, sigmoid(z) = y or p = y).

Each is monotone in the exact |q|, and |q| is monotone on each side of the sign change of the
gradient: the loss is convex in z and in p (its second derivative, sigmoid'(z) or
y/p² + (1-y)/(1-p)², is positive) and the gradient increasing. So the gradient's sign splits the
dtype's inputs into at most two runs on which every predicate changes at most once, and a
bisection on the inputs' ordinals (neighbouring values differ by 1) finds each change as a pair
of neighbouring inputs evaluated by the exact oracle: one beyond the threshold, one not. All the
bisections of a (dtype, domain) run in lockstep, one call to ``oracle.table.evaluate_points``
per step.

Intermediate thresholds (logits only) are derived exactly, not searched: the boundary of
exp(±z) overflowing (z = ±log(largest finite + half its ULP), the dtype's rounding midpoint to
inf), of exp(±z) underflowing to 0 (±log(smallest subnormal / 2)) and leaving the normal range
(±log(smallest normal)), and of sigmoid(±z) rounding to 1 (σ(z) = 1 - 2^-(p+1), the midpoint
below 1: z = ±log(2^(p+1) - 1)). Each is computed at 256 bits and rounded into the dtype; being
transcendental, it is never a value of the dtype, and the neighbours either side are taken.

Every crossing contributes its pair and ``NEIGHBOURS`` more inputs on each side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bce_audit.floats import from_ordinal, ordinal, round_to_format
from bce_audit.oracle.table import column, evaluate_points
from bce_audit.vocabulary import FLOAT64, Domain, FloatFormat, Quantity

# Inputs added beyond each side of a crossing pair.
NEIGHBOURS = 2

Predicate = Callable[[np.ndarray], np.ndarray]  # truth rows (n, 8) -> bool (n,)


@dataclasses.dataclass(frozen=True)
class Crossing:
    """One threshold crossing of the truth between two neighbouring inputs of a dtype.

    quantity: the loss or the gradient.
    threshold: its name (see the module docstring).
    label: the label (already rounded to the dtype).
    before / after: the neighbouring inputs, before < after; the threshold's predicate differs
        between them.
    """

    quantity: Quantity
    threshold: str
    label: float
    before: float
    after: float


def _threshold_predicates(fmt: FloatFormat, quantity: Quantity) -> dict[str, Predicate]:
    q_fmt, q_64 = column(quantity, fmt), column(quantity, FLOAT64)

    def at_least(col: int, level: float) -> Predicate:
        return lambda rows: np.abs(rows[:, col]) >= level

    return {
        "nonzero": lambda rows: rows[:, q_fmt] != 0,
        "smallest subnormal": at_least(q_64, fmt.smallest_subnormal),
        "smallest normal": at_least(q_fmt, fmt.smallest_normal),
        "largest finite": at_least(q_fmt, fmt.largest_finite),
        "overflow": lambda rows: np.isinf(rows[:, q_fmt]),
    }


def _positive_gradient(rows: np.ndarray) -> np.ndarray:
    """The gradient rounded to float64 is > 0 or +0: monotone in the exact gradient (a tiny
    negative gradient rounds to -0, a tiny positive one to +0)."""
    g = rows[:, column(Quantity.GRAD, FLOAT64)]
    positive: np.ndarray = (g > 0) | ((g == 0) & ~np.signbit(g))
    return positive


def _domain_ordinals(fmt: FloatFormat, domain: Domain) -> tuple[int, int]:
    if domain is Domain.LOGITS:
        lo, hi = -fmt.largest_finite, fmt.largest_finite
    else:
        lo, hi = 0.0, 1.0
    a, b = ordinal(np.array([lo, hi]), fmt).tolist()
    return int(a), int(b)


class _Truth:
    """The truth at (ordinal, label) points of one (dtype, domain), each evaluated once."""

    def __init__(self, fmt: FloatFormat, domain: Domain) -> None:
        self.fmt, self.domain = fmt, domain
        self._rows: dict[tuple[int, float], np.ndarray] = {}

    def rows(self, points: Sequence[tuple[int, float]]) -> np.ndarray:
        missing = list(dict.fromkeys(p for p in points if p not in self._rows))
        if missing:
            xs = from_ordinal(np.array([o for o, _ in missing], dtype=np.int64), self.fmt)
            ys = np.array([y for _, y in missing], dtype=np.float64)
            for point, row in zip(missing, evaluate_points(self.domain, xs, ys), strict=True):
                self._rows[point] = row
        return np.array([self._rows[p] for p in points]).reshape(len(points), -1)


@dataclasses.dataclass
class _Search:
    """A bisection: pred(lo) != pred(hi); ends as hi = lo + 1."""

    lo: int
    hi: int
    label: float
    predicate: Predicate
    value_lo: bool
    tag: tuple[Quantity, str]


def _bisect_all(truth: _Truth, searches: list[_Search]) -> None:
    active = [s for s in searches if s.hi - s.lo > 1]
    while active:
        mids = [(s.lo + s.hi) // 2 for s in active]
        rows = truth.rows([(m, s.label) for m, s in zip(mids, active, strict=True)])
        for i, (m, s) in enumerate(zip(mids, active, strict=True)):
            if bool(s.predicate(rows[i : i + 1])[0]) == s.value_lo:
                s.lo = m
            else:
                s.hi = m
        active = [s for s in active if s.hi - s.lo > 1]


def find_crossings(fmt: FloatFormat, domain: Domain, labels: Sequence[float]) -> list[Crossing]:
    """Every threshold crossing of the loss and the gradient of plain BCE over all finite
    inputs of ``fmt`` on ``domain``, for each label (exact values of ``fmt``)."""
    truth = _Truth(fmt, domain)
    lo, hi = _domain_ordinals(fmt, domain)
    labels = list(dict.fromkeys(float(y) + 0.0 for y in labels))
    # 1. where the gradient changes sign: the runs on which every |quantity| is monotone
    ends = truth.rows([(o, y) for y in labels for o in (lo, hi)])
    positive = _positive_gradient(ends).reshape(len(labels), 2)
    sign_searches = [
        _Search(lo, hi, y, _positive_gradient, False, (Quantity.GRAD, "sign"))
        for y, (at_lo, at_hi) in zip(labels, positive.tolist(), strict=True)
        if not at_lo and at_hi
    ]
    _bisect_all(truth, sign_searches)
    runs: dict[float, list[tuple[int, int]]] = {y: [(lo, hi)] for y in labels}
    for s in sign_searches:
        runs[s.label] = [(lo, s.lo), (s.hi, hi)]
    # 2. each threshold on each run, where its predicate differs at the two ends
    searches: list[_Search] = []
    for y, label_runs in runs.items():
        for a, b in label_runs:
            if a >= b:
                continue
            end_rows = truth.rows([(a, y), (b, y)])
            for quantity in Quantity:
                for name, predicate in _threshold_predicates(fmt, quantity).items():
                    at_a, at_b = predicate(end_rows).tolist()
                    if at_a != at_b:
                        searches.append(_Search(a, b, y, predicate, bool(at_a), (quantity, name)))
    _bisect_all(truth, searches)
    found: list[Crossing] = []
    for s in sign_searches + searches:
        before, after = from_ordinal(np.array([s.lo, s.hi]), fmt).tolist()
        found.append(Crossing(s.tag[0], s.tag[1], s.label, before, after))
    return found


def intermediate_thresholds(fmt: FloatFormat) -> dict[str, float]:
    """The exact logits (as float64 approximations, for reports) where an intermediate of the
    usual formulas crosses a threshold of ``fmt``: positive z; each also applies at -z."""
    return {name: float(value) for name, value in _intermediate_mpf(fmt).items()}


def _intermediate_mpf(fmt: FloatFormat) -> dict[str, Any]:  # name -> mpf
    import mpmath

    with mpmath.workprec(256):
        two = mpmath.mpf(2)
        overflow_midpoint = two**fmt.emax * (2 - two ** (-fmt.precision))
        return {
            "exp overflows": mpmath.log(overflow_midpoint),
            "exp underflows to 0": -mpmath.log(mpmath.mpf(fmt.smallest_subnormal) / 2),
            "exp leaves the normal range": -mpmath.log(mpmath.mpf(fmt.smallest_normal)),
            "sigmoid rounds to 1": mpmath.log(two ** (fmt.precision + 1) - 1),
        }


def intermediate_inputs(fmt: FloatFormat) -> np.ndarray:
    """The values of ``fmt`` nearest each intermediate threshold (±), with NEIGHBOURS more on
    each side: logits only."""
    ordinals: list[int] = []
    for value in _intermediate_mpf(fmt).values():
        sign, man, exp, _ = value._mpf_
        nearest = round_to_format(sign, int(man), exp, fmt)
        if abs(nearest) > fmt.largest_finite:
            continue  # beyond the dtype: no input of it is near
        # transcendental: never a value of fmt, so strictly between two neighbours
        below = int(ordinal(np.array([nearest]), fmt)[0]) - (nearest > value)
        for first in (below, -below - 1):  # z and its mirror -z
            ordinals.extend(range(first - NEIGHBOURS, first + NEIGHBOURS + 2))
    return _clipped_values(ordinals, fmt, Domain.LOGITS)


def _clipped_values(ordinals: list[int], fmt: FloatFormat, domain: Domain) -> np.ndarray:
    lo, hi = _domain_ordinals(fmt, domain)
    kept = sorted({o for o in ordinals if lo <= o <= hi})
    return from_ordinal(np.array(kept, dtype=np.int64), fmt)


def crossing_inputs(fmt: FloatFormat, domain: Domain, labels: Sequence[float]) -> np.ndarray:
    """Sorted distinct inputs of ``fmt`` at every crossing of ``find_crossings`` (for all
    ``labels``) and, on logits, every intermediate threshold, each with NEIGHBOURS more on both
    sides. Deterministic: no randomness is involved."""
    ordinals: list[int] = []
    for c in find_crossings(fmt, domain, labels):
        a, b = ordinal(np.array([c.before, c.after]), fmt).tolist()
        ordinals.extend(range(int(a) - NEIGHBOURS, int(b) + NEIGHBOURS + 1))
    values = _clipped_values(ordinals, fmt, domain)
    if domain is Domain.LOGITS:
        values = np.concatenate([values, intermediate_inputs(fmt)])
    # distinct values; -0 and +0 apart
    return np.sort(np.unique(values.view(np.int64)).view(np.float64), kind="stable")
