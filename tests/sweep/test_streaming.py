"""Streaming figures (sweep/streaming.py): chunk by chunk, the same figures as summarize on one array."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bce_audit.floats import from_ordinal
from bce_audit.sweep.failure_map import build_map, enumerated_map
from bce_audit.sweep.metrics import point_status, status_codes, summarize
from bce_audit.sweep.streaming import CaseStream, ErrorHistogram, StatusRuns
from bce_audit.vocabulary import Domain, DType, Status

F32 = DType.FLOAT32.format


def synthetic_case(seed: int, domain: Domain):
    """Sorted float32 inputs (with -0 and +0 on logits), a truth, and an output that is right,
    a few ULPs off, far off, zero, inf or NaN in runs, as formulations fail."""
    rng = np.random.default_rng(seed)
    n = 6000
    if domain is Domain.LOGITS:
        x = np.concatenate([rng.uniform(-200, 200, n), [0.0, -0.0]]).astype(np.float32).astype(np.float64)
    else:
        x = rng.uniform(0, 1, n).astype(np.float32).astype(np.float64)
    x = np.unique(x.view(np.int64)).view(np.float64)
    x = x[np.argsort(x, kind="stable")]
    if domain is Domain.LOGITS:  # -0 before +0, as the exhaustive order has them
        zeros = np.flatnonzero(x == 0)
        x[zeros] = [-0.0, 0.0][: len(zeros)]
    truth = np.log1p(np.exp(-np.abs(x))).astype(np.float32).astype(np.float64)
    out = truth.copy()
    kinds = rng.integers(0, 12, len(x))
    blocks = np.repeat(rng.integers(0, 12, len(x) // 50 + 1), 50)[: len(x)]
    kinds = np.where(rng.uniform(size=len(x)) < 0.5, kinds, blocks)
    step = np.spacing(truth.astype(np.float32)).astype(np.float64)
    out = np.where(kinds == 1, truth + step * rng.integers(-3, 4, len(x)), out)
    out = np.where(kinds == 2, truth * 1.5, out)
    out = np.where(kinds == 3, 0.0, out)
    out = np.where(kinds == 4, np.inf, out)
    out = np.where(kinds == 5, np.nan, out)
    centre = np.abs(x - domain.centre) < (5 if domain is Domain.LOGITS else 0.1)
    out = np.where(centre, truth, out)  # an ok centre: a stable range exists
    return x, out.astype(np.float32).astype(np.float64), truth


@pytest.mark.parametrize("domain", list(Domain), ids=str)
@pytest.mark.parametrize("chunk", [1, 7, 1000, 100000])
def test_streamed_figures_equal_the_one_array_figures(domain, chunk):
    x, out, truth = synthetic_case(1, domain)
    whole, _, status = summarize(x, out, truth, truth, F32, domain, 4.0, nonfinite=2)
    stream = CaseStream(F32, domain, 4.0, keep_runs=True)
    for s in range(0, len(x), chunk):
        stream.add(x[s : s + chunk], out[s : s + chunk], truth[s : s + chunk], truth[s : s + chunk])
    got = stream.figures(nonfinite=2)
    for name in ("points", "ok", "inaccurate", "inf", "nan", "zero", "nonfinite", "max_ulp", "p99_ulp"):
        assert getattr(got, name) == getattr(whole, name), name
    for name in ("worst_input", "stable_lo", "stable_hi", "max_rel_err"):
        a, b = getattr(got, name), getattr(whole, name)
        assert a == b or (math.isnan(a) and math.isnan(b)), (name, a, b)
    assert got.mean_ulp == pytest.approx(whole.mean_ulp, rel=1e-12)
    assert got.mean_bits == pytest.approx(whole.mean_bits, rel=1e-12)
    assert whole.inaccurate and whole.zero and whole.inf and whole.nan  # the case tests something
    # the runs: maximal, in order, covering every input with its status
    runs = stream.runs.finish() if stream.runs is not None else []
    expected = []
    for i, s in enumerate(status.tolist()):
        if expected and expected[-1][2] == s:
            expected[-1][1] = float(x[i])
        else:
            expected.append([float(x[i]), float(x[i]), s])
    assert [(lo, hi, s.value) for lo, hi, s in runs] == [tuple(r) for r in expected]
    assert all(isinstance(r[2], Status) for r in runs)


def test_histogram_coarsens_to_an_upper_bound():
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 1000, 50000)
    exact = ErrorHistogram(limit=10**9)
    small = ErrorHistogram(limit=500)
    for s in range(0, len(values), 3000):
        exact.add(values[s : s + 3000])
        small.add(values[s : s + 3000])
    want = float(np.percentile(values, 99, method="higher"))
    assert exact.higher_percentile(0.99) == want
    assert small.dropped_bits > 0 and len(small.keys) <= 500
    got = small.higher_percentile(0.99)
    assert want <= got <= want * (1 + 2.0 ** -(52 - small.dropped_bits))


def test_status_runs_track_each_runs_worst_error_across_chunks_as_the_map_does():
    """Status runs fed in chunks of every size (a run cut by a chunk's end included) give the same
    intervals, worst inputs and worst errors as the failure map built from all points at once:
    the first input of the largest error, NaN where no error of the run is defined."""
    rng = np.random.default_rng(11)
    fmt = DType.FLOAT32.format
    xs = from_ordinal(np.arange(1000, 1400), fmt)
    errs = rng.choice([0.0, 1.0, 2.0, 7.0, 7.0, np.nan], size=len(xs))
    out = np.where(np.isnan(errs), np.nan, 1.0)
    codes = status_codes(out, np.ones(len(xs)), errs, 4.0)
    statuses = point_status(out, np.ones(len(xs)), errs, 4.0)
    want = build_map(xs, statuses, errs, fmt, (float(xs[0]), float(xs[-1])))
    for size in (1, 3, 50, 400):
        runs = StatusRuns()
        for start in range(0, len(xs), size):
            runs.add(xs[start : start + size], codes[start : start + size], errs[start : start + size])
        got = enumerated_map(runs.finish(), runs.worst, fmt)
        assert [repr(iv) for iv in got] == [repr(iv) for iv in want], size
