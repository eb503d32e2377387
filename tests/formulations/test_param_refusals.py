"""--param and losses as users write them: what is refused before any sweep work, and how.

A reference that cannot follow a swept parameter; a loss that reduces in any shape (a row's
mean, a sum reshaped, a swept ``reduction``); ``init`` on a function; --param values given twice
or with ``_``; the API's empty lists and numbers given as strings; the messages that name what
to do. Each is one line on stderr (exit 2) or an ``ArgumentError`` naming the culprit.
"""

from __future__ import annotations

import textwrap
import uuid

import numpy as np
import pytest
from helpers import assert_exit, assert_usage_error, read_csv, runner

import bce_audit
from bce_audit.cli import main
from bce_audit.errors import ArgumentError, ReducedLoss, UsageError

LOSSES = '''
import torch
import torch.nn.functional as F


def keras_smoothed(y_true, y_pred, label_smoothing=0.0, reduction="none", eps=0.0):
    """Keras' binary_crossentropy(from_logits=True, label_smoothing=...)."""
    y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction=reduction) + eps * 0


def row_mean(z, y):
    """Keras' mean over the last axis: one value per row."""
    return F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(-1)


def sum_reshaped(z, y):
    return F.binary_cross_entropy_with_logits(z, y, reduction="none").sum().reshape(1)


def with_reduction(z, y, reduction="none"):
    return F.binary_cross_entropy_with_logits(z, y, reduction=reduction)


def weighted(z, y, pos_weight=1.0):
    return F.binary_cross_entropy_with_logits(z, y, pos_weight=torch.tensor(pos_weight), reduction="none")


def focal(z, y, gamma=2.0):
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    return ce * (1 - p_t) ** gamma


class Focal(torch.nn.Module):
    def __init__(self, gamma=2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, z, y):
        return focal(z, y, self.gamma)


class HardCodedFocal(torch.nn.Module):
    """MONAI-like: gamma fixed inside forward, found nowhere a reference can read it."""

    def forward(self, z, y):
        return focal(z, y, 2.0)
'''

DECORATED_INIT = """
import torch.nn.functional as F

from bce_audit import formulation


@formulation(domain="logits", init={"a": 1})
def r(z, y):
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")
"""

SMALL = 'dtypes = ["float32"]\ndomain = "logits"\nlabels = [1.0]\npoints = 20\n'


@pytest.fixture
def project(tmp_path, monkeypatch):
    """tmp_path as the current directory, with a module of a unique name holding LOSSES."""
    monkeypatch.chdir(tmp_path)
    module = f"plosses_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(LOSSES)
    return tmp_path, module


def _sweep(directory, config: str, *extra: str):
    (directory / "c.toml").write_text(SMALL + textwrap.dedent(config))
    return runner().invoke(main, ["sweep", "--config", "c.toml", "--csv", "s.csv", *extra])


def _keras_table(module: str, reference: str, parameters: str = "label_smoothing = 0.1") -> str:
    return f"""
        [[formulations]]
        name = "keras-smoothed"
        target = "{module}:keras_smoothed@logits"
        arguments = "target, input"
        parameters = {{ {parameters} }}
        reference = {reference}
        """


FIXED = '{ loss = "label-smoothed-bce", smoothing = 0.1, convention = "keras" }'


# --- a reference that cannot follow the swept parameter -------------------------------------------


def test_a_fixed_reference_refuses_a_parameter_it_names_under_another_name(project):
    directory, module = project
    line = assert_usage_error(
        _sweep(directory, _keras_table(module, FIXED), "--param", "label_smoothing=0.0,0.3"),
        "--param label_smoothing",
        "keras-smoothed",
        "reference is fixed",
        "smoothing=0.1, convention=keras",
        "name the loss's parameter smoothing",
    )
    assert "drop" in line
    assert not (directory / "s.csv").exists()  # refused before anything is written


