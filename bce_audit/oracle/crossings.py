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
bisections of a (dtype, domain) run in lockstep.

Each bisection runs first on a float64 estimate of the truth (numpy: a few operations on every
search at once, ``_estimated_rows``), and only its result is evaluated exactly: the pair it ends
on is the crossing when the exact predicate differs between its two inputs, since the predicate
changes once on the run. The estimate only saves work, never decides: where it is off (near a
midpoint of the dtype, or where numpy's exp and log lose digits), the exact values of that pair
still narrow the bracket soundly; exact values at 2, 8, 32, ... ordinals beyond the pair then
find a narrow bracket (the estimate is rarely far off), and the bisection ends on the exact
truth, one call to ``oracle.table.evaluate_points`` per step for every search left.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from bce_audit.floats import from_ordinal, ordinal, round_array, round_to_format
from bce_audit.oracle.table import FORMATS, column, evaluate_points
from bce_audit.vocabulary import FLOAT64, Domain, FloatFormat, Quantity

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.oracle.cache import TruthCache

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

    def estimated_rows(self, points: Sequence[tuple[int, float]]) -> np.ndarray:
        xs = from_ordinal(np.array([o for o, _ in points], dtype=np.int64), self.fmt)
        return _estimated_rows(self.domain, xs, np.array([y for _, y in points], dtype=np.float64))


def _estimated_rows(domain: Domain, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Truth rows (see ``oracle.table.FORMATS``) as float64 arithmetic estimates them: the usual
    stable formulas, then each rounded into every format. Close to the truth (a few float64 ULPs
    where the values are normal), not equal to it: only a guide for the bisections."""
    with np.errstate(all="ignore"):
        if domain is Domain.LOGITS:
            a = np.abs(xs)
            e = np.exp(-a)
            tail = e / (1 + e)  # sigmoid(-|z|)
            positive = xs > 0
            loss = np.where(positive, (1 - ys) * xs, ys * a) + np.log1p(e)
            grad = np.where(positive, (1 - ys) - tail, tail - ys)
            # near its root z0 = logit(y) that difference cancels (for y = 1/2 it is 0 for every
            # |z| < 2^-54): there, sigmoid(z) - y = -sigmoid(z)·(1-y)·expm1(z0 - z) instead
            z0 = np.log(ys) - np.log1p(-ys)
            near = (ys > 0) & (ys < 1) & (np.abs(xs - z0) < 1)
            sigmoid = np.where(positive, 1 / (1 + e), tail)
            grad = np.where(near, -sigmoid * (1 - ys) * np.expm1(z0 - xs), grad)
        else:
            # y·log p and (1-y)·log(1-p) without 0·inf at p = 0 or 1
            loss = np.where(ys != 0, -ys * np.log(xs), 0.0) + np.where(ys != 1, -(1 - ys) * np.log1p(-xs), 0.0)
            grad = (xs - ys) / (xs * (1 - xs))
    rows = np.empty((len(xs), len(FORMATS) * 2))
    for quantity, values in ((Quantity.LOSS, loss), (Quantity.GRAD, grad)):
        for fmt in FORMATS:
            rows[:, column(quantity, fmt)] = round_array(values, fmt)
    return rows


@dataclasses.dataclass
class _Search:
    """A bisection: pred(lo) != pred(hi); ends as hi = lo + 1."""

    lo: int
    hi: int
    label: float
    predicate: Predicate
    value_lo: bool
    tag: tuple[Quantity, str]


def _bisect(
    rows_at: Callable[[Sequence[tuple[int, float]]], np.ndarray], searches: list[_Search], parts: int = 2
) -> None:
    """Narrow every search to neighbouring ordinals on the rows ``rows_at`` gives, in lockstep: each
    step cuts each bracket into ``parts`` stretches (2: a bisection) at evenly spaced ordinals and
    keeps the one where the predicate changes."""
    active = [s for s in searches if s.hi - s.lo > 1]
    while active:
        cuts = [sorted({s.lo + (s.hi - s.lo) * k // parts for k in range(1, parts)} - {s.lo}) for s in active]
        rows = rows_at([(m, s.label) for s, ms in zip(active, cuts, strict=True) for m in ms])
        start = 0
        for s, ms in zip(active, cuts, strict=True):
            beyond = s.predicate(rows[start : start + len(ms)]) != s.value_lo
            start += len(ms)
            first = int(beyond.argmax()) if beyond.any() else len(ms)
            if first < len(ms):
                s.hi = ms[first]
            if first > 0:
                s.lo = ms[first - 1]
        active = [s for s in active if s.hi - s.lo > 1]


# Stretches per step of the search on the estimate: more means fewer steps (each costs a fixed
# overhead of numpy calls) and more estimated points per step (cheap).
ESTIMATE_PARTS = 16


def _bisect_all(truth: _Truth, searches: list[_Search]) -> None:
    """Bisect every search to its exact crossing: on the estimate first, then on the exact truth
    from the bracket the exact values at and near the estimate's pair prove (see the module
    docstring)."""
    active = [s for s in searches if s.hi - s.lo > 1]
    if not active:
        return
    guesses = [dataclasses.replace(s) for s in active]
    _bisect(truth.estimated_rows, guesses, ESTIMATE_PARTS)
    n = len(guesses)
    rows = truth.rows([(g.lo, g.label) for g in guesses] + [(g.hi, g.label) for g in guesses])
    # the predicate changes once on [s.lo, s.hi]: each exact value says on which side of the change
    # its input lies. direction: where the change lies from the estimate's pair (0: between them)
    direction: list[int] = []
    for i, (s, g) in enumerate(zip(active, guesses, strict=True)):
        if bool(s.predicate(rows[i : i + 1])[0]) != s.value_lo:
            s.hi, d = g.lo, -1
        elif bool(s.predicate(rows[n + i : n + i + 1])[0]) == s.value_lo:
            s.lo, d = g.hi, 1
        else:
            s.lo, s.hi, d = g.lo, g.hi, 0
        direction.append(d)
    # where the estimate was off, the change is usually a few ULPs away: gallop towards it (steps
    # of 2, 8, 32, ... ordinals) to a narrow proven bracket before bisecting
    moving = [(s, d) for s, d in zip(active, direction, strict=True) if d]
    step = 2
    while moving := [(s, d) for s, d in moving if s.hi - s.lo > step]:
        probes = [s.hi - step if d < 0 else s.lo + step for s, d in moving]
        rows = truth.rows([(p, s.label) for p, (s, _) in zip(probes, moving, strict=True)])
        still = []
        for i, (p, (s, d)) in enumerate(zip(probes, moving, strict=True)):
            if bool(s.predicate(rows[i : i + 1])[0]) == s.value_lo:
                s.lo = p
            else:
                s.hi = p
            if (s.lo == p) == (d > 0):  # not past the change yet: go on
                still.append((s, d))
        moving, step = still, step * 4
    _bisect(truth.rows, active)


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


# Bump when what crossing_inputs returns changes (its thresholds, NEIGHBOURS): the truth cache keys
# its stored crossings on this too.
CROSSINGS_VERSION = 1


def crossing_inputs(
    fmt: FloatFormat, domain: Domain, labels: Sequence[float], cache: TruthCache | None = None
) -> np.ndarray:
    """Sorted distinct inputs of ``fmt`` at every crossing of ``find_crossings`` (for all
    ``labels``) and, on logits, every intermediate threshold, each with NEIGHBOURS more on both
    sides. Deterministic: no randomness is involved. cache: where they are kept once found (they
    depend on the truth alone), so that a run with a warm cache computes none of them."""
    labels = sorted(dict.fromkeys(float(y) + 0.0 for y in labels))
    key = f"crossings v{CROSSINGS_VERSION} {fmt.name} {domain} labels " + " ".join(y.hex() for y in labels)
    if cache is not None:
        kept = cache.load_crossings(key)
        if kept is not None:
            return kept
    values = _crossing_inputs(fmt, domain, labels)
    if cache is not None:
        cache.store_crossings(key, values)
    return values


def _crossing_inputs(fmt: FloatFormat, domain: Domain, labels: Sequence[float]) -> np.ndarray:
    ordinals: list[int] = []
    for c in find_crossings(fmt, domain, labels):
        a, b = ordinal(np.array([c.before, c.after]), fmt).tolist()
        ordinals.extend(range(int(a) - NEIGHBOURS, int(b) + NEIGHBOURS + 1))
    values = _clipped_values(ordinals, fmt, domain)
    if domain is Domain.LOGITS:
        values = np.concatenate([values, intermediate_inputs(fmt)])
    # distinct values; -0 and +0 apart
    return np.sort(np.unique(values.view(np.int64)).view(np.float64), kind="stable")
