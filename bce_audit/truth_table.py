"""The truth for many points at once: every format from one evaluation, fast path first.

A point is an (input, label) pair of exact float64 values. Its truth is the loss and the
gradient correctly rounded into each of float16, bfloat16, float32 and float64: one row of
eight values, so a point shared by several dtypes, formulations or runs is evaluated once.

Per point, ``truth_fast`` proves the float64 rounding at one working precision; the narrower
roundings follow from the float64 one exactly, because rounding twice equals rounding once
unless the first result lies exactly on a midpoint of the second format (if there were a
midpoint between the exact value and its float64 rounding, that midpoint, being a float64
value nearer to the exact value, would have been the float64 rounding). Rows whose float64
value is such a midpoint, and points the fast path declines, come from the reference oracle
in ``truth.py``, which rounds the high-precision value into each format directly.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bce_audit._types import Domain, DType, FloatFormat

# The column order of a truth row: loss in each format, then grad in each format.
FORMATS: tuple[FloatFormat, ...] = tuple(d.format for d in DType)
COLUMNS = len(FORMATS) * 2
_F64 = FORMATS.index(DType.FLOAT64.format)


def column(quantity_is_loss: bool, fmt: FloatFormat) -> int:
    """The column of a truth row that holds a quantity rounded into ``fmt``."""
    return FORMATS.index(fmt) + (0 if quantity_is_loss else len(FORMATS))


def round_from_float64(values: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(values rounded to nearest-even into ``fmt``, mask of values that are midpoints of fmt).

    ``values`` are float64; ±0, ±inf and NaN pass through. A midpoint (including the overflow
    threshold and half the smallest subnormal) is flagged: its rounding from float64 may differ
    from the rounding of the exact value it came from.
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x) & (x != 0)
    out = x.copy()
    midpoint = np.zeros(x.shape, dtype=bool)
    if fmt.precision >= 53 or not finite.any():
        return out, midpoint
    xf = x[finite]
    _, e = np.frexp(xf)  # |x| = m·2^e, m in [0.5, 1): floor(log2|x|) = e - 1
    q = np.maximum(e - 1, fmt.emin) - fmt.precision + 1
    scaled = np.ldexp(xf, -q)  # exact: |scaled| < 2^precision
    midpoint[finite] = (scaled - np.floor(scaled)) == 0.5
    with np.errstate(over="ignore"):  # a carry past float64's range: inf, as it should be
        r = np.ldexp(np.rint(scaled), q)  # rint: to nearest, ties to even
    r = np.where(np.abs(r) > fmt.largest_finite, np.copysign(np.inf, r), r)
    out[finite] = r
    return out, midpoint


def _reference_row(domain: Domain, x: float, y: float) -> list[float]:
    from bce_audit.truth import logit_truth, probability_truth

    point = logit_truth if domain is Domain.LOGITS else probability_truth
    t = point(x, y, FORMATS)
    return [*t.loss, *t.grad]


def evaluate_points(domain: Domain, inputs: np.ndarray, label: float, progress=None) -> np.ndarray:
    """Truth rows (shape (n, 8), see FORMATS) at every input for one label.

    Deterministic and independent of how the inputs are batched: each row depends only on its
    own (input, label), which is what lets ``--jobs`` split the work freely.
    """
    from mpmath.libmp import fone, from_float, mpf_sub

    from bce_audit.truth import preserve_precision
    from bce_audit.truth_fast import logit_float64, probability_float64

    n = len(inputs)
    rows = np.empty((n, COLUMNS), dtype=np.float64)
    f64 = np.zeros((n, 2), dtype=np.float64)
    need_reference = np.zeros(n, dtype=bool)
    yt = from_float(label)
    omy = mpf_sub(fone, yt, 0)
    if domain is Domain.LOGITS:
        fast = logit_float64

        def regular(x):
            return x != 0 and not math.isinf(x)
    else:
        fast = probability_float64

        def regular(x):
            return 0 < x < 1

    with preserve_precision():
        for i, x in enumerate(inputs.tolist()):
            r = fast(x, yt, omy) if regular(x) else None  # NaN is not regular either
            if r is None:
                need_reference[i] = True
            else:
                f64[i] = r
            if progress is not None and i % 1024 == 1023:
                progress(1024)
        for j, fmt in enumerate(FORMATS):
            for k in range(2):
                if j == _F64:
                    rows[:, j + k * len(FORMATS)] = f64[:, k]
                    continue
                rounded, midpoint = round_from_float64(f64[:, k], fmt)
                rows[:, j + k * len(FORMATS)] = rounded
                need_reference |= midpoint
        for i in np.flatnonzero(need_reference).tolist():
            rows[i] = _reference_row(domain, float(inputs[i]), label)
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


class TruthTable:
    """Truth rows by (domain, label, input), as computed or loaded for one sweep."""

    def __init__(self) -> None:
        self._groups: dict[tuple[Domain, int], tuple[np.ndarray, np.ndarray]] = {}

    def _add(self, domain: Domain, label: float, keys: np.ndarray, rows: np.ndarray) -> None:
        self._groups[(domain, _keys(np.array([label]))[0])] = (keys, rows)

    def rows(self, domain: Domain, label: float, inputs: np.ndarray) -> np.ndarray:
        """Rows (n, 8) for these inputs; every one must have been requested."""
        keys, rows = self._groups[(domain, _keys(np.array([label]))[0])]
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


def _chunk_rows(domain: str, label: float, inputs: bytes) -> bytes:
    # runs in a worker process: only plain data crosses the process boundary
    xs = np.frombuffer(inputs, dtype=np.float64)
    return evaluate_points(Domain(domain), xs, label).tobytes()


def _ignore_interrupt() -> None:
    import signal

    # Ctrl-C reaches the whole process group; the parent alone handles it (one line, exit 130)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _compute(work: list[tuple[Domain, float, np.ndarray]], jobs: int, progress) -> tuple[list[np.ndarray], int]:
    total = sum(len(xs) for _, _, xs in work)
    if jobs <= 1 or total < PARALLEL_MIN_POINTS:
        return [evaluate_points(d, xs, y, progress) for d, y, xs in work], 1
    import concurrent.futures
    import multiprocessing

    # Chunks small enough to balance the load and move the progress bar, large enough that
    # the per-chunk overhead stays negligible.
    size = min(20_000, max(2_000, total // (jobs * 8)))
    chunks = [(i, s) for i, (_, _, xs) in enumerate(work) for s in range(0, len(xs), size)]
    out = [np.empty((len(xs), COLUMNS)) for _, _, xs in work]
    # spawn, not fork: the parent may hold torch's thread pools, which do not survive a fork
    ctx = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_ignore_interrupt)
    try:
        futures = {}
        for i, s in chunks:
            domain, label, xs = work[i]
            part = np.ascontiguousarray(xs[s : s + size])
            futures[pool.submit(_chunk_rows, str(domain), label, part.tobytes())] = (i, s, len(part))
        for future in concurrent.futures.as_completed(futures):
            i, s, n = futures[future]
            out[i][s : s + n] = np.frombuffer(future.result(), dtype=np.float64).reshape(n, COLUMNS)
            if progress is not None:
                progress(n)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out, jobs


def build_truth_table(
    requests: list[tuple[Domain, float, np.ndarray]],
    jobs: int = 1,
    cache=None,
    progress=None,
) -> tuple[TruthTable, TruthWork]:
    """The truth at every requested (domain, label, inputs), each distinct point evaluated once.

    cache: a ``truth_cache.TruthCache`` or None. progress(n, total) is called as points are
    computed (total: the points the cache did not have).
    """
    groups: dict[tuple[Domain, int], tuple[Domain, float, list[np.ndarray]]] = {}
    for domain, label, inputs in requests:
        key = (domain, int(_keys(np.array([label]))[0]))
        groups.setdefault(key, (domain, float(label), []))[2].append(_keys(inputs))
    plan = []  # (domain, label, all keys, known keys, known rows, missing keys)
    for domain, label, parts in groups.values():
        keys = np.unique(np.concatenate(parts))
        known_keys = np.empty(0, dtype=np.int64)
        known_rows = np.empty((0, COLUMNS))
        if cache is not None:
            loaded = cache.load(domain, label)
            if loaded is not None:
                at = np.searchsorted(loaded[0], keys).clip(0, max(len(loaded[0]) - 1, 0))
                hit = (loaded[0][at] == keys) if len(loaded[0]) else np.zeros(len(keys), dtype=bool)
                known_keys, known_rows = keys[hit], loaded[1][at[hit]]
        missing = keys[~np.isin(keys, known_keys)]
        plan.append((domain, label, keys, known_keys, known_rows, missing))
    total = sum(len(p[5]) for p in plan)
    advance = None if progress is None else (lambda n: progress(n, total))
    work = [(domain, label, missing.view(np.float64)) for domain, label, _, _, _, missing in plan]
    computed, used_jobs = _compute(work, jobs, advance)
    table = TruthTable()
    for (domain, label, _, known_keys, known_rows, missing), new_rows in zip(plan, computed, strict=True):
        all_keys = np.concatenate([known_keys, missing])
        all_rows = np.concatenate([known_rows, new_rows])
        order = np.argsort(all_keys, kind="stable")
        table._add(domain, label, all_keys[order], all_rows[order])
        if cache is not None and len(missing):
            cache.store(domain, label, missing, new_rows)
    points = sum(len(p[2]) for p in plan)
    return table, TruthWork(points=points, computed=total, jobs=used_jobs)
