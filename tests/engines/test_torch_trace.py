"""The dispatch-level trace: every forward and backward op, its values at the point, and where
each argument came from."""

from __future__ import annotations

import math

import torch

from bce_audit.engines.torch_trace import trace_points
from bce_audit.explanation.graph import producer
from bce_audit.explanation.interface import BATCH_BLOCK, Layout, Phase, Trace
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.vocabulary import Domain, DType


def _trace(name: str, points, layout=Layout.BATCH, label=0.0, dtype=DType.FLOAT32) -> list[Trace]:
    formulation = BUILTINS[name]
    wires = trace_points(formulation, formulation.native_domain, dtype, points, label, layout)
    return [Trace.from_wire(w) for w in wires]


def test_forward_and_backward_ops_with_their_values_and_sources():
    (t,) = _trace("softplus-threshold", [3.0])
    names = [(op.op, op.phase) for op in t.ops]
    assert ("exp", Phase.FORWARD) in names and ("log1p", Phase.FORWARD) in names and ("where", Phase.FORWARD) in names
    assert any(phase is Phase.BACKWARD for _, phase in names)
    exp = next(op for op in t.ops if op.op == "exp")
    assert exp.inputs[0].name == "z" and exp.inputs[0].value == 3.0
    assert exp.outputs[0].value == float(torch.exp(torch.tensor(3.0)))
    # the backward's use of exp's saved output is traced back to exp, through autograd's detach
    backward_uses = [op for op in t.ops if op.phase is Phase.BACKWARD for o in op.inputs if producer(t, o) is exp]
    assert backward_uses
    # the outputs: the loss from the last forward op, the gradient from the last backward op
    assert t.loss is not None and t.grad is not None
    assert t.ops[t.loss.source[0]].phase is Phase.FORWARD
    assert t.ops[t.grad.source[0]].phase is Phase.BACKWARD
    z = torch.tensor([3.0] * 8, requires_grad=True)
    loss = torch.where(z > 20, z, torch.log1p(torch.exp(z))) - 0 * z
    (grad,) = torch.autograd.grad(loss, z, torch.ones_like(loss))
    assert t.loss.value == float(loss.detach()[0]) and t.grad.value == float(grad[0])


def test_several_points_in_one_batch_and_alone():
    points = [-3.0, 0.5, 89.0]
    batch = _trace("softplus-threshold", points)
    alone = _trace("softplus-threshold", points, Layout.ALONE)
    assert [t.point for t in batch] == points and [t.layout for t in batch] == [Layout.BATCH] * 3
    assert [t.layout for t in alone] == [Layout.ALONE] * 3
    assert math.isnan(batch[2].grad.value) and math.isnan(alone[2].grad.value)
    assert BATCH_BLOCK % 64 == 0
    for b, a in zip(batch, alone, strict=True):
        assert [op.name for op in b.ops] == [op.name for op in a.ops]


def test_wire_round_trip_is_exact():
    (t,) = _trace("naive", [0.1], dtype=DType.FLOAT16)
    again = Trace.from_wire(t.to_wire())
    assert again == t


def test_a_formulation_that_raises_is_a_trace_with_its_error():
    import bce_audit

    @bce_audit.formulation(domain="logits")
    def broken(z, y):
        raise ValueError("no")

    from bce_audit.formulations.user import formulation_of_callable

    f = formulation_of_callable(broken)
    (wire,) = trace_points(f, Domain.LOGITS, DType.FLOAT32, [1.0], 0.0, Layout.BATCH)
    t = Trace.from_wire(wire)
    assert t.error == "ValueError: no" and t.loss is None and t.grad is None