def test_a_partial_table_refuses_a_parameter_named_after_one_it_fixes(project):
    directory, module = project
    partial = '{ loss = "label-smoothed-bce", smoothing = 0.1 }'  # convention follows the loss
    assert_usage_error(
        _sweep(directory, _keras_table(module, partial), "--param", "label_smoothing=0.0,0.3"),
        "--param label_smoothing",
        "smoothing=0.1",
    )
    assert not (directory / "s.csv").exists()  # refused before anything is written


def test_a_fully_fixed_reference_refuses_any_other_parameter(project):
    directory, module = project
    assert_usage_error(
        _sweep(directory, _keras_table(module, FIXED, "label_smoothing = 0.1, eps = 0.0"), "--param", "eps=0,1"),
        "--param eps",
        "reference is fixed",
        "drop a parameter from the reference",
    )
    assert not (directory / "s.csv").exists()  # refused before anything is written


def test_reduction_and_a_partial_tables_other_parameters_are_swept(project):
    """reduction never changes the elementwise loss, and a table that leaves a parameter to the
    loss is not fixed: both run, with the same figures as the unswept loss (the swept values are
    the declared ones)."""
    directory, module = project
    partial = '{ loss = "label-smoothed-bce", smoothing = 0.1 }'
    tables = {
        "reduction=none": (_keras_table(module, FIXED, 'label_smoothing = 0.1, reduction = "none"'), "reduction=none"),
        "eps=0": (_keras_table(module, partial, "label_smoothing = 0.1, eps = 0.0"), "eps=0"),
    }
    for table, param in tables.values():
        assert_exit(_sweep(directory, table), 0)
        plain = read_csv((directory / "s.csv").read_text())[1]
        assert_exit(_sweep(directory, table, "--param", param), 0)
        swept = read_csv((directory / "s.csv").read_text())[1]
        assert len(swept) == len(plain) > 0
        columns = ("points", "ok", "inaccurate", "max_ulp")
        for a, b in zip(plain, swept, strict=True):
            assert b["parameters"] == param and a.get("parameters", "") == ""
            assert [a[k] for k in ("formulation", "dtype", "label", "quantity")] == [
                b[k] for k in ("formulation", "dtype", "label", "quantity")
            ]
            assert [a[c] for c in columns] == [b[c] for c in columns]
            assert int(a["ok"]) > 0


# --- a loss that reduces, in any shape ------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "returned"),
    [
        ('target = "{m}:row_mean@logits"\nshape = "(1, N)"', "returned 1 value (shape (1,)) for 3 inputs"),
        ('target = "{m}:sum_reshaped@logits"', "returned 1 value (shape (1,)) for 3 inputs"),
    ],
)
def test_a_loss_that_reduces_in_any_shape_is_refused(project, sweep_calls, table, returned):
    directory, module = project
    result = _sweep(directory, "[[formulations]]\n" + table.format(m=module) + "\n")
    assert_usage_error(result, f"{module}:", returned, "it reduces")
    assert sweep_calls == []


def test_a_swept_reduction_that_reduces_is_refused_before_any_output(project):
    directory, module = project
    table = f'[[formulations]]\ntarget = "{module}:with_reduction@logits"\nparameters = {{ reduction = "none" }}\n'
    assert_exit(_sweep(directory, table, "--param", "reduction=none"), 0)
    (directory / "s.csv").unlink()
    assert_usage_error(
        _sweep(directory, table, "--param", "reduction=none,mean"),
        "--param for with_reduction (reduction=mean)",
        "returned a scalar (shape ()) for 3 inputs",
    )
    assert not (directory / "s.csv").exists()


