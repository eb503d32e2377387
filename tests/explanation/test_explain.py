"""`explain` on each built-in's known failure: the failing input is derived from torch itself
(dense scans), and the chain, the cause and the fix must name what broke."""

from __future__ import annotations

import math

import numpy as np
import torch

import bce_audit
from bce_audit.explanation.interface import Layout, Phase, Verdict
from bce_audit.floats import from_ordinal, ordinal, round_float
from bce_audit.report.explanation import render_explanation
from bce_audit.vocabulary import DType, Quantity, Status

F32 = DType.FLOAT32.format


def _float32_values(lo: float, hi: float) -> torch.Tensor:
    """Every float32 in [lo, hi], in one tensor (torch's vectorized loop, as in a batch)."""
    o = ordinal(np.array([lo, hi]), F32)
    return torch.tensor(from_ordinal(np.arange(o[0], o[1] + 1), F32), dtype=torch.float32)


def first_where(values: torch.Tensor, mask: torch.Tensor) -> float:
    assert mask.any() and not mask[0]
    return float(values[mask][0].item())


def chain_names(e: bce_audit.Explanation) -> list[str]:
    return [a.op.op for a in e.chain_ops()]


def one(formulation, **kw) -> bce_audit.Explanation:
    (e,) = bce_audit.explain(formulation, **kw)
    return e


def test_naive_float32_loss_is_lost_where_sigmoid_rounds_to_one():
    z = _float32_values(10.0, 20.0)
    z_one = first_where(z, torch.sigmoid(z) == 1)  # the first z whose float32 sigmoid is 1
    e = one("naive", dtypes="float32", domain="logits", labels=0, quantity="loss", at=z_one)
    assert e.point.value == z_one and e.layout is Layout.BATCH
    assert e.status is Status.INF and e.output == math.inf and math.isfinite(e.truth)
    names = chain_names(e)
    # sigmoid -> rsub -> log, in that order, then to the output
    assert names[:3] == ["sigmoid", "rsub", "log"]
    first = {a.op.index: a for a in e.ops}[e.first]
    assert first.op.op == "rsub" and first.damaged
    assert first.op.outputs[0].value == 0.0 and first.ideal is not None and first.ideal > 0  # 1 - sigmoid(z) > 0
    sigmoid = e.chain_ops()[0]
    assert sigmoid.op.outputs[0].value == 1.0 and sigmoid.exact_shown < 1.0  # the exact value is below 1
    assert "rsub: 1 - 1 = 0, exact" in e.cause and "log(0) = -inf, exact" in e.cause
    assert e.cause.endswith(f"the loss is inf (exact {e.cause.split('(exact ')[-1]}")
    assert [f.pattern for f in e.fixes] == ["log-of-sigmoid"]
    assert "F.logsigmoid(-z)" in e.fixes[0].rewrite


def test_softplus_threshold_gradient_nan_comes_from_the_discarded_branch():
    z = _float32_values(20.0, 100.0)
    z_inf = first_where(z, torch.isinf(torch.exp(z)))  # the first z where float32 exp overflows
    e = one("softplus-threshold", dtypes="float32", labels=0, quantity="grad", at=z_inf)
    assert e.status is Status.NAN and math.isnan(e.output) and e.truth == 1.0
    chain = e.chain_ops()
    assert chain[0].op.op == "exp" and chain[0].op.phase is Phase.FORWARD
    assert chain[0].op.outputs[0].value == math.inf and math.isfinite(chain[0].exact_shown)
    nan_maker = next(a for a in chain if a.op.phase is Phase.BACKWARD)
    assert nan_maker.op.op == "mul" and [o.value for o in nan_maker.op.inputs] == [0.0, math.inf]
    assert math.isnan(nan_maker.op.outputs[0].value)
    assert "in the branch that where() discards" in e.cause and "0 * inf = NaN" in e.cause
    assert e.cause.startswith("exp(") and "dL/dz is NaN" in e.cause
    assert [f.pattern for f in e.fixes] == ["where-discards-overflow"]
    # below the overflow the same gradient is right
    below = float(np.nextafter(np.float32(z_inf), np.float32(0)))
    assert one("softplus-threshold", dtypes="float32", labels=0, quantity="grad", at=below).status is Status.OK


def test_max_abs_gradient_at_zero_is_the_subgradient_of_abs_and_clamp():
    e = one("max-abs", dtypes="float32", labels=0, quantity="grad", at=0.0)
    assert e.truth == 0.5 and e.output == 1.0 and e.status is Status.INACCURATE
    # every op computed its exact result: the program itself is what differs
    assert e.first is None
    assert all(a.verdict in (Verdict.EXACT, Verdict.ROUNDED) for a in e.ops if a.op.index in e.chain)
    assert {f.pattern for f in e.fixes} == {"subgradient-at-kink"}
    assert {e.ops[f.culprit].op.op for f in e.fixes} == {"abs", "clamp_min"}
    backward = [a.op.op for a in e.chain_ops() if a.op.phase is Phase.BACKWARD]
    assert "sgn" in backward  # abs's backward: sgn(0) = 0
    # away from the kink the gradient is right
    assert one("max-abs", dtypes="float32", labels=0, quantity="grad", at=0.5).status is Status.OK


