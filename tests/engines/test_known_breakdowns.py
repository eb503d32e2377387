"""Known breakdowns of the built-in formulations, found by the full sweep.

Where each formulation breaks is derived from torch itself inside the test (never typed in),
and the audit's per-point statuses must flag exactly those inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bce_audit.settings import Settings
from bce_audit.sweep.run import run_sweep
from bce_audit.vocabulary import Domain, DType, Quantity

TORCH = {
    DType.FLOAT16: torch.float16,
    DType.BFLOAT16: torch.bfloat16,
    DType.FLOAT32: torch.float32,
    DType.FLOAT64: torch.float64,
}


def sweep(formulation, dtypes, labels, points, domain=Domain.LOGITS):
    settings = Settings(
        formulations=(formulation,),
        dtypes=tuple(dtypes),
        domains=(domain,),
        labels=tuple(labels),
        points=points,
        seed=0,
    )
    return run_sweep(settings, keep_details=True).cases


def case_of(cases, dtype, label, quantity):
    (case,) = [c for c in cases if c.dtype is dtype and c.label == label and c.quantity is quantity]
    assert case.error is None and case.details is not None
    return case


def finite_rows(case):
    d = case.details
    n = case.figures.points
    # finite inputs first (they make the statistics), then ±inf and NaN
    assert np.all(np.isfinite(d.inputs[:n])) and not np.any(np.isfinite(d.inputs[n:]))
    return d.inputs[:n], d.outputs[:n], d.truth_f64[:n], d.statuses[:n]


def test_naive_float16_logits_label0_overflows_where_sigmoid_rounds_to_one():
    # every non-negative float16, through torch.sigmoid in float16
    z = torch.arange(0, 0x7C00, dtype=torch.int32).to(torch.int16).view(torch.float16)
    saturated = torch.sigmoid(z) == 1
    z_one = z[saturated][0].item()  # the first z where sigmoid(z) rounds to 1
    assert torch.all(saturated[z >= z_one]) and not torch.any(saturated[z < z_one])

    cases = sweep("naive", [DType.FLOAT16], [0.0], points=200)
    inputs, outputs, truth, status = finite_rows(case_of(cases, DType.FLOAT16, 0.0, Quantity.LOSS))
    above = inputs >= z_one
    assert above.sum() > 10 and (~above & (inputs > 0)).sum() > 10
    # 1 - p = 0, log(0) = -inf: the loss overflows although the truth, softplus(z) ~ z, is finite
    assert np.all(np.isposinf(outputs[above]))
    assert np.all(np.isfinite(truth[above]))
    assert np.all(status[above] == "inf")
    assert not np.any(status[~above] == "inf")
    # the loss torch computes on the grid's own values agrees (vector kernel, same inputs)
    x = torch.tensor(inputs, dtype=torch.float64).to(torch.float16)
    p = torch.sigmoid(x)
    y = torch.zeros_like(x)
    direct = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    np.testing.assert_array_equal(direct.to(torch.float64).numpy(), outputs)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_softplus_threshold_gradient_nan_where_exp_overflows(label):
    cases = sweep("softplus-threshold", [DType.FLOAT32], [label], points=300)
    inputs, outputs, truth, status = finite_rows(case_of(cases, DType.FLOAT32, label, Quantity.GRAD))
    x = torch.tensor(inputs, dtype=torch.float64).to(torch.float32)
    overflow = torch.isinf(torch.exp(x)).numpy()
    # the branch torch.where discards still runs backward: 0 * exp(z) = 0 * inf = NaN
    assert overflow.sum() > 20 and ((inputs > 20) & ~overflow).sum() > 5
    assert np.all(np.isnan(outputs[overflow]))
    assert np.all(np.isfinite(truth))
    np.testing.assert_array_equal(np.nonzero(status == "nan")[0], np.nonzero(overflow)[0])
    # the loss itself is fine there: the selected branch is z - y*z
    loss_case = case_of(cases, DType.FLOAT32, label, Quantity.LOSS)
    assert not np.any(loss_case.details.statuses[: loss_case.figures.points][overflow] == "nan")


def _max_abs_torch_grad(z: float, label: float, tdtype) -> float:
    x = torch.tensor([z], dtype=tdtype, requires_grad=True)
    y = torch.full_like(x, label)
    loss = torch.clamp_min(x, 0) - y * x + torch.log1p(torch.exp(-torch.abs(x)))
    (g,) = torch.autograd.grad(loss, x, grad_outputs=torch.ones_like(loss))
    return g.item()


def _ulp(t: float, tdtype) -> float:
    """2^(max(floor(log2|t|), emin) - p + 1), from torch.finfo; ulp(0) the smallest subnormal."""
    fi = torch.finfo(tdtype)
    emin = round(math.log2(fi.smallest_normal))
    e = emin if t == 0 else max(math.frexp(abs(t))[1] - 1, emin)
    return math.ldexp(fi.eps, e)


@pytest.mark.parametrize("dtype", list(DType), ids=str)
def test_max_abs_subgradient_at_zero(dtype):
    labels = [0.0, 0.5, 1.0]
    cases = sweep("max-abs", [dtype], labels, points=30)
    for label in labels:
        inputs, outputs, truth, status = finite_rows(case_of(cases, dtype, label, Quantity.GRAD))
        rows = np.nonzero(inputs == 0)[0]
        assert len(rows) == 2  # -0 and +0
        for i in rows:
            z = float(inputs[i])
            expected = _max_abs_torch_grad(z, label, TORCH[dtype])
            assert outputs[i] == expected
            assert truth[i] == 0.5 - label  # sigmoid(0) - y, exact
            t = float(truth[i])
            if abs(expected - t) > 4 * _ulp(t, TORCH[dtype]):  # beyond the default threshold
                assert status[i] != "ok"
                assert status[i] == ("zero" if expected == 0 else "inaccurate")
            else:
                assert status[i] == "ok"
    # at least one label exposes the subgradient choice (clamp_min passes 1 at z = 0)
    zero_rows = [
        case_of(cases, dtype, y, Quantity.GRAD).details.statuses[
            np.nonzero(case_of(cases, dtype, y, Quantity.GRAD).details.inputs == 0)[0]
        ]
        for y in labels
    ]
    assert any(np.any(s != "ok") for s in zero_rows)


def test_torch_bce_with_logits_float64_has_no_nan_or_inf():
    cases = sweep("torch-bce-with-logits", [DType.FLOAT64], [0.0, 1.0], points=400)
    assert len(cases) == 4
    for case in cases:
        inputs, outputs, truth, status = finite_rows(case)
        assert np.abs(inputs).max() == np.finfo(np.float64).max  # the extremes are in the grid
        assert not np.any(np.isin(status, ["nan", "inf"])), (
            case.label,
            case.quantity,
            inputs[np.isin(status, ["nan", "inf"])],
        )
        assert case.figures.nan == 0 and case.figures.inf == 0
