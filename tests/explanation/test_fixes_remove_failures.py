"""For every built-in that the default sweep shows failing: explain a failure (its input derived
from torch), check that the catalogue suggests the rewrite, write that rewrite as a user
formulation, and show with the tool that the failure is gone at the same input."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
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
    # and over a whole sweep of that case the rewrite loses nothing, but for the subnormal losses
    # torch's log_sigmoid kernel itself gives as 0 (a pattern of its own, subnormal-result-lost)
    result = bce_audit.audit(
        [logsigmoid_bce], dtypes="float32", domain="logits", labels=[0.0], points=300, details=True
    )
    for c in result.cases:
        assert c.figures is not None and c.details is not None
        d, n = c.details, c.figures.points  # the finite inputs (the sampled ones) come first
        assert d.truth is not None
        bad = d.statuses[:n] != Status.OK.value
        outputs, truth, tiny = d.outputs[:n][bad], d.truth[:n][bad], DType.FLOAT32.format.smallest_normal
        assert ((outputs == 0) & (truth > 0) & (truth < tiny)).all()
        for x in d.inputs[:n][bad][:2]:
            e = _explain(logsigmoid_bce, dtypes="float32", labels=0, quantity=str(c.quantity), at=float(x))
            assert "subnormal-result-lost" in [f.pattern for f in e.fixes], e.cause


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

    seen: dict[str, int] = {}
    for name, f in BUILTINS.items():
        if f.engine != "torch":  # explain traces torch's ops: the others are refused, in one line
            with pytest.raises(bce_audit.UsageError, match=rf"explain traces torch's aten ops; {name} runs in"):
                bce_audit.explain(name, dtypes="float32", domain="both", points=200)
            continue
        for e in bce_audit.explain(name, dtypes="float32", domain="both", points=200):
            assert e.status is not Status.OK
            assert e.reference == f.reference  # each measured against its own reference
            assert e.fixes, f"{name} {e.domain} y={e.label} {e.quantity} at {e.point.value}: {e.cause}"
            seen[name] = seen.get(name, 0) + 1
    assert sum(seen.values()) > 50
    # the family's built-ins fail too, each failure with a fix named
    assert {"torchvision-focal", "logspace-focal", "label-smoothed-bce"} <= set(seen)


# --- the BCE family: a rewrite audited against the focal reference (a config table declares it) ---

FOCAL = {"reference": "focal", "parameters": {"gamma": 2.0, "alpha": 0.25}}


def _config(tmp_path, function: str, code: str, **table) -> dict:
    """A config (as a dict) with one table: ``function`` in a file of ``code``, measured against the
    reference the table declares (a callable cannot declare one)."""
    path = tmp_path / f"{function}.py"
    path.write_text(textwrap.dedent(code))
    return {"formulations": [{"name": function.replace("_", "-"), "target": f"{path}:{function}@logits", **table}]}


FOCAL_CLAMPED = """
    import math
    import torch
    import torch.nn.functional as F

    def focal_clamped(z, y, gamma, alpha):
        # the rewrite backward-overflow names: the factor from a clamped logit, ce from z itself
        t = 1 - math.log(torch.finfo(z.dtype).smallest_normal * torch.finfo(z.dtype).eps)
        p = torch.sigmoid(z.clamp(-t, t))
        ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        return alpha_t * ce * (1 - p_t) ** gamma
