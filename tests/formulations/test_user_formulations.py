"""Your own formulation: --impl targets, @formulation, [[formulations]] in the config, entry points.

Every sweep here is tiny (float16 or float32, logits, a few dozen points). User code is written
into tmp_path; module names are unique per test, so Python's module cache never mixes them up.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from helpers import NATIVE_DOMAIN, ROOT, STATUSES, assert_exit, assert_usage_error, read_csv, runner, table_rows

from bce_audit.cli import main

SAMPLES = ROOT / "sample_configs"
BUILTINS = list(NATIVE_DOMAIN)
SMALL = ["-d", "float16", "--domain", "logits", "--points", "40"]

LOSSES = '''
import sys
import warnings

import torch

from bce_audit import formulation


def plain(z, y):
    """binary_cross_entropy_with_logits, undecorated."""
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


@formulation(domain="logits", name="decorated-bce", formula="softplus(z) - y*z")
def decorated(z, y):
    return torch.nn.functional.softplus(z) - y * z


@formulation(domain="probabilities")
def probs(p, y):
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p))


@formulation(domain="logits")
def weighted(z, y, pos_weight=1.0):
    logsigmoid = torch.nn.functional.logsigmoid
    return -(pos_weight * y * logsigmoid(z) + (1 - y) * logsigmoid(-z))


def naive(z, y):  # named like a built-in
    return plain(z, y)


def raises(z, y):
    raise ValueError("boom from the user")


def raises_lines(z, y):
    raise ValueError("first line\\n    second line")


def wrong_shape(z, y):
    return plain(z, y)[1:]


def wrong_dtype(z, y):
    return plain(z, y).to(torch.int32)


def not_a_tensor(z, y):
    return 1.0


def detached(z, y):
    return plain(z, y).detach()


def numpy_round_trip(z, y):
    return torch.from_numpy(plain(z, y).detach().numpy())


def exits(z, y):
    sys.exit(3)


def grad_off(z, y):
    torch.set_grad_enabled(False)  # global: must not leak into the formulations after it
    return plain(z, y)


def chatty(z, y):
    print("hello from chatty")
    warnings.warn("chatty warns")
    return plain(z, y)


def one_argument(z):
    return z


NOT_CALLABLE = 42
'''

RUNTIME_FAILURES = {
    "raises": "ValueError: boom from the user",
    "raises_lines": "ValueError: first line second line",  # one line: a report cell, a summary line
    "wrong_shape": "returned shape (",
    "wrong_dtype": "returned dtype torch.int32, expected a floating-point loss",
    "not_a_tensor": "returned float, expected a torch.Tensor",
    "detached": "does not require grad",
    "numpy_round_trip": "does not require grad",
    "exits": "sys.exit(3)",
    "grad_off": "does not require grad",
}


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _losses_file(directory: Path, name: str = "losses.py") -> Path:
    path = directory / name
    path.write_text(LOSSES)
    return path


def _sweep(*args: str):
    return runner().invoke(main, ["sweep", *args])


def _rows(path: Path) -> list[dict]:
    return read_csv(path.read_text())[1]


def _counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["formulation"]] = counts.get(r["formulation"], 0) + 1
    return counts


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- the three target forms


def test_file_target_relative_to_cwd(in_tmp):
    _losses_file(in_tmp)
    result = _sweep("--impl", "losses.py:plain@logits", *SMALL, "--csv", "s.csv")
    assert_exit(result, 0)
    rows = _rows(in_tmp / "s.csv")
    assert _counts(rows) == {"plain": 4}  # only the user formulation: labels 0, 1 x loss, grad
    for r in rows:
        assert int(r["points"]) >= 40 and sum(int(r[s]) for s in STATUSES) == int(r["points"])
    assert re.search(r"^\s*plain\s+logits\s+\S+", result.stdout, re.M), result.stdout


def test_file_target_absolute_and_in_a_subdirectory(tmp_path, in_tmp):
    sub = tmp_path / "lib"
    sub.mkdir()
    path = _losses_file(sub)
    for target in (f"{path}:plain@logits", "lib/losses.py:plain@logits"):
        result = _sweep("--impl", target, *SMALL, "--points", "10", "--csv", "s.csv")
        assert_exit(result, 0)
        assert _counts(_rows(in_tmp / "s.csv")) == {"plain": 4}


def test_module_target_from_the_current_directory(in_tmp):
    # `bce-audit` is a console script: the cwd is not on sys.path unless bce-audit puts it there
    package = _unique("uf_pkg")
    (in_tmp / package).mkdir()
    (in_tmp / package / "__init__.py").write_text("")
    _losses_file(in_tmp / package)
    result = _sweep("--impl", f"{package}.losses:decorated", *SMALL, "--csv", "s.csv")
    assert_exit(result, 0)
    assert _counts(_rows(in_tmp / "s.csv")) == {"decorated-bce": 4}  # the decorator's name
    assert str(in_tmp) not in sys.path  # put there only while importing


def test_module_target_on_sys_path(tmp_path, monkeypatch):
    module = _unique("uf_mod")
    _losses_file(tmp_path, f"{module}.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "s.csv"
    assert_exit(_sweep("--impl", f"{module}:plain@logits", *SMALL, "--csv", str(out)), 0)
    assert _counts(_rows(out)) == {"plain": 4}


# --------------------------------------------------------------------------- which formulations run


def test_impl_alone_audits_only_it_and_f_adds_builtins(in_tmp):
    _losses_file(in_tmp)
    args = ["--impl", "losses.py:plain@logits", *SMALL, "--points", "10"]
    assert_exit(_sweep(*args, "--csv", "a.csv"), 0)
    assert [r["formulation"] for r in _rows(in_tmp / "a.csv")] == ["plain"] * 4
    assert_exit(_sweep(*args, "-f", "torch-bce-with-logits", "--csv", "b.csv"), 0)
    rows = _rows(in_tmp / "b.csv")
    # -f names first, then --impl, in the order given
    assert [r["formulation"] for r in rows] == ["torch-bce-with-logits"] * 4 + ["plain"] * 4
    # plain is binary_cross_entropy_with_logits: the same numbers under another name
    figures = [{k: v for k, v in r.items() if k != "formulation"} for r in rows]
    assert figures[:4] == figures[4:]


def test_f_may_name_a_user_formulation(in_tmp):
    _losses_file(in_tmp)
    result = _sweep("--impl", "losses.py:plain@logits", "-f", "plain", *SMALL, "--points", "10", "--csv", "s.csv")
    assert_exit(result, 0)
    assert _counts(_rows(in_tmp / "s.csv")) == {"plain": 4}


def test_several_impl_and_the_same_one_twice(in_tmp):
    _losses_file(in_tmp)
    args = ["--impl", "losses.py:plain@logits", "--impl", "losses.py:decorated", "--impl", "losses.py:plain@logits"]
    assert_exit(_sweep(*args, *SMALL, "--points", "10", "--csv", "s.csv"), 0)
    assert [r["formulation"] for r in _rows(in_tmp / "s.csv")][::4] == ["plain", "decorated-bce"]


# --------------------------------------------------------------------------- domain and name


def _json_settings(in_tmp: Path, *args: str) -> dict:
    result = _sweep(*args, *SMALL, "--points", "5", "--json", "r.json")
    assert_exit(result, 0)
    return json.loads((in_tmp / "r.json").read_text())["settings"]


def test_domain_from_suffix_decorator_or_config_and_in_the_settings(in_tmp):
    _losses_file(in_tmp)
    # the decorator says probabilities
    settings = _json_settings(in_tmp, "--impl", "losses.py:probs")
    assert settings["formulations"] == ["probs"]
    assert settings["user_formulations"] == [
        {"name": "probs", "target": "losses.py:probs", "domain": "probabilities", "parameters": {}}
    ]
    # the suffix wins over the decorator
    settings = _json_settings(in_tmp, "--impl", "losses.py:probs@logits")
    assert settings["user_formulations"][0]["domain"] == "logits"
    # so does the config's domain key, and the config's name wins over the function's
    (in_tmp / "c.toml").write_text(
        '[[formulations]]\nname = "as-logits"\ntarget = "losses.py:probs"\ndomain = "logits"\n'
    )
    settings = _json_settings(in_tmp, "--config", "c.toml")
    assert settings["formulations"] == ["as-logits"]
    assert settings["user_formulations"][0]["domain"] == "logits"


def test_the_declared_domain_decides_what_the_function_is_fed(in_tmp):
    _losses_file(in_tmp)
    args = [*SMALL, "-y", "0", "--csv", "s.csv"]
    # declared on probabilities (by its decorator): on the logit grid it gets p = sigmoid(z) in
    # [0, 1]: -inf from log1p(-p) once sigmoid(z) rounds to 1, NaN only where it rounds to 0
    assert_exit(_sweep("--impl", "losses.py:probs", *args), 0)
    as_probs = next(r for r in _rows(in_tmp / "s.csv") if r["quantity"] == "loss")
    assert int(as_probs["inf"]) > 0
    # declared on logits (the suffix): it gets z itself, and log(z) is NaN for every z < 0
    assert_exit(_sweep("--impl", "losses.py:probs@logits", *args), 0)
    as_logits = next(r for r in _rows(in_tmp / "s.csv") if r["quantity"] == "loss")
    assert int(as_logits["nan"]) > int(as_probs["nan"]) + 10


def test_no_domain_is_a_usage_error(in_tmp, sweep_calls):
    _losses_file(in_tmp)
    line = assert_usage_error(_sweep("--impl", "losses.py:plain", *SMALL), "losses.py:plain", "declare its domain")
    assert "@logits" in line and "@formulation(domain=" in line
    assert sweep_calls == []


def test_decorator_name_and_list(in_tmp):
    _losses_file(in_tmp)
    result = runner().invoke(
        main, ["list", "--impl", "losses.py:decorated", "--impl", "losses.py:plain@logits"], env={"COLUMNS": "400"}
    )
    assert_exit(result, 0)
    rows = {cells[0]: cells[1:] for cells in table_rows(result.stdout, "name")}
    assert list(rows)[:7] == BUILTINS
    assert rows["decorated-bce"] == ["logits", "torch", "--impl", "bce", "softplus(z) - y*z"]  # the decorator's formula
    assert rows["plain"] == [
        "logits",
        "torch",
        "--impl",
        "bce",
        "binary_cross_entropy_with_logits, undecorated.",
    ]  # docstring


# --------------------------------------------------------------------------- parameters


def test_parameters_reach_the_function(in_tmp):
    _losses_file(in_tmp)
    (in_tmp / "c.toml").write_text(
        textwrap.dedent(
            """
            dtypes = ["float32"]
            domain = "logits"
            labels = [1.0]
            range = [-30, 30]
            points = 40

            [[formulations]]
            name = "pw1"
            target = "losses.py:weighted"
            parameters = { pos_weight = 1.0 }

            [[formulations]]
            name = "pw2"
            target = "losses.py:weighted"
            parameters = { pos_weight = 2.0 }
            """
        )
    )
    result = _sweep("--config", "c.toml", "--details", "d.csv", "--json", "r.json", "--csv", "s.csv")
    assert_exit(result, 0)
    loss = {}
    for r in _rows(in_tmp / "d.csv"):
        if r["quantity"] == "loss" and math.isfinite(float(r["input"])):
            loss[r["formulation"], float(r["input"])] = float(r["output"])
    inputs = sorted(x for f, x in loss if f == "pw1")
    assert len(inputs) > 40
    nonzero = 0
    for x in inputs:
        # at y = 1 the loss is pos_weight * softplus(-z): doubling is exact in binary
        assert loss["pw2", x] == 2 * loss["pw1", x], x
        nonzero += loss["pw1", x] != 0
    assert nonzero > 20
    summary = {(r["formulation"], r["quantity"]): r for r in _rows(in_tmp / "s.csv")}
    assert int(summary["pw1", "loss"]["ok"]) == int(summary["pw1", "loss"]["points"])  # pos_weight 1 is BCE
    assert int(summary["pw2", "loss"]["inaccurate"]) > 20  # twice the BCE is far from it
    settings = json.loads((in_tmp / "r.json").read_text())["settings"]
    assert [u["parameters"] for u in settings["user_formulations"]] == [{"pos_weight": 1.0}, {"pos_weight": 2.0}]


def test_builtin_target_with_parameters(in_tmp):
    (in_tmp / "c.toml").write_text(
        textwrap.dedent(
            """
            dtypes = ["float32"]
            domain = "probabilities"
            labels = [1.0]
            points = 10

            [[formulations]]
            target = "clipped"

            [[formulations]]
            name = "clipped-1e-3"
            target = "clipped"
            parameters = { eps = 1e-3 }
            """
        )
    )
    assert_exit(_sweep("--config", "c.toml", "--details", "d.csv"), 0)
    at_zero = {
        r["formulation"]: float(r["output"])
        for r in _rows(in_tmp / "d.csv")
        if r["quantity"] == "loss" and r["input"] == "0.0"
    }
    # -log(eps) at p = 0, in float32
    assert at_zero["clipped"] == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert at_zero["clipped-1e-3"] == pytest.approx(-math.log(1e-3), rel=1e-6)


@pytest.mark.parametrize(
    "table, culprits",
    [
        ('target = "losses.py:weighted"\nparameters = { pos_weigth = 2.0 }\n', ["pos_weigth", "losses.py:weighted"]),
        ('target = "losses.py:plain@logits"\nparameters = { eps = 1.0 }\n', ["eps", "losses.py:plain"]),
        ('target = "losses.py:one_argument@logits"\n', ["one_argument", "input, target"]),
        ('target = "max-abs"\nparameters = { eps = 1.0 }\nname = "m"\n', ["eps", "max-abs"]),
        ('target = "clipped"\nparameters = { eps = 1e-3 }\n', ["'clipped'", "name"]),
        ('target = "clipped"\ndomain = "logits"\n', ["clipped", "domain"]),
        ('target = "losses.py:plain@logits"\ndomain = "probabilities"\n', ["contradicts"]),
        ('target = "losses.py:plain"\ndomain = "logit"\n', ["'logit'", "logits"]),
        ('target = "losses.py:plain@logits"\nname = "has space"\n', ["'has space'"]),
        ('target = "losses.py:plain@logits"\nname = "max-abs"\n', ["'max-abs'", "built-in"]),
        ('target = "clippd"\n', ["unknown formulation 'clippd' (did you mean 'clipped'?)", "naive"]),
        ('target = "clipped"\nname = "c"\nparameters = { eps = "big" }\n', ["'eps'", "a number", "'big'"]),
        ('target = "softplus-threshold"\nname = "s"\nparameters = { threshold = true }\n', ["'threshold'", "number"]),
    ],
)
def test_bad_formulation_tables(in_tmp, sweep_calls, table, culprits):
    _losses_file(in_tmp)
    (in_tmp / "c.toml").write_text("[[formulations]]\n" + table)
    assert_usage_error(_sweep("--config", "c.toml"), *culprits)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "toml, culprits",
    [
        ('[[formulations]]\ntarget = "m:f"\ncolour = 1\n', ["formulations[0]", "'colour'"]),
        ('[[formulations]]\ntarget = "m:f"\nparamters = {}\n', ["'paramters'", "'parameters'"]),
        ('[[formulations]]\nname = "x"\n', ["formulations[0]", "'target'"]),
        ("[[formulations]]\ntarget = 3\n", ["formulations[0].target", "int"]),
        ('[[formulations]]\ntarget = "m:f"\nparameters = 2\n', ["formulations[0].parameters", "int"]),
        ('[[formulations]]\ntarget = "m:f"\nparameters = { a = [[1]] }\n', ["parameters.a", "list"]),
        ('[[formulations]]\ntarget = "m:f"\nparameters = { a = { b = 1 } }\n', ["parameters.a", "{ none = true }"]),
        ('[[formulations]]\ntarget = "m:f"\ndomain = 1\n', ["formulations[0].domain", "int"]),
        ('formulations = ["naive", { target = "m:f" }, 3]\n', ["formulations", "3"]),
    ],
)
def test_config_formulation_keys_and_types(tmp_path, sweep_calls, toml, culprits):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert_usage_error(_sweep("--config", str(cfg)), str(cfg), *culprits)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "first, second, identical",
    [
        ('target = "losses.py:weighted@logits"\nparameters = { pos_weight = 2.0 }\n', None, True),
        ('target = "losses.py:weighted@logits"\nparameters = { pos_weight = 2.0 }\n', "pos_weight = 3.0", False),
        ('target = "clipped"\n', None, True),
        ('name = "c"\ntarget = "clipped"\nparameters = { eps = 1e-3 }\n', None, True),
    ],
)
def test_two_tables_with_one_name_are_an_error(in_tmp, sweep_calls, first, second, identical):
    _losses_file(in_tmp)
    other = first if second is None else first.replace("pos_weight = 2.0", second)
    (in_tmp / "c.toml").write_text(f"[[formulations]]\n{first}\n[[formulations]]\n{other}")
    line = assert_usage_error(_sweep("--config", "c.toml"), "formulations[1]", "is taken by", "formulations[0]")
    assert ("the same table twice" in line) == identical
    assert sweep_calls == []


def test_config_target_is_relative_to_the_config_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "ci").mkdir(parents=True)
    _losses_file(project / "ci")
    (project / "ci" / "bce.toml").write_text(
        'dtypes = ["float16"]\ndomain = "logits"\npoints = 10\n\n'
        'formulations = ["max-abs", { target = "losses.py:plain@logits" }]\n'
    )
    monkeypatch.chdir(tmp_path)  # not the config's directory
    result = _sweep("--config", "project/ci/bce.toml", "--csv", "s.csv")
    assert_exit(result, 0)
    assert [r["formulation"] for r in _rows(tmp_path / "s.csv")][::4] == ["max-abs", "plain"]


def test_flags_win_per_kind_over_the_config(in_tmp):
    _losses_file(in_tmp)
    (in_tmp / "c.toml").write_text(
        'dtypes = ["float16"]\ndomain = "logits"\npoints = 5\n'
        'formulations = ["max-abs", { target = "losses.py:plain@logits" }]\n'
    )
    cases = [
        ([], ["max-abs", "plain"]),
        (["-f", "naive"], ["naive", "plain"]),  # -f replaces the config's names, keeps its tables
        (["--impl", "losses.py:decorated"], ["max-abs", "decorated-bce"]),  # --impl replaces its tables
    ]
    for flags, expected in cases:
        assert_exit(_sweep("--config", "c.toml", *flags, "--csv", "s.csv"), 0)
        assert [r["formulation"] for r in _rows(in_tmp / "s.csv")][::4] == expected, flags


# --------------------------------------------------------------------------- loading failures


@pytest.mark.parametrize(
    "target, culprits",
    [
        ("nocolon", ["not of the form"]),
        ("losses.py:", ["not of the form"]),
        (":plain", ["not of the form"]),
        ("losses.py:1plain", ["not of the form"]),
        ("not a module:plain", ["not of the form"]),
        ("losses.py:plain@logit", ["'logit'", "'logits'"]),
        ("missing.py:plain@logits", ["missing.py", "not found"]),
        ("uf_no_such_module_xyz:plain@logits", ["cannot import uf_no_such_module_xyz", "ModuleNotFoundError"]),
        ("losses.py:plian@logits", ["no function 'plian'", "'plain'"]),
        ("losses.py:NOT_CALLABLE@logits", ["NOT_CALLABLE", "not callable", "int"]),
        ("losses.py:one_argument@logits", ["one_argument", "input, target"]),
        ("losses.py:naive@logits", ["'naive'", "built-in"]),
        ("broken.py:f@logits", ["cannot import broken.py", "ZeroDivisionError"]),
        ("syntax.py:f@logits", ["cannot import syntax.py", "SyntaxError"]),
        ("quits.py:f@logits", ["cannot import quits.py", "SystemExit"]),
    ],
)
def test_impl_loading_failures_are_usage_errors(in_tmp, sweep_calls, target, culprits):
    _losses_file(in_tmp)
    (in_tmp / "broken.py").write_text("def f(z, y):\n    return z\n\n1 / 0\n")
    (in_tmp / "syntax.py").write_text("def f(z, y)\n    return z\n")
    (in_tmp / "quits.py").write_text("import sys\nsys.exit('bye')\n")
    result = _sweep("--impl", target, *SMALL)
    assert_usage_error(result, f"--impl {target!r}", *culprits)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "target, shadow",
    [
        ("torch.py:f@logits", "torch.py"),
        ("lib/numpy.py:f@logits", "numpy.py"),
        ("mpmath.py:f@logits", "mpmath.py"),
        ("bce_audit.py:f@logits", "bce_audit.py"),
        ("torch:f@logits", "torch.py"),  # the installed torch would be imported, not this file
    ],
)
def test_target_that_would_shadow_a_package_is_a_usage_error(in_tmp, sweep_calls, target, shadow):
    (in_tmp / "lib").mkdir()
    for path in (in_tmp / "torch.py", in_tmp / "lib" / "numpy.py", in_tmp / "mpmath.py", in_tmp / "bce_audit.py"):
        path.write_text("import torch\n\ndef f(z, y):\n    return z\n")
    line = assert_usage_error(_sweep("--impl", target, *SMALL), f"--impl {target!r}", shadow)
    assert "would shadow the installed package" in line
    assert sweep_calls == []


def test_a_module_beside_the_target_named_like_a_package_is_never_picked_up(in_tmp):
    # the user's code runs in the sandbox, where torch, numpy and mpmath are imported before it:
    # an mpmath.py beside it can neither replace the real one there nor reach bce-audit's process
    (in_tmp / "lib").mkdir()
    (in_tmp / "lib" / "mpmath.py").write_text("raise RuntimeError('the local mpmath.py was imported')\n")
    (in_tmp / "lib" / "uses_mpmath.py").write_text(LOSSES.replace("import torch\n", "import mpmath\nimport torch\n"))
    result = _sweep("--impl", "lib/uses_mpmath.py:plain@logits", *SMALL, "--points", "5", "--csv", "s.csv")
    assert_exit(result, 0)
    assert _counts(_rows(in_tmp / "s.csv")) == {"plain": 4}
    assert str(in_tmp) not in str(getattr(sys.modules.get("mpmath"), "__file__", ""))


def test_torch_py_beside_the_target_does_not_replace_torch(in_tmp):
    # the sandbox imports torch before the user's file: a torch.py beside it is never picked up
    (in_tmp / "lib").mkdir()
    (in_tmp / "lib" / "torch.py").write_text("float32 = None  # not torch\n")
    _losses_file(in_tmp / "lib")
    result = _sweep("--impl", "lib/losses.py:plain@logits", *SMALL, "--points", "5")
    assert_exit(result, 0)
    assert re.search(r"^\s*plain\s+logits\s+\S+", result.stdout, re.M), result.stdout


def test_name_clash_between_user_formulations(in_tmp, sweep_calls):
    _losses_file(in_tmp)
    (in_tmp / "other").mkdir()
    (in_tmp / "other" / "losses.py").write_text(LOSSES.replace("binary_cross_entropy_with_logits", "mse_loss"))
    result = _sweep("--impl", "losses.py:plain@logits", "--impl", "other/losses.py:plain@logits", *SMALL)
    assert_usage_error(result, "'plain'", "other/losses.py:plain", "losses.py:plain@logits")
    assert sweep_calls == []


# --------------------------------------------------------------------------- runtime failures


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """One sweep: every misbehaving function, plus a built-in that must be unaffected."""
    directory = tmp_path_factory.mktemp("failing")
    _losses_file(directory)
    args = ["sweep", "-f", "max-abs"]
    for name in RUNTIME_FAILURES:
        args += ["--impl", f"{directory / 'losses.py'}:{name}@logits"]
    paths = {k: directory / f"r.{k}" for k in ("csv", "details", "json")}
    args += [*SMALL, "--points", "20", "-v"] + [x for k, p in paths.items() for x in (f"--{k}", str(p))]
    result = runner().invoke(main, args)
    return result, {k: p.read_text() for k, p in paths.items()}


def test_runtime_failures_leave_the_run_standing(failing_sweep):
    result, _ = failing_sweep
    assert_exit(result, 0)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", list(RUNTIME_FAILURES))
def test_runtime_failure_gives_error_rows(failing_sweep, name):
    result, texts = failing_sweep
    message = RUNTIME_FAILURES[name]
    # summary CSV: four rows with no figures
    rows = [r for r in read_csv(texts["csv"])[1] if r["formulation"] == name]
    assert len(rows) == 4
    for r in rows:
        assert r["points"] == "0" and all(r[s] == "" for s in STATUSES), r
    # per-point CSV: every point of its cases has the error status
    points = [r for r in read_csv(texts["details"])[1] if r["formulation"] == name]
    assert len(points) > 4 * 20 and {r["status"] for r in points} == {"error"}
    # JSON: worst status and message
    cases = [c for c in json.loads(texts["json"])["cases"] if c["formulation"] == name]
    assert len(cases) == 4
    for c in cases:
        assert c["worst_status"] == "error" and message in c["error"], c
    # terminal: the scoreboard cell, the per-case row and the summary line with the message
    out = result.stdout
    assert re.search(rf"^\s*{name}\s+logits\s+error\s*$", out, re.M), out
    assert len(re.findall(rf"^\s*{name}\s+logits\s+float16\s+[01]\s+(loss|grad)\s+error\s", out, re.M)) == 4
    (line,) = [x for x in out.splitlines() if x.strip().startswith(f"{name} (4 cases):")]
    assert message in line


def test_builtin_beside_failures_is_audited_normally(failing_sweep):
    _, texts = failing_sweep
    rows = [r for r in read_csv(texts["csv"])[1] if r["formulation"] == "max-abs"]
    assert len(rows) == 4
    for r in rows:
        assert int(r["points"]) > 20 and sum(int(r[s]) for s in STATUSES) == int(r["points"])
        assert int(r["ok"]) > 20
    cases = [c for c in json.loads(texts["json"])["cases"] if c["formulation"] == "max-abs"]
    assert all(c["error"] is None for c in cases)


def test_function_that_prints_and_warns(in_tmp, capfd):
    # the sandbox's prints reach this process's standard error (the descriptor), never the report
    _losses_file(in_tmp)
    result = _sweep("--impl", "losses.py:chatty@logits", "-f", "max-abs", *SMALL, "--csv", "s.csv")
    assert_exit(result, 0)
    assert "hello from chatty" not in result.stdout
    err = capfd.readouterr().err
    assert "hello from chatty" in err and "chatty warns" in err
    assert _counts(_rows(in_tmp / "s.csv")) == {"max-abs": 4, "chatty": 4}


GLOBAL_STATE = """
import numpy as np
import torch