@pytest.mark.parametrize(
    "reduce", [lambda t: t.mean(-1), lambda t: t.sum().reshape(1), lambda t: t.mean(-1, keepdim=True)]
)
def test_the_torch_engine_calls_fewer_values_than_inputs_a_reduction(reduce):
    import torch.nn.functional as F

    from bce_audit.engines import get_engine
    from bce_audit.formulations.interface import Calling, CallShape, Formulation
    from bce_audit.vocabulary import Domain, DType

    def loss(z, y):
        return reduce(F.binary_cross_entropy_with_logits(z, y, reduction="none"))

    for shape in (CallShape.FLAT, CallShape.ROW):
        f = Formulation("r", Domain.LOGITS, "r", function=loss, calling=Calling(shape=shape))
        points = np.array([-1.0, 0.0, 1.0])
        ev = get_engine("torch").evaluate_grid(f, Domain.LOGITS, DType.FLOAT64, points, np.array([]), 1.0).finite
        assert ev.error is not None and ev.error.startswith(f"{ReducedLoss.__name__}: returned "), (shape, ev.error)
        assert "for 3 inputs" in ev.error


def test_the_jax_engine_calls_fewer_values_than_inputs_a_reduction():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from bce_audit.engines import get_engine
    from bce_audit.formulations.interface import Formulation
    from bce_audit.vocabulary import Domain, DType

    def loss(z, y):
        return (jnp.logaddexp(0.0, z) - y * z).sum().reshape(1)

    f = Formulation("r", Domain.LOGITS, "r", function=loss, engine="jax")
    ev = get_engine("jax").evaluate_grid(f, Domain.LOGITS, DType.FLOAT64, np.array([-1.0, 0.0, 1.0]), np.array([]), 1.0)
    assert ev.finite.error is not None
    assert ev.finite.error.startswith(f"{ReducedLoss.__name__}: returned 1 value (shape (1,)) for 3 inputs")


# --- init on a function ---------------------------------------------------------------------------


def test_init_on_a_decorated_function_is_refused(project, sweep_calls):
    directory, _ = project
    (directory / "d6.py").write_text(DECORATED_INIT)
    assert_usage_error(
        runner().invoke(main, ["sweep", "--impl", "d6.py:r"]), "--impl 'd6.py:r'", "init is for a class", "'r'"
    )
    assert sweep_calls == []
    with pytest.raises(ArgumentError, match=r"init is for a class, and 'f' is a function"):

        @bce_audit.formulation(domain="logits", init={"a": 1})
        def f(z, y):
            return z

    class Loss:
        def __call__(self, z, y):
            return z

    assert bce_audit.formulation(domain="logits", init={"a": 1})(Loss) is Loss  # a class takes it


# --- messages that name --param, the formulation, and what to do ----------------------------------


def test_a_swept_value_the_reference_refuses_names_param_and_the_formulation(project):
    directory, module = project
    table = f'[[formulations]]\nname = "pw"\ntarget = "{module}:weighted@logits"\n'
    table += 'parameters = { pos_weight = 2.0 }\nreference = "bce"\n'
    line = assert_usage_error(
        _sweep(directory, table, "--param", "pos_weight=-1"), "--param for pw: pos_weight=-1", "must be >= 0"
    )
    assert "name pos_weight in the reference" not in line
    line = assert_usage_error(
        runner().invoke(main, ["sweep", "-f", "torchvision-focal", "--param", "gamma=-1"]),
        "--param for torchvision-focal: gamma=-1",
        "gamma must be >= 0",
    )
    assert "in the reference" not in line  # a built-in has no reference to name it in
    assert not (directory / "s.csv").exists()  # refused before anything is written


