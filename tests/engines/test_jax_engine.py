"""The JAX engine: exact conversion in every dtype, 64-bit mode pinned, jax.vjp gradients, and the
two JAX built-ins (optax-sigmoid-bce, jax-logsigmoid) measured against JAX itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the jax extra is not installed: pip install 'bce-audit[jax]'")
pytest.importorskip("optax", reason="the jax extra is not installed: pip install 'bce-audit[jax]'")

import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
from engine_cases import NEW_BUILTINS, callable_formulation, evaluate  # noqa: E402

import bce_audit  # noqa: E402
from bce_audit.engines import get_engine  # noqa: E402
from bce_audit.floats import round_float  # noqa: E402
from bce_audit.formulations.builtins import BUILTINS  # noqa: E402
from bce_audit.vocabulary import Domain, DType  # noqa: E402

JAX_BUILTINS = [name for name, f in NEW_BUILTINS.items() if f.engine == "jax"]
JNP = {DType.FLOAT16: jnp.float16, DType.BFLOAT16: jnp.bfloat16, DType.FLOAT32: jnp.float32, DType.FLOAT64: jnp.float64}


def test_the_jax_builtins():
    assert JAX_BUILTINS == ["optax-sigmoid-bce", "jax-logsigmoid"]


@pytest.mark.parametrize("dtype", list(DType), ids=str)
@pytest.mark.parametrize("name", JAX_BUILTINS)
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_known_values_at_zero(name, dtype, label):
    """loss(0, y) = log 2 and d/dz = 1/2 - y, each correctly rounded into the dtype, at -0 and +0."""
    ev = evaluate(BUILTINS[name], [-0.0, 0.0], label, dtype)
    assert ev.error is None
    assert list(ev.loss) == [round_float(math.log(2), dtype.format)] * 2
    assert list(ev.grad) == [0.5 - label] * 2


def test_float64_is_computed_in_float64_and_the_callers_flag_is_given_back():
    jax.config.update("jax_enable_x64", False)
    try:
        ev = evaluate(BUILTINS["optax-sigmoid-bce"], [1.0, -3.0], 0.0, DType.FLOAT64)
        assert not jax.config.jax_enable_x64  # the caller's flag, back
    finally:
        jax.config.update("jax_enable_x64", False)
    # softplus(1) and softplus(-3) computed in float64: not float32 values, and within 2 ULPs of
    # numpy's float64 log1p(exp(z)) (a float32 computation would be ~1e-8 off)
    want = np.log1p(np.exp(np.array([1.0, -3.0])))
    assert np.all(np.abs(ev.loss - want) <= 2 * np.spacing(want))
    assert np.all(ev.loss.astype(np.float32).astype(np.float64) != ev.loss)
    # and the gradient, sigmoid(z), too
    assert np.all(np.abs(ev.grad - 1 / (1 + np.exp(-np.array([1.0, -3.0])))) <= 4 * np.spacing(ev.grad))


def test_a_float32_request_is_not_promoted():
    seen = []

    def probe(z, y):
        seen.append((z.dtype, y.dtype))
        return z * y

    f = callable_formulation("probe", probe, Domain.LOGITS, "jax")
    for dtype in DType:
        evaluate(f, [1.0], 1.0, dtype)
    assert seen == [(JNP[d], JNP[d]) for d in DType]


def _every_finite_bfloat16():
    bits = np.arange(1 << 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(ml_dtypes.bfloat16).astype(np.float64)
    return values[np.isfinite(values)]


def test_bfloat16_inputs_are_exact_every_finite_value():
    """Every finite bfloat16 (all 65536 bit patterns but inf/NaN), through the engine into JAX and
    back: loss = z (no arithmetic) is z itself, sign of zero and subnormals included."""
    values = _every_finite_bfloat16()
    f = callable_formulation("identity", lambda z, y: z, Domain.LOGITS, "jax")
    ev = get_engine("jax").evaluate_grid(f, Domain.LOGITS, DType.BFLOAT16, values, np.array([]), 1.0)
    np.testing.assert_array_equal(ev.finite.loss, values)
    assert np.array_equal(np.signbit(ev.finite.loss), np.signbit(values))
    assert np.all(ev.finite.grad == 1.0)


def test_subnormals_flushed_by_jax_arithmetic_are_reported():
    """XLA's CPU arithmetic flushes subnormals (z * 1 = 0 for a subnormal z): a finding users get,
    which the provenance states as JAX itself shows it, and which the audit does not undo."""
    values = _every_finite_bfloat16()
    subnormal = (values != 0) & (np.abs(values) < float(ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_normal))
    f = callable_formulation("times-one", lambda z, y: z * y, Domain.LOGITS, "jax")
    ev = get_engine("jax").evaluate_grid(f, Domain.LOGITS, DType.BFLOAT16, values, np.array([]), 1.0)
    direct = np.asarray(jnp.asarray(values.astype(ml_dtypes.bfloat16)) * jnp.bfloat16(1)).astype(np.float64)
    np.testing.assert_array_equal(ev.finite.loss, direct)
    flushed = np.all(direct[subnormal] == 0)
    assert np.all(ev.finite.loss[~subnormal] == values[~subnormal])
    expected = "flushed to zero by arithmetic" if flushed else "kept"
    assert get_engine("jax").provenance()["jax_subnormals"] == expected


def test_domain_adapters_are_jax_sigmoid_and_logit():
    # a probability-native formulation fed logits gets jax.nn.sigmoid(z), in the dtype: loss = p
    f = callable_formulation("p", lambda p, y: p * y, Domain.PROBABILITIES, "jax")
    z = np.array([-30.0, -2.0, 0.5, 2.0, 9.0])
    ev = evaluate(f, z, 1.0, DType.FLOAT32, domain=Domain.LOGITS)
    np.testing.assert_array_equal(ev.loss, np.asarray(jax.nn.sigmoid(jnp.asarray(z, jnp.float32))))
    # a logit-native one fed probabilities gets jax.scipy.special.logit(p)
    g = callable_formulation("z", lambda z, y: z * y, Domain.LOGITS, "jax")
    p = np.array([0.125, 0.5, 0.75, 0.999])
    ev = evaluate(g, p, 1.0, DType.FLOAT32, domain=Domain.PROBABILITIES)
    np.testing.assert_array_equal(ev.loss, np.asarray(jax.scipy.special.logit(jnp.asarray(p, jnp.float32))))


def test_an_exception_is_error_rows_with_the_message():
    def broken(z, y):
        raise ValueError("no good")

    ev = evaluate(callable_formulation("broken", broken, Domain.LOGITS, "jax"), [0.0, 1.0], 0.0, DType.FLOAT32)
    assert ev.error == "ValueError: no good"
    assert np.all(np.isnan(ev.loss)) and np.all(np.isnan(ev.grad))
    wrong = callable_formulation("sum", lambda z, y: jnp.sum(z), Domain.LOGITS, "jax")
    error = evaluate(wrong, [0.0, 1.0], 0.0, DType.FLOAT32).error
    assert error is not None and "returned a scalar (shape ()) for 2 inputs: it reduces" in error


def test_provenance_names_the_versions_and_the_flags():
    found = get_engine("jax").provenance()
    assert found["jax"] == jax.__version__
    assert "jax_enable_x64=True" in found["jax_flags"]
    assert found["jax_device"] == "cpu"


def _first_flushed_logit(loss_at) -> float:
    """The smallest float32 z > 0 where ``loss_at(z)`` (the framework's loss at y = 1, e^-z in
    exact arithmetic) is 0, by bisection on the float32 bit patterns between 1 and 200, after a
    dense scan shows the zeros form one tail."""
    z = np.linspace(1, 200, 20001).astype(np.float32)
    zero = loss_at(z) == 0
    first = int(np.argmax(zero))
    assert zero[first] and np.all(zero[first:]) and not np.any(zero[:first])  # one tail
    lo, hi = np.float32(z[first - 1]).view(np.int32), np.float32(z[first]).view(np.int32)
    while hi - lo > 1:
        mid = np.int32((int(lo) + int(hi)) // 2)
        if loss_at(np.array([mid.view(np.float32)]))[0] == 0:
            hi = mid
        else:
            lo = mid
    return float(np.int32(hi).view(np.float32))


@pytest.mark.parametrize("name", JAX_BUILTINS)
def test_jax_builtins_float32_label1_loss_vanishes_where_jax_flushes_through_the_api(name):
    """Through bce_audit.audit: the audit's zeros of the float32 loss at y = 1 are exactly the grid
    points past the first z where JAX's own loss is 0 (a dense scan of JAX, not typed in); e^-z
    is still a float32 subnormal there, so the truth is not 0: JAX flushed it."""
    import optax

    def loss_at(z):
        x = jnp.asarray(np.asarray(z, np.float32))
        y = jnp.ones_like(x)
        if name == "optax-sigmoid-bce":
            return np.asarray(optax.sigmoid_binary_cross_entropy(x, y))
        return np.asarray(-(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x)))

    z0 = _first_flushed_logit(loss_at)
    # where e^-z leaves the normal float32 range (2^-126): a flush, not an underflow
    assert abs(z0 - 126 * math.log(2)) < 0.1
    result = bce_audit.audit(
        [name], dtypes="float32", domain="logits", labels=1.0, range=(60, 120), points=500, details=True, cache=False
    )
    (case,) = [c for c in result.cases if c.quantity == "loss"]
    n = case.figures.points
    inputs, outputs, statuses = case.details.inputs[:n], case.details.outputs[:n], case.details.statuses[:n]
    np.testing.assert_array_equal(outputs, loss_at(inputs).astype(np.float64))  # JAX's own numbers
    flushed = (inputs >= z0) & (inputs < 103)  # e^-z >= the smallest float32 subnormal below 103.2
    assert flushed.sum() >= 3
    assert np.all(statuses[flushed] == "zero")
    assert (inputs < z0).sum() >= 3 and not np.any(statuses[inputs < z0] == "zero")
    assert case.figures.zero == int((statuses == "zero").sum()) >= flushed.sum()
    assert case.figures.worst_input >= z0
    assert result.provenance["jax_subnormals"] == "flushed to zero by arithmetic"
