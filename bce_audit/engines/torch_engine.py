"""The torch engine: a formulation's loss and its autograd gradient, in the dtype, on a device.

Each execution mode (``vocabulary.Mode``) runs the same function its own way: eager calls it on
the batch; vmap maps the function of one element over the batch with ``torch.func.vmap``, its
derivative by ``torch.func.grad`` inside the map (``vmap(grad_and_value(f))``: torch.func's own
composition, so the gradient too is what a per-sample-gradient user gets, not autograd's backward
of the batched graph); autocast runs the forward under ``torch.autocast`` to bfloat16 and the
backward outside it, as autograd replays the forward's casts (torch's documented use), and says
which dtype the loss came back in; compile runs the function compiled by ``torch.compile``
(inductor), one compiled callable per (formulation, dtype, domain, device) reused for every label
(the label is a tensor input) and every batch size (marked dynamic), its backward compiled with it.

Everything here (the conversion of the grid into the dtype, the call, the backward pass, the
conversion back) runs in the audit's pinned torch state (``torch_state.pinned``), whatever state
the caller or a user's function left behind.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bce_audit.engines.common import its_own_failure, loss_function
from bce_audit.engines.interface import Evaluation, GridEvaluation
from bce_audit.engines.torch_state import apply, canonical, capture, pinned
from bce_audit.errors import ReducedLoss, UsageError, describe, is_reduced
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Device, Domain, DType, Mode

Loss = Callable[[torch.Tensor, torch.Tensor], Any]


def torch_dtype(dtype: DType) -> torch.dtype:
    result: torch.dtype = getattr(torch, dtype.value)
    return result


def adapt(loss: Loss, native: Domain, domain: Domain) -> Loss:
    """``loss(x, y)`` with x in ``domain``: the conversion users write is part of the audit."""
    if domain is native:
        return loss
    if domain is Domain.LOGITS:
        return lambda z, y: loss(torch.sigmoid(z), y)
    return lambda p, y: loss(torch.logit(p), y)


def elementwise_grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d loss[i] / d x[i] for an elementwise loss: the backward pass seeded with ones.

    The seed reaches the loss's own backward as ``torch.ones_like(loss)``, as it does through
    ``torch.autograd.grad(loss, x, grad_outputs=ones)``, but by way of the scalar root
    ``(loss * ones).sum()``: torch imports its symbolic-shapes machinery (sympy among it, a
    third of a second) the first time ``grad_outputs`` is given, and never for a scalar root.
    The sum's backward broadcasts 1 and the product's multiplies it by the ones, so the loss's
    backward gets a contiguous tensor of ones in the loss's dtype, exactly the same seed; the
    sum itself may overflow in half precision, and nothing reads it. A tensor subclass (whose
    ``*`` may be anything) takes torch's documented path.
    """
    ones = torch.ones_like(loss)
    if type(loss) is not torch.Tensor or not loss.requires_grad:
        (grad,) = torch.autograd.grad(loss, x, grad_outputs=ones)
    else:
        (grad,) = torch.autograd.grad((loss * ones).sum(), x)
    return grad


