"""The torch engine: a formulation's loss and its autograd gradient, in the dtype, on the CPU.

Everything here (the conversion of the grid into the dtype, the call, the backward pass, the
conversion back) runs in the audit's pinned torch state (``torch_state.pinned``), whatever state
the caller or a user's function left behind.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bce_audit.engines.common import contained, implementation, its_own_failure
from bce_audit.engines.interface import Evaluation, GridEvaluation
from bce_audit.engines.torch_state import apply, canonical, capture, pinned
from bce_audit.errors import ReducedLoss, describe
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain, DType

Loss = Callable[[torch.Tensor, torch.Tensor], Any]


def torch_dtype(dtype: DType) -> torch.dtype:
    result: torch.dtype = getattr(torch, dtype.value)
    return result


def loss_function(formulation: Formulation) -> Loss:
    """``loss(x, y)`` for a formulation that runs in this process, its parameters bound."""
    parameters = dict(formulation.parameters)
    if formulation.implementation is not None:  # a built-in: our own code
        return functools.partial(implementation(formulation.implementation), **parameters)
    if formulation.function is not None:
        return contained(formulation.function, parameters, formulation.calling)
    raise ValueError(f"{formulation.name}: a user's target runs in the sandbox, not here")


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


def _run(fn: Loss, x: torch.Tensor, y: torch.Tensor, tdtype: torch.dtype) -> Evaluation:
    loss = fn(x, y)
    # whatever the function switched, the backward pass and the conversions run pinned too
    apply(canonical(), capture())
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"returned {type(loss).__name__}, expected a torch.Tensor")
    if loss.ndim == 0:
        raise ReducedLoss(tuple(loss.shape), x.numel())
    if loss.shape != x.shape:
        raise ValueError(
            f"returned shape {tuple(loss.shape)}, expected {tuple(x.shape)} (the elementwise loss, no reduction)"
        )
    if not loss.dtype.is_floating_point:
        raise ValueError(f"returned dtype {loss.dtype}, expected a floating-point loss")
    grad = elementwise_grad(loss, x)
    # a loss in another dtype than its input (float64 in, float32 out) is audited as it is: its
    # values are exact in float64 and compared with the truth rounded into the input's dtype
    # (what the caller asked for); the dtype it returned is recorded, a finding of its own
    output_dtype = None if loss.dtype == tdtype else str(loss.dtype).removeprefix("torch.")
    return Evaluation(
        loss=loss.detach().to(torch.float64).cpu().numpy(),
        grad=grad.detach().to(torch.float64).cpu().numpy(),
        output_dtype=output_dtype,
    )


class TorchEngine:
    """Eager torch on the CPU (see the module's docstring)."""

    name = "torch"

    def evaluate(
        self,
        formulation: Formulation,
        domain: Domain,
        dtype: DType,
        inputs: np.ndarray,
        label: float,
        device: str = "cpu",
    ) -> Evaluation:
        """The formulation's loss and gradient at every input, in one batch (one torch call)."""
        with pinned():
            tdtype = torch_dtype(dtype)
            fn = adapt(loss_function(formulation), formulation.native_domain, domain)
            # inputs and label are exact values of the dtype: the conversion is exact (and,
            # pinned, never flushes a subnormal input to zero)
            x = torch.tensor(inputs, dtype=torch.float64).to(device=device, dtype=tdtype)
            x.requires_grad_(True)
            y = torch.full_like(x, label, requires_grad=False)
            try:
                return _run(fn, x, y, tdtype)
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
    ) -> GridEvaluation:
        """The finite inputs in one batch, then each non-finite input as if alone (see GridEvaluation)."""
        batch = self.evaluate(formulation, domain, dtype, finite, label)
        return GridEvaluation(batch, self._each_alone(formulation, domain, dtype, nonfinite, label))

    def _each_alone(
        self, formulation: Formulation, domain: Domain, dtype: DType, inputs: np.ndarray, label: float
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
            together = self.evaluate(formulation, domain, dtype, inputs, label)
            if together.error is None:
                return tuple(
                    Evaluation(together.loss[i : i + 1].copy(), together.grad[i : i + 1].copy())
                    for i in range(len(inputs))
                )
        return tuple(self.evaluate(formulation, domain, dtype, np.array([x]), label) for x in inputs)

    def provenance(self) -> dict[str, str]:
        return {
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(),
            "device": "cpu",
        }
