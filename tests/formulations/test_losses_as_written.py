"""User losses as they are written: a class with constructor arguments, None and list values,
Keras' (y_true, y_pred) order, a batch layout, a reference declared as a table, a loss that
returns another dtype than its input's, and a loss that only reduces (refused).

Each feature goes through the CLI with a config and a module written into tmp_path. The
expectations are independent of the feature under test: the same computation written the
torch way (a built-in, or a plain function), bit for bit, and the float32 grid of a float32
result.
"""

from __future__ import annotations

import collections
import json
import math
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_exit, assert_usage_error, read_csv, runner

from bce_audit.cli import main

LOSSES = '''
import torch
import torch.nn.functional as F

from bce_audit import formulation


class FocalLoss(torch.nn.Module):
    """torchvision's sigmoid focal loss, as training code writes it: reduces by default."""

    def __init__(self, gamma=2.0, alpha=0.25, reduction="mean"):
        super().__init__()
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def forward(self, inputs, targets):
        p = torch.sigmoid(inputs)
        ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * ((1 - p_t) ** self.gamma)
        if self.alpha is not None:
            loss = (self.alpha * targets + (1 - self.alpha) * (1 - targets)) * loss
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def keras_bce(y_true, y_pred):
    """Keras' argument order: the target first."""
    return -(y_true * torch.log(y_pred) + (1 - y_true) * torch.log1p(-y_pred))


def torch_bce(p, y):
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p))


def column_bce(z, y):
    """Wants a batch of one-logit samples."""
    if z.ndim != 2 or z.shape[1] != 1 or y.shape != z.shape:
        raise ValueError(f"expects (N, 1), got {tuple(z.shape)}")
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")


def row_bce(z, y):
    """Wants one sample of N logits."""
    if z.ndim != 2 or z.shape[0] != 1:
        raise ValueError(f"expects (1, N), got {tuple(z.shape)}")
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")


def float32_bce(z, y):
    """Computes in float32 whatever it is given (a model's loss under a float32 default)."""
    return F.binary_cross_entropy_with_logits(z.float(), y.float(), reduction="none")


def keras_smoothed(y_true, y_pred, label_smoothing=0.0):
    """Keras' binary_crossentropy(from_logits=True, label_smoothing=...): smooths internally."""
    y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")


def mean_bce(z, y):
    return F.binary_cross_entropy_with_logits(z, y)


def class_weighted(z, y, weights=None):
    """weights: [negative, positive] as a list, or None for none."""
    loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    if weights is None:
        return loss
    assert isinstance(weights, list), type(weights)
    return (weights[0] * (1 - y) + weights[1] * y) * loss


@formulation(
    domain="logits",
    name="decorated-focal",
    reference={"loss": "focal", "gamma": 2.0, "alpha": 0.25},
    init={"gamma": 2.0, "reduction": "none"},
)
class DecoratedFocal(FocalLoss):
    """FocalLoss, declared by the decorator."""
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """tmp_path as the current directory, with a module of a unique name (Python's cache never
    mixes two tests' modules) holding LOSSES."""
    monkeypatch.chdir(tmp_path)
    module = f"losses_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(LOSSES)
    return tmp_path, module


def _run(directory: Path, config: str, *extra: str):
    (directory / "c.toml").write_text(textwrap.dedent(config))
    args = ["sweep", "--config", "c.toml", "--csv", "s.csv", "--details", "d.csv", "--json", "r.json", *extra]
    return runner().invoke(main, args)


def _outputs(directory: Path) -> dict[tuple[str, str, str, str, str], str]:
    """(formulation, dtype, label, quantity, input) -> output, as the details CSV writes them."""
    rows = read_csv((directory / "d.csv").read_text())[1]
    return {(r["formulation"], r["dtype"], r["label"], r["quantity"], r["input"]): r["output"] for r in rows}


def _summary(directory: Path) -> dict[tuple[str, str, str, str], dict]:
    rows = read_csv((directory / "s.csv").read_text())[1]
    return {(r["formulation"], r["dtype"], r["label"], r["quantity"]): r for r in rows}


def _same_outputs(directory: Path, mine: str, theirs: str) -> int:
    """Assert that two formulations printed the same output at every point; the count."""
    outputs = _outputs(directory)
    pairs = [(k, v, outputs[(theirs, *k[1:])]) for k, v in outputs.items() if k[0] == mine]
    assert len(pairs) > 100
    for key, a, b in pairs:
        assert a == b, (key, a, b)
    return len(pairs)


STATUS_COLUMNS = ("points", "ok", "inaccurate", "zero", "inf", "nan", "max_ulp", "stable_lo", "stable_hi")


def test_a_class_with_init_is_instantiated_and_called(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float32", "float64"]
        domain = "logits"
        labels = [0.0, 1.0, 0.25]
        points = 60

        [[formulations]]
        name = "class-focal"
        target = "{module}:FocalLoss"
        domain = "logits"
        init = {{ gamma = 2.0, alpha = 0.25, reduction = "none" }}
        reference = {{ loss = "focal", gamma = 2.0, alpha = 0.25 }}

        [[formulations]]
        target = "torchvision-focal"

        [[formulations]]
        name = "class-focal-no-alpha"
        target = "{module}:FocalLoss"
        domain = "logits"
        init = {{ gamma = 2.0, alpha = {{ none = true }}, reduction = "none" }}
        reference = {{ loss = "focal", gamma = 2.0 }}

        [[formulations]]
        name = "torchvision-no-alpha"
        target = "torchvision-focal"
        parameters = {{ alpha = -1.0 }}
        """,
    )
    assert_exit(result, 0)
    # the instance computes what the built-in computes, line for line: the same outputs at every
    # point, and so the same figures against the same reference (focal, gamma 2, alpha 0.25)
    _same_outputs(directory, "class-focal", "torchvision-focal")
    _same_outputs(directory, "class-focal-no-alpha", "torchvision-no-alpha")
    summary = _summary(directory)
    for (name, dtype, label, quantity), row in summary.items():
        twin = {"class-focal": "torchvision-focal", "class-focal-no-alpha": "torchvision-no-alpha"}.get(name)
        if twin is not None:
            theirs = summary[twin, dtype, label, quantity]
            assert [row[c] for c in STATUS_COLUMNS] == [theirs[c] for c in STATUS_COLUMNS], (name, dtype, label)
            assert int(row["ok"]) > 60
    # alpha None is no weighting: at y = 1 the weighted loss is exactly 0.25 of the unweighted
    outputs = _outputs(directory)
    checked = 0
    for (name, dtype, label, quantity, x), value in outputs.items():
        if name == "class-focal-no-alpha" and label == "1.0" and quantity == "loss" and dtype == "float64":
            if math.isfinite(float(value)) and float(value) > 1e-300:
                assert float(outputs["class-focal", dtype, label, quantity, x]) == 0.25 * float(value), x
                checked += 1
    assert checked > 30
    spec = json.loads((directory / "r.json").read_text())["settings"]["user_formulations"][0]
    assert spec["init"] == {"gamma": 2.0, "alpha": 0.25, "reduction": "none"}
    assert spec["reference"] == "focal" and spec["reference_parameters"] == {"gamma": 2.0, "alpha": 0.25}
    assert "FocalLoss(gamma=2.0, alpha=0.25, reduction='none')" in runner().invoke(
        main, ["list", "--config", "c.toml"]
    ).stdout.replace("\n", " ")


def test_a_class_that_reduces_by_default_is_refused_in_one_line(project, sweep_calls):
    directory, module = project
    (directory / "c.toml").write_text(
        f'[[formulations]]\ntarget = "{module}:FocalLoss"\ndomain = "logits"\ninit = {{ gamma = 2.0 }}\n'
    )
    line = assert_usage_error(
        runner().invoke(main, ["sweep", "--config", "c.toml"]),
        f"{module}:FocalLoss",
        "returned a scalar (shape ()) for 3 inputs",
        'reduction="none"',
    )
    assert "mean" in line
    assert sweep_calls == []


@pytest.mark.parametrize("how", ["--impl", "config"])
def test_a_function_that_only_reduces_is_refused_in_one_line(project, sweep_calls, how):
    directory, module = project
    if how == "--impl":
        result = runner().invoke(main, ["sweep", "--impl", f"{module}:mean_bce@logits"])
    else:
        (directory / "c.toml").write_text(f'[[formulations]]\ntarget = "{module}:mean_bce@logits"\n')
        result = runner().invoke(main, ["sweep", "--config", "c.toml"])
    assert_usage_error(result, f"{module}:mean_bce", "returned a scalar", "cannot be audited elementwise")
    assert sweep_calls == []


def test_keras_argument_order(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float32"]
        domain = "probabilities"
        labels = [0.0, 1.0]
        points = 60

        [[formulations]]
        name = "keras-order"
        target = "{module}:keras_bce@probabilities"
        arguments = "target, input"

        [[formulations]]
        name = "torch-order"
        target = "{module}:torch_bce@probabilities"

        [[formulations]]
        name = "keras-misread"
        target = "{module}:keras_bce@probabilities"
        """,
    )
    assert_exit(result, 0)
    n = _same_outputs(directory, "keras-order", "torch-order")
    assert n > 200
    outputs = _outputs(directory)
    # called the torch way, the Keras function takes the label for the probability: at p = 0.5,
    # y = 1 it computes -(0.5*log 1 + 0.5*log1p(-1)) = inf instead of log 2
    half = [k for k in outputs if k[0] == "keras-order" and k[2] == "1.0" and k[3] == "loss" and float(k[4]) == 0.5]
    assert len(half) == 1
    assert float(outputs[half[0]]) == float(np.float32(math.log(2)))
    assert float(outputs[("keras-misread", *half[0][1:])]) == math.inf
    settings = json.loads((directory / "r.json").read_text())["settings"]["user_formulations"]
    assert settings[0]["arguments"] == "target, input" and "arguments" not in settings[1]


def test_a_loss_that_wants_a_batch_layout_is_reshaped(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float16", "float64"]
        domain = "logits"
        labels = [0.0, 1.0]
        points = 50

        [[formulations]]
        name = "column"
        target = "{module}:column_bce@logits"
        shape = "(N, 1)"

        [[formulations]]
        name = "row"
        target = "{module}:row_bce@logits"
        shape = "(1,N)"

        [[formulations]]
        target = "torch-bce-with-logits"

        [[formulations]]
        name = "column-flat"
        target = "{module}:column_bce@logits"
        """,
    )
    assert_exit(result, 0)
    _same_outputs(directory, "column", "torch-bce-with-logits")
    _same_outputs(directory, "row", "torch-bce-with-logits")
    # called flat it raises its own error: every case is `error`, with its message
    cases = json.loads((directory / "r.json").read_text())["cases"]
    flat = [c for c in cases if c["formulation"] == "column-flat"]
    assert flat and all(c["worst_status"] == "error" and "expects (N, 1)" in c["error"] for c in flat)
    assert all(c["error"] is None for c in cases if c["formulation"] in ("column", "row"))


def test_a_loss_that_returns_another_dtype_is_audited_and_its_dtype_reported(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float32", "float64"]
        domain = "logits"
        labels = [0.0, 1.0]
        points = 60

        [[formulations]]
        name = "f32"
        target = "{module}:float32_bce@logits"
        """,
    )
    assert_exit(result, 0)
    cases = json.loads((directory / "r.json").read_text())["cases"]
    assert {c["dtype"] for c in cases} == {"float32", "float64"}
    for c in cases:
        assert c["error"] is None
        if c["dtype"] == "float64":
            assert c["output_dtype"] == "float32"
        else:
            assert "output_dtype" not in c
    outputs = _outputs(directory)
    float64_losses = [
        float(v) for k, v in outputs.items() if k[1] == "float64" and k[3] == "loss" and math.isfinite(float(v))
    ]
    assert len(float64_losses) > 100
    # every float64 case's output is a float32 value, so most are far from the float64 truth
    assert all(float(np.float32(v)) == v for v in float64_losses)
    summary = _summary(directory)
    loss64 = summary["f32", "float64", "1.0", "loss"]
    assert int(loss64["inaccurate"]) > int(loss64["points"]) // 2
    loss32 = summary["f32", "float32", "1.0", "loss"]
    assert int(loss32["inaccurate"]) < int(loss32["points"]) // 10  # in its own dtype it is fine
    out = result.stdout.replace("\n", " ")
    assert "f32 (4 cases): float64 in, float32 out" in " ".join(out.split())


def test_list_and_none_parameters(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float64"]
        domain = "logits"
        labels = [0.0, 1.0]
        points = 40

        [[formulations]]
        name = "weighted"
        target = "{module}:class_weighted@logits"
        parameters = {{ weights = [1.0, 2.0] }}

        [[formulations]]
        name = "unweighted"
        target = "{module}:class_weighted@logits"
        parameters = {{ weights = {{ none = true }} }}
        """,
    )
    assert_exit(result, 0)
    outputs = _outputs(directory)
    doubled = 0
    for (name, dtype, label, quantity, x), value in outputs.items():
        if name != "weighted" or not math.isfinite(float(value)):
            continue
        plain = float(outputs["unweighted", dtype, label, quantity, x])
        # the list reached the function: weight 1 for y = 0, 2 for y = 1 (doubling is exact)
        assert float(value) == (2 * plain if label == "1.0" else plain), (label, quantity, x)
        doubled += label == "1.0" and plain != 0
    assert doubled > 30
    settings = json.loads((directory / "r.json").read_text())["settings"]["user_formulations"]
    assert settings[0]["parameters"] == {"weights": [1.0, 2.0]} and settings[1]["parameters"] == {"weights": None}


def test_the_decorator_declares_a_class_its_init_and_reference(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float32"]
        domain = "logits"
        labels = [1.0]
        points = 40

        [[formulations]]
        target = "{module}:DecoratedFocal"

        [[formulations]]
        target = "torchvision-focal"
        """,
    )
    assert_exit(result, 0)
    _same_outputs(directory, "decorated-focal", "torchvision-focal")  # gamma 2, alpha 0.25 both
    summary = _summary(directory)
    for quantity in ("loss", "grad"):
        mine, theirs = (
            summary["decorated-focal", "float32", "1.0", quantity],
            summary["torchvision-focal", "float32", "1.0", quantity],
        )
        assert [mine[c] for c in STATUS_COLUMNS] == [theirs[c] for c in STATUS_COLUMNS]
    settings = json.loads((directory / "r.json").read_text())["settings"]["user_formulations"][0]
    assert settings["reference"] == "focal" and settings["reference_parameters"] == {"gamma": 2.0, "alpha": 0.25}
    assert settings["init"] == {"gamma": 2.0, "reduction": "none"}


@pytest.mark.parametrize(
    "table, culprits",
    [
        ('arguments = "prediction, label"', ["arguments", "'prediction, label'", "target, input"]),
        ('shape = "(N, 2)"', ["shape", "'(N, 2)'", "(N, 1)"]),
        ("init = { gamma = 2.0 }", ["init is for a class", "keras_bce"]),
        ('reference = { loss = "focal", gama = 2.0 }', ["reference focal has no parameter 'gama'", "gamma"]),
        ("reference = { gamma = 2.0 }", ["reference", "names its loss"]),
        ('reference = { loss = "focal", gamma = [2.0] }', ["gamma"]),
        ("parameters = { a = { none = false } }", ["parameters.a", "{ none = true }"]),
        ("init = { a = { b = 1 } }", ["init.a", "{ none = true }"]),
    ],
)
def test_bad_keys_are_one_line_errors(project, sweep_calls, table, culprits):
    directory, module = project
    (directory / "c.toml").write_text(f'[[formulations]]\ntarget = "{module}:keras_bce@probabilities"\n{table}\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", "c.toml"]), *culprits)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "table, culprits",
    [
        ("init = { gamma = 1.0 }", ["init", "built-in"]),
        ('arguments = "target, input"', ["arguments", "built-in"]),
        ('shape = "(N, 1)"', ["shape", "built-in"]),
    ],
)
def test_calling_keys_on_a_builtin_are_refused(project, sweep_calls, table, culprits):
    directory, _ = project
    (directory / "c.toml").write_text(f'[[formulations]]\nname = "x"\ntarget = "torchvision-focal"\n{table}\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", "c.toml"]), "torchvision-focal", *culprits)
    assert sweep_calls == []


def test_a_constructor_that_fails_names_the_call(project, sweep_calls):
    directory, module = project
    (directory / "c.toml").write_text(
        f'[[formulations]]\ntarget = "{module}:FocalLoss@logits"\ninit = {{ gamma = 2.0, beta = 1.0 }}\n'
    )
    assert_usage_error(
        runner().invoke(main, ["sweep", "--config", "c.toml"]), f"{module}:FocalLoss", "FocalLoss(gamma=2.0, beta=1.0)"
    )
    assert sweep_calls == []


def test_a_loss_that_smooths_labels_is_measured_against_the_smoothed_truth(project):
    directory, module = project
    result = _run(
        directory,
        f"""
        dtypes = ["float32"]
        domain = "logits"
        labels = [0.0, 1.0]
        points = 60

        [[formulations]]
        name = "keras-smoothed"
        target = "{module}:keras_smoothed@logits"
        arguments = "target, input"
        parameters = {{ label_smoothing = 0.1 }}
        reference = {{ loss = "label-smoothed-bce", smoothing = 0.1, convention = "keras" }}

        [[formulations]]
        name = "keras-smoothed-vs-plain"
        target = "{module}:keras_smoothed@logits"
        arguments = "target, input"
        parameters = {{ label_smoothing = 0.1 }}

        [[formulations]]
        target = "label-smoothed-bce"
        """,
    )
    assert_exit(result, 0)
    _same_outputs(directory, "keras-smoothed", "label-smoothed-bce")
    _same_outputs(directory, "keras-smoothed-vs-plain", "label-smoothed-bce")
    summary = _summary(directory)
    for label in ("0.0", "1.0"):
        for quantity in ("loss", "grad"):
            mine = summary["keras-smoothed", "float32", label, quantity]
            builtin = summary["label-smoothed-bce", "float32", label, quantity]
            assert [mine[c] for c in STATUS_COLUMNS] == [builtin[c] for c in STATUS_COLUMNS]
            # measured against plain BCE, the same outputs are off nearly everywhere
            plain = summary["keras-smoothed-vs-plain", "float32", label, quantity]
            assert int(plain["inaccurate"]) > int(mine["inaccurate"]) + int(mine["points"]) // 2


def test_the_api_calls_a_decorated_function_as_it_is_written():
    """A Python callable given to bce_audit.audit: the decorator's order, shape and reference."""
    import torch.nn.functional as F

    import bce_audit

    @bce_audit.formulation(
        domain="logits",
        name="keras-column-smoothed",
        arguments="target, input",
        shape="(N, 1)",
        reference={"loss": "label-smoothed-bce", "smoothing": 0.1},
    )
    def keras_column_smoothed(y_true, y_pred):
        assert y_pred.shape[1:] == (1,) and y_true.shape == y_pred.shape
        smoothed = y_true * (1.0 - 0.1) + 0.5 * 0.1
        return F.binary_cross_entropy_with_logits(y_pred, smoothed, reduction="none")

    small = {"dtypes": ["float32"], "domain": "logits", "points": 60}
    mine = bce_audit.audit([keras_column_smoothed], **small).to_records()
    builtin = bce_audit.audit(["label-smoothed-bce"], **small).to_records()
    assert len(mine) == len(builtin) == 4
    for a, b in zip(mine, builtin, strict=True):
        for figure in ("points", "ok", "inaccurate", "inf", "nan", "zero", "max_ulp"):
            assert a[figure] == b[figure], (figure, a, b)


# --- a reference parameter the user does not name is the loss's own ------------------------------

# torchvision's sigmoid focal loss (as the built-in torchvision-focal computes it, line for line),
# with alpha given in each of the places a loss keeps it, and none of them named by the reference.
UNNAMED = '''
import torch
import torch.nn.functional as F


