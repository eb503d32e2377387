"""Run a formulation in torch on a grid: the loss and its autograd gradient, in the dtype."""

from __future__ import annotations

import dataclasses

import numpy as np

from bce_audit._types import Domain, DType
from bce_audit.formulations import Formulation, adapt


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Outputs of one formulation at one (domain, dtype, label), as exact float64 values.

    loss / grad: outputs at each input (NaN-filled when ``error`` is set).
    error: the message of an exception the formulation raised, else None.
    """

    loss: np.ndarray
    grad: np.ndarray
    error: str | None = None


def evaluate(
    formulation: Formulation,
    domain: Domain,
    dtype: DType,
    inputs: np.ndarray,
    label: float,
    device: str = "cpu",
) -> Evaluation:
    import torch

    tdtype = dtype.format.torch_dtype()
    fn = adapt(formulation, domain)
    # inputs and label are exact values of the dtype: the conversion is exact.
    x = torch.tensor(inputs, dtype=torch.float64).to(device=device, dtype=tdtype)
    x.requires_grad_(True)
    y = torch.full_like(x, label, requires_grad=False)
    try:
        # enable_grad restores the grad mode on exit: a formulation that switches autograd off
        # globally fails its own case, not every case after it.
        with torch.enable_grad():
            loss = fn(x, y)
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
    except Exception as exc:  # the formulation's own failure is a finding, not a crash
        nan = np.full(len(inputs), np.nan)
        # one line: the message goes into table cells and one-line reports
        message = " ".join(str(exc).split())
        return Evaluation(nan, nan.copy(), error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    return Evaluation(
        loss=loss.detach().to(torch.float64).cpu().numpy(),
        grad=grad.detach().to(torch.float64).cpu().numpy(),
    )