def test_clipped_float16_epsilon_rounds_to_one():
    eps = 1e-7
    bound = torch.tensor(1 - eps, dtype=torch.float16).item()
    assert bound == 1.0  # derived from torch: 1 - 1e-7 is 1 in float16
    assert round_float(1 - eps, DType.FLOAT16.format) == 1.0
    e = one("clipped", dtypes="float16", labels=1, quantity="loss", at=1.0)
    assert e.status is Status.NAN and e.truth == 0.0
    names = chain_names(e)
    assert names[:3] == ["clamp", "rsub", "log"]
    assert "clip-epsilon-rounds" in [f.pattern for f in e.fixes]
    clip = next(f for f in e.fixes if f.pattern == "clip-epsilon-rounds")
    assert "rounds to 1 in float16" in clip.title
    # in float32 the same bound is below 1: no such pattern there
    e32 = one("clipped", dtypes="float32", labels=1, quantity="loss", at=1.0)
    assert "clip-epsilon-rounds" not in [f.pattern for f in e32.fixes]


def test_an_op_without_a_model_is_not_analysed():
    @bce_audit.formulation(domain="logits")
    def with_erfc(z, y):
        return torch.special.erfc(z) * 0 - y * z + torch.clamp_min(z, 0) + torch.log1p(torch.exp(-torch.abs(z)))

    e = one(with_erfc, dtypes="float32", labels=0, quantity="loss", at=3.0)
    erfc = next(a for a in e.ops if a.op.op == "erfc")
    assert erfc.verdict is Verdict.NOT_ANALYSED and math.isnan(erfc.exact)
    assert e.not_analysed == ("erfc",)
    assert any("not analysed" in line and "erfc" in line for line in render_explanation(e))


def test_alone_and_batch_layouts_are_both_explicit():
    e = one("naive", dtypes="float32", domain="logits", labels=0, quantity="loss", at=3.0, layout="alone")
    assert e.layout is Layout.ALONE
    (b,) = bce_audit.explain("naive", dtypes="float32", domain="logits", labels=0, quantity="loss", at=3.0)
    assert b.layout is Layout.BATCH
    # the batch output is torch's own in a large tensor; the alone output is torch's on one element
    x = torch.full((1024,), 3.0, dtype=torch.float32)
    p = torch.sigmoid(x)
    assert b.output == float(-torch.log(1 - p)[0])


def test_the_cause_is_one_line_for_every_explanation():
    for e in bce_audit.explain("torch-bce", dtypes="float32", labels=1, points=200):
        assert e.cause and "\n" not in e.cause
        assert e.status is not Status.OK
        assert e.quantity in (Quantity.LOSS, Quantity.GRAD)


def test_sweep_points_are_failing_inputs_at_the_stable_range_edges_and_match_the_sweep():
    from bce_audit.explanation.run import Case, explain_points, sweep_points
    from bce_audit.formulations.builtins import BUILTINS
    from bce_audit.vocabulary import Domain

    result = bce_audit.audit(["naive"], dtypes="float32", domain="logits", labels=[0.0], points=300, details=True)
    (case,) = [c for c in result.cases if c.quantity is Quantity.LOSS]
    points = sweep_points(case)
    n = case.figures.points
    inputs, outputs, statuses = case.details.inputs[:n], case.details.outputs[:n], case.details.statuses[:n]
    by_input = dict(zip(inputs.tolist(), zip(outputs.tolist(), statuses.tolist(), strict=True), strict=True))
    assert points and all(by_input[p.value][1] != "ok" for p in points)
    above = next(p for p in points if "above" in p.why)
    # the first failure above the stable range: every sampled input between them is ok
    between = (inputs > case.figures.stable_hi) & (inputs < above.value)
    assert not between.any()
    assert above.value > case.figures.stable_hi
    explained = explain_points(
        Case(BUILTINS["naive"], Domain.LOGITS, DType.FLOAT32, 0.0, Quantity.LOSS), points, threshold=4.0
    )
    for p, e in zip(points, explained, strict=True):
        swept = by_input[p.value][0]
        # the sweep computed the point inside its batch: the batch layout, or the scalar tail
        assert _same(e.output, swept) or (e.alone_output is not None and _same(e.alone_output, swept))
        assert e.status is Status(by_input[p.value][1])


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