def _checked(loss: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """The loss, once it is a floating-point tensor of the shape expected. Its dtype may differ from
    the input's (autocast computes in another; a user's loss may return float32 for float64): it
    is audited as it is, and the dtype recorded. Fewer values than inputs (a scalar for a batch, a
    row's mean) is a loss that reduces."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"returned {type(loss).__name__}, expected a torch.Tensor")
    if is_reduced(loss.numel(), math.prod(shape)):  # a mean or a sum, of any shape (a row's mean: (1,) for (1, N))
        raise ReducedLoss(tuple(loss.shape), math.prod(shape))
    if tuple(loss.shape) != shape:
        raise ValueError(f"returned shape {tuple(loss.shape)}, expected {shape} (the elementwise loss, no reduction)")
    if not loss.dtype.is_floating_point:
        raise ValueError(f"returned dtype {loss.dtype}, expected a floating-point loss")
    return loss


def _exact(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as float64 on the CPU (exact: float64 holds every value of the four dtypes)."""
    result: np.ndarray = t.detach().to(torch.float64).cpu().numpy()
    return result


def _run(
    fn: Loss, x: torch.Tensor, y: torch.Tensor, tdtype: torch.dtype, mode: Mode = Mode.EAGER, trusted: bool = False
) -> Evaluation:
    """trusted: fn is a built-in's, which switches nothing (a user's function may switch anything)."""
    if mode is Mode.VMAP:
        return _run_vmap(fn, x, y, tdtype)
    if mode is Mode.AUTOCAST:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            loss = fn(x, y)
    else:
        loss = fn(x, y)
    if not trusted:  # whatever the function switched, the backward pass and the conversions run pinned too
        apply(canonical(), capture())
    loss = _checked(loss, tuple(x.shape))
    grad = elementwise_grad(loss, x)
    # a loss in another dtype than its input (autocast; float64 in, float32 out) is audited as it
    # is: its values are exact in float64 and compared with the truth rounded into the input's
    # dtype (what the caller asked for); the dtype it returned is recorded, a finding of its own
    output_dtype = None if loss.dtype == tdtype else str(loss.dtype).removeprefix("torch.")
    return Evaluation(loss=_exact(loss), grad=_exact(grad), output_dtype=output_dtype)


def _run_vmap(fn: Loss, x: torch.Tensor, y: torch.Tensor, tdtype: torch.dtype) -> Evaluation:
    """vmap(grad_and_value(f)) with f the loss of one element (a 0-d tensor in, a 0-d tensor out)."""

    def one(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return _checked(fn(xi, yi), ())

    grad, loss = torch.func.vmap(torch.func.grad_and_value(one))(x.detach(), y)
    apply(canonical(), capture())
    return Evaluation(loss=_exact(loss), grad=_exact(grad))


# (implementation or function, parameters, dtype, domain, device) -> the compiled loss(x, y)
_COMPILED: dict[tuple[object, ...], Loss] = {}


def _compiled(formulation: Formulation, domain: Domain, dtype: DType, device: str) -> Loss:
    """One compiled callable per (formulation, dtype, domain adapter, device), reused for every
    label and batch size: compiling takes seconds per graph, running it microseconds."""
    code = formulation.implementation or formulation.function  # two functions may share a name
    key = (code, formulation.parameters, dtype, domain, device)
    if key not in _COMPILED:
        import torch._dynamo

        # Past dynamo's recompile limit (per code object: the domain adapters' lambdas serve every
        # formulation) it would run the function eagerly without a word, passing eager figures off
        # as the compiled ones: a raise instead (error rows), and room for every built-in's graphs.
        # Marked dynamic, one graph serves every batch size.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        fn = adapt(loss_function(formulation), formulation.native_domain, domain)
        _COMPILED[key] = torch.compile(fn, backend="inductor", dynamic=True)
    return _COMPILED[key]


def check_device(device: Device) -> None:
    """Raise a UsageError (one line, exit 2) when torch has no such device here."""
    if device is Device.CUDA and not torch.cuda.is_available():
        raise UsageError("no CUDA device: torch.cuda.is_available() is False")
    if device is Device.MPS and not torch.backends.mps.is_available():
        raise UsageError("no MPS device: torch.backends.mps.is_available() is False")


class TorchEngine:
    """Eager torch on the CPU (see the module's docstring)."""

    name = "torch"

    def evaluate(
        self,
        formulation: Formulation,
        domain: Domain,
        dtype: DType,
        inputs: np.ndarray,
        label: float | np.ndarray,
        mode: Mode = Mode.EAGER,
        device: Device = Device.CPU,
    ) -> Evaluation:
        """The formulation's loss and gradient at every input, in one batch (one torch call).
        label: one label for every input, or one per input (an array as long as ``inputs``)."""
        # a built-in switches nothing, except through torch.compile's machinery
        with pinned(trusted=formulation.implementation is not None and mode is not Mode.COMPILE):
            tdtype = torch_dtype(dtype)
            try:
                if mode is Mode.COMPILE:
                    fn = _compiled(formulation, domain, dtype, str(device))
                else:
                    fn = adapt(loss_function(formulation), formulation.native_domain, domain)
            except Exception as exc:  # noqa: BLE001 - torch.compile unavailable here: error rows, with why
                nan = np.full(len(inputs), np.nan)
                return Evaluation(nan, nan.copy(), error=describe(exc))
            # inputs and label are exact values of the dtype: the conversion is exact (and,
            # pinned, never flushes a subnormal input to zero)
            x = torch.tensor(inputs, dtype=torch.float64).to(device=str(device), dtype=tdtype)
            x.requires_grad_(True)
            if isinstance(label, np.ndarray):
                y = torch.tensor(label, dtype=torch.float64).to(device=str(device), dtype=tdtype)
            else:
                y = torch.full_like(x, label, requires_grad=False)
            try:
                return _run(fn, x, y, tdtype, mode, trusted=formulation.implementation is not None)
            except BaseException as exc:  # noqa: BLE001 - the formulation's own failure is a finding, not a crash
                if not its_own_failure(exc):
                    raise
                nan = np.full(len(inputs), np.nan)
                return Evaluation(nan, nan.copy(), error=describe(exc))  # one line: reports, cells

    def evaluate_grid(
        self,
        formulation: Formulation,
        domain: Domain,
        dtype: DType,
        finite: np.ndarray,
        nonfinite: np.ndarray,
        label: float,
        mode: Mode = Mode.EAGER,
        device: Device = Device.CPU,
    ) -> GridEvaluation:
        """The finite inputs in one batch, then each non-finite input as if alone (see
        GridEvaluation), in the execution mode on the device (see the module's docstring)."""
        batch = self.evaluate(formulation, domain, dtype, finite, label, mode, device)
        return GridEvaluation(batch, self._each_alone(formulation, domain, dtype, nonfinite, label, mode, device))

    def _each_alone(
        self,
        formulation: Formulation,
        domain: Domain,
        dtype: DType,
        inputs: np.ndarray,
        label: float,
        mode: Mode = Mode.EAGER,
        device: Device = Device.CPU,
    ) -> tuple[Evaluation, ...]:
        """One Evaluation per input, each what the input gives when evaluated alone.

        A built-in's inputs go in one call, which saves a call per point (the ±inf and NaN of
        every grid, at every label): its code is our own and elementwise, so a point's outputs
        do not depend on its neighbours (tests/engines/test_torch_engine.py checks them bit for
        bit against the points alone, at every dtype, domain and label), and it raises only
        when some point is invalid (torch's BCE on NaN). When that call raises, each input is
        evaluated alone, so the error lands only on the points that cause it. A user's
        function may look at the whole batch (its size, a mean): its points always go alone.
        """
        if formulation.implementation is not None and len(inputs) > 1:
            together = self.evaluate(formulation, domain, dtype, inputs, label, mode, device)
            if together.error is None:
                return tuple(
                    Evaluation(
                        together.loss[i : i + 1].copy(), together.grad[i : i + 1].copy(), None, together.output_dtype
                    )
                    for i in range(len(inputs))
                )
        return tuple(self.evaluate(formulation, domain, dtype, np.array([x]), label, mode, device) for x in inputs)

    def provenance(self) -> dict[str, str]:
        return {
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(),
            "device": "cpu",
        }
