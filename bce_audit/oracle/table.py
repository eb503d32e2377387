"""The truth for many points at once: every format from one evaluation, fast path first.

A point is an (input, label) pair of exact float64 values. Its truth is the loss and the
gradient correctly rounded into each of float16, bfloat16, float32 and float64: one row of
eight values, so a point shared by several dtypes, formulations or runs is evaluated once.

Per point, ``oracle.fast`` proves the float64 rounding at one working precision; the narrower
roundings follow from the float64 one exactly, because rounding twice equals rounding once
unless the first result lies exactly on a midpoint of the second format (if there were a
midpoint between the exact value and its float64 rounding, that midpoint, being a float64
value nearer to the exact value, would have been the float64 rounding). Rows whose float64
value is such a midpoint, and points the fast path declines, come from the reference oracle
in ``oracle.reference``, which rounds the high-precision value into each format directly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from bce_audit.floats import round_array_flagging_midpoints
from bce_audit.reference import PLAIN_BCE, Reference
from bce_audit.vocabulary import Domain, DType, FloatFormat, Quantity

if TYPE_CHECKING:  # pragma: no cover
    import concurrent.futures
    from multiprocessing.context import BaseContext

    from bce_audit.oracle.cache import TruthCache
    from bce_audit.oracle.fast import Memo, RawMpf

# The column order of a truth row: loss in each format, then grad in each format.
FORMATS: tuple[FloatFormat, ...] = tuple(d.format for d in DType)
COLUMNS = len(FORMATS) * 2


def column(quantity: Quantity, fmt: FloatFormat) -> int:
    """The column of a truth row that holds a quantity rounded into ``fmt``."""
    return FORMATS.index(fmt) + (0 if quantity is Quantity.LOSS else len(FORMATS))


def _reference_row(domain: Domain, x: float, y: float) -> list[float]:
    from bce_audit.oracle.reference import logit_truth, probability_truth

    point = logit_truth if domain is Domain.LOGITS else probability_truth
    t = point(x, y, FORMATS)
    return [*t.loss, *t.grad]


def _family_rows(
    reference: Reference,
    domain: Domain,
    inputs: np.ndarray,
    labels: list[float],
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Rows of a family member other than plain BCE, point by point (``oracle.family``)."""
    from bce_audit.oracle.family import family_truth

    rows = np.empty((len(inputs), COLUMNS), dtype=np.float64)
    for i, (x, y) in enumerate(zip(inputs.tolist(), labels, strict=True)):
        t = family_truth(reference, domain, x, y, FORMATS)
        rows[i] = [*t.loss, *t.grad]
        if progress is not None and i % 1024 == 1023:
            progress(1024)
    if progress is not None:
        progress(len(inputs) % 1024)
    return rows


