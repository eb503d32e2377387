"""Run a formulation in torch on a grid: the loss and its autograd gradient, in the dtype."""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np

from bce_audit._exit_codes import describe
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
        with _isolated():
            return _run(fn, x, y, tdtype)
    except Exception as exc:  # the formulation's own failure is a finding, not a crash
        nan = np.full(len(inputs), np.nan)
        return Evaluation(nan, nan.copy(), error=describe(exc))  # one line: reports and table cells


def _run(fn, x, y, tdtype) -> Evaluation:
    import torch

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
    return Evaluation(
        loss=loss.detach().to(torch.float64).cpu().numpy(),
        grad=grad.detach().to(torch.float64).cpu().numpy(),
    )


# The smallest float32 subnormal: multiplied by 1 it is itself, unless denormals are flushed.
_TINY = 1.401298464324817e-45


@functools.cache
def _subnormal():
    """A CPU tensor holding _TINY, made once (flush-denormal is a CPU switch; any default device)."""
    import torch

    return torch.tensor(_TINY, dtype=torch.float32, device="cpu")


def _flushing_denormals() -> bool:
    """Whether denormals are flushed to zero (torch.set_flush_denormal(True)); torch has no getter."""
    return _subnormal().mul(1).item() == 0


@contextlib.contextmanager
def _isolated():
    """Run one formulation in the audit's torch state, and give the caller its own state back.

    Formulations are user code, and torch's switches are global: a function that disables
    autograd, enables anomaly detection (NaN gradients would raise), flushes denormals (subnormal
    results would read as zeros), or changes the default dtype, the default device, the number
    of threads or numpy's error handling would otherwise change the results of every
    formulation after it. Each call starts with autograd on, anomaly detection off and IEEE
    subnormals, and everything is restored afterwards, whatever the function did.
    """
    import torch

    device = _default_device(torch)
    dtype = torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    anomaly = _anomaly(torch)
    flush = _flushing_denormals()
    threads = torch.get_num_threads()
    np_errors = np.geterr()
    try:
        torch.set_grad_enabled(True)
        if anomaly[0]:
            torch.autograd.set_detect_anomaly(False)
        if flush:
            torch.set_flush_denormal(False)
        yield
    finally:
        if _default_device(torch) != device:
            torch.set_default_device(device)
        if torch.get_default_dtype() != dtype:
            torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        if _anomaly(torch) != anomaly:
            torch.autograd.set_detect_anomaly(*anomaly)
        torch.set_flush_denormal(flush)  # a setter cheaper than probing whether it changed
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        np.seterr(**np_errors)


def _default_device(torch):
    return torch.get_default_device() if hasattr(torch, "get_default_device") else None


def _anomaly(torch) -> tuple[bool, bool]:
    """(mode, check_nan): the arguments of torch.autograd.set_detect_anomaly."""
    check_nan = torch.is_anomaly_check_nan_enabled() if hasattr(torch, "is_anomaly_check_nan_enabled") else True
    return torch.is_anomaly_enabled(), check_nan
