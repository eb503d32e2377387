"""Refinement: the exact float at which a status changes between two neighbouring samples.

Between two sampled inputs of different status, the refinement searches the representable values
between them (by bit pattern, ``floats.position``) for a pair of neighbouring floats whose
statuses differ: each step evaluates ``CANDIDATES_PER_STEP`` evenly spaced values of every open
bracket and keeps the stretch before the first candidate whose status differs from the bracket's
left end, until the two ends are neighbours. One edge per bracket: a sampled transition may hide
several (a failure band narrower than the gap between samples, isolated failing floats), and the
search finds one of them; the edges it reports are exact, the stretches between them sampled.

The candidates are evaluated the way the sweep evaluates its grid: many inputs in one batch (every
bracket of a case at once, padded to a multiple of ``BATCH_MULTIPLE`` elements), so that each lies
in the vectorized body of torch's kernels. A value alone (one element: the scalar path) can round
differently; each edge found is evaluated alone too (in small groups: see ``ALONE_GROUP``), and
a difference is reported.

The truth comes from the oracle's table, in this process, in one request per step for every
bracket of the run, and is kept in the truth cache at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from bce_audit.floats import from_position, position
from bce_audit.oracle import build_truth_table, column
from bce_audit.reference import PLAIN_BCE, Reference
from bce_audit.sweep.metrics import point_status, ulp_error
from bce_audit.vocabulary import Domain, DType, Quantity, Status

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.oracle.cache import TruthCache

# (domain, label, reference): the truth of one such group is one cache file
_Group = tuple[Domain, float, Reference]

# Interior values evaluated per bracket per step: the gap narrows by this plus one each step.
# Fewer means less truth to compute in all (the oracle dominates the cost), more means fewer steps.
CANDIDATES_PER_STEP = 7
# Steps whose candidates one torch call evaluates at once (see _Outputs): 2 turns each call's
# 7 candidates per bracket into 7 + 8·7 = 63, and halves the calls.
LOOKAHEAD_STEPS = 2
# Batches are padded to a multiple of this many elements: a multiple of twice the widest vector
# of any dtype (AVX-512: 32 halves), so that no candidate falls in a kernel's scalar tail.
BATCH_MULTIPLE = 64

# "Alone" means in a tensor too short for any vectorized loop: torch's CPU kernels run their vector
# body on chunks of twice the vector width and their scalar loop on the rest, so every element of a
# tensor shorter than that takes the scalar path, exactly as a tensor of one element does
# (tests/sweep/test_refine.py checks it against one-element tensors). The narrowest vectors hold
# 4 float64 or 8 float32 lanes (half-precision kernels load 16 halves at once): groups of 7 and 15.
ALONE_GROUP = {DType.FLOAT64: 7, DType.FLOAT32: 15, DType.FLOAT16: 15, DType.BFLOAT16: 15}

# evaluate(inputs) -> (loss, grad) at the inputs, or None when the formulation raised
Evaluate = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]
# evaluate_labels(inputs, labels) -> the same, with one label per input
EvaluateLabels = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]


@dataclasses.dataclass(frozen=True)
class Probe:
    """One (formulation, grid, label) the sweep evaluated: how to evaluate more inputs there.

    label: the label rounded into the dtype (what the truth is computed at).
    reference: the member of the BCE family the formulation is measured against.
    together: probes with the same key (not None) are evaluated in one batch by
        ``evaluate_labels``, each with its own label (see ``_evaluate_together``): only for a
        formulation whose outputs at an input depend on nothing but that input, its label and
        its place in the vectorized body (a built-in: our own elementwise code).
    """

    domain: Domain
    dtype: DType
    label: float
    evaluate: Evaluate
    reference: Reference = PLAIN_BCE
    together: Hashable | None = None
    evaluate_labels: EvaluateLabels | None = None


@dataclasses.dataclass(frozen=True)
class Bracket:
    """Two sampled inputs of one case whose statuses differ, with at least one float between them."""

    probe: int  # index into the probes
    quantity: Quantity
    lo: float
    hi: float
    lo_status: str
    hi_status: str
    lo_error: float
    hi_error: float


@dataclasses.dataclass(frozen=True)
class EdgePoint:
    """One side of an exact edge: a float, its status and ULP error in a batch, its status alone."""

    input: float
    status: str
    ulp_error: float
    alone: str


@dataclasses.dataclass(frozen=True)
class Edge:
    """Two neighbouring floats of different status, found inside a bracket."""

    probe: int
    quantity: Quantity
    below: EdgePoint
    above: EdgePoint


def transitions(inputs: np.ndarray, statuses: np.ndarray, dtype: DType) -> list[int]:
    """The indices i (of sorted inputs) where status i+1 differs from status i and at least one
    representable value lies between them."""
    if len(inputs) < 2:
        return []
    pos = position(inputs, dtype.format)
    differ = statuses[1:] != statuses[:-1]
    gap = (pos[1:] - pos[:-1]) > 1
    return np.nonzero(differ & gap)[0].tolist()


class _Truth:
    """The exact truth of the refinement's candidates: from the cache (read once per group), else
    computed; what was computed is stored in the cache once, at the end."""

    def __init__(self, cache: TruthCache | None) -> None:
        self.cache = cache
        self.known: dict[_Group, tuple[np.ndarray, np.ndarray]] = {}
        self.new: dict[_Group, list[tuple[np.ndarray, np.ndarray]]] = {}

    def _group(self, domain: Domain, label: float, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
        key = (domain, float(label) + 0.0, reference)
        if key not in self.known:
            loaded = None if self.cache is None else self.cache.load(domain, label, reference)
            self.known[key] = loaded if loaded is not None else (np.empty(0, np.int64), np.empty((0, 8)))
        return self.known[key]

    def fetch(self, wanted: dict[_Group, np.ndarray]) -> None:
        """Make sure the truth of every (domain, label, reference) -> inputs is known."""
        requests = []
        for (domain, label, reference), xs in wanted.items():
            keys, _ = self._group(domain, label, reference)
            want = _distinct(np.ascontiguousarray(xs, dtype=np.float64).view(np.int64))
            at = np.searchsorted(keys, want).clip(0, max(len(keys) - 1, 0))
            missing = want[~(keys[at] == want)] if len(keys) else want
            if len(missing):
                requests.append((domain, label, missing.view(np.float64), reference))
        if not requests:
            return
        # in this process: a step's points are few, and by now torch is loaded, so a pool would
        # start through the fork server at every step (seconds, and a Ctrl-C while one starts
        # prints its traceback)
        table, _ = build_truth_table(requests, jobs=1)
        for domain, label, xs, reference in requests:
            key = (domain, float(label) + 0.0, reference)
            rows = table.rows(domain, label, xs, reference)
            new_keys = xs.view(np.int64)
            self.new.setdefault(key, []).append((new_keys, rows))
            keys, known = self.known[key]
            all_keys = np.concatenate([keys, new_keys])
            order = np.argsort(all_keys, kind="stable")
            self.known[key] = (all_keys[order], np.concatenate([known, rows])[order])

    def rows(self, domain: Domain, label: float, xs: np.ndarray, reference: Reference) -> np.ndarray:
        keys, rows = self._group(domain, label, reference)
        return rows[np.searchsorted(keys, np.ascontiguousarray(xs, dtype=np.float64).view(np.int64))]

    def store(self) -> None:
        if self.cache is None:
            return
        for (domain, label, reference), parts in self.new.items():
            keys, rows = np.concatenate([k for k, _ in parts]), np.concatenate([r for _, r in parts])
            self.cache.store(domain, label, keys, rows, reference)


def _statuses(
    probe: Probe, xs: np.ndarray, outputs: tuple[np.ndarray, np.ndarray] | None, truth: _Truth, threshold: float
) -> dict[Quantity, tuple[np.ndarray, np.ndarray]]:
    """Quantity -> (statuses, ULP errors) at xs."""
    fmt = probe.dtype.format
    rows = truth.rows(probe.domain, probe.label, xs, probe.reference)
    found = {}
    for q in Quantity:
        t = rows[:, column(q, fmt)]
        if outputs is None:
            found[q] = (np.full(len(xs), Status.ERROR.value, dtype=object), np.full(len(xs), np.nan))
            continue
        out = outputs[0] if q is Quantity.LOSS else outputs[1]
        err = ulp_error(out, t, fmt)
        found[q] = (point_status(out, t, err, threshold), err)
    return found


def _candidate_rows(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, valid): row k holds up to CANDIDATES_PER_STEP positions evenly spaced strictly
    between lo[k] and hi[k] (every one of them when that few lie between), in increasing order;
    valid marks the used columns.

    The k-th of the evenly spaced ones is lo + floor(gap·k / (C+1)), computed without overflow as
    q·k + floor(r·k / (C+1)) with gap = q·(C+1) + r, in unsigned 64-bit arithmetic (a float64 gap
    can exceed 2^63): the same integers as exact arithmetic gives.
    """
    parts = CANDIDATES_PER_STEP + 1
    lo_u = lo.astype(np.int64).view(np.uint64)
    gap = hi.astype(np.int64).view(np.uint64) - lo_u  # wraps mod 2^64: exact, the gap is < 2^64
    k = np.arange(1, parts, dtype=np.uint64)
    q, r = gap // np.uint64(parts), gap % np.uint64(parts)
    spaced = q[:, None] * k + (r[:, None] * k) // np.uint64(parts)
    dense = gap[:, None] <= np.uint64(CANDIDATES_PER_STEP + 1)  # gap - 1 <= C: every float between
    offset = np.where(dense, k[None, :], spaced)
    valid = ~dense | (k[None, :] < gap[:, None])
    positions = (lo_u[:, None] + offset).view(np.int64)
    return positions, valid


