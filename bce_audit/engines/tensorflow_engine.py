"""The TensorFlow engine: a formulation's loss and its ``tf.GradientTape`` gradient, in the dtype,
on the CPU; and the Keras engine, the same on Keras 3's TensorFlow backend.

The gradient is ``tape.gradient(loss, x, output_gradients=ones)``: TensorFlow's registered
gradient of each op, chained, which is what TF users get. ``tf.nn.sigmoid_cross_entropy_with_logits``
is not one op with a gradient of its own: it is ``max(z, 0) - z*y + log1p(exp(-abs(z)))`` written
with ``tf.where(z >= 0, ...)``, so at z = 0 the tape takes the z >= 0 branch of both terms and
gives 1 - y - 1/2 = 1/2 - y, where torch autograd, differentiating ``clamp_min`` and ``abs`` of the
same formula (``max-abs``), gives 1 - y (abs' (0) = 0). TensorFlow is
imported with its C++ logging quiet (``engines.native_logs``), and runs eagerly, every op placed on ``/CPU:0`` (no
process-wide device setting: a caller's own TensorFlow keeps its GPUs); Keras is imported
with ``KERAS_BACKEND=tensorflow``. The environment variables are the caller's again once the
import is done. Every evaluation runs with Keras' epsilon and floatx at their defaults and
numpy's error handling at its defaults; the caller's are given back afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bce_audit.engines.common import each_nonfinite_alone, exact_array, failed_evaluation
from bce_audit.engines.common import loss_function as _bound_loss
from bce_audit.engines.common import numpy_errors as _numpy_errors
from bce_audit.engines.interface import Evaluation, GridEvaluation
from bce_audit.engines.native_logs import quiet_tensorflow
from bce_audit.errors import ReducedLoss, UsageError, is_reduced
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain, DType

Loss = Callable[[Any, Any], Any]

# Keras' defaults, pinned for every evaluation (a user may have changed them with keras.config).
KERAS_EPSILON = 1e-7
KERAS_FLOATX = "float32"


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the duration (an import that reads them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# TensorFlow imports Keras itself (2.16 on): with the TensorFlow backend, whatever the caller set;
# and its C++ log lines kept off standard error, unless the caller set TF_CPP_MIN_LOG_LEVEL
with _environment(KERAS_BACKEND="tensorflow"), quiet_tensorflow():
    import tensorflow as tf


@functools.cache
def keras_module() -> Any:
    """Keras 3 on its TensorFlow backend (a UsageError if the caller loaded it with another)."""
    with _environment(KERAS_BACKEND="tensorflow"), quiet_tensorflow():
        import keras
    if keras.backend.backend() != "tensorflow":  # imported by the caller before bce-audit
        raise UsageError(
            f"Keras is loaded in this process with the {keras.backend.backend()} backend; the keras engine "
            "needs the tensorflow backend: set KERAS_BACKEND=tensorflow before importing keras"
        )
    return keras


@contextlib.contextmanager
def pinned(with_keras: bool) -> Iterator[None]:
    """Keras' epsilon and floatx and numpy's error handling pinned (eager mode is checked by
    ``_run``); the caller's given back on exit."""
    keras = keras_module() if with_keras else None
    saved = (keras.config.epsilon(), keras.config.floatx()) if keras is not None else None
    try:
        if keras is not None:
            keras.config.set_epsilon(KERAS_EPSILON)
            keras.config.set_floatx(KERAS_FLOATX)
        with _numpy_errors(), tf.device("/CPU:0"):
            yield
    finally:
        if keras is not None and saved is not None:
            keras.config.set_epsilon(saved[0])
            keras.config.set_floatx(saved[1])


def loss_function(formulation: Formulation) -> Loss:
    """``loss(x, y)`` with TensorFlow's reshape for a user function's calling shape."""
    return _bound_loss(formulation, tf.reshape)


def logit(p: Any) -> Any:
    """log(p / (1 - p)): TensorFlow has no logit op; this is how torch.logit and
    jax.scipy.special.logit write it."""
    return tf.math.log(p / (1 - p))


def adapt(loss: Loss, native: Domain, domain: Domain) -> Loss:
    """``loss(x, y)`` with x in ``domain``: the conversion TF users write is part of the audit."""
    if domain is native:
        return loss
    if domain is Domain.LOGITS:
        return lambda z, y: loss(tf.math.sigmoid(z), y)
    return lambda p, y: loss(logit(p), y)