def bce(z, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


def flushes_denormals(z, y):
    torch.set_flush_denormal(True)  # subnormal results of everything after it would read as 0
    return bce(z, y)


def detects_anomalies(z, y):
    torch.autograd.set_detect_anomaly(True)  # a NaN gradient after it would raise
    return bce(z, y)


def changes_everything(z, y):
    torch.set_flush_denormal(True)
    torch.autograd.set_detect_anomaly(True, check_nan=False)
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    np.seterr(all="raise")
    return bce(z, y)
"""


def _torch_state():
    import numpy as np
    import torch

    flushed = bool(torch.full((), 1.401298464324817e-45, dtype=torch.float32).mul(1) == 0)
    return (
        torch.is_grad_enabled(),
        torch.is_anomaly_enabled(),
        torch.is_anomaly_check_nan_enabled(),
        flushed,
        torch.get_default_dtype(),
        torch.get_num_threads(),
        np.geterr(),
    )


@pytest.fixture
def torch_state():
    """The process's torch state before the test, put back after it even if the test fails."""
    import numpy as np
    import torch

    before = _torch_state()
    yield before
    torch.set_grad_enabled(before[0])
    torch.autograd.set_detect_anomaly(before[1], before[2])
    torch.set_flush_denormal(before[3])
    torch.set_default_dtype(before[4])
    torch.set_num_threads(before[5])
    np.seterr(**before[6])


@pytest.mark.filterwarnings("ignore:Error detected in")  # anomaly mode, in the user function's own case
@pytest.mark.parametrize(
    "function, builtin, grid",
    [
        # e^z is a float32 subnormal on [-103, -88]: max-abs gets it right, flushed it reads 0
        ("flushes_denormals", "max-abs", ["--domain", "logits", "--range=-103:-88"]),
        # naive's gradient is NaN at p = 0 (0 * 1/0): a finding, an exception under anomaly mode
        ("detects_anomalies", "naive", ["--domain", "probabilities"]),
    ],
)
def test_global_torch_state_does_not_leak(in_tmp, torch_state, function, builtin, grid):
    (in_tmp / "state.py").write_text(GLOBAL_STATE)
    args = ["-d", "float32", "-y", "0", "--points", "50", *grid]
    assert_exit(_sweep("-f", builtin, *args, "--details", "alone.csv"), 0)
    # the user function first, in the config's order, then the built-in in the same process
    (in_tmp / "c.toml").write_text(f'formulations = [{{ target = "state.py:{function}@logits" }}, "{builtin}"]\n')
    assert_exit(_sweep("--config", "c.toml", *args, "--details", "after.csv"), 0)
    alone = _rows(in_tmp / "alone.csv")
    after = [r for r in _rows(in_tmp / "after.csv") if r["formulation"] == builtin]
    assert len(alone) > 50 and after == alone
    assert _torch_state() == torch_state


@pytest.mark.filterwarnings("ignore:Error detected in")
def test_global_torch_state_is_restored_after_each_call(in_tmp, torch_state):
    (in_tmp / "state.py").write_text(GLOBAL_STATE)
    result = _sweep("--impl", "state.py:changes_everything@logits", "-f", "max-abs", *SMALL, "--csv", "s.csv")
    assert_exit(result, 0)
    assert _counts(_rows(in_tmp / "s.csv")) == {"max-abs": 4, "changes_everything": 4}
    assert _torch_state() == torch_state


# --------------------------------------------------------------------------- entry points


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed distribution registering two formulations (one broken) in the group."""
    module = _unique("uf_ep")
    _losses_file(tmp_path, f"{module}.py")
    info = tmp_path / "fake_bce_losses-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-bce-losses\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(
        "[bce_audit.formulations]\n"
        f"fake-bce = {module}:decorated\n"
        f"fake-probs = {module}:probs\n"
        f"fake-broken = {module}_missing:f\n"
        f"fake-plain = {module}:plain\n"  # not decorated: no domain
        f"bad name! = {module}:decorated\n"  # not a name -f could select or a report could show
        f"naive = {module}:plain\n"  # a built-in's name: the built-in wins
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


def test_entry_point_selected_by_name(installed, tmp_path):
    out, js = tmp_path / "s.csv", tmp_path / "r.json"
    result = _sweep("-f", "fake-bce", "-f", "max-abs", *SMALL, "--csv", str(out), "--json", str(js))
    assert_exit(result, 0)
    assert [r["formulation"] for r in _rows(out)][::4] == ["fake-bce", "max-abs"]
    (spec,) = json.loads(js.read_text())["settings"]["user_formulations"]
    assert spec == {"name": "fake-bce", "target": f"{installed}:decorated", "domain": "logits", "parameters": {}}


def test_entry_points_are_not_in_the_default_set(installed):
    from bce_audit.settings import Request, resolve

    settings, _ = resolve(Request(), {}, None)
    assert list(settings.formulations) == BUILTINS


def _list_rows(*args: str) -> list[list[str]]:
    """The rows of `bce-audit list`, each [name, domain, engine, source, reference, definition]."""
    result = runner().invoke(main, ["list", *args], env={"COLUMNS": "400"})
    assert_exit(result, 0)
    return table_rows(result.stdout, "name")


def test_list_shows_entry_points_and_their_source(installed):
    rows = {}
    for name, domain, _engine, *cells in _list_rows():
        rows.setdefault(name, []).append([domain, *cells])
    source = "entry point (fake-bce-losses 1.2)"
    assert rows["fake-bce"] == [["logits", source, "bce", "softplus(z) - y*z"]]
    assert rows["fake-probs"][0][:2] == ["probabilities", source]
    assert rows["fake-broken"][0][0] == "?" and rows["fake-broken"][0][3].startswith("error:")
    # shadowing a built-in: listed, after the built-in, as ignored
    assert rows["naive"][0][1] == "built-in"
    assert rows["naive"][1] == ["-", source, "-", "ignored: the built-in 'naive' has this name; rename the entry point"]
    # a name that is not one: listed with the error it gives when selected
    ((domain, _, _, error),) = rows["bad name!"]
    assert domain == "?" and "'bad name!' is not a formulation name" in error
    # no domain: only the decorator can give it (no config, no --impl suffix for an entry point)
    ((domain, _, _, error),) = rows["fake-plain"]
    assert domain == "?" and '@formulation(domain="logits")' in error
    assert "config" not in error and "suffix" not in error


def test_entry_point_with_a_taken_name_is_listed_as_ignored(installed, tmp_path):
    info = tmp_path / "other_bce-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-bce\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[bce_audit.formulations]\nfake-bce = {installed}:probs\n")
    rows = [[name, domain, *rest] for name, domain, _engine, *rest in _list_rows() if name == "fake-bce"]
    assert len(rows) == 2
    used, ignored = sorted(rows, key=lambda r: r[4].startswith("ignored"))
    assert ignored[1] == "-" and ignored[4].startswith("ignored: the entry point of ")
    assert used[2].removeprefix("entry point (").removesuffix(")") in ignored[4]


def test_entry_point_with_a_bad_name_or_no_domain_fails_when_selected(installed):
    line = assert_usage_error(_sweep("-f", "bad name!", *SMALL), "'bad name!'", "not a formulation name")
    assert "fake-bce-losses" in line
    line = assert_usage_error(_sweep("-f", "fake-plain", *SMALL), "'fake-plain'", "declare its domain")
    assert '@formulation(domain="logits")' in line and "suffix" not in line


def test_broken_entry_point_only_fails_when_selected(installed):
    assert_exit(_sweep("-f", "fake-bce", *SMALL, "--points", "5"), 0)
    assert_usage_error(_sweep("-f", "fake-broken", *SMALL), "'fake-broken'", "fake-bce-losses", "cannot import")


def test_unknown_name_lists_installed_ones(installed):
    line = assert_usage_error(_sweep("-f", "fake-bc", *SMALL), "'fake-bc'", "'fake-bce'")
    assert "naive" in line and "fake-probs" in line


def test_entry_point_name_clash_with_impl(installed, in_tmp):
    _losses_file(in_tmp)
    # the entry point is named by its entry-point name, not its decorator's: no clash here
    result = _sweep("-f", "fake-bce", "--impl", "losses.py:decorated", *SMALL, "--points", "5", "--csv", "s.csv")
    assert_exit(result, 0)
    assert [r["formulation"] for r in _rows(in_tmp / "s.csv")][::4] == ["fake-bce", "decorated-bce"]
    (in_tmp / "l2.py").write_text(LOSSES.replace('name="decorated-bce"', 'name="fake-bce"'))
    result = _sweep("-f", "fake-bce", "--impl", "l2.py:decorated", *SMALL)
    assert_usage_error(result, "'fake-bce'", "l2.py:decorated")


# --------------------------------------------------------------------------- the decorator


def test_decorator_only_annotates():
    from bce_audit import formulation

    def f(z, y):
        return z

    assert formulation(domain="probabilities", name="n", formula="t")(f) is f
    assert (f.__bce_audit_domain__, f.__bce_audit_name__, f.__bce_audit_formula__) == ("probabilities", "n", "t")
    g = formulation(lambda z, y: z)  # bare: marks nothing
    assert not hasattr(g, "__bce_audit_domain__")
    with pytest.raises(ValueError, match="'logit'"):
        formulation(domain="logit")
    with pytest.raises(ValueError, match="name"):
        formulation(name="two words")
    # a positional domain would otherwise be taken for the function: "'str' object is not callable"
    with pytest.raises(TypeError, match=r"keyword arguments only: write @formulation\(domain=.logits.\)"):
        formulation("logits")
    with pytest.raises(TypeError, match=r'@formulation\(domain="logits"\), not @formulation\(3\)'):
        formulation(3)


def test_decorator_import_is_light():
    code = "import sys, bce_audit; bce_audit.formulation; print(sorted({'torch', 'mpmath'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_documents_impl():
    result = runner().invoke(main, ["sweep", "--help"])
    assert_exit(result, 0)
    assert "--impl TARGET" in result.stdout and "@logits" in result.stdout
    assert "--impl" in result.stdout.split("Examples:")[1]


def test_main_and_list_help_have_examples():
    result = runner().invoke(main, ["--help"])
    assert_exit(result, 0)
    examples = result.stdout.split("Examples:")[1]
    for command in ("bce-audit sweep", "--impl", "bce-audit list", "bce-audit check"):
        assert command in examples, command
    result = runner().invoke(main, ["list", "--help"])
    assert_exit(result, 0)
    options, examples = result.stdout.split("Examples:")
    assert "bce-audit list --impl" in examples and "bce-audit list --config" in examples
    # list's own --impl help: it has no -f, and --impl only adds rows there
    assert "--impl TARGET" in options and "Also list your own loss" in options
    assert "-f NAME" not in options and "Without -f" not in options


# --------------------------------------------------------------------------- the sample config


@pytest.fixture(scope="module")
def sample_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "s.csv"
    args = ["sweep", "--config", str(SAMPLES / "custom-formulation.toml"), "-d", "float32", "-y", "0"]
    result = runner().invoke(main, [*args, "--csv", str(out)])
    return result, _rows(out)


def test_sample_config_shows_both_functions(sample_sweep):
    result, rows = sample_sweep
    assert_exit(result, 0)
    assert [r["formulation"] for r in rows][::2] == ["max-abs", "stable_bce", "max_abs_log"]
    for name in ("stable_bce", "max_abs_log"):
        assert re.search(rf"^\s*{name}\s+logits\s+\S+", result.stdout, re.M), result.stdout


def test_degraded_example_is_measurably_worse(sample_sweep):
    _, rows = sample_sweep
    loss = {r["formulation"]: r for r in rows if r["quantity"] == "loss"}
    good, bad = loss["max-abs"], loss["max_abs_log"]
    # e^-|z| lost once 1 + e^-|z| rounds to 1: far more zeros than max-abs's own, which are only the
    # narrow band where the true loss is the smallest subnormal (z near -103.9, a grid crossing)
    assert int(bad["zero"]) >= int(good["zero"]) + 10
    assert int(bad["ok"]) < int(good["ok"])
    assert float(bad["max_ulp"]) > 1e6 * max(float(good["max_ulp"]), 1.0)
    # the stable range shrinks from all of the normal range (down to the underflow band) to a few
    # units around 0
    assert float(good["stable_lo"]) < -80 and float(bad["stable_lo"]) > -20
    # the logsigmoid formulation is within the threshold wherever max-abs is: it fails only in the
    # same underflow band, where logsigmoid returns 0 for the smallest subnormal
    stable = loss["stable_bce"]
    assert int(stable["inaccurate"]) == int(stable["inf"]) == int(stable["nan"]) == 0
    assert int(stable["zero"]) == int(good["zero"]) and float(stable["max_ulp"]) <= 1
