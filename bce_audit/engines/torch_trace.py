"""A formulation's forward and backward pass at a few inputs, every aten op recorded.

The run goes through a ``TorchDispatchMode`` (the mechanism of torch's own ``FlopCounterMode``
and ``LoggingTensorMode``): every op the formulation calls, and every op autograd's backward
pass calls (``sigmoid_backward``, ``mul``, ``where``, ...), passes through it with its actual
tensors. Each tensor an op gives is remembered (and kept alive, so that no later tensor reuses
its memory), so an argument is traced back to the op that produced it; a saved tensor that
autograd hands back as another tensor object over the same memory is found by its storage.

Layout (``explanation.interface.Layout``): in ``batch`` every point is repeated over a block of
``BATCH_BLOCK`` elements and read at the block's first element, which torch computes in its
vectorized loop; in ``alone`` each point runs as a one-element tensor (the scalar path).

Everything runs in the audit's pinned torch state; the result is JSON-able data
(``Trace.to_wire``), so the sandbox process can send it back for a user's function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bce_audit.engines.common import its_own_failure, loss_function
from bce_audit.engines.torch_engine import adapt, torch_dtype
from bce_audit.engines.torch_state import apply, canonical, capture, pinned
from bce_audit.errors import describe
from bce_audit.explanation.interface import BATCH_BLOCK, Layout, Operand, OperandKind, Phase, Trace, TracedOp
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain, DType


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # pragma: no cover - a tensor without storage
        ptr = id(t)
    return (ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


class _Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's class is untyped
    """Records every op at the elements of interest (see the module's docstring)."""

    def __init__(self, elements: Sequence[int]):
        super().__init__()  # type: ignore[no-untyped-call]
        self.elements = list(elements)
        self.phase = Phase.FORWARD
        self.ops: list[tuple[str, Phase, list[Any], list[torch.Tensor]]] = []
        self.keep: list[torch.Tensor] = []  # every tensor seen, alive until the trace is read
        self.by_id: dict[int, tuple[int, int]] = {}
        self.by_storage: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.names: dict[int, str] = {}

    def name(self, t: torch.Tensor, name: str) -> None:
        self.names[id(t)] = name
        self.keep.append(t)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = list(out) if isinstance(out, tuple | list) else [out]
        tensors = [o for o in outputs if isinstance(o, torch.Tensor)]
        index = len(self.ops)
        arguments = list(args) + list(kwargs.values())
        self.ops.append((str(func), self.phase, arguments, tensors))
        for a in arguments:
            if isinstance(a, torch.Tensor):
                self.keep.append(a)
        for k, t in enumerate(tensors):
            self.keep.append(t)
            self.by_id[id(t)] = (index, k)
            self.by_storage[_storage_key(t)] = (index, k)
        return out

    def source(self, t: torch.Tensor) -> tuple[int, int] | None:
        return self.by_id.get(id(t)) or self.by_storage.get(_storage_key(t))

    def operand(self, a: Any, element: int) -> Operand:
        if isinstance(a, torch.Tensor):
            flat = a.detach().reshape(-1)
            if flat.numel() == 0:
                return Operand(OperandKind.OTHER, text="an empty tensor")
            v = flat[element if flat.numel() > element else 0].item()
            value: float | bool = v if isinstance(v, bool) else float(v)
            name = self.names.get(id(a))
            source = None if name is not None else self.source(a)
            return Operand(OperandKind.TENSOR, value, _dtype_name(a), source, name)
        if a is None:
            return Operand(OperandKind.NONE)
        if isinstance(a, bool):
            return Operand(OperandKind.SCALAR, a)
        if isinstance(a, int | float):
            return Operand(OperandKind.SCALAR, float(a))
        return Operand(OperandKind.OTHER, text=str(a))

    def traced_ops(self, element: int) -> tuple[TracedOp, ...]:
        return tuple(
            TracedOp(
                i,
                name,
                phase,
                tuple(self.operand(a, element) for a in arguments),
                tuple(self.operand(t, element) for t in tensors),
            )
            for i, (name, phase, arguments, tensors) in enumerate(self.ops)
        )


def _input_name(domain: Domain) -> str:
    return "z" if domain is Domain.LOGITS else "p"


def _run(
    formulation: Formulation, domain: Domain, dtype: DType, points: Sequence[float], label: float, block: int
) -> list[Trace]:
    """One traced run of every point (each repeated ``block`` times)."""
    layout = Layout.BATCH if block > 1 else Layout.ALONE
    tdtype = torch_dtype(dtype)
    fn = adapt(loss_function(formulation), formulation.native_domain, domain)
    values = torch.tensor(list(points), dtype=torch.float64).repeat_interleave(block)
    x = values.to(dtype=tdtype).requires_grad_(True)
    y = torch.full_like(x, label, requires_grad=False)
    elements = [i * block for i in range(len(points))]
    recorder = _Recorder(elements)
    recorder.name(x, _input_name(domain))
    recorder.name(y, "y")
    loss: Any = None
    grad: torch.Tensor | None = None
    error = None
    try:
        with recorder:
            loss = fn(x, y)
        # whatever the function switched, the backward pass runs pinned too (outside the trace:
        # restoring the state runs torch ops of its own)
        apply(canonical(), capture())
        if not isinstance(loss, torch.Tensor) or loss.shape != x.shape or loss.dtype != tdtype:
            raise TypeError("did not return the elementwise loss tensor of the input's shape and dtype")
        recorder.phase = Phase.BACKWARD
        with recorder:
            (grad,) = torch.autograd.grad(loss, x, grad_outputs=torch.ones_like(loss))
    except BaseException as exc:  # noqa: BLE001 - the formulation's failure is part of the explanation
        if not its_own_failure(exc):
            raise
        error = describe(exc)
    traces = []
    y_value = float(y[0].item()) if len(y) else label
    # adapt's conversion into the formulation's own domain runs before anything of the formulation's
    conversion = 0 if formulation.native_domain is not domain and recorder.ops else None
    for point, element in zip(points, elements, strict=True):
        ops = recorder.traced_ops(element)
        loss_operand = recorder.operand(loss, element) if isinstance(loss, torch.Tensor) else None
        grad_operand = recorder.operand(grad, element) if grad is not None else None
        traces.append(Trace(float(point), y_value, layout, ops, loss_operand, grad_operand, error, conversion))
    return traces


def trace_points(
    formulation: Formulation,
    domain: Domain,
    dtype: DType,
    points: Sequence[float],
    label: float,
    layout: Layout,
) -> list[dict[str, Any]]:
    """The trace of the formulation at each point (exact values of the dtype), as wire data
    (``Trace.to_wire``): in ``batch`` layout all points in one run, in ``alone`` one run each."""
    with pinned():
        if layout is Layout.BATCH:
            traces = _run(formulation, domain, dtype, points, label, BATCH_BLOCK)
        else:
            traces = [t for p in points for t in _run(formulation, domain, dtype, [p], label, 1)]
    return [t.to_wire() for t in traces]