def _focal(z, y, gamma, alpha):
    p = torch.sigmoid(z)
    ce_loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def focal_defaults(z, y, gamma=2.0, alpha=0.25):
    """alpha (and gamma) only in the signature"""
    return _focal(z, y, gamma, alpha)


def focal_keywords(z, y, gamma, alpha):
    """alpha only in the config's parameters"""
    return _focal(z, y, gamma, alpha)


class FocalModule(torch.nn.Module):
    """alpha only in init (the constructor has no default for it)"""

    def __init__(self, alpha, gamma=2.0):
        super().__init__()
        self.alpha, self.gamma = alpha, gamma

    def forward(self, z, y):
        return _focal(z, y, self.gamma, self.alpha)


def tensor_default(z, y, alpha=torch.tensor(0.25)):
    return _focal(z, y, 2.0, float(alpha))
'''


@pytest.fixture
def unnamed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = f"unnamed_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(UNNAMED)
    return tmp_path, module


def _unnamed_config(module: str, wrong: bool = False) -> str:
    # wrong: each reference names alpha = 0.5 explicitly, where the loss computes with 0.25
    alpha = ", alpha = 0.5" if wrong else ""
    return f"""
        dtypes = ["float32", "float64"]
        domain = "logits"
        labels = [0.0, 1.0]
        points = 120

        [[formulations]]
        target = "torchvision-focal"

        [[formulations]]
        name = "in-signature"
        target = "{module}:focal_defaults@logits"
        reference = {{ loss = "focal"{alpha} }}

        [[formulations]]
        name = "in-parameters"
        target = "{module}:focal_keywords@logits"
        parameters = {{ gamma = 2.0, alpha = 0.25 }}
        reference = {{ loss = "focal", gamma = 2.0{alpha} }}

        [[formulations]]
        name = "in-init"
        target = "{module}:FocalModule@logits"
        init = {{ alpha = 0.25 }}
        reference = {{ loss = "focal"{alpha} }}
        """


USERS = ("in-signature", "in-parameters", "in-init")


def test_a_reference_parameter_not_named_is_the_losss_own(unnamed):
    """alpha in the signature's default, in parameters or in init, named by no reference: each
    loss is measured against focal(gamma=2, alpha=0.25), the loss it computes, so its figures are
    the built-in torchvision-focal's (the same computation, the same reference), row for row."""
    directory, module = unnamed
    result = _run(directory, _unnamed_config(module))
    assert_exit(result, 0)
    for name in USERS:
        _same_outputs(directory, name, "torchvision-focal")
    summary = _summary(directory)
    builtin = {k[1:]: r for k, r in summary.items() if k[0] == "torchvision-focal"}
    assert len(builtin) == 8
    for name in USERS:
        for key, theirs in builtin.items():
            mine = summary[(name, *key)]
            assert {c: mine[c] for c in STATUS_COLUMNS} == {c: theirs[c] for c in STATUS_COLUMNS}, (name, key)
    loss = [r for k, r in summary.items() if k[0] in USERS and k[3] == "loss"]
    points = sum(int(r["points"]) for r in loss)
    assert sum(int(r["ok"]) for r in loss) > 0.8 * points  # mostly ok: not measured against alpha none
    assert sum(int(r["inaccurate"]) for r in loss) < 0.1 * points
    references = json.loads((directory / "r.json").read_text())["references"]
    assert {name: references[name] for name in USERS} == dict.fromkeys(
        USERS, "focal(gamma=2.0, alpha=0.25, form=torchvision)"
    )
    listed = runner().invoke(main, ["list", "--config", "c.toml"], env={"COLUMNS": "300"})
    assert_exit(listed, 0)
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    for name in USERS:  # the reference column shows the parameters actually used
        assert "focal(gamma=2.0, alpha=0.25, form=torchvision)" in rows[name], rows[name]


def test_an_explicit_reference_value_is_kept_and_shows_a_mismatch(unnamed):
    """The same losses with alpha = 0.5 named by the reference: it wins over the loss's 0.25, so
    the loss, right for 0.25, is inaccurate against it (a factor 0.25/0.5 at y = 1, 0.75/0.5 at
    y = 0) wherever the built-in, measured against 0.25, is ok."""
    directory, module = unnamed
    result = _run(directory, _unnamed_config(module, wrong=True))
    assert_exit(result, 0)
    references = json.loads((directory / "r.json").read_text())["references"]
    rows = read_csv((directory / "d.csv").read_text())[1]
    status = {(r["formulation"], r["dtype"], r["label"], r["quantity"], r["input"]): r["status"] for r in rows}
    # the points where the built-in is right with an output that is not 0 (a truth that does not
    # round to 0 in the dtype): there the loss is a factor 0.25/0.5 or 0.75/0.5 off the reference
    output = {
        (r["dtype"], r["label"], r["quantity"], r["input"]): float(r["output"])
        for r in rows
        if r["formulation"] == "torchvision-focal"
    }
    right = [k[1:] for k, v in status.items() if k[0] == "torchvision-focal" and v == "ok" and output[k[1:]] != 0]
    assert len(right) > 500
    for name in USERS:
        assert references[name] == "focal(gamma=2.0, alpha=0.5, form=torchvision)"
        wrong = collections.Counter(status[(name, *k)] for k in right)
        assert wrong["inaccurate"] > 0.95 * len(right), (name, wrong, len(right))


@pytest.mark.parametrize(
    ("table", "culprits"),
    [
        (
            'target = "{m}:focal_keywords@logits"\nparameters = {{ gamma = 2.0, alpha = "0.25" }}\nreference = "focal"',
            ("alpha", "'0.25'", "from the loss's parameters"),
        ),
        (
            'target = "{m}:FocalModule@logits"\ninit = {{ alpha = [0.25] }}\nreference = "focal"',
            ("alpha", "not [0.25]", "from the loss's init"),
        ),
        (
            'target = "{m}:tensor_default@logits"\nreference = "focal"',
            ("alpha", "signature default", "Tensor", "not a number"),
        ),
    ],
)
def test_a_losss_value_the_member_refuses_is_a_one_line_error(unnamed, sweep_calls, table, culprits):
    directory, module = unnamed
    (directory / "c.toml").write_text("[[formulations]]\n" + table.format(m=module) + "\n")
    for command in ("sweep", "list"):
        assert_usage_error(runner().invoke(main, [command, "--config", "c.toml"]), "formulations[0]", *culprits)
    assert sweep_calls == []


def test_the_api_reads_a_callables_signature_default_for_its_reference():
    """A decorated callable whose reference does not name alpha: the reference reads its
    signature's alpha=0.25, and its figures are the built-in torchvision-focal's, row for row."""
    import torch

    import bce_audit
    from bce_audit import formulation

    @formulation(domain="logits", reference="focal")
    def api_focal(z, y, gamma=2.0, alpha=0.25):
        p = torch.sigmoid(z)
        ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce_loss * ((1 - p_t) ** gamma)
        return (alpha * y + (1 - alpha) * (1 - y)) * loss

    result = bce_audit.audit(
        [api_focal, "torchvision-focal"], dtypes=["float32", "float64"], domain="logits", points=80, cache=False
    )
    assert dict(result.references)["api_focal"] == "focal(gamma=2.0, alpha=0.25, form=torchvision)"
    by = {(c.formulation, c.dtype, c.label, c.quantity): c for c in result.cases}
    mine = [k for k in by if k[0] == "api_focal"]
    assert len(mine) == 8
    for key in mine:
        assert by[key].figures == by[("torchvision-focal", *key[1:])].figures, key
