"""For every built-in that the default sweep shows failing: explain a failure (its input derived
from torch), check that the catalogue suggests the rewrite, write that rewrite as a user
formulation, and show with the tool that the failure is gone at the same input."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the name every rewrite uses

import bce_audit
from bce_audit.floats import from_ordinal, ordinal
from bce_audit.vocabulary import DType, Status


def _values(dtype: DType, lo: float, hi: float) -> torch.Tensor:
    fmt = dtype.format
    o = ordinal(np.array([lo, hi]), fmt)
    return torch.tensor(from_ordinal(np.arange(o[0], o[1] + 1), fmt), dtype=getattr(torch, dtype.value))


def _first(values: torch.Tensor, mask: torch.Tensor) -> float:
    assert mask.any() and not mask[0]
    return float(values[mask][0].item())


def _explain(formulation, **kw) -> bce_audit.Explanation:
    (e,) = bce_audit.explain(formulation, **kw)
    return e


def _fails_then_fixed(builtin: str, rewrite, pattern: str, **case) -> tuple[bce_audit.Explanation, ...]:
    before = _explain(builtin, **case)
    assert before.status is not Status.OK, before.cause
    assert pattern in [f.pattern for f in before.fixes], (before.cause, before.fixes)
    after = _explain(rewrite, **case)
    return before, after


@bce_audit.formulation(domain="logits")
def logsigmoid_bce(z, y):
    """-(y*logsigmoid(z) + (1-y)*logsigmoid(-z))"""
    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))


@bce_audit.formulation(domain="probabilities")
def xlogy_bce(p, y):
    """-(xlogy(y, p) + xlog1py(1-y, -p))"""
    return -(torch.xlogy(y, p) + torch.special.xlog1py(1 - y, -p))


def test_naive_on_logits_log_of_sigmoid():
    z = _values(DType.FLOAT32, 10.0, 20.0)
    z_one = _first(z, torch.sigmoid(z) == 1)
    case = {"dtypes": "float32", "domain": "logits", "labels": 0, "quantity": "loss", "at": z_one}
    before, after = _fails_then_fixed("naive", logsigmoid_bce, "log-of-sigmoid", **case)
    assert before.status is Status.INF and after.status is Status.OK and after.output == before.truth
    # and over a whole sweep of that case the rewrite is never inf, NaN or inaccurate (its only
    # failures are logsigmoid's own zeros where the true loss is the smallest subnormal)
    result = bce_audit.audit([logsigmoid_bce], dtypes="float32", domain="logits", labels=[0.0], points=300)
    for c in result.cases:
        assert c.figures is not None and c.figures.inf == c.figures.nan == c.figures.inaccurate == 0
        assert c.figures.ok + c.figures.zero == c.figures.points


def test_naive_on_probabilities_zero_times_log_zero():
    case = {"dtypes": "float32", "labels": 0, "quantity": "loss", "at": 0.0}
    before, after = _fails_then_fixed("naive", xlogy_bce, "zero-times-infinite-log", **case)
    assert before.status is Status.NAN and after.status is Status.OK and after.output == 0.0


def test_clipped_float16_epsilon_that_rounds_to_one():
    @bce_audit.formulation(domain="probabilities")
    def clipped_finfo(p, y):
        eps = torch.finfo(p.dtype).eps
        p = torch.clamp(p, eps, 1 - eps)
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))

    case = {"dtypes": "float16", "labels": 1, "quantity": "loss", "at": 1.0}
    before, after = _fails_then_fixed("clipped", clipped_finfo, "clip-epsilon-rounds", **case)
    # the NaN is gone: the clip now keeps p below 1 (its loss is the bound's, which the
    # clip-changes-value pattern then names)
    assert before.status is Status.NAN and math.isfinite(after.output)
    assert after.status is not Status.NAN


def test_clipped_float32_clip_that_changes_the_value():
    case = {"dtypes": "float32", "labels": 1, "quantity": "loss", "at": 0.0}
    before, after = _fails_then_fixed("clipped", xlogy_bce, "clip-changes-value", **case)
    assert before.status is Status.INACCURATE and after.status is Status.OK and after.output == math.inf


def test_softplus_threshold_gradient_where_discards_overflow():
    @bce_audit.formulation(domain="logits")
    def softplus_clamped(z, y, threshold=20.0):
        return torch.where(z > threshold, z, torch.log1p(torch.exp(torch.clamp_max(z, threshold)))) - y * z

    z = _values(DType.FLOAT32, 20.0, 100.0)
    z_inf = _first(z, torch.isinf(torch.exp(z)))
    case = {"dtypes": "float32", "labels": 0, "quantity": "grad", "at": z_inf}
    before, after = _fails_then_fixed("softplus-threshold", softplus_clamped, "where-discards-overflow", **case)
    assert before.status is Status.NAN and after.status is Status.OK and after.output == 1.0


def test_softplus_threshold_float16_log1p_of_exp():
    @bce_audit.formulation(domain="logits")
    def softplus_stable(z, y):
        return -F.logsigmoid(-z) - y * z

    z = _values(DType.FLOAT16, 1.0, 20.0)
    z_inf = _first(z, torch.isinf(torch.exp(z)))  # float16's exp overflows below the threshold
    case = {"dtypes": "float16", "labels": 0, "quantity": "loss", "at": z_inf}
    before, after = _fails_then_fixed("softplus-threshold", softplus_stable, "log1p-of-exp", **case)
    assert before.status is Status.INF and after.status is Status.OK


def test_max_abs_gradient_at_zero():
    case = {"dtypes": "float32", "labels": 0, "quantity": "grad", "at": 0.0}
    before, after = _fails_then_fixed("max-abs", logsigmoid_bce, "subgradient-at-kink", **case)
    assert before.output == 1.0 and after.status is Status.OK and after.output == 0.5


def test_torch_bce_log_clamp():
    tiny = float(torch.finfo(torch.float32).smallest_normal) * 2.0**-23  # the smallest subnormal
    case = {"dtypes": "float32", "labels": 1, "quantity": "loss", "at": tiny}
    before, after = _fails_then_fixed("torch-bce", xlogy_bce, "bce-log-clamp", **case)
    assert before.output == 100.0 and after.status is Status.OK and after.output > 100


def test_torch_bce_with_logits_loss_cancellation():
    z = _values(DType.FLOAT32, -40.0, -5.0)
    loss = F.binary_cross_entropy_with_logits(z, torch.zeros_like(z), reduction="none")
    z_zero = float(z[loss == 0][-1].item())  # the largest z whose loss underflows to 0 (its truth > 0)
    case = {"dtypes": "float32", "labels": 0, "quantity": "loss", "at": z_zero}
    before, after = _fails_then_fixed("torch-bce-with-logits", logsigmoid_bce, "bce-with-logits-cancels", **case)
    assert before.status is Status.ZERO and after.status is Status.OK


def test_torch_bce_with_logits_gradient_sigmoid_minus_label():
    z = _values(DType.FLOAT32, 10.0, 20.0)
    z_one = _first(z, torch.sigmoid(z) == 1)
    case = {"dtypes": "float32", "labels": 1, "quantity": "grad", "at": z_one}
    before, after = _fails_then_fixed("torch-bce-with-logits", logsigmoid_bce, "sigmoid-minus-label", **case)
    assert before.status is Status.ZERO and after.status is Status.OK


def test_torch_logsigmoid_fed_probabilities():
    case = {"dtypes": "float32", "domain": "probabilities", "labels": 0, "quantity": "loss", "at": 0.0}
    before, after = _fails_then_fixed("torch-logsigmoid", xlogy_bce, "logit-of-probability", **case)
    assert before.status is Status.NAN and after.status is Status.OK


def test_every_failure_of_the_built_ins_names_a_fix():
    from bce_audit.formulations.builtins import BUILTINS

    seen = 0
    for name in BUILTINS:
        for e in bce_audit.explain(name, dtypes="float32", domain="both", points=200):
            assert e.status is not Status.OK
            assert e.fixes, f"{name} {e.domain} y={e.label} {e.quantity} at {e.point.value}: {e.cause}"
            seen += 1
    assert seen > 50