def test_a_parameter_no_formulation_takes_says_why(project):
    directory, module = project
    line = assert_usage_error(
        runner().invoke(main, ["sweep", "--impl", f"{module}.py:focal@logits", "--param", "gamma=0.5"]),
        "--param gamma: no selected formulation takes it",
        "signature default",
        'reference = "focal"',
    )
    assert "parameters" in line
    table = f'[[formulations]]\ntarget = "{module}:Focal@logits"\ninit = {{ gamma = 2.0 }}\n'
    assert_usage_error(
        _sweep(directory, table, "--param", "gamma=0.5"),
        "--param gamma: no selected formulation takes it",
        "Focal's gamma is a constructor (init) argument",
        "its own config table",
    )
    assert not (directory / "s.csv").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("value", "culprits"),
    [
        ("gamma=1,1", ["gamma=1,1", "the value 1 is given twice"]),
        ("gamma=0.5,0.50", ["the value 0.50 is given twice (as 0.5)"]),
        ("gamma=1_0", ["'1_0' is not a number", "'_'"]),
    ],
)
def test_param_values_given_twice_or_with_underscores_are_refused(value, culprits):
    result = runner().invoke(main, ["sweep", "-f", "torchvision-focal", "--param", value])
    assert_usage_error(result, "--param", *culprits)
    from bce_audit.formulations.selection import parse_parameter_sweep

    with pytest.raises(UsageError):  # refused as it is read, before any formulation is loaded
        parse_parameter_sweep([value])


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([], r"parameters\['gamma'\]: an empty list sweeps nothing"),
        (["2"], r"parameters\['gamma'\]: '2' is a string; give the number 2"),
        ([[1.0]], r"parameters\['gamma'\]: expected numbers, strings or None"),
        ([1, 1.0], r"parameters\['gamma'\]: the value 1.0 is given twice \(as 1\); list it once"),
    ],
)
def test_the_apis_parameters_name_themselves(values, match):
    with pytest.raises(ArgumentError, match=match) as info:
        bce_audit.audit("torchvision-focal", parameters={"gamma": values})
    assert "--param" not in str(info.value)


@pytest.mark.parametrize(
    ("table", "culprits"),
    [
        ("reference = 3", ["reference: wrong type int; expected a string or a table"]),
        ("parameters = { pos_weight = [[1.0], 2.0] }", ["pos_weight", "a list inside a list"]),
        ('arguments = "prediction, label"', ["choose from 'input, target', 'target, input'"]),
        ('parameters = { pos_weight = [1.0, 2.0] }\nreference = "bce"', ["not [1.0, 2.0]"]),
    ],
)
def test_config_mistakes_say_what_is_expected(project, sweep_calls, table, culprits):
    directory, module = project
    line = assert_usage_error(
        _sweep(directory, f'[[formulations]]\ntarget = "{module}:weighted@logits"\n{table}\n'), *culprits
    )
    assert "(1.0, 2.0)" not in line and "wrong type list" not in line
    assert sweep_calls == []


def test_a_python_callable_that_reduces_is_refused_by_the_api():
    import torch.nn.functional as F

    @bce_audit.formulation(domain="logits", shape="(1, N)")
    def row_mean(z, y):
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(-1)

    with pytest.raises(UsageError, match=r"row_mean: the loss returned 1 value \(shape \(1,\)\) for 3 inputs"):
        bce_audit.audit([row_mean], dtypes="float32", points=10, labels=1.0)

    @bce_audit.formulation(domain="logits")
    def elementwise(z, y):
        return F.binary_cross_entropy_with_logits(z, y, reduction="none")

    result = bce_audit.audit([elementwise], dtypes="float32", points=10, labels=1.0)
    assert {case.formulation for case in result.cases} == {"elementwise"}


@pytest.mark.parametrize(
    ("target", "reference"),
    [("HardCodedFocal", '"focal"'), ("with_reduction", '{ loss = "label-smoothed-bce", convention = "keras" }')],
)
def test_a_member_whose_defining_parameter_is_found_nowhere_is_refused(project, target, reference):
    """A focal reference without gamma anywhere (the reference, parameters, init, a constructor or
    signature default) would be focal(gamma=0): plain BCE, silently. Likewise label smoothing
    without smoothing. One line naming the parameter and what to write; nothing written."""
    directory, module = project
    config = f"""
        [[formulations]]
        name = "mine"
        target = "{module}:{target}@logits"
        reference = {reference}
    """
    parameter = "gamma" if "focal" in reference else "smoothing"
    line = assert_usage_error(_sweep(directory, config), "c.toml formulations[0]", f"{parameter} is given nowhere")
    assert "plain BCE" in line and f"{parameter} = ..." in line
    assert not (directory / "s.csv").exists()
