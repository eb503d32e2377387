"""Exhaustive float32 (sweep/exhaustive.py): every input of a range, streamed, with the figures a
grid of the same inputs gives and status runs whose edges torch and the oracle confirm."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from bce_audit.cli import main
from bce_audit.engines import get_engine
from bce_audit.errors import UsageError
from bce_audit.floats import from_ordinal, ordinal
from bce_audit.formulations.builtins import get_formulation
from bce_audit.oracle.crossings import find_crossings
from bce_audit.oracle.table import column, evaluate_points
from bce_audit.settings import Settings
from bce_audit.sweep.exhaustive import MAX_DETAIL_ROWS, chunks, count_inputs, detail_rows, exhaustive_cases, status_runs
from bce_audit.sweep.metrics import point_status, summarize, ulp_error
from bce_audit.sweep.run import run_sweep
from bce_audit.vocabulary import Domain, DType, Quantity, Sampling, Status

F32 = DType.FLOAT32.format


def evaluate(formulation, *args):
    return get_engine(formulation.engine).evaluate_grid(formulation, *args)


def all_float32(lo: float, hi: float) -> np.ndarray:
    a, b = ordinal(np.array([lo, hi]), F32).tolist()
    return from_ordinal(np.arange(a, b + 1), F32)


def test_chunks_enumerate_every_float32_once_in_order():
    xs = np.concatenate(list(chunks(Domain.LOGITS, (-1e-44, 1e-44), size=3)))
    # ±0, ±2^-149 ... ±7·2^-149 (1e-44 lies between 7 and 8 smallest subnormals)
    tiny = F32.smallest_subnormal
    assert xs.tolist() == [k * tiny for k in range(-7, 0)] + [-0.0, 0.0] + [k * tiny for k in range(1, 8)]
    assert np.signbit(xs[7]) and not np.signbit(xs[8])
    assert count_inputs(Domain.LOGITS, (-1e-44, 1e-44)) == len(xs)
    assert count_inputs(Domain.LOGITS, None) == 2**32 - 2**24  # every finite bit pattern
    assert count_inputs(Domain.PROBABILITIES, None) == (127 << 23) + 1  # [0, 1]: 0 .. 1 (1.0 is 127 << 23)


@pytest.mark.parametrize("formulation", ["torch-logsigmoid", "naive", "torch-bce"])
@pytest.mark.parametrize("y", [0.0, 1.0, 0.3])
def test_streamed_figures_equal_those_of_a_grid_of_the_same_inputs(formulation, y):
    lo, hi = 8 - 2**-6, 8 + 2**-6  # 49,153 float32 values across the binade edge at 8
    f = get_formulation(formulation)
    (loss_case, grad_case), _ = exhaustive_cases(Domain.LOGITS, [y], [f], evaluate, (lo, hi), 4.0, chunk=5000)
    xs = all_float32(lo, hi)
    yy = float(np.float32(y))
    rows = evaluate_points(Domain.LOGITS, xs, yy)
    ev = evaluate(f, Domain.LOGITS, DType.FLOAT32, xs, np.empty(0), yy).finite
    for case, out in ((loss_case, ev.loss), (grad_case, ev.grad)):
        q = case.quantity
        want, _, _ = summarize(
            xs, out, rows[:, column(q, F32)], rows[:, column(q, DType.FLOAT64.format)], F32, Domain.LOGITS, 4.0
        )
        got = case.figures
        assert got is not None
        for name in ("points", "ok", "inaccurate", "inf", "nan", "zero", "max_ulp", "p99_ulp", "worst_input"):
            a, b = getattr(got, name), getattr(want, name)
            assert a == b or (math.isnan(a) and math.isnan(b)), (q, name, a, b)
        for name in ("stable_lo", "stable_hi"):
            a, b = getattr(got, name), getattr(want, name)
            assert a == b or (math.isnan(a) and math.isnan(b)), (q, name, a, b)
        assert got.mean_ulp == pytest.approx(want.mean_ulp, rel=1e-12, nan_ok=True)
        assert got.mean_bits == pytest.approx(want.mean_bits, rel=1e-12)
        # the float64 estimates behind max_rel_err are within 2^-46: the figure agrees closely
        assert got.max_rel_err == pytest.approx(want.max_rel_err, rel=2.0**-40, nan_ok=True)


def test_status_runs_locate_the_logsigmoid_underflow_band_exactly():
    """torch-logsigmoid, y = 1, float32, z in [100, 104]: the loss is 0 where the truth is the
    smallest subnormal. The zero run starts at the first input where torch returns 0 (a dense scan
    of torch itself) and ends at the last input where the truth is not 0 (the oracle's crossing)."""
    f = get_formulation("torch-logsigmoid")
    runs = status_runs(Domain.LOGITS, 1.0, f, evaluate, Quantity.LOSS, logit_range=(100.0, 104.0))
    zero_runs = [r for r in runs if r[2] is Status.ZERO]
    assert len(zero_runs) == 1
    lo, hi, _ = zero_runs[0]
    xs = all_float32(100.0, 104.0)
    out = evaluate(f, Domain.LOGITS, DType.FLOAT32, xs, np.empty(0), 1.0).finite.loss
    assert lo == xs[np.flatnonzero(out == 0)[0]]
    (crossing,) = [
        c for c in find_crossings(F32, Domain.LOGITS, [1.0]) if c.quantity is Quantity.LOSS and c.threshold == "nonzero"
    ]
    assert hi == crossing.before
    assert 102.87 < lo < 102.88 and 103.97 < hi < 103.98
    # runs are maximal, ordered, and cover the range
    assert runs[0][0] == xs[0] and runs[-1][1] == xs[-1]
    assert all(a[2] is not b[2] for a, b in zip(runs, runs[1:], strict=False))


def test_an_exhaustive_float32_sweep_counts_the_band():
    settings = Settings(
        formulations=("torch-logsigmoid",),
        dtypes=(DType.FLOAT32,),
        domains=(Domain.LOGITS,),
        labels=(0.0,),
        sampling=Sampling.EXHAUSTIVE,
        logit_range=(-104.0, -102.0),
    )
    calls: list[tuple[int, int]] = []
    result = run_sweep(settings, case_progress=lambda n, total: calls.append((n, total)))
    # the progress bar: one evaluation per (chunk, label, formulation), and it ends full
    assert sum(n for n, _ in calls) == calls[-1][1] == len(calls) >= 1
    loss = next(c for c in result.cases if c.quantity is Quantity.LOSS)
    assert loss.figures is not None
    # every float32 in about [-103.97, -102.87) gives 0 where the truth is the smallest subnormal
    band = all_float32(-103.98, -102.86)
    ev = evaluate(get_formulation("torch-logsigmoid"), Domain.LOGITS, DType.FLOAT32, band, np.empty(0), 0.0).finite
    truth = evaluate_points(Domain.LOGITS, band, 0.0)[:, column(Quantity.LOSS, F32)]
    assert loss.figures.zero == int(((ev.loss == 0) & (truth != 0)).sum()) > 100_000
    assert loss.figures.points == count_inputs(Domain.LOGITS, (-104.0, -102.0))
    # the range is small enough to keep every point: the details agree with the figures, point by point
    kept = run_sweep(settings, keep_details=True)
    for case in kept.cases:
        d, figures = case.details, case.figures
        assert d is not None and figures is not None
        n = figures.points
        assert len(d.inputs) == n + 3 and d.inputs[:n].tolist() == sorted(d.inputs[:n].tolist())
        assert math.isinf(d.inputs[n]) and np.isnan(d.inputs[-1])
        statuses = d.statuses[:n].tolist()
        for status in ("ok", "inaccurate", "inf", "nan", "zero"):
            assert statuses.count(status) == getattr(figures, status), (case.quantity, status)
        assert float(np.nanmax(d.ulp_errors[:n])) == figures.max_ulp
    kept_loss = next(c for c in kept.cases if c.quantity is Quantity.LOSS)
    assert kept_loss.details is not None
    assert kept_loss.details.statuses.tolist().count("zero") == loss.figures.zero


def test_details_of_an_exhaustive_float32_range_hold_the_exact_truth():
    """The truth in the kept points (the vectorized oracle) is the exact path's, correctly rounded,
    for every float32 in a range across the binade edge at 16, both labels; and the outputs are
    torch's own on those inputs."""
    lo, hi = 16 - 2**-10, 16 + 2**-10  # 6,145 inputs
    settings = Settings(
        formulations=("naive",),
        dtypes=(DType.FLOAT32,),
        domains=(Domain.LOGITS,),
        labels=(0.0, 1.0),
        sampling=Sampling.EXHAUSTIVE,
        logit_range=(lo, hi),
    )
    result = run_sweep(settings, keep_details=True)
    xs = all_float32(lo, hi)
    f = get_formulation("naive")
    for case in result.cases:
        d = case.details
        assert d is not None and d.truth is not None
        n = len(xs)
        assert d.inputs[:n].tolist() == xs.tolist()
        rows = evaluate_points(Domain.LOGITS, d.inputs, case.label)
        assert np.array_equal(d.truth, rows[:, column(case.quantity, F32)], equal_nan=True)
        assert np.array_equal(d.truth_f64, rows[:, column(case.quantity, DType.FLOAT64.format)], equal_nan=True)
        ev = evaluate(f, Domain.LOGITS, DType.FLOAT32, xs, np.empty(0), case.label).finite
        out = ev.loss if case.quantity is Quantity.LOSS else ev.grad
        assert np.array_equal(d.outputs[:n], out, equal_nan=True)


def test_details_of_an_exhaustive_float32_sweep_too_big_to_hold_is_refused_with_its_count():
    settings = Settings(
        formulations=("naive", "torch-logsigmoid"),
        dtypes=(DType.FLOAT32,),
        domains=(Domain.LOGITS,),
        labels=(0.0, 1.0),
        sampling=Sampling.EXHAUSTIVE,
        logit_range=(-1.0, 1.0),
    )
    # (every float32 in [-1, 1]: 2 * (127 << 23) + 2, with -0, plus ±inf and NaN) * 2 labels * 2 formulations * 2
    rows = (2 * (127 << 23) + 2 + 3) * 8
    with pytest.raises(UsageError, match=f"has {rows:,} rows .* more than the {MAX_DETAIL_ROWS:,}"):
        run_sweep(settings, keep_details=True)


def test_a_range_without_inputs_is_a_usage_error():
    settings = Settings(
        formulations=("naive",),
        dtypes=(DType.FLOAT32,),
        domains=(Domain.PROBABILITIES,),
        sampling=Sampling.EXHAUSTIVE,
        logit_range=(100.0, 104.0),  # sigmoid(100) rounds to 1 in float32: no probability inside
    )
    with pytest.raises(UsageError, match="no float32 input on probabilities"):
        run_sweep(settings)


@pytest.mark.parametrize(
    "formulations, sweep, culprit",
    [
        (("torch-logsigmoid", "torchvision-focal"), (), "torchvision-focal implements another member"),
        (("torch-bce-with-logits",), (("pos_weight", ("1", "2")),), "torch-bce-with-logits implements"),
    ],
)
def test_exhaustive_float32_refuses_references_other_than_plain_bce(formulations, sweep, culprit):
    """Its truth comes from the vectorized oracle, which knows plain BCE only: a focal loss or a
    pos_weight of 2 would be measured against the wrong function, so the sweep refuses them."""
    settings = Settings(
        formulations=formulations,
        dtypes=(DType.FLOAT32,),
        domains=(Domain.LOGITS,),
        sampling=Sampling.EXHAUSTIVE,
        logit_range=(1.0, 1.001),
        parameter_sweep=sweep,
    )
    with pytest.raises(UsageError, match=culprit):
        run_sweep(settings)


def _failures_csv(tmp_path, args: list[str]) -> list[dict[str, str]]:
    """The rows of --failures of `bce-audit sweep ARGS`, run through the CLI; the JSON report of
    the same run lists the same failing intervals."""
    path, report = tmp_path / "f.csv", tmp_path / "r.json"
    outcome = CliRunner().invoke(main, ["sweep", *args, "--failures", str(path), "--json", str(report)])
    assert outcome.exit_code == 0, outcome.output
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    listed = [
        (case["quantity"], iv["status"], iv["lo"], iv["hi"], iv["edges"], iv["floats"])
        for case in json.loads(report.read_text())["cases"]
        for iv in case["failures"]
    ]
    assert listed == [
        (r["quantity"], r["status"], float(r["lo"]), float(r["hi"]), r["edges"], int(r["floats"])) for r in rows
    ]
    return rows


def test_exhaustive_float32_maps_naive_inaccurate_floats_as_enumerated_intervals(tmp_path):
    """naive, float32, y = 0, every float32 in [1.6, 1.7]: the loss is more than 4 ULPs off at
    scattered floats (one near 1.6528). Every failing interval of --failures is enumerated, and in
    a window around 1.6528 they are exactly the failing floats of a dense scan: torch on every
    float of a wider window in one batch (its ends, where the batch's scalar tail lies, are not
    compared), the truth from the oracle's reference."""
    rows = _failures_csv(
        tmp_path,
        "--sampling exhaustive -d float32 --range 1.6:1.7 -f naive --domain logits -y 0".split(),
    )
    assert rows and {r["edges"] for r in rows} == {"enumerated"}
    assert all(int(r["floats"]) == len(all_float32(float(r["lo"]), float(r["hi"]))) for r in rows)
    window = (1.652, 1.654)
    xs = all_float32(1.651, 1.655)
    ev = evaluate(get_formulation("naive"), Domain.LOGITS, DType.FLOAT32, xs, np.empty(0), 0.0).finite
    truth = evaluate_points(Domain.LOGITS, xs, 0.0)[:, column(Quantity.LOSS, F32)]
    statuses = point_status(ev.loss, truth, ulp_error(ev.loss, truth, F32), 4.0)
    inside = (xs >= window[0]) & (xs <= window[1])
    failing = xs[inside & (statuses != Status.OK.value)]
    assert len(failing) and any(1.6527 < x < 1.6529 for x in failing.tolist())
    listed = [
        x
        for r in rows
        if r["quantity"] == "loss" and window[0] <= float(r["lo"]) <= window[1]
        for x in all_float32(float(r["lo"]), float(r["hi"])).tolist()
    ]
    assert listed == failing.tolist()
    assert {r["status"] for r in rows if r["quantity"] == "loss"} == {"inaccurate"}


def test_exhaustive_float32_maps_the_logsigmoid_underflow_band_as_one_zero_interval(tmp_path):
    """torch-logsigmoid, float32, y = 0: the loss is 0 on about [-103.97, -102.87) where the truth
    is a subnormal. The map holds one `zero` interval there, enumerated, whose ends are the first
    and last float of a dense scan (torch in one batch, the oracle's truth) with 0 for a nonzero
    truth."""
    rows = _failures_csv(
        tmp_path,
        "--sampling exhaustive -d float32 --range -104:-102 -f torch-logsigmoid --domain logits -y 0".split(),
    )
    zero = [r for r in rows if r["quantity"] == "loss" and r["status"] == "zero"]
    assert len(zero) == 1 and zero[0]["edges"] == "enumerated"
    xs = all_float32(-104.0, -102.0)
    pad = np.concatenate([xs, all_float32(-102.0, -101.99)[1:]])  # keeps -102 out of the scalar tail
    loss = evaluate(get_formulation("torch-logsigmoid"), Domain.LOGITS, DType.FLOAT32, pad, np.empty(0), 0.0)
    out = loss.finite.loss[: len(xs)]
    truth = evaluate_points(Domain.LOGITS, xs, 0.0)[:, column(Quantity.LOSS, F32)]
    band = np.flatnonzero((out == 0) & (truth != 0))
    assert len(band) == band[-1] - band[0] + 1  # one run of consecutive floats
    lo, hi = float(xs[band[0]]), float(xs[band[-1]])
    assert (float(zero[0]["lo"]), float(zero[0]["hi"])) == (lo, hi)
    assert int(zero[0]["floats"]) == len(band)
    assert -103.98 < lo < -103.97 and -102.88 < hi < -102.87


def test_kept_points_of_a_formulation_that_raises_are_every_input_with_the_error_status():
    import bce_audit

    @bce_audit.formulation(domain="logits")
    def raises(z, y):
        raise RuntimeError("nope")

    result = bce_audit.audit(
        [raises], dtypes="float32", domain="logits", sampling="exhaustive", range=(1, 1.0001), labels=0.0, details=True
    )
    n = count_inputs(Domain.LOGITS, (1.0, 1.0001))
    assert n == 839
    for case in result.cases:
        d = case.details
        assert case.figures is None and case.error is not None and d is not None
        assert len(d.inputs) == n + 3 and set(d.statuses.tolist()) == {"error"} and np.isnan(d.outputs).all()
        # the truth is still there, exact: softplus(1) = 1.3132616875182228 at z = 1
        want = evaluate_points(Domain.LOGITS, d.inputs, 0.0)[:, column(case.quantity, DType.FLOAT64.format)]
        assert np.array_equal(d.truth_f64, want, equal_nan=True)


def test_the_row_count_is_the_rows_kept_on_probabilities_with_a_range():
    settings = Settings(
        formulations=("naive",),
        dtypes=(DType.FLOAT32,),
        domains=(Domain.PROBABILITIES, Domain.LOGITS),
        labels=(0.0, 1.0),
        sampling=Sampling.EXHAUSTIVE,
        logit_range=(1.0, 1.0001),
    )
    rows, exact = detail_rows(settings)
    result = run_sweep(settings, keep_details=True)
    assert exact and rows == sum(len(c.details.inputs) for c in result.cases if c.details is not None)
    # the probabilities whose float64 logit lies in the range: fewer than count_inputs' bound may say
    kept = sum(len(c) for c in chunks(Domain.PROBABILITIES, (1.0, 1.0001)))
    assert kept <= count_inputs(Domain.PROBABILITIES, (1.0, 1.0001))
    assert rows == (kept + 1 + 839 + 3) * 2 * 2
