"""Run a formulation in torch on a grid: the loss and its autograd gradient, in the dtype.

Everything here (the conversion of the grid into the dtype, the call, the backward pass, the
conversion back) runs in the audit's pinned torch state (``torch_state.pinned``), whatever
state the caller or a user's function left behind.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bce_audit.engines.torch_state import apply, canonical, capture, pinned
from bce_audit.errors import describe
from bce_audit.formulations.builtins import Formulation, adapt
from bce_audit.vocabulary import Domain, DType


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Outputs of one formulation at one (domain, dtype, label), as exact float64 values.

    loss / grad: outputs at each input (NaN-filled when ``error`` is set).
    error: the message of an exception the formulation raised, else None.
    """

    loss: np.ndarray
    grad: np.ndarray
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class GridEvaluation:
    """One formulation on one grid at one label: the finite inputs in one batch (they make the
    statistics), then each non-finite input alone, so that a formulation that rejects NaN (torch's
    BCE raises) does not take the finite points down with it.

    finite: the batch of finite inputs.
    nonfinite: one Evaluation of one point per non-finite input.
    lost: why nothing could be evaluated at all (the process running a user's function died,
        hung past the time limit or ran out of memory); None when it was evaluated. A lost
        evaluation is neither a pass nor a failure: ``bce-audit check`` reports it apart.
    """

    finite: Evaluation
    nonfinite: tuple[Evaluation, ...]
    lost: str | None = None

    @classmethod
    def lost_as(cls, reason: str, n_finite: int, n_nonfinite: int) -> GridEvaluation:
        def nothing(n: int) -> Evaluation:
            nan = np.full(n, np.nan)
            return Evaluation(nan, nan.copy(), error=reason)

        return cls(nothing(n_finite), tuple(nothing(1) for _ in range(n_nonfinite)), lost=reason)


def evaluate(
    formulation: Formulation,
    domain: Domain,
    dtype: DType,
    inputs: np.ndarray,
    label: float,
    device: str = "cpu",
) -> Evaluation:
    """The formulation's loss and gradient at every input, in one batch (one torch call)."""
    with pinned():
        import torch

        tdtype = dtype.format.torch_dtype()
        fn = adapt(formulation, domain)
        # inputs and label are exact values of the dtype: the conversion is exact (and, pinned,
        # never flushes a subnormal input to zero)
        x = torch.tensor(inputs, dtype=torch.float64).to(device=device, dtype=tdtype)
        x.requires_grad_(True)
        y = torch.full_like(x, label, requires_grad=False)
        try:
            return _run(fn, x, y, tdtype)
        except Exception as exc:  # the formulation's own failure is a finding, not a crash
            nan = np.full(len(inputs), np.nan)
            return Evaluation(nan, nan.copy(), error=describe(exc))  # one line: reports and table cells


def evaluate_grid(
    formulation: Formulation,
    domain: Domain,
    dtype: DType,
    finite: np.ndarray,
    nonfinite: np.ndarray,
    label: float,
) -> GridEvaluation:
    """The finite inputs in one batch, then each non-finite input alone (see GridEvaluation)."""
    batch = evaluate(formulation, domain, dtype, finite, label)
    singles = tuple(evaluate(formulation, domain, dtype, np.array([x]), label) for x in nonfinite)
    return GridEvaluation(batch, singles)


def _run(fn, x, y, tdtype) -> Evaluation:
    import torch

    loss = fn(x, y)
    # whatever the function switched, the backward pass and the conversions run pinned too
    apply(canonical(), capture())
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"returned {type(loss).__name__}, expected a torch.Tensor")
    if loss.shape != x.shape:
        raise ValueError(
            f"returned shape {tuple(loss.shape)}, expected {tuple(x.shape)} (the elementwise loss, no reduction)"
        )
    if loss.dtype != tdtype:
        raise ValueError(f"returned dtype {loss.dtype}, expected {tdtype}")
    # Seed the backward pass with ones, not loss.sum(): a reduction could overflow in half
    # precision and would not be the elementwise derivative users get.
    (grad,) = torch.autograd.grad(loss, x, grad_outputs=torch.ones_like(loss))
    return Evaluation(
        loss=loss.detach().to(torch.float64).cpu().numpy(),
        grad=grad.detach().to(torch.float64).cpu().numpy(),
    )