"""


def test_torchvision_focal_gradient_overflow_then_inf_times_zero(tmp_path):
    from bce_audit.engines.torch_builtins import torchvision_focal

    # the first float32 z whose gradient torch computes as NaN (y = 0): the backward's
    # (1-α)·ce·γ = 0.75·z·2 passes float32's max near z = max/1.5
    z = _values(DType.FLOAT32, 2.2e38, 2.4e38).requires_grad_(True)
    (grad,) = torch.autograd.grad(torchvision_focal(z, torch.zeros_like(z), gamma=2.0, alpha=0.25).sum(), z)
    z_nan = _first(z.detach(), torch.isnan(grad))
    max32 = float(torch.finfo(torch.float32).max)
    assert max32 / 1.5 * (1 - 2**-23) <= z_nan <= max32 / 1.5 * (1 + 2**-22)
    config = _config(tmp_path, "focal_clamped", FOCAL_CLAMPED, **FOCAL)
    for at in (z_nan, 3e38, max32):
        case = {"dtypes": "float32", "labels": 0, "quantity": "grad", "at": at}
        before = _explain("torchvision-focal", **case)
        assert before.status is Status.NAN and before.truth == 0.75, before.cause
        assert "backward-overflow" in [f.pattern for f in before.fixes], before.cause
        after = _explain("focal-clamped", config=config, **case)
        assert after.reference == before.reference and after.truth == before.truth
        assert after.status is Status.OK and after.output == 0.75, after.cause
    # the rewrite keeps the loss and the gradient everywhere else: a sweep finds no NaN in its gradient
    result = bce_audit.audit(["focal-clamped"], config=config, dtypes="float32", domain="logits", points=300)
    grads = [c for c in result.cases if str(c.quantity) == "grad"]
    assert grads and all(c.figures is not None and c.figures.nan == 0 for c in grads)


def test_torchvision_focal_gamma_below_one_pow_zero_negative():
    from bce_audit.engines.torch_builtins import torchvision_focal

    # γ = 0.5, y = 1: the first z where torch's 1 - p_t rounds to 0, and γ·0^(γ-1) = inf
    z = _values(DType.FLOAT32, 10.0, 30.0).requires_grad_(True)
    (grad,) = torch.autograd.grad(torchvision_focal(z, torch.ones_like(z), gamma=0.5, alpha=0.25).sum(), z)
    z_nan = _first(z.detach(), torch.isnan(grad))
    assert torch.sigmoid(torch.tensor(z_nan)) == 1
    config = {
        "formulations": [
            {"name": "focal-half", "target": "torchvision-focal", "parameters": {"gamma": 0.5}},
            {"name": "logspace-half", "target": "logspace-focal", "parameters": {"gamma": 0.5}},
        ]
    }
    case = {"config": config, "dtypes": "float32", "labels": 1, "quantity": "grad", "at": z_nan}
    before = _explain("focal-half", **case)
    assert before.status is Status.NAN and before.reference.gamma == 0.5
    fix = next(f for f in before.fixes if f.pattern == "pow-zero-negative")
    assert "pow(0, -0.5) = inf" in fix.title and "F.logsigmoid" in fix.rewrite
    # the log-space factor the fix names (logspace-focal's formulation) has no NaN there
    after = _explain("logspace-half", **case)
    assert after.truth == before.truth and after.status is Status.OK


def test_torch_kernel_that_loses_a_subnormal_result_float64_rewrite():
    @bce_audit.formulation(domain="logits")
    def softplus_threshold_f64(z, y, threshold=20.0):
        z64, y64 = z.double(), y.double()
        return (torch.where(z64 > threshold, z64, torch.log1p(torch.exp(z64))) - y64 * z64).to(z.dtype)

    # where float32's log1p(exp(z)) is 0 and the float64 value rounds to a float32 subnormal
    z = _values(DType.FLOAT32, -110.0, -100.0)
    lost = (torch.log1p(torch.exp(z)) == 0) & (torch.log1p(torch.exp(z.double())).float() != 0)
    z_lost = float(z[lost][-1].item())
    case = {"dtypes": "float32", "labels": 0, "quantity": "loss", "at": z_lost}
    before, after = _fails_then_fixed("softplus-threshold", softplus_threshold_f64, "subnormal-result-lost", **case)
    assert before.status is Status.ZERO and 0 < before.truth < DType.FLOAT32.format.smallest_normal
    assert after.status is Status.OK and after.output == before.truth


LOGSPACE_F64 = """
    import torch
    import torch.nn.functional as F

    def logspace_focal_f64(z, y, gamma, alpha):
        # the rewrite exp-of-log names: the log-space factor in float64, rounded once
        z64, y64 = z.double(), y.double()
        log_m = torch.logaddexp(torch.log(y64) + F.logsigmoid(-z64), torch.log1p(-y64) + F.logsigmoid(z64))
        ce = -(y64 * F.logsigmoid(z64) + (1 - y64) * F.logsigmoid(-z64))
        alpha_t = alpha * y64 + (1 - alpha) * (1 - y64)
        return (alpha_t * ce * torch.exp(gamma * log_m)).to(z.dtype)