def evaluate_points(
    domain: Domain,
    inputs: np.ndarray,
    labels: float | np.ndarray,
    progress: Callable[[int], None] | None = None,
    reference: Reference = PLAIN_BCE,
) -> np.ndarray:
    """Truth rows (shape (n, 8), see FORMATS) at each (inputs[i], labels[i]).

    labels: one label for all inputs, or one per input. Runs of equal inputs share the terms
    that do not depend on the label (exp(-|z|) and its log1p; log p and log(1-p)), so sort by
    input when several labels are wanted. Each row depends only on its own (input, label):
    the result is the same however the points are batched, which lets ``--jobs`` split freely.
    reference: the family member whose truth is wanted; plain BCE (the default) takes the fast
    path and the reference oracle, every other member ``oracle.family``.
    """
    if not len(inputs):  # a warm cache leaves nothing to compute: then mpmath is not even imported
        return np.empty((0, COLUMNS), dtype=np.float64)
    from mpmath.libmp import fone, from_float, mpf_sub

    from bce_audit.oracle.fast import logit_float64, probability_float64
    from bce_audit.oracle.reference import preserve_precision

    n = len(inputs)
    ys = np.broadcast_to(np.asarray(labels, dtype=np.float64), (n,)).tolist()
    if not reference.is_plain:
        return _family_rows(reference, domain, inputs, ys, progress)
    rows = np.empty((n, COLUMNS), dtype=np.float64)
    logits = domain is Domain.LOGITS
    fast = logit_float64 if logits else probability_float64
    exact_labels: dict[float, tuple[RawMpf, RawMpf]] = {}  # label -> (y, 1-y) as exact libmp tuples
    declined: list[int] = []  # indices the fast path left to the reference
    f64: list[tuple[float, float]] = []
    previous: int | None = None
    memo: Memo = {}
    with preserve_precision():
        for i, (x, key, y) in enumerate(zip(inputs.tolist(), _keys(inputs).tolist(), ys, strict=True)):
            if key != previous:
                previous, memo = key, {}
            r: tuple[float, float] | None = None
            # regular points: finite nonzero logits, probabilities strictly inside (0, 1), and a
            # finite label (the command line only allows [0, 1]; through the API, NaN is possible)
            regular = (x != 0 and x - x == 0) if logits else 0 < x < 1
            if regular and y - y == 0:
                yy = exact_labels.get(y)
                if yy is None:
                    yt = from_float(y)
                    yy = exact_labels[y] = (yt, mpf_sub(fone, yt, 0))
                r = fast(x, yy[0], yy[1], memo)
            if r is None:
                declined.append(i)
                r = (0.0, 0.0)
            f64.append(r)
            if progress is not None and i % 1024 == 1023:
                progress(1024)
        f64_rows = np.array(f64, dtype=np.float64).reshape(n, 2)
        need_reference = np.zeros(n, dtype=bool)
        need_reference[declined] = True
        for k, quantity in enumerate(Quantity):
            for fmt in FORMATS:  # float64 passes through unchanged
                rounded, midpoint = round_array_flagging_midpoints(f64_rows[:, k], fmt)
                rows[:, column(quantity, fmt)] = rounded
                need_reference |= midpoint
        for i in np.flatnonzero(need_reference).tolist():
            rows[i] = _reference_row(domain, float(inputs[i]), ys[i])
    if progress is not None:
        progress(n % 1024)
    return rows


# --- many groups of points: dedupe, cache, spread over processes ------------------------------

# Below this many points to compute, starting worker processes (each imports numpy and mpmath)
# costs more than it saves.
PARALLEL_MIN_POINTS = 30_000


def _keys(inputs: np.ndarray) -> np.ndarray:
    """Inputs as sortable int64 keys: their float64 bit patterns (-0.0 and 0.0 differ)."""
    return np.ascontiguousarray(inputs, dtype=np.float64).view(np.int64)


def _label_key(label: float) -> float:
    return float(label) + 0.0  # -0.0 and 0.0 are the same label: one group, one cache file


# One request for the truth: (domain, label, inputs), or (domain, label, inputs, reference) for a
# family member other than plain BCE.
TruthRequest = tuple[Domain, float, np.ndarray] | tuple[Domain, float, np.ndarray, Reference]


class TruthTable:
    """Truth rows by (reference, domain, label, input), as computed or loaded for one sweep."""

    def __init__(self) -> None:
        self._groups: dict[tuple[Reference, Domain, float], tuple[np.ndarray, np.ndarray]] = {}

    def _add(
        self, domain: Domain, label: float, keys: np.ndarray, rows: np.ndarray, reference: Reference = PLAIN_BCE
    ) -> None:
        self._groups[(reference, domain, _label_key(label))] = (keys, rows)

    def rows(self, domain: Domain, label: float, inputs: np.ndarray, reference: Reference = PLAIN_BCE) -> np.ndarray:
        """Rows (n, 8) for these inputs; every one must have been requested."""
        keys, rows = self._groups[(reference, domain, _label_key(label))]
        wanted = _keys(inputs)
        at = np.searchsorted(keys, wanted)
        if len(wanted) and (at.max() >= len(keys) or (keys[at] != wanted).any()):
            raise KeyError("inputs that were never requested from the truth table")
        return rows[at]


