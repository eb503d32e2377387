"""The BCE family's built-ins, each measured against its own reference (issue 11)."""

from __future__ import annotations

import math

import numpy as np
import torch
from helpers import FAMILY_BUILTINS, NATIVE_DOMAIN, assert_exit, assert_usage_error, read_csv, runner

from bce_audit.cli import main
from bce_audit.engines import torch_builtins
from bce_audit.formulations.builtins import BUILTINS, DEFAULT
from bce_audit.formulations.selection import Selection
from bce_audit.oracle.family import family_truth
from bce_audit.reference import Member, Reference
from bce_audit.vocabulary import Domain, DType

F64 = DType.FLOAT64.format

CONFIG = """
[[formulations]]
name = "bce-pw2"
target = "torch-bce-with-logits"
parameters = { pos_weight = 2.0 }

[[formulations]]
name = "focal-half"
target = "torchvision-focal"
parameters = { gamma = 0.5, alpha = -1.0 }

[[formulations]]
name = "logspace-half"
target = "logspace-focal"
parameters = { gamma = 0.5, alpha = -1.0 }

[[formulations]]
name = "unsmoothed"
target = "label-smoothed-bce"
parameters = { smoothing = 0.0, convention = "smp" }
"""


def _summary(tmp_path, *args):
    config = tmp_path / "family.toml"
    config.write_text(CONFIG)
    csv = tmp_path / "summary.csv"
    result = runner().invoke(main, ["sweep", "--config", str(config), *args, "--csv", str(csv)])
    assert_exit(result, 0)
    _, rows = read_csv(csv.read_text())
    return {(r["formulation"], r["dtype"], float(r["label"]), r["quantity"]): r for r in rows}, result.stdout


def test_the_family_is_not_in_the_default_set():
    assert Selection.default().names == DEFAULT == tuple(NATIVE_DOMAIN)
    assert {n for n, f in BUILTINS.items() if f.engine == "torch"} == set(DEFAULT) | set(FAMILY_BUILTINS)
    for name in DEFAULT:
        assert BUILTINS[name].reference.is_plain, name
    for name, key in FAMILY_BUILTINS.items():
        assert BUILTINS[name].reference.key == key


def test_each_formulation_is_measured_against_its_own_reference(tmp_path):
    rows, stdout = _summary(tmp_path, "-f", "torch-bce-with-logits", "--domain", "logits", "-d", "float64")
    # pos_weight 2 at y = 1 is 2·softplus(-z), which torch computes within an ulp everywhere:
    # against plain BCE most of these points were "inaccurate" (a factor of 2 off)
    weighted = rows[("bce-pw2", "float64", 1.0, "loss")]
    assert int(weighted["inaccurate"]) == int(weighted["inf"]) == int(weighted["nan"]) == 0
    # its only failures: where the truth 2·softplus(-z) is a subnormal but torch's softplus(-z)
    # already underflowed to 0 before the weight doubles it (z near 745, grid crossings)
    assert int(weighted["ok"]) + int(weighted["zero"]) == int(weighted["points"])
    z = torch.tensor([745.1332191019409], dtype=torch.float64)
    doubled = torch.nn.functional.binary_cross_entropy_with_logits(
        z, torch.ones_like(z), pos_weight=torch.tensor(2.0, dtype=torch.float64), reduction="none"
    )
    exact = family_truth(Reference.for_member(Member.BCE, {"pos_weight": 2.0}), Domain.LOGITS, float(z), 1.0, (F64,))
    assert doubled.item() == 0.0 and exact.loss[0] > 0  # the finding, derived from torch and the oracle
    # at y = 0 pos_weight does not enter: the same figures as the plain built-in
    plain = rows[("torch-bce-with-logits", "float64", 0.0, "loss")]
    assert rows[("bce-pw2", "float64", 0.0, "loss")] == {**plain, "formulation": "bce-pw2"}
    # label smoothing by 0 is plain BCE: the same figures too
    for y in (0.0, 1.0):
        for q in ("loss", "grad"):
            same = rows[("unsmoothed", "float64", y, q)]
            assert same == {**rows[("torch-bce-with-logits", "float64", y, q)], "formulation": "unsmoothed"}
    # the legend names each formulation's reference
    text = " ".join(stdout.split())
    assert "bce-pw2: bce(pos_weight=2.0, weight=1.0)" in text
    assert "focal-half: focal(gamma=0.5, alpha=none, form=torchvision)" in text


