"""`explain` and the seams of the engines and the BCE family: a formulation that does not run in
torch is refused before any work (the trace is torch's), and every explanation is measured
against the formulation's own reference, the exact value the family oracle gives."""

from __future__ import annotations

import sys
import textwrap

import pytest
from helpers import assert_exit, assert_usage_error, runner

import bce_audit
from bce_audit.cli import main
from bce_audit.floats import round_float
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.oracle.family import family_truth
from bce_audit.oracle.reference import logit_truth
from bce_audit.reference import Member, Reference
from bce_audit.report import numbers
from bce_audit.vocabulary import Domain, DType, Quantity, Status

F32 = DType.FLOAT32.format
NOT_TORCH = [name for name, f in BUILTINS.items() if f.engine != "torch"]
FRAMEWORKS = ("jax", "jaxlib", "optax", "tensorflow", "keras")


def _frameworks_imported() -> list[str]:
    return sorted(m for m in FRAMEWORKS if sys.modules.get(m) is not None)


# --- a formulation that does not run in torch ------------------------------------------------------


def test_the_non_torch_built_ins_are_there_to_be_refused():
    assert {"optax-sigmoid-bce", "jax-logsigmoid", "tf-sigmoid-ce", "keras-bce", "keras-bce-logits"} <= set(NOT_TORCH)


@pytest.mark.parametrize("name", NOT_TORCH)
def test_explain_refuses_a_built_in_of_another_engine_in_one_line(name):
    engine = BUILTINS[name].engine
    before = _frameworks_imported()
    line = assert_usage_error(
        runner().invoke(main, ["explain", name, "--at", "1"]), "explain traces torch's aten ops", name, engine
    )
    assert f"{name} runs in {engine}" in line
    with pytest.raises(bce_audit.UsageError, match=rf"{name} runs in {engine}"):
        bce_audit.explain(name, at=1.0)
    # refused before any work: without --at (a sweep first) as well, and no framework imported
    with pytest.raises(bce_audit.UsageError, match=rf"{name} runs in {engine}"):
        bce_audit.explain(name, points=100)
    assert _frameworks_imported() == before


def test_explain_refuses_a_callable_declared_in_jax():
    @bce_audit.formulation(domain="logits", engine="jax")
    def jax_bce(z, y):
        raise AssertionError("never called: explain refuses it first")

    with pytest.raises(bce_audit.UsageError, match="explain traces torch's aten ops; jax_bce runs in jax"):
        bce_audit.explain(jax_bce, at=1.0)


def test_explain_refuses_a_users_target_declared_in_another_engine(tmp_path, monkeypatch):
    # the frameworks are imported inside the functions: describing them needs neither
    (tmp_path / "other_losses.py").write_text(
        textwrap.dedent(
            """
            import bce_audit

            @bce_audit.formulation(domain="logits", engine="jax")
            def optax_bce(z, y):
                import optax
                return optax.sigmoid_binary_cross_entropy(z, y)

            def tf_bce(z, y):
                import tensorflow as tf
                return tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
            """
        )
    )
    (tmp_path / "other.toml").write_text(
        '[[formulations]]\nname = "tf-mine"\ntarget = "other_losses.py:tf_bce@logits"\nengine = "tensorflow"\n'
    )
    monkeypatch.chdir(tmp_path)
    before = _frameworks_imported()
    # @formulation(engine="jax") through --impl
    result = runner().invoke(main, ["explain", "--impl", "other_losses.py:optax_bce", "--at", "1"])
    assert_usage_error(result, "explain traces torch's aten ops", "optax_bce runs in jax")
    # the config's engine key
    result = runner().invoke(main, ["explain", "tf-mine", "--config", "other.toml", "--at", "1"])
    assert_usage_error(result, "tf-mine runs in tensorflow")
    with pytest.raises(bce_audit.UsageError, match="tf-mine runs in tensorflow"):
        bce_audit.explain("tf-mine", config=tmp_path / "other.toml", at=1.0)
    assert _frameworks_imported() == before


# --- the formulation's own reference -------------------------------------------------------------