@dataclasses.dataclass(frozen=True)
class TruthWork:
    """What building a truth table took.

    points: distinct (domain, label, input) points the sweep needs.
    computed: how many of them the oracle evaluated (the rest came from the cache).
    jobs: worker processes used (1: computed in this process).
    """

    points: int
    computed: int
    jobs: int


def _chunk_rows(domain: str, inputs: bytes, labels: bytes, reference: str = "") -> bytes:
    # runs in a worker process: only plain data crosses the process boundary (the reference as
    # JSON, "" for plain BCE)
    import json

    xs = np.frombuffer(inputs, dtype=np.float64)
    ys = np.frombuffer(labels, dtype=np.float64)
    member = Reference.from_dict(json.loads(reference)) if reference else PLAIN_BCE
    return evaluate_points(Domain(domain), xs, ys, reference=member).tobytes()


def _worker_init(main_pid: int) -> None:
    import signal

    from bce_audit.processes import die_with_parent

    # Ctrl-C reaches the whole process group; the parent alone handles it (one line, exit 130)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(main_pid)  # even a parent killed with SIGKILL leaves no worker behind


def _pool_context() -> BaseContext:
    import multiprocessing
    import sys
    import threading

    from bce_audit.processes import forkserver_context

    # fork is instant, but only safe while this process runs no other thread and has not
    # loaded torch (whose thread pools do not survive a fork); otherwise the fork server
    if sys.platform == "linux" and threading.active_count() == 1 and "torch" not in sys.modules:
        return multiprocessing.get_context("fork")
    return forkserver_context()


# Work is grouped by (reference, domain): each group's points share a formula.
_Group = tuple[Reference, Domain]


