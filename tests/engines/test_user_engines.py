"""Your own formulation in JAX or TensorFlow: declared with @formulation(engine=...) or the
config's ``engine`` key, run in the sandbox process like torch code, with that framework's arrays
and its own gradient."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import bce_audit
from bce_audit import formulation

JAX_LOSSES = '''
import os

import jax

from bce_audit import formulation


@formulation(domain="logits", engine="jax")
def softplus_bce(z, y):
    """jax.nn.softplus(z) - y*z"""
    if not isinstance(z, jax.Array):
        raise TypeError(f"called with {type(z).__name__}")
    return jax.nn.softplus(z) - y * z


@formulation(domain="logits", engine="jax")
def dies(z, y):
    os._exit(3)
'''

TF_LOSSES = '''
import tensorflow as tf


def softplus_bce(z, y):
    """tf.math.softplus(z) - y*z"""
    if not isinstance(z, tf.Tensor):
        raise TypeError(f"called with {type(z).__name__}")
    return tf.math.softplus(z) - y * z
'''


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_jax_function_runs_in_the_sandbox_with_jax_arrays_and_jax_gradients(tmp_path):
    jax = pytest.importorskip("jax", reason="the jax extra is not installed: pip install 'bce-audit[jax]'")
    import jax.numpy as jnp

    path = _write(tmp_path, "losses_jax_user.py", JAX_LOSSES)
    result = bce_audit.audit(
        [f"{path}:softplus_bce"], dtypes="float32", domain="logits", labels=1.0, points=60, details=True, cache=False
    )
    assert {c.error for c in result.cases} == {None}
    (spec,) = result.settings.user_formulations
    assert spec.engine == "jax"
    loss, grad = sorted(result.cases, key=lambda c: c.quantity != "loss")
    n = loss.figures.points
    x = loss.details.inputs[:n]
    # the same numbers JAX gives here, value and jax.vjp gradient
    with _x64(jax):
        z = jnp.asarray(x.astype(np.float32))
        value, pullback = jax.vjp(lambda v: jax.nn.softplus(v) - jnp.ones_like(v) * v, z)
        (g,) = pullback(jnp.ones_like(value))
    np.testing.assert_array_equal(loss.details.outputs[:n], np.asarray(value).astype(np.float64))
    np.testing.assert_array_equal(grad.details.outputs[:n], np.asarray(g).astype(np.float64))
    assert result.provenance["jax"] == jax.__version__  # the engine's provenance, as for a built-in


def test_a_jax_function_that_kills_its_process_is_lost_not_the_audit(tmp_path):
    pytest.importorskip("jax", reason="the jax extra is not installed: pip install 'bce-audit[jax]'")
    path = _write(tmp_path, "losses_jax_dies.py", JAX_LOSSES)
    result = bce_audit.audit([f"{path}:dies"], dtypes="float32", domain="logits", labels=0.0, points=20, cache=False)
    assert result.cases and all(c.lost is not None for c in result.cases)


def test_a_tensorflow_function_by_the_config_engine_key(tmp_path):
    pytest.importorskip(
        "tensorflow", reason="the tensorflow extra is not installed: pip install 'bce-audit[tensorflow]'"
    )
    _write(tmp_path, "losses_tf_user.py", TF_LOSSES)
    (tmp_path / "c.toml").write_text(
        '[[formulations]]\nname = "tf-softplus"\ntarget = "losses_tf_user.py:softplus_bce@logits"\n'
        'engine = "tensorflow"\n'
    )
    result = bce_audit.audit(config=tmp_path / "c.toml", dtypes="float64", domain="logits", points=40, cache=False)
    assert [c.error for c in result.cases] == [None] * 4  # it would raise TypeError if not given tf tensors
    assert result.settings.user_formulations[0].engine == "tensorflow"
    assert result.provenance["tensorflow_mode"] == "eager"


def test_an_unknown_engine_is_a_usage_error_naming_the_choices(tmp_path):
    _write(tmp_path, "losses_any.py", TF_LOSSES)
    (tmp_path / "c.toml").write_text(
        '[[formulations]]\ntarget = "losses_any.py:softplus_bce@logits"\nengine = "jaxx"\n'
    )
    with pytest.raises(
        bce_audit.UsageError, match=r"unknown engine 'jaxx' \(did you mean 'jax'\?\); choose from torch"
    ):
        bce_audit.audit(config=tmp_path / "c.toml", dtypes="float32", points=20, cache=False)


def test_a_builtin_keeps_its_engine(tmp_path):
    (tmp_path / "c.toml").write_text(
        '[[formulations]]\nname = "clipped-jax"\ntarget = "clipped"\nengine = "jax"\nparameters = { eps = 1e-3 }\n'
    )
    with pytest.raises(bce_audit.UsageError, match="clipped runs in torch; drop the engine key"):
        bce_audit.audit(config=tmp_path / "c.toml", dtypes="float32", points=20, cache=False)


def test_the_decorator_checks_the_engine_where_it_is_written():
    with pytest.raises(ValueError, match="@formulation: unknown engine 'pytorch'"):
        formulation(domain="logits", engine="pytorch")


class _x64:
    def __init__(self, jax):
        self.jax = jax

    def __enter__(self):
        self.saved = self.jax.config.jax_enable_x64
        self.jax.config.update("jax_enable_x64", True)

    def __exit__(self, *exc):
        self.jax.config.update("jax_enable_x64", self.saved)


# Each framework's loss that computes in float32 whatever it is given (a cast inside, as training
# code that forgot its dtype does): float64 in, float32 out.
CASTING_LOSSES = {
    "tensorflow": """