def test_torchvision_focal_gradient_is_nan_exactly_where_torch_rounds_p_t_to_one(tmp_path):
    """γ = 0.5: autograd of (1 - p_t)^γ is γ·0^(γ-1)·0 = NaN wherever 1 - p_t is 0 in the dtype;
    the exact gradient there is finite (the oracle's limit), and the log-space form keeps it."""
    for dtype in (torch.float32, torch.float64):
        z = torch.linspace(-120, 120, 4801, dtype=dtype)
        for label in (0.0, 1.0):
            x = z.clone().requires_grad_(True)
            y = torch.full_like(x, label)
            torch_builtins.torchvision_focal(x, y, gamma=0.5, alpha=-1.0).sum().backward()
            with torch.no_grad():
                p = torch.sigmoid(z)
                p_t = p * y + (1 - p) * (1 - y)
                vanished = (1 - p_t) == 0
            assert vanished.any()
            np.testing.assert_array_equal(torch.isnan(x.grad).numpy(), vanished.numpy())
            x2 = z.clone().requires_grad_(True)
            torch_builtins.logspace_focal(x2, y, gamma=0.5, alpha=-1.0).sum().backward()
            assert torch.isfinite(x2.grad).all()
            # and the truth at those points is finite: the limit of a vanishing gradient
            ref = Reference(member=Member.FOCAL, gamma=0.5)
            for v in z[vanished][:: max(1, int(vanished.sum()) // 5)].tolist():
                t = family_truth(ref, Domain.LOGITS, v, label, (F64,))
                assert math.isfinite(t.grad[0]) and abs(t.grad[0]) < 1e-10
    rows, _ = _summary(tmp_path, "--domain", "logits", "-d", "float32")
    assert int(rows[("focal-half", "float32", 1.0, "grad")]["nan"]) > 0
    for y in (0.0, 1.0):
        half = rows[("logspace-half", "float32", y, "grad")]
        assert int(half["nan"]) == 0 and float(half["max_ulp"]) <= 8, half


def test_bad_family_parameters_are_usage_errors(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[formulations]]\nname = "neg"\ntarget = "torchvision-focal"\nparameters = { gamma = -1.0 }\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(config)]), "formulations[0]", "gamma")
    config.write_text(
        '[[formulations]]\nname = "s"\ntarget = "label-smoothed-bce"\nparameters = { convention = "tf" }\n'
    )
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(config)]), "smoothing convention", "'tf'")
    config.write_text('[[formulations]]\nname = "s"\ntarget = "label-smoothed-bce"\nparameters = { smoothing = "x" }\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(config)]), "smoothing", "number")


# --- --param: a parameter as a case dimension ------------------------------------------------------


def test_param_sweeps_a_parameter_as_a_case_dimension(tmp_path):
    csv = tmp_path / "p.csv"
    args = ["sweep", "-f", "torchvision-focal", "-f", "torch-bce-with-logits", "-f", "max-abs"]
    args += ["--param", "gamma=0,0.5", "--param", "alpha=-1", "-d", "float32", "--domain", "logits"]
    result = runner().invoke(main, [*args, "--points", "200", "--csv", str(csv)])
    assert_exit(result, 0)
    header, rows = read_csv(csv.read_text())
    assert header[:3] == ["formulation", "parameters", "domain"]  # shown: this run varies it
    runs = list(dict.fromkeys((r["formulation"], r["parameters"]) for r in rows))
    assert runs == [
        ("torchvision-focal", "gamma=0 alpha=-1"),
        ("torchvision-focal", "gamma=0.5 alpha=-1"),
        ("torch-bce-with-logits", ""),  # takes neither: once, as it is
        ("max-abs", ""),
    ]
    by = {(r["formulation"], r["parameters"], r["label"], r["quantity"]): r for r in rows}
    # γ = 0 without α is BCE-with-logits times 1**0 = 1 exactly, and its reference is plain BCE:
    # the same figures as torch-bce-with-logits, point for point
    for y in ("0.0", "1.0"):
        for q in ("loss", "grad"):
            focal = by[("torchvision-focal", "gamma=0 alpha=-1", y, q)]
            plain = by[("torch-bce-with-logits", "", y, q)]
            assert {**focal, "formulation": "", "parameters": ""} == {**plain, "formulation": "", "parameters": ""}
    # γ = 0.5: NaN gradients where 1 - p_t rounds to 0 (see above), against a finite truth
    assert int(by[("torchvision-focal", "gamma=0.5 alpha=-1", "1.0", "grad")]["nan"]) > 0
    assert "torchvision-focal gamma=0.5 alpha=-1: focal(gamma=0.5, alpha=none, form=torchvision)" in " ".join(
        result.stdout.split()
    )


def test_param_mistakes_are_usage_errors():
    def sweep(*args):
        return runner().invoke(main, ["sweep", *args, "-d", "float32", "--points", "20"])

    assert_usage_error(sweep("-f", "max-abs", "--param", "gamma=1"), "--param gamma", "no selected formulation")
    assert_usage_error(sweep("-f", "torchvision-focal", "--param", "gamma"), "--param 'gamma'", "NAME=V1,V2")
    assert_usage_error(sweep("-f", "torchvision-focal", "--param", "gamma=1,"), "NAME=V1,V2")
    assert_usage_error(sweep("-f", "torchvision-focal", "--param", "gamma=x"), "gamma=x", "a number")
    assert_usage_error(sweep("-f", "torchvision-focal", "--param", "gamma=-2"), "gamma must be >= 0")
    assert_usage_error(sweep("-f", "torchvision-focal", "--param", "gamma=1", "--param", "gamma=2"), "twice")
    assert_usage_error(sweep("-f", "label-smoothed-bce", "--param", "convention=tf"), "smoothing convention 'tf'")


# --- a user's function declares its reference (a config table's reference key) ------------------


def test_a_config_table_declares_the_reference_of_a_users_function(tmp_path):
    from helpers import ROOT

    target = f"{ROOT / 'sample_configs' / 'my_losses.py'}:stable_bce"
    config = tmp_path / "mine.toml"
    config.write_text(
        f'[[formulations]]\nname = "declared"\ntarget = "{target}"\nparameters = {{ pos_weight = 2.0 }}\n'
        'reference = "bce"\n\n'
        f'[[formulations]]\nname = "undeclared"\ntarget = "{target}"\nparameters = {{ pos_weight = 2.0 }}\n'
    )
    csv, report = tmp_path / "s.csv", tmp_path / "r.json"
    args = ["--config", str(config), "-d", "float64", "--domain", "logits", "--points", "300"]
    result = runner().invoke(main, ["sweep", *args, "--csv", str(csv), "--json", str(report)])
    assert_exit(result, 0)
    _, rows = read_csv(csv.read_text())
    by = {(r["formulation"], r["label"], r["quantity"]): r for r in rows}
    # -(2·y·logsigmoid(z) + ...) is right: against bce(pos_weight=2) every point is ok; against
    # plain BCE (undeclared) a factor of 2 off at y = 1 wherever the loss is not tiny
    for q in ("loss", "grad"):
        declared = by[("declared", "1.0", q)]
        # right everywhere but where the weighted truth is a subnormal that logsigmoid's 0 misses
        assert int(declared["inaccurate"]) == int(declared["inf"]) == int(declared["nan"]) == 0
        assert int(declared["ok"]) + int(declared["zero"]) == int(declared["points"])
        assert int(by[("undeclared", "1.0", q)]["inaccurate"]) > int(by[("undeclared", "1.0", q)]["points"]) // 2
    import json

    users = json.loads(report.read_text())["settings"]["user_formulations"]
    assert [u.get("reference") for u in users] == ["bce", None]
    listed = runner().invoke(main, ["list", "--config", str(config)], env={"COLUMNS": "400"})
    assert "bce(pos_weight=2.0, weight=1.0)" in listed.stdout
    # a reference that is not a member, or parameters it refuses, are usage errors naming the table
    config.write_text(f'[[formulations]]\ntarget = "{target}"\nreference = "hinge"\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(config)]), "formulations[0]", "'hinge'")
    config.write_text(
        f'[[formulations]]\ntarget = "{target}"\nreference = "bce"\nparameters = {{ pos_weight = -1.0 }}\n'
    )
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(config)]), "formulations[0]", "pos_weight")
    config.write_text('[[formulations]]\nname = "x"\ntarget = "max-abs"\nreference = "focal"\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(config)]), "declares its own reference")


def test_json_names_the_references_only_in_a_run_that_has_others():
    import json

    args = ["sweep", "-d", "float32", "--domain", "logits", "--points", "30", "--json", "-"]
    family = runner().invoke(main, [*args, "-f", "torchvision-focal", "-f", "max-abs", "--param", "gamma=0.5,2"])
    assert_exit(family, 0)
    doc = json.loads(family.stdout)
    assert doc["references"] == {
        "torchvision-focal gamma=0.5": "focal(gamma=0.5, alpha=0.25, form=torchvision)",
        "torchvision-focal gamma=2": "focal(gamma=2.0, alpha=0.25, form=torchvision)",
    }
    assert doc["settings"]["parameter_sweep"] == {"gamma": ["0.5", "2"]}
    plain = json.loads(runner().invoke(main, [*args, "-f", "max-abs"]).stdout)
    assert "references" not in plain and "parameter_sweep" not in plain["settings"]


def test_the_api_sweeps_parameters_like_the_command_line():
    import bce_audit

    result = bce_audit.audit(
        ["torchvision-focal", "max-abs"], dtypes="float32", domain="logits", points=40, parameters={"gamma": [0.5, 2]}
    )
    runs = list(dict.fromkeys((c.formulation, c.parameters) for c in result.cases))
    assert runs == [("torchvision-focal", "gamma=0.5"), ("torchvision-focal", "gamma=2"), ("max-abs", "")]
    assert dict(result.references)["torchvision-focal gamma=2"] == "focal(gamma=2.0, alpha=0.25, form=torchvision)"


def test_check_keeps_parameter_variants_in_its_baseline(tmp_path):
    baseline = tmp_path / "b.json"
    args = ["check", "-f", "torchvision-focal", "--param", "gamma=0.5,2", "-d", "float32", "--domain", "logits"]
    args += ["--points", "40", "--baseline", str(baseline)]
    assert_exit(runner().invoke(main, [*args, "--update-baseline"]), 0)
    assert baseline.read_text().count('"parameters": "gamma=0.5"') == 4
    again = runner().invoke(main, args)
    assert_exit(again, 0)
    assert "8 cases checked, 0 failed" in " ".join(again.stdout.split())


# --- --param on a user's loss: its reference follows, None and lists, each value's type ----------

PARAM_LOSSES = '''
import torch
import torch.nn.functional as F


def focal(z, y, gamma=2.0, alpha=0.25):
    """torchvision's sigmoid focal loss, line for line (as the built-in torchvision-focal)"""
    p = torch.sigmoid(z)
    ce_loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def typed(z, y, flag=True, mode="a", n=1, scale=1.0, weights=None, extra=None):
    """raises unless every parameter has the type it is declared with"""
    for value, kind in ((flag, bool), (mode, str), (n, int), (scale, float)):
        if type(value) is not kind:
            raise TypeError(f"{value!r} is not a {kind.__name__}")
    if extra is not None and type(extra) is not float:
        raise TypeError(f"extra {extra!r}")
    return F.binary_cross_entropy_with_logits(z, y, reduction="none") * scale
'''


def _param_project(tmp_path, monkeypatch):
    import uuid

    monkeypatch.chdir(tmp_path)
    module = f"param_losses_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(PARAM_LOSSES)
    return module


def _param_run(tmp_path, config, *args):
    """The summary rows by (formulation, parameters, dtype, label, quantity), the references."""
    import json

    (tmp_path / "c.toml").write_text(config)
    common = ["-d", "float32", "-d", "float64", "--domain", "logits", "--points", "80"]
    result = runner().invoke(
        main, ["sweep", "--config", "c.toml", *common, *args, "--csv", "s.csv", "--json", "r.json"]
    )
    assert_exit(result, 0)
    _, rows = read_csv((tmp_path / "s.csv").read_text())
    by = {(r["formulation"], r.get("parameters", ""), r["dtype"], r["label"], r["quantity"]): r for r in rows}
    return by, json.loads((tmp_path / "r.json").read_text()).get("references", {})


STATUS_COLUMNS = ("points", "ok", "inaccurate", "zero", "inf", "nan", "max_ulp", "stable_lo", "stable_hi")


def _same_rows(by, mine, theirs):
    """Every row of the variant ``mine`` has the status columns of the variant ``theirs``."""
    keys = [k[2:] for k in by if k[:2] == mine]
    assert len(keys) == 8
    for key in keys:
        a, b = by[(*mine, *key)], by[(*theirs, *key)]
        assert {c: a[c] for c in STATUS_COLUMNS} == {c: b[c] for c in STATUS_COLUMNS}, (mine, theirs, key)


def test_param_on_a_users_focal_loss_moves_its_reference_with_the_swept_value(tmp_path, monkeypatch):
    """gamma is only a keyword default of the user's loss and its reference (reference = "focal")
    names it nowhere: --param sweeps it, and each variant is measured against focal at that gamma,
    as the built-in's variants are: the same rows, variant for variant."""
    module = _param_project(tmp_path, monkeypatch)
    config = (
        '[[formulations]]\ntarget = "torchvision-focal"\n\n'
        f'[[formulations]]\nname = "mine"\ntarget = "{module}:focal@logits"\nreference = "focal"\n'
    )
    by, references = _param_run(tmp_path, config, "--param", "gamma=0,0.5,2")
    for gamma, shown in (("0", "0.0"), ("0.5", "0.5"), ("2", "2.0")):
        _same_rows(by, ("mine", f"gamma={gamma}"), ("torchvision-focal", f"gamma={gamma}"))
        assert references[f"mine gamma={gamma}"] == f"focal(gamma={shown}, alpha=0.25, form=torchvision)"
    # the variants differ from each other (the sweep is not a no-op): gamma 0 has no NaN gradient
    assert by[("mine", "gamma=0", "float32", "1.0", "grad")]["nan"] == "0"
    assert int(by[("mine", "gamma=0.5", "float32", "1.0", "grad")]["nan"]) > 0


def test_param_none_calls_a_users_loss_with_none_and_its_reference_follows(tmp_path, monkeypatch):
    """--param alpha=none,0.25: the user's loss called with alpha=None is measured against
    focal(alpha=none), exactly as the built-in with its own spelling of no weighting (alpha=-1)."""
    module = _param_project(tmp_path, monkeypatch)
    mine = f'[[formulations]]\nname = "mine"\ntarget = "{module}:focal@logits"\nreference = "focal"\n'
    by, references = _param_run(tmp_path, mine, "--param", "alpha=none,0.25")
    assert references["mine alpha=none"] == "focal(gamma=2.0, alpha=none, form=torchvision)"
    assert references["mine alpha=0.25"] == "focal(gamma=2.0, alpha=0.25, form=torchvision)"
    theirs, _ = _param_run(tmp_path, '[[formulations]]\ntarget = "torchvision-focal"\n', "--param", "alpha=-1,0.25")
    both = {**by, **theirs}
    _same_rows(both, ("mine", "alpha=none"), ("torchvision-focal", "alpha=-1"))
    _same_rows(both, ("mine", "alpha=0.25"), ("torchvision-focal", "alpha=0.25"))
    # a parameter that is None now: none and numbers are its values, other text is refused
    none_now = mine + "parameters = { alpha = { none = true } }\n"
    by, references = _param_run(tmp_path, none_now, "--param", "alpha=0.25,none")
    assert [k[1] for k in by if k[2:] == ("float32", "0.0", "loss")] == ["alpha=0.25", "alpha=none"]
    (tmp_path / "c.toml").write_text(none_now)
    assert_usage_error(
        runner().invoke(main, ["sweep", "--config", "c.toml", "--param", "alpha=abc"]),
        "--param alpha=abc",
        "mine takes none or a number",
    )


def test_param_refuses_what_it_cannot_sweep_in_one_line(tmp_path, monkeypatch):
    module = _param_project(tmp_path, monkeypatch)

    def sweep(config, *args):
        (tmp_path / "c.toml").write_text(config)
        return runner().invoke(main, ["sweep", "--config", "c.toml", "-d", "float32", "--points", "20", *args])

    # a parameter the reference names explicitly would stay fixed while the loss's changes
    named = f'[[formulations]]\nname = "mine"\ntarget = "{module}:focal@logits"\n'
    named += 'reference = { loss = "focal", gamma = 2.0 }\n'
    assert_usage_error(sweep(named, "--param", "gamma=0,2"), "--param gamma", "mine's reference names gamma", "drop")
    # a list-valued parameter: --param sweeps single values
    lists = (
        f'[[formulations]]\nname = "mine"\ntarget = "{module}:typed@logits"\nparameters = {{ weights = [1.0, 2.0] }}\n'
    )
    assert_usage_error(sweep(lists, "--param", "weights=1,2"), "--param weights", "is a list ([1, 2])")
    # a built-in takes numbers only (torchvision-focal spells no weighting alpha=-1)
    assert_usage_error(
        sweep('[[formulations]]\ntarget = "torchvision-focal"\n', "--param", "alpha=none"),
        "--param alpha=none",
        "torchvision-focal takes a number",
    )


def test_param_keeps_each_parameters_type(tmp_path, monkeypatch):
    """bool, str, int and float parameters get values of their own type (the loss raises
    otherwise: error rows); a string parameter's none is the string; a mistyped value is refused."""
    module = _param_project(tmp_path, monkeypatch)
    config = (
        f'[[formulations]]\nname = "typed"\ntarget = "{module}:typed@logits"\n'
        'parameters = { flag = true, mode = "a", n = 1, scale = 1.0 }\n'
    )
    args = ["--param", "flag=true,false", "--param", "mode=b,none", "--param", "n=2", "--param", "scale=0.5"]
    by, _ = _param_run(tmp_path, config, *args)
    runs = list(dict.fromkeys(k[1] for k in by))
    assert runs == [
        "flag=true mode=b n=2 scale=0.5",
        "flag=true mode=none n=2 scale=0.5",
        "flag=false mode=b n=2 scale=0.5",
        "flag=false mode=none n=2 scale=0.5",
    ]
    assert all(r["points"] != "0" for r in by.values())  # no error rows: every value had its type
    for text, culprit in (("flag=1", "takes true or false"), ("n=x", "takes none or a number")):
        (tmp_path / "c.toml").write_text(config)
        result = runner().invoke(main, ["sweep", "--config", "c.toml", "--param", text])
        assert_usage_error(result, f"--param {text}", culprit)


def test_the_api_sweeps_none_as_the_command_line_does(tmp_path, monkeypatch):
    import bce_audit

    module = _param_project(tmp_path, monkeypatch)
    config = {"formulations": [{"name": "mine", "target": f"{module}:focal@logits", "reference": "focal"}]}
    result = bce_audit.audit(
        config=config, dtypes="float32", domain="logits", points=30, parameters={"alpha": [None, 0.25]}
    )
    assert {c.error for c in result.cases} == {None}
    assert list(dict.fromkeys(c.parameters for c in result.cases)) == ["alpha=none", "alpha=0.25"]
    assert dict(result.references)["mine alpha=none"] == "focal(gamma=2.0, alpha=none, form=torchvision)"