def _distinct(positions: np.ndarray) -> np.ndarray:
    """The distinct positions, sorted (np.unique, without its hashing pass: cheaper here)."""
    p: np.ndarray = np.sort(positions)
    return p[np.concatenate([[True], p[1:] != p[:-1]])] if len(p) else p


def _not_in(positions: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The positions (sorted, distinct) that the sorted ``known`` does not hold."""
    if not len(known):
        return positions
    at = np.searchsorted(known, positions).clip(0, len(known) - 1)
    missing: np.ndarray = positions[known[at] != positions]
    return missing


def _padded(xs: np.ndarray) -> np.ndarray:
    """xs followed by copies of its last value, to a multiple of BATCH_MULTIPLE elements."""
    extra = -len(xs) % BATCH_MULTIPLE
    return np.concatenate([xs, np.full(extra, xs[-1])]) if extra else xs


def _lookahead(lo: np.ndarray, hi: np.ndarray, steps: int) -> np.ndarray:
    """Every position (sorted, distinct) the next ``steps`` steps of the brackets (lo, hi) can
    evaluate, whichever way each step narrows: a step keeps one of the stretches between
    consecutive values of lo, its candidates, hi."""
    found = []
    for _ in range(steps):
        if not len(lo):
            break
        cands, valid = _candidate_rows(lo, hi)
        found.append(cands[valid])
        # the columns past the last valid candidate repeat hi: their stretches are empty
        ends = np.concatenate([lo[:, None], np.where(valid, cands, hi[:, None]), hi[:, None]], axis=1)
        sub_lo, sub_hi = ends[:, :-1].ravel(), ends[:, 1:].ravel()
        keep = sub_hi - sub_lo > 1
        lo, hi = sub_lo[keep], sub_hi[keep]
    return _distinct(np.concatenate(found)) if found else np.empty(0, np.int64)


class _Outputs:
    """A probe's outputs at the positions evaluated so far (sorted by position).

    A step whose candidates are not all here evaluates them together with every candidate of the
    next ``LOOKAHEAD_STEPS - 1`` steps, whichever way those narrow, in one batch: a call costs
    about the same for a few hundred more inputs, and each input lies in the vectorized body of
    its batch as it would among the step's candidates alone. The truth is still computed only at
    the candidates a step uses.
    """

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.keys = np.empty(0, np.int64)
        self.loss = np.empty(0)
        self.grad = np.empty(0)
        self.raised = np.empty(0, dtype=bool)

    def _add(self, keys: np.ndarray, outputs: tuple[np.ndarray, np.ndarray] | None) -> None:
        n = len(keys)
        loss, grad = (np.full(n, np.nan), np.full(n, np.nan)) if outputs is None else outputs
        all_keys = np.concatenate([self.keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self.keys = all_keys[order]
        self.loss = np.concatenate([self.loss, loss[:n]])[order]
        self.grad = np.concatenate([self.grad, grad[:n]])[order]
        self.raised = np.concatenate([self.raised, np.full(n, outputs is None)])[order]

    def _evaluate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        outputs = self.probe.evaluate(_padded(from_position(keys, self.probe.dtype.format)))
        return None if outputs is None else (outputs[0][: len(keys)], outputs[1][: len(keys)])

    def missing(self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """What ``at`` evaluates for a step's candidates ``keys`` of the brackets (lo, hi): nothing
        when every candidate is known, else each position of the next LOOKAHEAD_STEPS steps not yet
        known."""
        if not len(_not_in(keys, self.keys)):
            return np.empty(0, np.int64)
        return _not_in(_lookahead(lo, hi, LOOKAHEAD_STEPS), self.keys)

    def at(self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(loss, grad) at the sorted positions ``keys``, a step's candidates of the brackets
        (lo, hi), or None when the formulation raised on them."""
        ahead = self.missing(keys, lo, hi)
        if len(ahead):
            outputs = self._evaluate(ahead)
            if outputs is not None:
                self._add(ahead, outputs)
            else:  # the step's own candidates alone, as a step without lookahead evaluates them
                missing = _not_in(keys, self.keys)
                self._add(missing, self._evaluate(missing))
        at = np.searchsorted(self.keys, keys)
        if self.raised[at].any():
            return None
        return self.loss[at], self.grad[at]


def _evaluate_together(group: list[tuple[_Outputs, np.ndarray]]) -> None:
    """The positions each probe of a group needs, evaluated in one batch with each probe's own
    label. Each probe's stretch is padded as its own batch would be (``_padded``: a multiple of
    BATCH_MULTIPLE long, so its stretch starts on a multiple too), so that every input lies in the
    vectorized body at the same place as in a batch of its own and gets the same outputs, bit for
    bit (tests/sweep/test_refine.py checks every built-in). When the batch raises, nothing is kept:
    each probe then evaluates its own positions, and the error lands on the probe that raised."""
    evaluate_labels = group[0][0].probe.evaluate_labels
    assert evaluate_labels is not None
    xs = [_padded(from_position(need, o.probe.dtype.format)) for o, need in group]
    labels = [np.full(len(x), o.probe.label) for (o, _), x in zip(group, xs, strict=True)]
    outputs = evaluate_labels(np.concatenate(xs), np.concatenate(labels))
    if outputs is None:
        return
    start = 0
    for (o, need), x in zip(group, xs, strict=True):
        o._add(need, (outputs[0][start : start + len(need)], outputs[1][start : start + len(need)]))
        start += len(x)


# the state of every bracket during the search, one array each: positions of the ends, the left
# end's status and ULP error, the right end's status and ULP error
_State = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def refine(
    probes: Sequence[Probe],
    brackets: Sequence[Bracket],
    threshold: float,
    cache: TruthCache | None = None,
    alone: bool = True,
) -> list[Edge]:
    """One exact edge per bracket (see the module's docstring), in the order of the brackets.
    ``alone``: also evaluate each edge float alone (for a map that reports where the batch and the
    scalar path disagree); without it, an edge's status alone is its batch status.

    The brackets' state lives in arrays, and a step narrows all the open brackets of a probe at
    once."""
    truth = _Truth(cache)
    n = len(brackets)
    probe_of = np.array([b.probe for b in brackets], dtype=np.int64)
    lo, hi = np.empty(n, np.int64), np.empty(n, np.int64)
    for i in np.unique(probe_of).tolist():
        at = np.nonzero(probe_of == i)[0]
        fmt = probes[i].dtype.format
        lo[at] = position(np.array([brackets[k].lo for k in at.tolist()]), fmt)
        hi[at] = position(np.array([brackets[k].hi for k in at.tolist()]), fmt)
    lo_status = np.array([b.lo_status for b in brackets], dtype=object)
    hi_status = np.array([b.hi_status for b in brackets], dtype=object)
    lo_error = np.array([b.lo_error for b in brackets], dtype=np.float64)
    hi_error = np.array([b.hi_error for b in brackets], dtype=np.float64)
    is_loss = np.array([b.quantity is Quantity.LOSS for b in brackets], dtype=bool)
    outputs = {i: _Outputs(probes[i]) for i in np.unique(probe_of).tolist()}
    dtype_of = np.array([list(DType).index(probes[b.probe].dtype) for b in brackets], dtype=np.int64)
    open_ = np.nonzero(hi - lo > 1)[0]
    while len(open_):
        cands, valid = _candidate_rows(lo[open_], hi[open_])
        rows_of = {i: np.nonzero(probe_of[open_] == i)[0] for i in np.unique(probe_of[open_]).tolist()}
        keys = {i: _distinct(cands[rows][valid[rows]]) for i, rows in rows_of.items()}
        inputs = {i: from_position(ks, probes[i].dtype.format) for i, ks in keys.items()}
        _fetch(truth, probes, inputs)
        # the probes that may share a batch (a built-in at every label of a grid): one torch call
        groups: dict[Hashable, list[tuple[_Outputs, np.ndarray]]] = {}
        for i, rows in rows_of.items():
            if probes[i].together is not None:
                k = open_[rows]
                need = outputs[i].missing(keys[i], lo[k], hi[k])
                if len(need):
                    groups.setdefault(probes[i].together, []).append((outputs[i], need))
        for group in groups.values():
            if len(group) > 1:
                _evaluate_together(group)
        # each candidate's output and truth, of its bracket's quantity; statuses are computed below
        # for every bracket of a dtype at once (a step's cost is then a few array operations per
        # probe, not a status computation each)
        out, exact = np.full(cands.shape, np.nan), np.full(cands.shape, np.nan)
        raised = np.zeros(len(open_), dtype=bool)
        for i, rows in rows_of.items():
            k, probe = open_[rows], probes[i]
            at = np.searchsorted(keys[i], cands[rows]).clip(0, len(keys[i]) - 1)
            mine = is_loss[k][:, None]
            found = outputs[i].at(keys[i], lo[k], hi[k])
            if found is None:
                raised[rows] = True
            else:
                out[rows] = np.where(mine, found[0][at], found[1][at])
            t = truth.rows(probe.domain, probe.label, inputs[i], probe.reference)
            fmt = probe.dtype.format
            exact[rows] = np.where(mine, t[:, column(Quantity.LOSS, fmt)][at], t[:, column(Quantity.GRAD, fmt)][at])
        st, err = np.empty(cands.shape, dtype=object), np.full(cands.shape, np.nan)
        for d in np.unique(dtype_of[open_]).tolist():
            rows = dtype_of[open_] == d
            fmt = list(DType)[d].format
            err[rows] = ulp_error(out[rows], exact[rows], fmt)
            st[rows] = point_status(out[rows], exact[rows], err[rows], threshold)
        st[raised], err[raised] = Status.ERROR.value, np.nan
        differ = (st != lo_status[open_][:, None]) & valid
        hit = differ.any(axis=1)
        # the first candidate of another status ends the bracket and the one before it (or the
        # old left end) starts it; with none, the last candidate starts it
        first = np.where(hit, differ.argmax(axis=1), valid.sum(axis=1))
        r = np.arange(len(open_))
        moved = first >= 1
        lo[open_[moved]] = cands[r[moved], first[moved] - 1]
        lo_error[open_[moved]] = err[r[moved], first[moved] - 1]
        hi[open_[hit]] = cands[r[hit], first[hit]]
        hi_status[open_[hit]] = st[r[hit], first[hit]]
        hi_error[open_[hit]] = err[r[hit], first[hit]]
        open_ = open_[hi[open_] - lo[open_] > 1]
    edges = _edges(probes, brackets, (lo, hi, lo_status, lo_error, hi_status, hi_error), truth, threshold, alone)
    truth.store()
    return edges


def _fetch(truth: _Truth, probes: Sequence[Probe], inputs: dict[int, np.ndarray]) -> None:
    """The truth of each probe's inputs, in one request to the oracle."""
    by_group: dict[_Group, list[np.ndarray]] = {}
    for i, xs in inputs.items():
        by_group.setdefault((probes[i].domain, float(probes[i].label) + 0.0, probes[i].reference), []).append(xs)
    truth.fetch({g: np.concatenate(parts) for g, parts in by_group.items()})


def _edges(
    probes: Sequence[Probe],
    brackets: Sequence[Bracket],
    state: _State,
    truth: _Truth,
    threshold: float,
    evaluate_alone: bool = True,
) -> list[Edge]:
    """The edges, each side also evaluated alone (one element: the scalar path) where asked."""
    lo, hi, lo_status, lo_error, hi_status, hi_error = state
    n = len(brackets)
    probe_of = np.array([b.probe for b in brackets], dtype=np.int64)
    x_lo, x_hi = np.empty(n), np.empty(n)
    points: dict[int, np.ndarray] = {}
    for i in np.unique(probe_of).tolist():
        at = np.nonzero(probe_of == i)[0]
        fmt = probes[i].dtype.format
        x_lo[at], x_hi[at] = from_position(lo[at], fmt), from_position(hi[at], fmt)
        # both ends of each bracket in turn, each float once (at its first place)
        both = np.stack([x_lo[at], x_hi[at]], axis=1).ravel()
        first = np.unique(both.view(np.int64), return_index=True)[1]
        points[i] = both[np.sort(first)]
    if not evaluate_alone:
        return [
            Edge(
                b.probe,
                b.quantity,
                EdgePoint(float(x_lo[k]), str(lo_status[k]), float(lo_error[k]), str(lo_status[k])),
                EdgePoint(float(x_hi[k]), str(hi_status[k]), float(hi_error[k]), str(hi_status[k])),
            )
            for k, b in enumerate(brackets)
        ]
    _fetch(truth, probes, points)
    alone: dict[int, dict[Quantity, tuple[np.ndarray, np.ndarray]]] = {}
    for i, values in points.items():
        size = ALONE_GROUP[probes[i].dtype]
        loss, grad = np.full(len(values), np.nan), np.full(len(values), np.nan)
        raised = np.zeros(len(values), dtype=bool)
        for start in range(0, len(values), size):
            outputs = probes[i].evaluate(values[start : start + size])
            if outputs is None:
                raised[start : start + size] = True
            else:
                loss[start : start + size], grad[start : start + size] = outputs
        # the statuses of every group at once: each value's status depends on its outputs alone
        found = _statuses(probes[i], values, (loss, grad), truth, threshold)
        keys = values.view(np.int64)
        order = np.argsort(keys)
        for q in Quantity:
            found[q][0][raised] = Status.ERROR.value
        alone[i] = {q: (keys[order], found[q][0][order]) for q in Quantity}

    def alone_status(i: int, q: Quantity, x: float) -> str:
        keys, statuses = alone[i][q]
        return str(statuses[np.searchsorted(keys, np.array([x]).view(np.int64))[0]])

    edges = []
    for k, b in enumerate(brackets):
        below, above = float(x_lo[k]), float(x_hi[k])
        edges.append(
            Edge(
                b.probe,
                b.quantity,
                EdgePoint(below, str(lo_status[k]), float(lo_error[k]), alone_status(b.probe, b.quantity, below)),
                EdgePoint(above, str(hi_status[k]), float(hi_error[k]), alone_status(b.probe, b.quantity, above)),
            )
        )
    return edges