def _compute(
    work: dict[_Group, tuple[np.ndarray, np.ndarray]], jobs: int, progress: Callable[[int], None] | None
) -> tuple[dict[_Group, np.ndarray], int]:
    """Rows for each group's (inputs, labels), sorted by input, in this process or a pool."""
    total = sum(len(xs) for xs, _ in work.values())
    if jobs <= 1 or total < PARALLEL_MIN_POINTS:
        return {g: evaluate_points(g[1], xs, ys, progress, g[0]) for g, (xs, ys) in work.items()}, 1
    import concurrent.futures
    import json

    # Chunks small enough to balance the load and move the progress bar, large enough that
    # the per-chunk overhead stays negligible.
    size = min(20_000, max(2_000, total // (jobs * 8)))
    out = {d: np.empty((len(xs), COLUMNS)) for d, (xs, _) in work.items()}
    from bce_audit.processes import no_main

    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=_pool_context(), initializer=_worker_init, initargs=(os.getpid(),)
    )
    finished = False
    try:
        futures: dict[concurrent.futures.Future[bytes], tuple[_Group, int, int]] = {}
        with no_main():  # the workers start as chunks are submitted
            for group, (xs, ys) in work.items():
                reference = "" if group[0].is_plain else json.dumps(group[0].to_dict())
                for s in range(0, len(xs), size):
                    args = (str(group[1]), xs[s : s + size].tobytes(), ys[s : s + size].tobytes(), reference)
                    futures[pool.submit(_chunk_rows, *args)] = (group, s, len(xs[s : s + size]))
        for future in concurrent.futures.as_completed(futures):
            group, s, n = futures[future]
            out[group][s : s + n] = np.frombuffer(future.result(), dtype=np.float64).reshape(n, COLUMNS)
            if progress is not None:
                progress(n)
        finished = True
    finally:
        if not finished:  # an error, Ctrl-C or SIGTERM: end the workers now, not after their chunks
            _abandon(pool)
        pool.shutdown(wait=True, cancel_futures=True)
    return out, jobs


def _abandon(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Kill a pool's workers, and make sure its shutdown cannot then wait forever.

    A worker killed while it sends a result leaves half a message in the result pipe, which the
    pool's manager thread then waits on for good; and the chunks still queued for the dead workers
    keep the queue's feeder thread blocked on a full pipe, which the shutdown joins (Python 3.11
    cancels neither; seen as a sweep still there a minute after Ctrl-C, under load). So, once the
    workers are dead, this process closes its own end of the result pipe (no writer is left: the
    manager reads EOF and gives the pool up as broken) and drains the call pipe in a thread of its
    own until the feeder closes it."""
    import threading

    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=10)
    calls = getattr(getattr(pool, "_call_queue", None), "_reader", None)
    if calls is not None:

        def drain() -> None:
            try:
                while True:
                    calls.recv_bytes()
            except (EOFError, OSError):
                return

        threading.Thread(target=drain, name="bce-audit-drain-calls", daemon=True).start()
    results = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if results is not None:
        try:
            results.close()
        except OSError:
            pass


def build_truth_table(
    requests: Sequence[TruthRequest],
    jobs: int = 1,
    cache: TruthCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TruthTable, TruthWork]:
    """The truth at every requested (domain, label, inputs[, reference]), each distinct point
    evaluated once.

    cache: an ``oracle.cache.TruthCache`` or None. progress(n, total) is called as points are
    computed (total: the points the cache did not have).
    """
    groups: dict[tuple[_Group, float], tuple[_Group, float, list[np.ndarray]]] = {}
    for request in requests:
        domain, label, inputs = request[:3]
        group = (request[3] if len(request) > 3 else PLAIN_BCE, domain)
        label = _label_key(label)
        groups.setdefault((group, label), (group, label, []))[2].append(_keys(inputs))
    # (group, label, all keys, known keys, known rows, missing keys)
    plan: list[tuple[_Group, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for (reference, domain), label, parts in groups.values():
        keys = np.unique(np.concatenate(parts))
        known_keys = np.empty(0, dtype=np.int64)
        known_rows = np.empty((0, COLUMNS))
        if cache is not None:
            loaded = cache.load(domain, label, reference)
            if loaded is not None:
                at = np.searchsorted(loaded[0], keys).clip(0, max(len(loaded[0]) - 1, 0))
                hit = (loaded[0][at] == keys) if len(loaded[0]) else np.zeros(len(keys), dtype=bool)
                known_keys, known_rows = keys[hit], loaded[1][at[hit]]
        missing = keys[~np.isin(keys, known_keys)]
        plan.append(((reference, domain), label, keys, known_keys, known_rows, missing))
    total = sum(len(p[5]) for p in plan)
    advance: Callable[[int], None] | None = None if progress is None else (lambda n: progress(n, total))
    # per (reference, domain), every missing (input, label), sorted by input: the label-free
    # terms of an input are then computed once for all its labels
    work: dict[_Group, tuple[np.ndarray, np.ndarray]] = {}
    for group in dict.fromkeys(p[0] for p in plan):
        mine = [p for p in plan if p[0] == group]
        keys = np.concatenate([p[5] for p in mine])
        labels = np.concatenate([np.full(len(p[5]), p[1]) for p in mine])
        order = np.lexsort((labels, keys))
        work[group] = (keys[order].view(np.float64), labels[order])
    computed, used_jobs = _compute(work, jobs, advance)
    table = TruthTable()
    for (reference, domain), (xs, ys) in work.items():
        rows = computed[(reference, domain)]
        for _, label, _, known_keys, known_rows, _ in (p for p in plan if p[0] == (reference, domain)):
            mine = ys == label  # a label's points, still sorted by input (np.unique order)
            new_keys, new_rows = _keys(xs[mine]), rows[mine]
            all_keys = np.concatenate([known_keys, new_keys])
            all_rows = np.concatenate([known_rows, new_rows])
            order = np.argsort(all_keys, kind="stable")
            table._add(domain, label, all_keys[order], all_rows[order], reference)
            if cache is not None and len(new_keys):
                cache.store(domain, label, new_keys, new_rows, reference)
    points = sum(len(p[2]) for p in plan)
    return table, TruthWork(points=points, computed=total, jobs=used_jobs)
