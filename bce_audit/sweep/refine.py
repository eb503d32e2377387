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
from collections.abc import Callable, Sequence
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


@dataclasses.dataclass(frozen=True)
class Probe:
    """One (formulation, grid, label) the sweep evaluated: how to evaluate more inputs there.

    label: the label rounded into the dtype (what the truth is computed at).
    reference: the member of the BCE family the formulation is measured against.
    """

    domain: Domain
    dtype: DType
    label: float
    evaluate: Evaluate
    reference: Reference = PLAIN_BCE


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
            want = np.unique(np.ascontiguousarray(xs, dtype=np.float64).view(np.int64))
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


def _padded(xs: np.ndarray) -> np.ndarray:
    """xs followed by copies of its last value, to a multiple of BATCH_MULTIPLE elements."""
    extra = -len(xs) % BATCH_MULTIPLE
    return np.concatenate([xs, np.full(extra, xs[-1])]) if extra else xs


def _candidates(lo: int, hi: int) -> list[int]:
    """Up to CANDIDATES_PER_STEP positions evenly spaced strictly between lo and hi."""
    gap = hi - lo
    if gap - 1 <= CANDIDATES_PER_STEP:
        return list(range(lo + 1, hi))
    parts = CANDIDATES_PER_STEP + 1
    return sorted({lo + (gap * k) // parts for k in range(1, parts)} - {lo, hi})


@dataclasses.dataclass
class _Search:
    """A bracket being narrowed: positions of its ends, and their statuses and ULP errors."""

    lo: int
    hi: int
    lo_status: str
    lo_error: float
    hi_status: str
    hi_error: float


def refine(
    probes: Sequence[Probe],
    brackets: Sequence[Bracket],
    threshold: float,
    cache: TruthCache | None = None,
) -> list[Edge]:
    """One exact edge per bracket (see the module's docstring), in the order of the brackets."""
    truth = _Truth(cache)
    searches = []
    for b in brackets:
        p_lo, p_hi = (int(v) for v in position(np.array([b.lo, b.hi]), probes[b.probe].dtype.format))
        searches.append(_Search(p_lo, p_hi, b.lo_status, b.lo_error, b.hi_status, b.hi_error))
    open_ = [k for k, s in enumerate(searches) if s.hi - s.lo > 1]
    while open_:
        # every open bracket's candidates, grouped by probe (one batch each)
        steps = {k: _candidates(searches[k].lo, searches[k].hi) for k in open_}
        wanted: dict[int, dict[int, None]] = {}
        for k in open_:
            wanted.setdefault(brackets[k].probe, {}).update(dict.fromkeys(steps[k]))
        inputs = {
            i: from_position(np.array(sorted(ps), dtype=np.int64), probes[i].dtype.format) for i, ps in wanted.items()
        }
        _fetch(truth, probes, inputs)
        found: dict[int, dict[Quantity, tuple[np.ndarray, np.ndarray]]] = {}
        for i, xs in inputs.items():
            outputs = probes[i].evaluate(_padded(xs))
            if outputs is not None:
                outputs = (outputs[0][: len(xs)], outputs[1][: len(xs)])
            found[i] = _statuses(probes[i], xs, outputs, truth, threshold)
        still_open = []
        for k in open_:
            b, s = brackets[k], searches[k]
            xs = inputs[b.probe]
            statuses, errors = found[b.probe][b.quantity]
            at = np.searchsorted(position(xs, probes[b.probe].dtype.format), np.array(steps[k], dtype=np.int64))
            for p, a in zip(steps[k], at.tolist(), strict=True):
                if statuses[a] != s.lo_status:
                    s.hi, s.hi_status, s.hi_error = p, str(statuses[a]), float(errors[a])
                    break
                s.lo, s.lo_error = p, float(errors[a])
            if s.hi - s.lo > 1:
                still_open.append(k)
        open_ = still_open
    edges = _edges(probes, brackets, searches, truth, threshold)
    truth.store()
    return edges


def _fetch(truth: _Truth, probes: Sequence[Probe], inputs: dict[int, np.ndarray]) -> None:
    """The truth of each probe's inputs, in one request to the oracle."""
    by_group: dict[_Group, list[np.ndarray]] = {}
    for i, xs in inputs.items():
        by_group.setdefault((probes[i].domain, float(probes[i].label) + 0.0, probes[i].reference), []).append(xs)
    truth.fetch({g: np.concatenate(parts) for g, parts in by_group.items()})


def _edges(
    probes: Sequence[Probe], brackets: Sequence[Bracket], searches: list[_Search], truth: _Truth, threshold: float
) -> list[Edge]:
    """The edges, each side also evaluated alone (one element: the scalar path)."""
    ends: list[tuple[float, float]] = []
    points: dict[int, dict[float, None]] = {}
    for b, s in zip(brackets, searches, strict=True):
        x_lo, x_hi = from_position(np.array([s.lo, s.hi], dtype=np.int64), probes[b.probe].dtype.format).tolist()
        ends.append((x_lo, x_hi))
        points.setdefault(b.probe, {}).update(dict.fromkeys((x_lo, x_hi)))
    _fetch(truth, probes, {i: np.array(list(xs)) for i, xs in points.items()})
    alone: dict[tuple[int, float], dict[Quantity, str]] = {}
    for i, xs in points.items():
        values = list(xs)
        size = ALONE_GROUP[probes[i].dtype]
        for start in range(0, len(values), size):
            group = np.array(values[start : start + size])
            found = _statuses(probes[i], group, probes[i].evaluate(group), truth, threshold)
            for k, x in enumerate(group.tolist()):
                alone[(i, x)] = {q: str(found[q][0][k]) for q in Quantity}
    edges = []
    for b, s, (x_lo, x_hi) in zip(brackets, searches, ends, strict=True):
        edges.append(
            Edge(
                b.probe,
                b.quantity,
                EdgePoint(x_lo, s.lo_status, s.lo_error, alone[(b.probe, x_lo)][b.quantity]),
                EdgePoint(x_hi, s.hi_status, s.hi_error, alone[(b.probe, x_hi)][b.quantity]),
            )
        )
    return edges
