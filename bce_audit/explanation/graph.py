"""Reading a trace as a graph: which op produced an argument, seen through copies."""

from __future__ import annotations

from bce_audit.explanation.interface import Operand, OperandKind, Phase, Trace, TracedOp

# Ops that only copy or re-view their input (autograd's saved tensors come back through detach):
# the chain and the patterns look through them, and the chain does not show them.
COPY_OPS = frozenset({"detach", "alias", "clone", "view", "expand", "contiguous", "lift_fresh", "_to_copy"})


def producer(trace: Trace, operand: Operand, through_copies: bool = True) -> TracedOp | None:
    """The op that produced ``operand`` (looking through copies), None for an input or a constant."""
    seen = 0
    while operand.source is not None and seen < len(trace.ops):
        op = trace.ops[operand.source[0]]
        if not through_copies or op.op not in COPY_OPS or not op.inputs:
            return op
        operand = op.inputs[0]
        seen += 1
    return None


def tensor_inputs(op: TracedOp) -> list[Operand]:
    return [o for o in op.inputs if o.kind is OperandKind.TENSOR]


def scalar(operand: Operand) -> float | None:
    """A Python number argument, or the element of a 0-dim constant tensor (``scalar_tensor``)."""
    if operand.kind is OperandKind.SCALAR and isinstance(operand.value, float):
        return operand.value
    return None


def forward_ops(trace: Trace) -> list[TracedOp]:
    return [op for op in trace.ops if op.phase is Phase.FORWARD]


def consumers(trace: Trace) -> dict[int, list[int]]:
    """op index -> the indices of the ops that take one of its outputs."""
    found: dict[int, list[int]] = {}
    for op in trace.ops:
        for operand in op.inputs:
            if operand.source is not None:
                found.setdefault(operand.source[0], []).append(op.index)
    return found


def dependencies(trace: Trace, index: int) -> set[int]:
    """Every op the output of op ``index`` depends on, itself included."""
    todo, found = [index], set()
    while todo:
        i = todo.pop()
        if i in found:
            continue
        found.add(i)
        todo += [o.source[0] for o in trace.ops[i].inputs if o.source is not None]
    return found