import tensorflow as tf


def float32_inside(z, y):
    z, y = tf.cast(z, tf.float32), tf.cast(y, tf.float32)
    return tf.math.softplus(z) - y * z
""",
    "jax": """
import jax
import jax.numpy as jnp


def float32_inside(z, y):
    z, y = z.astype(jnp.float32), y.astype(jnp.float32)
    return jax.nn.softplus(z) - y * z
""",
    "keras": """
import keras
import tensorflow as tf


def float32_inside(y_true, y_pred):
    return keras.losses.binary_crossentropy(tf.cast(y_true, "float32"), tf.cast(y_pred, "float32"), from_logits=True)
""",
}


@pytest.mark.parametrize("engine", ["tensorflow", "jax", "keras"])
def test_a_loss_returning_another_dtype_is_audited_against_the_inputs_dtype_as_in_torch(tmp_path, engine):
    """float64 in, float32 out is a finding, not an error: the case is audited, its output dtype
    recorded, and its statuses are those of its own outputs against the float64 truth (the truth
    the torch built-in max-abs is measured against on the same grid)."""
    pytest.importorskip("keras" if engine == "keras" else engine, reason=f"the {engine} extra is not installed")
    from bce_audit.sweep.metrics import point_status, ulp_error
    from bce_audit.vocabulary import DType

    module = f"losses_cast_{engine}"
    _write(tmp_path, f"{module}.py", CASTING_LOSSES[engine])
    keras_order = 'arguments = "target, input"\nshape = "(N, 1)"\n' if engine == "keras" else ""
    (tmp_path / "c.toml").write_text(
        f'[[formulations]]\ntarget = "max-abs"\n[[formulations]]\nname = "cast"\n'
        f'target = "{module}.py:float32_inside@logits"\nengine = "{engine}"\n{keras_order}'
    )
    result = bce_audit.audit(
        config=tmp_path / "c.toml",
        dtypes=["float32", "float64"],
        domain="logits",
        labels=[0.0, 1.0],
        points=80,
        details=True,
        cache=False,
    )
    cases = {(c.key.subject, str(c.dtype), c.label, str(c.quantity)): c for c in result.cases}
    cast = {k: c for k, c in cases.items() if k[0] == "cast"}
    assert len(cast) == 8 and {c.error for c in cast.values()} == {None}
    assert {k[1]: c.output_dtype for k, c in cast.items()} == {"float32": None, "float64": "float32"}
    for (_, dtype, label, quantity), case in cast.items():
        mine, torch_case = case.details, cases[("max-abs", dtype, label, quantity)].details
        assert mine is not None and torch_case is not None
        n = case.figures.points
        np.testing.assert_array_equal(mine.inputs, torch_case.inputs)  # one grid, one truth
        truth = torch_case.truth[:n]
        fmt = DType(dtype).format
        expected = point_status(mine.outputs[:n], truth, ulp_error(mine.outputs[:n], truth, fmt), 4)
        assert list(mine.statuses[:n]) == list(expected)
        if dtype == "float64" and quantity == "loss":
            out = mine.outputs[:n][np.isfinite(mine.outputs[:n])]
            # every output is a float32 value: far from the float64 truth almost everywhere
            assert np.array_equal(out.astype(np.float32).astype(np.float64), out)
            assert np.mean(mine.statuses[:n] == "inaccurate") > 0.5
    from bce_audit.report.terminal import output_dtype_lines

    assert output_dtype_lines(result) == ["cast (4 cases): float64 in, float32 out"]  # as the report shows it
