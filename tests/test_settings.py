"""Settings from TOML: --config files, [tool.bce-audit] in ./pyproject.toml, flags on top."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT, assert_exit, assert_usage_error, read_csv, runner

from bce_audit.cli import main
from bce_audit.config import KEYS, load_config
from bce_audit.errors import UsageError
from bce_audit.settings import Request, Settings, resolve

SAMPLES = ROOT / "sample_configs"


def _resolve(table: dict) -> Settings:
    """The settings of a config table with no flag on top."""
    return resolve(Request(), table, None)[0]


SMALL = """
formulations = ["naive"]
dtypes = ["float16", "bfloat16"]
domain = "logits"
labels = [0.0]
points = 30
seed = 5
ulp_threshold = 2.5
"""


def _sweep(args, cwd: Path | None = None):
    r = runner()
    if cwd is None:
        return r.invoke(main, ["sweep", *args])
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return r.invoke(main, ["sweep", *args])
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------- load_config


@pytest.mark.parametrize("name", ["quick.toml", "default.toml", "exhaustive-16bit.toml"])
def test_sample_configs_parse(name):
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{name} not in sample_configs")
    table, source = load_config(path)
    assert source == str(path)
    assert table and set(table) <= set(KEYS)
    settings = _resolve(table)  # and they make valid settings
    assert [str(d) for d in settings.dtypes] == table["dtypes"]


def test_default_sample_is_the_builtin_default():
    from bce_audit.settings import Settings

    table, _ = load_config(SAMPLES / "default.toml")
    assert _resolve(table) == Settings()


def test_quick_sample_values():
    table, _ = load_config(SAMPLES / "quick.toml")
    s = _resolve(table)
    assert s.formulations == ("naive", "torch-bce-with-logits")
    assert [str(d) for d in s.dtypes] == ["float16", "float32"]
    assert [str(d) for d in s.domains] == ["logits"]
    assert s.points == 200 and s.seed == 0


def test_no_config_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == ({}, None)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.other]\na = 1\n')
    assert load_config(None) == ({}, None)


def test_pyproject_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.bce-audit]\npoints = 7\ndtypes = ["float64"]\n')
    assert load_config(None) == ({"points": 7, "dtypes": ["float64"]}, "pyproject.toml")
    assert load_config(None, search_pyproject=False) == ({}, None)


def test_dedicated_file_may_nest_under_tool(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tool.bce-audit]\npoints = 9\n")
    assert load_config(cfg)[0] == {"points": 9}


def test_explicit_config_ignores_pyproject(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.bce-audit]\nbogus = 1\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("points = 3\n")
    assert load_config(cfg)[0] == {"points": 3}


@pytest.mark.parametrize(
    "toml, match",
    [
        ("pointz = 3\n", r"unknown key 'pointz' \(did you mean 'points'\?\)"),
        ('points = "3"\n', r"points: wrong type str"),
        ("points = false\n", r"points: wrong type bool"),
        ("ulp_threshold = true\n", r"ulp_threshold: wrong type bool"),
        ('labels = [0, "1"]\n', r"labels: wrong item '1'"),
        ("labels = [true]\n", r"labels: wrong item True"),
        ('dtypes = ["float16", 32]\n', r"dtypes: wrong item 32"),
        ("points = 3\npoints = 4\n", r"malformed TOML"),
        ("= 3\n", r"malformed TOML"),
    ],
)
def test_load_config_rejects(tmp_path, toml, match):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(UsageError, match=match) as info:
        load_config(cfg)
    assert str(cfg) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_config_accepts_every_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'formulations = ["naive"]\ndtypes = ["float16"]\ndomain = "both"\nlabels = [0, 0.5, 1]\n'
        'range = [-3, 3]\npoints = 10\nsampling = "bits"\nseed = 1\nulp_threshold = 2\n'
        'csv = "a.csv"\njson = "a.json"\ndetails = "d.csv"\nfailures = "f.csv"\nverbose = true\n'
        'jobs = 2\ncache = false\ncache_dir = "cache"\ntimeout = 30\nmodes = ["vmap", "eager"]\ndevice = "cpu"\n'
        'baseline = "b.json"\nallow_missing = true\njunit = "j.xml"\nmarkdown = "m.md"\n'
        '[tolerance]\nmax_ulp = 2\n[[thresholds]]\nformulation = "naive"\nnan = 0\n'
    )
    table, _ = load_config(cfg)
    assert set(table) == set(KEYS)
    s, options = resolve(Request(), table, None)
    assert s.labels == (0.0, 0.5, 1.0)
    assert s.logit_range == (-3.0, 3.0)
    assert [str(m) for m in s.modes] == ["vmap", "eager"] and str(s.device) == "cpu"
    assert s.ulp_threshold == 2
    assert (options.jobs, options.cache_dir, options.timeout) == (2, None, 30.0)


def test_missing_and_unreadable_config(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(UsageError, match=str(tmp_path)):
        load_config(tmp_path)  # a directory


# --------------------------------------------------------------------------- through the CLI


def test_config_values_are_used(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    out, js = tmp_path / "s.csv", tmp_path / "s.json"
    assert_exit(_sweep(["--config", str(cfg), "--csv", str(out), "--json", str(js)]), 0)
    _, rows = read_csv(out.read_text())
    assert len(rows) == 1 * 1 * 2 * 1 * 2  # formulations x domains x dtypes x labels x quantities
    assert {r["dtype"] for r in rows} == {"float16", "bfloat16"}
    assert {r["domain"] for r in rows} == {"logits"}
    assert {r["label"] for r in rows} == {"0.0"}
    settings = json.loads(js.read_text())["settings"]
    assert settings["points"] == 30 and settings["seed"] == 5 and settings["ulp_threshold"] == 2.5

    # points: the logit grid is the sampled points plus a fixed set of special inputs
    cfg.write_text(SMALL.replace("points = 30", "points = 80"))
    out2 = tmp_path / "s2.csv"
    assert_exit(_sweep(["--config", str(cfg), "--csv", str(out2)]), 0)
    _, rows2 = read_csv(out2.read_text())
    for a, b in zip(rows, rows2, strict=True):
        assert int(b["points"]) - int(a["points"]) == 50


def test_config_equals_the_same_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert_exit(_sweep(["--config", str(cfg), "--csv", str(a)]), 0)
    flags = "-f naive -d float16 -d bfloat16 --domain logits -y 0 --points 30 --seed 5 --ulp-threshold 2.5".split()
    flags += ["--csv", str(b)]
    assert_exit(_sweep(flags), 0)
    assert a.read_text() == b.read_text()


def test_flags_override_the_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    args = ["--config", str(cfg), *"-d float32 --points 12 --seed 9 -y 1".split()]
    args += ["--csv", str(out), "--json", str(js)]
    assert_exit(_sweep(args), 0)
    _, rows = read_csv(out.read_text())
    assert {r["dtype"] for r in rows} == {"float32"}
    assert {r["label"] for r in rows} == {"1.0"}
    assert {r["formulation"] for r in rows} == {"naive"}  # not overridden: from the file
    assert len(rows) == 2
    settings = json.loads(js.read_text())["settings"]
    assert settings["points"] == 12 and settings["seed"] == 9
    assert settings["ulp_threshold"] == 2.5  # from the file


def test_flag_fixes_a_bad_value_in_the_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL.replace('dtypes = ["float16", "bfloat16"]', 'dtypes = ["float15"]'))
    assert_usage_error(_sweep(["--config", str(cfg)]), "'float15'")
    assert_exit(_sweep(["--config", str(cfg), "-d", "float16", "--points", "5"]), 0)


def test_config_outputs_and_verbose(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL + 'csv = "from-config.csv"\nverbose = true\n')
    result = _sweep(["--config", str(cfg)], cwd=tmp_path)
    assert_exit(result, 0)
    assert "per-case figures" in result.stdout
    _, rows = read_csv((tmp_path / "from-config.csv").read_text())
    assert len(rows) == 4
    # a flag wins over the file's output path
    result = _sweep(["--config", str(cfg), "--csv", "flag.csv"], cwd=tmp_path)
    assert_exit(result, 0)
    assert (tmp_path / "flag.csv").exists()


def test_config_output_path_checked_before_the_sweep(tmp_path, monkeypatch):
    import bce_audit.sweep.run

    calls = []
    monkeypatch.setattr(bce_audit.sweep.run, "run_sweep", lambda *a, **k: calls.append(a))
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL + 'json = "missing-dir/r.json"\n')
    assert_usage_error(_sweep(["--config", str(cfg), "--csv", "ok.csv"], cwd=tmp_path), "missing-dir")
    assert calls == []
    assert not (tmp_path / "ok.csv").exists()


def test_pyproject_is_picked_up(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.bce-audit]\n' + SMALL)
    result = _sweep(["--csv", "p.csv", "--json", "p.json"], cwd=tmp_path)
    assert_exit(result, 0)
    _, rows = read_csv((tmp_path / "p.csv").read_text())
    assert len(rows) == 4 and {r["dtype"] for r in rows} == {"float16", "bfloat16"}
    assert json.loads((tmp_path / "p.json").read_text())["settings"]["seed"] == 5


def test_pyproject_in_isolated_filesystem(tmp_path, monkeypatch):
    r = runner()
    monkeypatch.chdir(tmp_path)  # click's isolated_filesystem() is deprecated in click 8.5
    Path("pyproject.toml").write_text(
        '[tool.bce-audit]\nformulations = ["max-abs"]\ndtypes = ["float64"]\n'
        'domain = "probabilities"\nlabels = [0.5]\npoints = 10\n'
    )
    result = r.invoke(main, ["sweep", "--csv", "x.csv"])
    assert_exit(result, 0)
    _, rows = read_csv(Path("x.csv").read_text())
    assert {(x["formulation"], x["domain"], x["dtype"], x["label"]) for x in rows} == {
        ("max-abs", "probabilities", "float64", "0.5")
    }


def test_explicit_config_wins_over_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.bce-audit]\nno_such_key = 1\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    assert_usage_error(_sweep([], cwd=tmp_path), "no_such_key")
    assert_exit(_sweep(["--config", str(cfg)], cwd=tmp_path), 0)


def test_pyproject_tool_table_not_a_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool]\nbce-audit = "fast"\n')
    assert_usage_error(_sweep([], cwd=tmp_path), "pyproject.toml", "table")


def test_pyproject_tool_not_a_table_is_no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("tool = 5\n")
    assert load_config(None) == ({}, None)