"""


def test_logspace_focal_exp_of_log_float64_rewrite(tmp_path):
    # the inputs the sweep finds inaccurate, each explained by the log-space factor
    found = [
        e
        for e in bce_audit.explain("logspace-focal", dtypes="float32", points=200)
        if "exp-of-log" in [f.pattern for f in e.fixes]
    ]
    assert len(found) >= 3 and all(e.status is Status.INACCURATE for e in found)
    config = _config(tmp_path, "logspace_focal_f64", LOGSPACE_F64, **FOCAL)
    for before in found:
        case = {"dtypes": "float32", "labels": before.label, "quantity": str(before.quantity)}
        after = _explain("logspace-focal-f64", config=config, at=before.point.value, **case)
        assert after.truth == before.truth and after.status is Status.OK, after.cause


PW_LOGSIGMOID = """
    import torch.nn.functional as F

    def pw_logsigmoid(z, y, pos_weight):
        return -(pos_weight * y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
"""


def test_pos_weight_gradient_weighted_sigmoid_minus_label(tmp_path):
    # torch's backward with a pos_weight: (w_p*y + 1 - y)*sigmoid(z) - w_p*y, 0 once sigmoid rounds to 1
    z = _values(DType.FLOAT32, 10.0, 40.0).requires_grad_(True)
    pw = torch.tensor(2.0)
    loss = F.binary_cross_entropy_with_logits(z, torch.ones_like(z), pos_weight=pw, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    z_zero = _first(z.detach(), grad == 0)
    rewrite = _config(tmp_path, "pw_logsigmoid", PW_LOGSIGMOID, reference="bce", parameters={"pos_weight": 2.0})
    builtin = {"name": "pw2", "target": "torch-bce-with-logits", "parameters": {"pos_weight": 2.0}}
    config = {"formulations": [builtin, *rewrite["formulations"]]}
    case = {"config": config, "dtypes": "float32", "labels": 1, "quantity": "grad", "at": z_zero}
    before = _explain("pw2", **case)
    assert before.status is Status.ZERO and before.truth < 0, before.cause
    fix = next(f for f in before.fixes if f.pattern == "sigmoid-minus-label")
    assert "pos_weight" in fix.rewrite
    after = _explain("pw-logsigmoid", **case)
    assert after.reference == before.reference and after.status is Status.OK and after.ulp <= 1, after.cause


FOCAL_FIXED = """
    import torch
    import torch.nn.functional as F

    def focal_fixed(z, y, gamma, alpha):
        # the two rewrites explain names for torchvision-focal at |z| = 30: ce from logsigmoid
        # (bce-with-logits-cancels, sigmoid-minus-label), and 1 - p_t without cancellation
        # (one-minus-probability)
        ce = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
        one_minus_p_t = torch.sigmoid(z) * (1 - y) + torch.sigmoid(-z) * y
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        return alpha_t * ce * one_minus_p_t**gamma
"""


@pytest.mark.parametrize(("at", "label"), [(30.0, 1.0), (-30.0, 0.0)])
def test_torchvision_focal_at_large_logits_gets_the_focal_factors_fix_and_it_works(tmp_path, at, label):
    """At z = 30, y = 1 (and z = -30, y = 0) p_t = sigmoid(z) (1 - sigmoid(z)) rounds to 1 in
    float32, so 1 - p_t = 0 and the focal factor with it (derived from torch: sigmoid(30) == 1).
    The fix is for 1 - p_t, never "a probabilities formulation fed logits" (torchvision-focal
    takes logits; its sigmoid(z) is its own), and with the ce fixes it gives the exact values."""
    z = torch.tensor([at], dtype=torch.float32)
    p_t = torch.sigmoid(z) * label + (1 - torch.sigmoid(z)) * (1 - label)
    assert p_t.item() == 1.0 and (1 - p_t).item() == 0.0
    config = _config(tmp_path, "focal_fixed", FOCAL_FIXED, **FOCAL)
    for quantity in ("loss", "grad"):
        case = {"dtypes": "float32", "labels": label, "quantity": quantity, "at": at}
        before = _explain("torchvision-focal", **case)
        assert before.status is Status.ZERO, before.cause
        patterns = [f.pattern for f in before.fixes]
        assert "one-minus-probability" in patterns and "sigmoid-of-logits" not in patterns, patterns
        fix = next(f for f in before.fixes if f.pattern == "one-minus-probability")
        assert "torch.sigmoid(z) * (1 - y) + torch.sigmoid(-z) * y" in fix.rewrite
        # the rewrites named, applied: the exact value, within the threshold
        after = _explain("focal-fixed", config=config, **case)
        assert after.truth == before.truth != 0
        assert after.status is Status.OK, after.cause
        assert math.isclose(after.output, after.truth, rel_tol=2e-6), (after.output, after.truth)


def test_a_probabilities_formulation_fed_logits_is_still_told_so():
    """sigmoid-of-logits names the sweep's own conversion (torch-bce, on probabilities, swept on
    logits), found in the trace: sigmoid(30) rounds to 1 in float32, and the loss with y = 1 is 0."""
    assert torch.sigmoid(torch.tensor(30.0)).item() == 1.0
    (e,) = bce_audit.explain("torch-bce", dtypes="float32", domain="logits", labels=1, quantity="loss", at=30.0)
    assert e.status is Status.ZERO
    assert [f.pattern for f in e.fixes] == ["sigmoid-of-logits"]
    # on its own domain there is no conversion, so no such fix, whatever the formula's ops
    (e,) = bce_audit.explain("torch-bce", dtypes="float32", domain="probabilities", labels=1, quantity="loss", at=1.0)
    assert "sigmoid-of-logits" not in [f.pattern for f in e.fixes]
