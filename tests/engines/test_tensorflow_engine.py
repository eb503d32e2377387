"""The TensorFlow and Keras engines: exact conversion in every dtype, GradientTape gradients (TF's
own, which differ from torch autograd's on the same formula at z = 0), Keras' (N, 1) shape, and
the three built-ins (tf-sigmoid-ce, keras-bce, keras-bce-logits) measured against TF itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip(
    "tensorflow", reason="the tensorflow extra is not installed: pip install 'bce-audit[tensorflow]'"
)

import ml_dtypes  # noqa: E402
from engine_cases import NEW_BUILTINS, callable_formulation, evaluate  # noqa: E402

import bce_audit  # noqa: E402
from bce_audit.engines import get_engine  # noqa: E402
from bce_audit.floats import round_float  # noqa: E402
from bce_audit.formulations.builtins import BUILTINS  # noqa: E402
from bce_audit.vocabulary import Domain, DType  # noqa: E402

TF_BUILTINS = [name for name, f in NEW_BUILTINS.items() if f.engine in ("tensorflow", "keras")]
TF_DTYPE = {
    DType.FLOAT16: tf.float16,
    DType.BFLOAT16: tf.bfloat16,
    DType.FLOAT32: tf.float32,
    DType.FLOAT64: tf.float64,
}


def _keras():
    pytest.importorskip("keras", reason="the keras extra is not installed: pip install 'bce-audit[keras]'")
    from bce_audit.engines.tensorflow_engine import keras_module

    return keras_module()


def test_the_tensorflow_and_keras_builtins():
    assert TF_BUILTINS == ["tf-sigmoid-ce", "keras-bce", "keras-bce-logits"]


@pytest.mark.parametrize("dtype", list(DType), ids=str)
@pytest.mark.parametrize("name", TF_BUILTINS)
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_known_values_at_the_centre(name, dtype, label):
    """loss = log 2 at z = ±0 (p = 1/2), correctly rounded into the dtype; the derivative is
    1/2 - y by z, and (p - y) / (p (1 - p)) = 2 - 4y by p."""
    if BUILTINS[name].engine == "keras":
        _keras()
    logits = BUILTINS[name].native_domain is Domain.LOGITS
    x = [-0.0, 0.0] if logits else [0.5]
    ev = evaluate(BUILTINS[name], x, label, dtype)
    assert ev.error is None
    assert list(ev.loss) == [round_float(math.log(2), dtype.format)] * len(x)
    assert list(ev.grad) == [0.5 - label if logits else 2 - 4 * label] * len(x)


def _every_finite_bfloat16():
    bits = np.arange(1 << 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        values = bits.view(ml_dtypes.bfloat16).astype(np.float64)
    return values[np.isfinite(values)]


def test_bfloat16_inputs_are_exact_every_finite_value():
    values = _every_finite_bfloat16()
    f = callable_formulation("identity", lambda z, y: tf.identity(z), Domain.LOGITS, "tensorflow")
    ev = get_engine("tensorflow").evaluate_grid(f, Domain.LOGITS, DType.BFLOAT16, values, np.array([]), 1.0)
    assert ev.finite.error is None
    np.testing.assert_array_equal(ev.finite.loss, values)
    assert np.array_equal(np.signbit(ev.finite.loss), np.signbit(values))


def test_every_dtype_reaches_tensorflow_as_itself():
    seen = []

    def probe(z, y):
        seen.append((z.dtype, y.dtype))
        return z * y

    f = callable_formulation("probe", probe, Domain.LOGITS, "tensorflow")
    for dtype in DType:
        assert evaluate(f, [1.0], 1.0, dtype).error is None
    assert seen == [(TF_DTYPE[d], TF_DTYPE[d]) for d in DType]


def _torch_grad_of_max_abs_at_zero(label: float) -> float:
    torch = pytest.importorskip("torch")
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    y = torch.full_like(x, label)
    loss = torch.clamp_min(x, 0) - y * x + torch.log1p(torch.exp(-torch.abs(x)))
    (g,) = torch.autograd.grad(loss, x, grad_outputs=torch.ones_like(loss))
    return float(g.item())


def _tf_grad_at_zero(label: float) -> float:
    x = tf.zeros([1], dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill([1], tf.constant(label, tf.float64)), logits=x)
    return float(tape.gradient(loss, x)[0].numpy())


@pytest.mark.parametrize("label", [0.0, 0.5, 1.0])
def test_tf_and_torch_differentiate_the_same_formula_differently_at_zero(label):
    """max(z, 0) - z*y + log1p(exp(-|z|)): torch autograd (max-abs) takes clamp_min' (0) = 1 and
    abs' (0) = 0, TF's tape goes through tf.where's z >= 0 branch of both terms. Both derived from
    the frameworks here, then found again by the audit through the public API."""
    torch_grad, tf_grad = _torch_grad_of_max_abs_at_zero(label), _tf_grad_at_zero(label)
    assert tf_grad == 0.5 - label  # sigmoid(0) - y: right
    assert torch_grad == 1 - label  # wrong by 1/2
    result = bce_audit.audit(
        ["max-abs", "tf-sigmoid-ce"],
        dtypes="float64",
        domain="logits",
        labels=label,
        points=50,
        details=True,
        cache=False,
    )
    at_zero = {}
    for case in result.cases:
        if case.quantity == "grad":
            rows = np.nonzero(case.details.inputs == 0)[0]
            assert len(rows) == 2  # -0 and +0
            at_zero[case.formulation] = (set(case.details.outputs[rows]), set(case.details.statuses[rows]))
    assert at_zero["tf-sigmoid-ce"] == ({tf_grad}, {"ok"})
    assert at_zero["max-abs"][0] == {torch_grad}
    assert at_zero["max-abs"][1] == {"inaccurate" if torch_grad else "zero"}


def test_keras_losses_go_in_as_n_by_1_and_come_out_elementwise():
    keras = _keras()
    p = np.array([0.125, 0.5, 0.75, 0.875])
    ev = evaluate(BUILTINS["keras-bce"], p, 1.0, DType.FLOAT32)
    assert ev.error is None and ev.loss.shape == (4,)
    direct = keras.losses.binary_crossentropy(tf.ones([4, 1]), tf.constant(p.reshape(-1, 1), tf.float32))
    np.testing.assert_array_equal(ev.loss, direct.numpy().astype(np.float64))


def test_keras_output_dtype_is_recorded_as_keras_gives_it():
    """A Keras loss whose dtype differs from its input's is audited as it is, and the change is in
    the provenance; what Keras does is read from Keras here."""
    keras = _keras()
    engine = get_engine("keras")
    for dtype in DType:
        evaluate(BUILTINS["keras-bce"], [0.25], 0.0, dtype)
    changes = set()
    for dtype in DType:
        x = tf.constant(np.full((1, 1), 0.25, dtype=TF_DTYPE[dtype].as_numpy_dtype))
        out = keras.losses.binary_crossentropy(tf.zeros_like(x), x)
        if out.dtype != x.dtype:
            changes.add(f"{x.dtype.name} -> {out.dtype.name}")
    assert engine.dtype_changes >= changes
    assert engine.provenance()["keras_output_dtype_changes"] == (", ".join(sorted(engine.dtype_changes)) or "none")


def test_keras_epsilon_is_pinned_and_given_back():
    keras = _keras()
    keras.config.set_epsilon(0.25)
    try:
        ev = evaluate(BUILTINS["keras-bce"], [0.0], 1.0, DType.FLOAT64)
        assert keras.config.epsilon() == 0.25  # the caller's, back
    finally:
        keras.config.set_epsilon(1e-7)
    assert ev.loss[0] == -math.log(1e-7)  # clipped at Keras' default epsilon, not the caller's


def test_keras_bce_float32_clipping_through_the_api():
    """keras-bce at y = 1 on float32 probabilities: Keras clips p at epsilon, so every p below it
    gets the loss at epsilon. The clipped points are found from Keras itself (its loss equals the
    loss at p = 0), and the audit calls each of them inaccurate."""
    keras = _keras()

    def loss_at(p):
        x = tf.constant(np.asarray(p, np.float32).reshape(-1, 1))
        return keras.losses.binary_crossentropy(tf.ones_like(x), x).numpy().astype(np.float64)

    cap = loss_at([0.0])[0]
    result = bce_audit.audit(
        ["keras-bce"], dtypes="float32", domain="probabilities", labels=1.0, points=400, details=True, cache=False
    )
    (case,) = [c for c in result.cases if c.quantity == "loss"]
    n = case.figures.points
    inputs, outputs, statuses = case.details.inputs[:n], case.details.outputs[:n], case.details.statuses[:n]
    np.testing.assert_array_equal(outputs, loss_at(inputs))
    clipped = outputs == cap
    assert clipped.sum() > 20
    # one tail: every clipped p is below every unclipped one, and the edge is Keras' epsilon
    edge = inputs[~clipped].min()
    assert inputs[clipped].max() < edge and inputs[clipped].max() <= np.float32(1e-7) <= edge
    far = clipped & (inputs < 1e-8)  # -log(p) is at least log(10) above the cap: far beyond 4 ULPs
    assert far.sum() > 10 and np.all(statuses[far] == "inaccurate")
    assert case.figures.inaccurate >= far.sum()


def test_keras_bce_logits_is_tf_sigmoid_ce():
    """from_logits=True on the TensorFlow backend calls tf.nn.sigmoid_cross_entropy_with_logits:
    the same loss and gradient at every point of every dtype."""
    _keras()
    z = np.array([-80.0, -9.5, -1.0, -0.0, 0.0, 0.25, 3.0, 17.0, 90.0, 1e4])
    for dtype in DType:
        a = evaluate(BUILTINS["keras-bce-logits"], z, 1.0, dtype)
        b = evaluate(BUILTINS["tf-sigmoid-ce"], z, 1.0, dtype)
        np.testing.assert_array_equal(a.loss, b.loss)
        np.testing.assert_array_equal(a.grad, b.grad)


def test_an_exception_is_error_rows_with_the_message():
    def broken(z, y):
        raise ValueError("no good")

    ev = evaluate(callable_formulation("broken", broken, Domain.LOGITS, "tensorflow"), [0.0, 1.0], 0.0, DType.FLOAT32)
    assert ev.error == "ValueError: no good"
    assert np.all(np.isnan(ev.loss))
    const = callable_formulation("const", lambda z, y: tf.zeros_like(z) + 1, Domain.LOGITS, "tensorflow")
    assert "does not depend on the input" in evaluate(const, [0.0], 0.0, DType.FLOAT32).error


def test_provenance_names_the_versions():
    found = get_engine("tensorflow").provenance()
    assert found["tensorflow"] == tf.__version__
    assert found["tensorflow_mode"] == "eager"
    x = tf.constant(np.array([np.finfo(np.float32).smallest_subnormal], np.float32))
    flushed = float((x * tf.ones_like(x)).numpy()[0]) == 0
    assert found["tensorflow_subnormals"] == ("flushed to zero by arithmetic" if flushed else "kept")


def test_eager_execution_disabled_is_error_rows_not_a_crash(tmp_path):
    """Code that disables eager execution (process-wide, for good) gets error rows with the reason;
    run in a fresh process, since it cannot be undone."""
    import subprocess
    import sys

    from helpers import ROOT

    code = (
        "import numpy as np, tensorflow as tf\n"
        "tf.compat.v1.disable_eager_execution()\n"
        "from engine_cases import evaluate\n"
        "from bce_audit.formulations.builtins import BUILTINS\n"
        "from bce_audit.vocabulary import DType\n"
        "ev = evaluate(BUILTINS['tf-sigmoid-ce'], [0.0], 0.0, DType.FLOAT32)\n"
        "print(ev.error)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": f"{ROOT / 'tests' / 'engines'}:{ROOT / 'tests'}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        "RuntimeError: TensorFlow is not executing eagerly (eager execution was disabled in this process)"
    )