def _run(fn: Loss, x: Any, y: Any, dtype_changes: set[str] | None = None) -> Evaluation:
    """Loss and gradient. A loss in another floating dtype than its input's (float64 in, float32
    out: a cast inside a user's loss, Keras computing in another dtype) is audited as it is, as the
    torch and JAX engines do: its values are exact in float64 and compared with the truth rounded
    into the input's dtype, and the dtype it returned is recorded in the Evaluation (and, for
    Keras, the change added to ``dtype_changes`` for the provenance)."""
    if not tf.executing_eagerly():  # a user's code may have disabled it: error rows, not a crash
        raise RuntimeError("TensorFlow is not executing eagerly (eager execution was disabled in this process)")
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = fn(x, y)
    if not isinstance(loss, tf.Tensor):
        raise TypeError(f"returned {type(loss).__name__}, expected a tf.Tensor")
    expected = (int(x.shape[0]),)  # one loss per input, whatever shape the input went in with
    if is_reduced(math.prod(int(d) for d in loss.shape), expected[0]):  # a mean or a sum, of any shape
        raise ReducedLoss(tuple(int(d) for d in loss.shape), expected[0])
    if tuple(loss.shape) != expected:
        raise ValueError(
            f"returned shape {tuple(loss.shape)}, expected {expected} (the elementwise loss, no reduction)"
        )
    if not loss.dtype.is_floating:
        raise ValueError(f"returned dtype {loss.dtype.name}, expected a floating-point loss")
    output_dtype = None
    if loss.dtype != x.dtype:
        output_dtype = loss.dtype.name
        if dtype_changes is not None:
            dtype_changes.add(f"{x.dtype.name} -> {loss.dtype.name}")
    # Seeded with ones, not the gradient of reduce_sum(loss): a reduction could overflow in half
    # precision and would not be the elementwise derivative users get.
    grad = tape.gradient(loss, x, output_gradients=tf.ones_like(loss))
    if grad is None:
        raise ValueError("the loss does not depend on the input (tape.gradient gave None)")
    return Evaluation(
        loss=np.asarray(loss.numpy()).astype(np.float64),
        grad=np.asarray(grad.numpy()).astype(np.float64).reshape(-1),
        output_dtype=output_dtype,
    )


class TensorFlowEngine:
    """Eager TensorFlow on the CPU (see the module's docstring)."""

    name = "tensorflow"
    uses_keras = False

    def __init__(self) -> None:
        # the output dtypes that differed from the input's (the Keras provenance lists them; see _run)
        self.dtype_changes: set[str] = set()

    def _shape(self, values: np.ndarray) -> np.ndarray:
        return values

    def evaluate(
        self, formulation: Formulation, domain: Domain, dtype: DType, inputs: np.ndarray, label: float
    ) -> Evaluation:
        """The formulation's loss and gradient at every input, in one batch."""
        with pinned(self.uses_keras):
            fn = adapt(loss_function(formulation), formulation.native_domain, domain)
            x = tf.constant(self._shape(exact_array(inputs, dtype)))
            y = tf.constant(self._shape(exact_array(np.full(len(inputs), label), dtype)))
            try:
                return _run(fn, x, y, self.dtype_changes if self.uses_keras else None)
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
            "tensorflow": tf.__version__,
            "tensorflow_device": "cpu",
            "tensorflow_mode": "eager",
            "tensorflow_subnormals": _subnormals(),
            # oneDNN's kernels are on by default on x86 and may round differently from Eigen's
            "tensorflow_onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TF's default"),
            "platform": platform.platform(),
        }


def _subnormals() -> str:
    """Whether TF's CPU kernels keep subnormals: they flush them to zero (the conversion of the
    grid does not, it is checked exact), which users get and the audit reports."""
    with tf.device("/CPU:0"):
        tiny = tf.constant(np.array([np.finfo(np.float32).smallest_subnormal], np.float32))
        flushed = float((tiny * tf.ones_like(tiny)).numpy()[0]) == 0.0
    return "flushed to zero by arithmetic" if flushed else "kept"


class KerasEngine(TensorFlowEngine):
    """Keras 3 on its TensorFlow backend. A Keras loss reduces over the last axis, so the inputs
    go in with shape (N, 1): the mean over one element is the elementwise loss (the result is
    checked to have N values). A loss in another dtype than its input (Keras computing a dtype in
    another) is audited as it is, and the change recorded in the provenance."""

    name = "keras"
    uses_keras = True

    def _shape(self, values: np.ndarray) -> np.ndarray:
        return values.reshape(-1, 1)

    def provenance(self) -> dict[str, str]:
        keras = keras_module()
        changes = ", ".join(sorted(self.dtype_changes)) or "none"
        return {
            **super().provenance(),
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "keras_epsilon": repr(KERAS_EPSILON),
            "keras_output_dtype_changes": changes,
        }