def _exact(reference: Reference, x: float, y: float, quantity: Quantity) -> float:
    t = family_truth(reference, Domain.LOGITS, x, y, (F32,))
    return t.loss[0] if quantity is Quantity.LOSS else t.grad[0]


def test_torchvision_focal_is_measured_against_the_focal_loss():
    z = round_float(3e38, F32)
    ref = BUILTINS["torchvision-focal"].reference
    assert ref == Reference(Member.FOCAL, gamma=2.0, alpha=0.25)
    (e,) = bce_audit.explain("torchvision-focal", dtypes="float32", labels=0, quantity="grad", at=3e38)
    exact = _exact(ref, z, 0.0, Quantity.GRAD)
    # y = 0: dL/dz = (1-α)·P^γ·(P + γ·Q·softplus(z)); at z = 3e38, P rounds to 1 and Q·softplus(z)
    # is e^-3e38·3e38, so the exact gradient rounds to 1 - α = 0.75, not plain BCE's σ(z) = 1
    assert exact == 0.75
    assert logit_truth(z, 0.0, (F32,)).grad[0] == 1.0
    assert e.truth == exact and e.reference == ref and e.status is Status.NAN
    result = runner().invoke(
        main, ["explain", "torchvision-focal", "-d", "float32", "-y", "0", "--quantity", "grad", "--at", "3e38"]
    )
    assert_exit(result, 0)
    first, second = result.stdout.splitlines()[:2]
    assert first.endswith(f", against {ref.key}")
    assert second.startswith(f"  output NaN, exact {numbers.in_format(exact, F32)}: nan")


PW2_CONFIG = '[[formulations]]\nname = "pw2"\ntarget = "torch-bce-with-logits"\nparameters = { pos_weight = 2.0 }\n'


@pytest.mark.parametrize(
    ("z", "y", "quantity"),
    [(-3.0, 1.0, Quantity.LOSS), (30.0, 1.0, Quantity.GRAD), (-30.0, 1.0, Quantity.GRAD), (2.5, 0.0, Quantity.LOSS)],
)
def test_pos_weight_is_measured_against_its_weighted_bce(tmp_path, z, y, quantity):
    config = tmp_path / "pw.toml"
    config.write_text(PW2_CONFIG)
    ref = Reference(Member.BCE, pos_weight=2.0)
    exact = _exact(ref, z, y, quantity)
    plain = _exact(Reference(), z, y, quantity)
    if y == 1:  # the positive term is doubled: the exact value is not plain BCE's
        assert exact != plain
    (e,) = bce_audit.explain("pw2", config=config, dtypes="float32", labels=y, quantity=str(quantity), at=z)
    assert e.formulation == "pw2" and e.reference == ref and e.truth == exact
    args = ["explain", "pw2", "--config", str(config), "-y", numbers.label(y), "--quantity", str(quantity)]
    result = runner().invoke(main, [*args, "--at", repr(z)])
    assert_exit(result, 0)
    assert f"exact {numbers.in_format(exact, F32)}: {e.status}" in result.stdout.splitlines()[1]
    assert result.stdout.splitlines()[0].endswith(f", against {ref.key}")


def test_a_config_explains_only_the_formulation_named(tmp_path):
    config = tmp_path / "two.toml"
    w3 = '[[formulations]]\nname = "w3"\ntarget = "torch-bce-with-logits"\nparameters = { weight = 3.0 }\n'
    config.write_text(PW2_CONFIG + "\n" + w3)
    (e,) = bce_audit.explain("w3", config=config, dtypes="float32", labels=0, quantity="loss", at=1.0)
    assert e.formulation == "w3" and e.reference == Reference(Member.BCE, weight=3.0)
    assert e.truth == _exact(Reference(Member.BCE, weight=3.0), 1.0, 0.0, Quantity.LOSS)
    # a built-in named beside the config is explained alone too
    (e,) = bce_audit.explain("naive", config=config, dtypes="float32", labels=0, quantity="loss", at=0.25)
    assert e.formulation == "naive" and e.reference.is_plain
    assert_usage_error(runner().invoke(main, ["explain", "pw3", "--config", str(config)]), "pw3", "pw2")
