"""The failure map (sweep/failure_map.py) and its place in a sweep (sweep/run.py): intervals, how
their edges are known, counts of floats, the stable range read from it, and its CSV.

Expected edges come from dense scans of torch in this file (every float of a window, in one
batch), never from a run of bce-audit.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

import bce_audit
from bce_audit.engines import get_engine
from bce_audit.floats import from_position, position
from bce_audit.formulations.builtins import get_formulation
from bce_audit.report import terminal
from bce_audit.report.failures_csv import FailuresCsvFormat
from bce_audit.sweep.failure_map import build_map, stable_range
from bce_audit.sweep.result import AuditResult, CaseResult
from bce_audit.vocabulary import Domain, DType, Quantity, Status

F16 = DType.FLOAT16.format
F32 = DType.FLOAT32.format


def floats_between(lo: float, hi: float, dtype: DType) -> np.ndarray:
    """Every value of ``dtype`` in [lo, hi], in order (-0 and +0 both)."""
    p = position(np.array([lo, hi]), dtype.format)
    return from_position(np.arange(p[0], p[1] + 1), dtype.format)


def case_of(result: AuditResult, quantity: str, label: float = 0.0) -> CaseResult:
    (found,) = (c for c in result.cases if str(c.quantity) == quantity and c.label == label)
    return found


# --- counting floats ------------------------------------------------------------------------------


def test_floats_counts_bit_patterns_by_position_arithmetic():
    assert int(np.diff(position(np.array([1.0, 2.0]), F16))[0]) + 1 == 1025  # 2^10 steps + both ends
    assert len(floats_between(1.0, 2.0, DType.FLOAT16)) == 1025
    # -0 and +0 are two inputs: [-0, 0] holds 2 floats, [-tiny, tiny] 4
    assert len(floats_between(-0.0, 0.0, DType.FLOAT32)) == 2
    tiny = F32.smallest_subnormal
    values = floats_between(-tiny, tiny, DType.FLOAT32)
    assert values.tolist() == [-tiny, 0.0, 0.0, tiny]
    assert np.signbit(values).tolist() == [True, True, False, False]
    # a map built from every float16 in [1, 2] counts them, and knows it saw each
    xs = floats_between(1.0, 2.0, DType.FLOAT16)
    st = np.full(len(xs), Status.OK.value, dtype=object)
    (only,) = build_map(xs, st, np.zeros(len(xs)), F16, (1.0, 2.0))
    assert (only.floats, only.evaluated, only.edges) == (1025, 1025, "enumerated")


def test_minus_zero_and_plus_zero_are_distinct_inputs_of_the_map():
    tiny = F32.smallest_subnormal
    xs = np.array([tiny, 0.0, -0.0, -tiny, 5.0])  # any order: the map sorts by bit pattern
    st = np.array(["ok", "nan", "zero", "ok", "ok"], dtype=object)
    ivs = build_map(xs, st, np.array([0.0, math.nan, 3.0, 0.0, 1.0]), F32, None)
    assert [(str(iv.status), iv.lo, iv.hi, iv.floats) for iv in ivs] == [
        ("ok", -tiny, -tiny, 1),
        ("zero", -0.0, -0.0, 1),
        ("nan", 0.0, 0.0, 1),
        ("ok", tiny, 5.0, int(np.diff(position(np.array([tiny, 5.0]), F32))[0]) + 1),
    ]
    assert math.copysign(1, ivs[1].lo) == -1 and math.copysign(1, ivs[2].lo) == 1
    # an edge is exact where the neighbouring float was evaluated; the map's ends are sampled
    # without bounds, and 5.0 is far from tiny
    assert [iv.edges for iv in ivs] == ["hi-exact", "enumerated", "enumerated", "lo-exact"]
    assert ivs[3].evaluated == 2 and not ivs[3].enumerated
    # the worst input of an interval is its largest ULP error; none where no error is defined
    assert math.isnan(ivs[2].worst_ulp) and ivs[1].worst_ulp == 3.0 and ivs[3].worst_input == 5.0


def test_stable_range_but_the_centre_and_none():
    tiny = F32.smallest_subnormal
    big = F32.largest_finite
    xs = np.array([-big, -tiny, -0.0, 0.0, tiny, big])
    errs = np.zeros(len(xs))
    bounds = (-big, big)
    only_zero = build_map(xs, np.array(["ok", "ok", "zero", "zero", "ok", "ok"], dtype=object), errs, F32, bounds)
    r = stable_range(only_zero, Domain.LOGITS)
    assert (r.lo, r.hi, r.but_centre) == (-big, big, True)
    # the failure reaches past the zeros: no stable range at all
    wider = build_map(xs, np.array(["ok", "zero", "zero", "zero", "ok", "ok"], dtype=object), errs, F32, bounds)
    r = stable_range(wider, Domain.LOGITS)
    assert math.isnan(r.lo) and math.isnan(r.hi) and not r.but_centre
    # all ok: the whole range, nothing excepted
    clean = build_map(xs, np.full(6, "ok", dtype=object), errs, F32, bounds)
    assert stable_range(clean, Domain.LOGITS) == type(r)(-big, big, False)


# --- in a sweep -----------------------------------------------------------------------------------


def first_nonfinite(formulation: str, quantity: Quantity, lo: float, hi: float, label: float) -> tuple[float, float]:
    """(last float with a finite output, first float with a non-finite one) among every float32
    in [lo, hi], evaluated in one batch by torch. On logits the exact loss and gradient are finite
    at every finite input, so a non-finite output is the failure."""
    xs = floats_between(lo, hi, DType.FLOAT32)
    ev = get_engine("torch").evaluate(get_formulation(formulation), Domain.LOGITS, DType.FLOAT32, xs, label)
    out = ev.loss if quantity is Quantity.LOSS else ev.grad
    bad = np.nonzero(~np.isfinite(out))[0]
    assert len(bad) and bad[0] > 0, "the window must hold the transition"
    return float(xs[bad[0] - 1]), float(xs[bad[0]])


@pytest.fixture(scope="module")
def naive_float32() -> AuditResult:
    return bce_audit.audit("naive", dtypes="float32", domain="logits", labels=0.0)


@pytest.mark.parametrize(("quantity", "status"), [(Quantity.LOSS, Status.INF), (Quantity.GRAD, Status.NAN)])
def test_the_map_edge_is_the_first_failing_float_of_a_dense_scan(naive_float32, quantity, status):
    """naive (probabilities-native, fed logits through sigmoid) at y = 0: sigmoid(z) rounds to 1
    from some z near 16.6 on, and -log(1 - p) is inf, its gradient NaN."""
    last_ok, first_bad = first_nonfinite("naive", quantity, 16.6, 16.7, 0.0)
    case = case_of(naive_float32, str(quantity))
    (band,) = (iv for iv in case.failures if iv.contains(first_bad))
    assert band.status is status and band.lo == first_bad and band.lo_exact
    (before,) = (iv for iv in case.failure_map if iv.contains(last_ok))
    assert before.hi == last_ok and before.hi_exact and before.status is not status
    # the band runs to the largest float32, the end of the range: that edge is exact too
    assert band.hi == F32.largest_finite and band.edges == "exact"
    assert band.floats == int(np.diff(position(np.array([band.lo, band.hi]), F32))[0]) + 1


def test_the_stable_range_of_the_gradient_ends_at_the_refined_edge(naive_float32):
    last_ok, first_bad = first_nonfinite("naive", Quantity.GRAD, 16.6, 16.7, 0.0)
    fig = case_of(naive_float32, "grad").figures
    assert fig is not None and fig.stable_hi == last_ok


def test_max_abs_fails_only_at_zero_and_the_scoreboard_says_so():
    """max-abs's gradient at z = ±0 is a one-point failure (the sign(0) of its |z|), ok at the
    floats next to it: found by evaluating them in torch here."""
    tiny = F32.smallest_subnormal
    xs = np.array([-tiny, -0.0, 0.0, tiny])
    ev = get_engine("torch").evaluate(get_formulation("max-abs"), Domain.LOGITS, DType.FLOAT32, xs, 0.0)
    # the exact gradient at y = 0 is sigmoid(z) = 0.5 at ±0 and rounds to 0.5 at ±tiny
    wrong = np.abs(ev.grad - 0.5) > 4 * 2.0**-24
    assert wrong.tolist() == [False, True, True, False]
    result = bce_audit.audit("max-abs", dtypes="float32", domain="logits", labels=0.0)
    grad = case_of(result, "grad")
    (zeros,) = (iv for iv in grad.failures if iv.contains(0.0))
    assert (zeros.lo, zeros.hi, zeros.floats, zeros.edges) == (-0.0, 0.0, 2, "enumerated")
    assert math.copysign(1, zeros.lo) == -1
    assert grad.stable_but_centre and grad.figures is not None
    assert (grad.figures.stable_lo, grad.figures.stable_hi) == (-F32.largest_finite, F32.largest_finite)
    board = "\n".join(line.plain for line in terminal.scoreboard(result, Quantity.GRAD, None))
    assert "all but 0" in board and "none" not in board
    # the loss's only failure is the underflow band where torch returns 0 for a truth that rounds
    # to the smallest subnormal: one interval, its edges those of a dense scan of torch
    loss = case_of(result, "loss")
    (band,) = loss.failures
    lo, hi, count = underflow_band_by_dense_scan()
    assert (band.status, band.lo, band.hi, band.floats, band.edges) == (Status.ZERO, lo, hi, count, "exact")
    assert not loss.stable_but_centre


def underflow_band_by_dense_scan() -> tuple[float, float, int]:
    """Every float32 z in [-104.5, -102.5], max-abs's loss at y = 0 in one batch in torch: the
    floats where torch returns 0 but the exact loss log1p(e^z) rounds to a nonzero float32, i.e.
    exceeds 2^-150 (half the smallest subnormal; a tie would round to 0). mpmath decides the floats
    next to that threshold."""
    import mpmath

    start, stop = position(np.array([-104.5, -102.5]), F32).tolist()
    zs = from_position(np.arange(start, stop + 1), F32)
    ev = get_engine("torch").evaluate(get_formulation("max-abs"), Domain.LOGITS, DType.FLOAT32, zs, 0.0)
    threshold = -150 * math.log(2)
    nonzero_truth = zs > threshold
    near = np.nonzero(np.abs(zs - threshold) < 1e-3)[0]
    with mpmath.workdps(60):
        for i in near:
            nonzero_truth[i] = mpmath.log1p(mpmath.exp(mpmath.mpf(float(zs[i])))) > mpmath.mpf(2) ** -150
    band = np.nonzero((ev.loss == 0) & nonzero_truth)[0]
    assert len(band) and np.all(np.diff(band) == 1)  # one unbroken run
    return float(zs[band[0]]), float(zs[band[-1]]), len(band)


def test_exhaustive_16_bit_maps_are_enumerated_everywhere():
    result = bce_audit.audit(["naive", "max-abs"], dtypes="float16", domain="logits", sampling="exhaustive")
    finite_float16 = 2**16 - 2 * 2**10  # every bit pattern but the ±inf and NaN ones
    for case in result.cases:
        assert case.failure_map, case.key
        assert {iv.edges for iv in case.failure_map} == {"enumerated"}, case.key
        assert sum(iv.floats for iv in case.failure_map) == finite_float16
        assert sum(iv.evaluated for iv in case.failure_map) == finite_float16


def test_failures_csv_has_exactly_its_columns_and_one_row_per_failing_interval(naive_float32):
    text = FailuresCsvFormat().render(naive_float32)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == (
        "formulation,domain,dtype,label,quantity,status,lo,hi,edges,floats,worst_input,worst_ulp,cause".split(",")
    )
    failing = [iv for case in naive_float32.cases for iv in case.failures]
    assert len(rows) - 1 == len(failing) > 0
    for row, iv in zip(rows[1:], failing, strict=True):
        assert float(row[6]) == iv.lo and float(row[7]) == iv.hi and int(row[9]) == iv.floats
        assert row[5] == str(iv.status) and row[8] == iv.edges and row[12] == ""
        assert iv.status is not Status.OK
        assert row[8] in {"enumerated", "exact", "lo-exact", "hi-exact", "sampled"}
    # the intervals of a case tile what was evaluated: in order, never overlapping
    for case in naive_float32.cases:
        ends = [(iv.lo, iv.hi) for iv in case.failure_map]
        assert all(a[1] < b[0] or (a[1] == b[0] == 0) for a, b in zip(ends, ends[1:], strict=False))


def test_refining_only_the_stable_ranges_gives_the_same_figures_as_the_whole_map():
    """A run that shows no map refines only the transitions that end each stable range: the
    figures, stable ranges and "but 0" must be those of the fully refined map."""
    from bce_audit.settings import Settings
    from bce_audit.sweep.run import run_sweep

    settings = Settings(
        formulations=("naive", "max-abs", "torch-bce-with-logits"),
        dtypes=(DType.FLOAT16, DType.FLOAT32),
        points=300,
    )
    full = run_sweep(settings, full_map=True)
    ends_only = run_sweep(settings, full_map=False)
    assert [c.key for c in full.cases] == [c.key for c in ends_only.cases]
    for a, b in zip(full.cases, ends_only.cases, strict=True):
        assert a.figures == b.figures, a.key
        assert a.stable_but_centre == b.stable_but_centre, a.key
    # and the map of the quick run is honest about what it did not refine
    assert sum(iv.edges == "sampled" for c in ends_only.cases for iv in c.failure_map) > 0
    assert sum(len(c.failure_map) for c in ends_only.cases) <= sum(len(c.failure_map) for c in full.cases)


def test_ends_near_are_the_ends_of_the_built_maps_intervals_around_the_centre():
    """ends_near gives, without building the map, the ends of the intervals that hold the centre
    and of their neighbours, as read from build_map: on random status runs, both zeros, an
    isolated failure at the centre, and a centre outside every interval."""
    from bce_audit.floats import from_position, position
    from bce_audit.sweep.failure_map import build_map, ends_near

    rng = np.random.default_rng(3)
    fmt = DType.FLOAT32.format
    names = np.array([s.value for s in Status], dtype=object)
    for trial in range(300):
        p = position(np.array([-50.0, 50.0]), fmt)
        xs = from_position(np.unique(rng.integers(p[0], p[1], size=int(rng.integers(1, 60)))), fmt)
        if trial % 3 == 0:
            xs = np.unique(np.concatenate([xs, [-0.0, 0.0]]).view(np.int64)).view(np.float64)
        statuses = names[rng.integers(0, 3, size=len(xs))] if trial % 2 else names[np.zeros(len(xs), int)]
        if trial % 5 == 0:
            statuses = statuses.copy()
            statuses[np.abs(xs) == 0] = Status.NAN.value
        centre = 0.0 if trial % 7 else 60.0
        intervals = build_map(xs, statuses, np.zeros(len(xs)), fmt, None, {})
        at = [k for k, iv in enumerate(intervals) if iv.contains(centre)]
        near = range(max(at[0] - 1, 0), min(at[-1] + 2, len(intervals))) if at else range(0)
        expected = {end for k in near for end in (intervals[k].lo, intervals[k].hi)}
        assert ends_near(xs, statuses, fmt, centre) == expected, trial
