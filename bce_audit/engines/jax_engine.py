"""The JAX engine: a formulation's loss and its ``jax.vjp`` gradient, in the dtype, on the CPU.

Every evaluation runs with JAX's 64-bit mode on (without it ``jnp.asarray`` of a float64 array
silently makes float32, and a "float64" audit would measure float32), NaN and inf debugging off
(``jax_debug_nans`` turns a NaN into an exception: a finding would become an error), on JAX's
CPU device, with numpy's error handling at its defaults; the caller's flags are given back
afterwards, whatever the formulation switched. The ops run eagerly, one by one, as they do in a
user's un-jitted loss.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from bce_audit.engines.common import (
    each_nonfinite_alone,
    exact_array,
    failed_evaluation,
    loss_function,
)
from bce_audit.engines.common import numpy_errors as _numpy_errors
from bce_audit.engines.interface import Evaluation, GridEvaluation
from bce_audit.errors import ReducedLoss, is_reduced
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain, DType

Loss = Callable[[Any, Any], Any]

# The JAX flags every evaluation runs under (see the module's docstring).
PINNED_FLAGS: dict[str, bool] = {"jax_enable_x64": True, "jax_debug_nans": False, "jax_debug_infs": False}


@contextlib.contextmanager
def pinned() -> Iterator[None]:
    """JAX's flags and numpy's error handling pinned, the caller's given back on exit."""
    saved = {name: bool(getattr(jax.config, name)) for name in PINNED_FLAGS}
    try:
        for name, value in PINNED_FLAGS.items():
            _config().update(name, value)
        with _numpy_errors(), jax.default_device(cpu_device()):
            yield
    finally:
        for name, value in saved.items():
            _config().update(name, value)


def _config() -> Any:
    """jax.config, whose ``update`` is untyped in some releases."""
    return jax.config


@functools.cache
def cpu_device() -> Any:
    return jax.devices("cpu")[0]


def adapt(loss: Loss, native: Domain, domain: Domain) -> Loss:
    """``loss(x, y)`` with x in ``domain``: the conversion JAX users write is part of the audit."""
    if domain is native:
        return loss
    if domain is Domain.LOGITS:
        return lambda z, y: loss(jax.nn.sigmoid(z), y)
    return lambda p, y: loss(jax.scipy.special.logit(p), y)


def _run(fn: Loss, x: Any, y: Any) -> Evaluation:
    loss, pullback = jax.vjp(lambda v: fn(v, y), x)
    if not isinstance(loss, jax.Array):
        raise TypeError(f"returned {type(loss).__name__}, expected a jax.Array")
    if is_reduced(int(loss.size), int(x.size)):  # a mean or a sum, of any shape
        raise ReducedLoss(tuple(loss.shape), int(x.size))
    if loss.shape != x.shape:
        raise ValueError(
            f"returned shape {tuple(loss.shape)}, expected {tuple(x.shape)} (the elementwise loss, no reduction)"
        )
    if not jnp.issubdtype(loss.dtype, jnp.floating):
        raise ValueError(f"returned dtype {loss.dtype}, expected a floating-point loss")
    # another floating dtype than the input's is audited as it is and recorded (as in the torch engine)
    output_dtype = None if loss.dtype == x.dtype else str(loss.dtype)
    # The cotangent is ones, not the gradient of loss.sum(): a reduction could overflow in half
    # precision and would not be the elementwise derivative users get.
    (grad,) = pullback(jnp.ones_like(loss))
    return Evaluation(
        loss=np.asarray(loss).astype(np.float64),
        grad=np.asarray(grad).astype(np.float64),
        output_dtype=output_dtype,
    )


class JaxEngine:
    """Eager JAX on the CPU, 64-bit mode on (see the module's docstring)."""

    name = "jax"

    def evaluate(
        self, formulation: Formulation, domain: Domain, dtype: DType, inputs: np.ndarray, label: float
    ) -> Evaluation:
        """The formulation's loss and gradient at every input, in one batch."""
        with pinned():
            fn = adapt(loss_function(formulation), formulation.native_domain, domain)
            values = exact_array(inputs, dtype)
            x = jax.device_put(values, cpu_device())
            y = jax.device_put(exact_array(np.full(len(inputs), label), dtype), cpu_device())
            if x.dtype != values.dtype:  # 64-bit mode off after all: never audit float32 as float64
                raise RuntimeError(f"JAX made {x.dtype} of {values.dtype} inputs")
            try:
                return _run(fn, x, y)
            except BaseException as exc:  # noqa: BLE001 - the formulation's own failure is a finding, not a crash
                return failed_evaluation(exc, len(inputs))

    def evaluate_grid(
        self,
        formulation: Formulation,
        domain: Domain,
        dtype: DType,
        finite: np.ndarray,
        nonfinite: np.ndarray,
        label: float,
    ) -> GridEvaluation:
        """The finite inputs in one batch, then each non-finite input alone (see GridEvaluation)."""
        return each_nonfinite_alone(lambda xs: self.evaluate(formulation, domain, dtype, xs, label), finite, nonfinite)

    def provenance(self) -> dict[str, str]:
        return {
            "jax": jax.__version__,
            "jaxlib": metadata.version("jaxlib"),
            "optax": _version("optax"),
            "jax_flags": ", ".join(f"{name}={value}" for name, value in PINNED_FLAGS.items()),
            "jax_device": str(cpu_device().platform),
            "jax_subnormals": _subnormals(),
            "platform": platform.platform(),
        }


def _subnormals() -> str:
    """Whether JAX's CPU arithmetic keeps subnormals: XLA's CPU kernels flush them to zero (the
    conversion of the grid does not, it is checked exact), which users get and the audit reports."""
    with pinned():
        tiny = jax.device_put(np.array([np.finfo(np.float32).smallest_subnormal], np.float32), cpu_device())
        flushed = float(np.asarray(tiny * jnp.ones_like(tiny))[0]) == 0.0
    return "flushed to zero by arithmetic" if flushed else "kept"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
