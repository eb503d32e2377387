"""The command line: help, list, sweep reports and exports, bad input, atomic writes."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    FAMILY_BUILTINS,
    NATIVE_DOMAIN,
    STATUSES,
    TINY,
    assert_exit,
    assert_usage_error,
    read_csv,
    runner,
    table_rows,
)

from bce_audit import files as _io
from bce_audit.cli import main
from bce_audit.version import __version__

SUMMARY_HEADER = (
    "formulation,domain,dtype,label,quantity,points,ok,inaccurate,inf,nan,zero,"
    "max_ulp,p99_ulp,mean_ulp,mean_bits,max_rel_err,worst_input,stable_lo,stable_hi"
)
DETAILS_HEADER = "formulation,domain,dtype,label,quantity,input,output,truth,ulp_error,status"


def _subprocess_env() -> dict:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    env.pop("BCE_AUDIT_DEBUG", None)
    return env


def _strict_json(text: str):
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


# --------------------------------------------------------------------------- help, version, list


def test_help_does_not_import_torch_or_mpmath():
    code = """
import sys
from click.testing import CliRunner
from bce_audit.cli import main
runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "120"})
for args in (["--help"], ["sweep", "--help"], ["list", "--help"], ["--version"]):
    result = runner.invoke(main, args)
    assert result.exit_code == 0, (args, result.output)
    assert "Usage:" in result.stdout or "version" in result.stdout, result.stdout
heavy = ("torch", "mpmath", "bce_audit.oracle.reference", "bce_audit.sweep.run")
heavy = sorted(m for m in heavy if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_subprocess_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout


def test_help_texts():
    result = runner().invoke(main, ["--help"])
    assert_exit(result, 0)
    assert "sweep" in result.stdout and "list" in result.stdout
    result = runner().invoke(main, ["sweep", "--help"])
    assert_exit(result, 0)
    options = "--formulation --dtype --domain --label --range --points --sampling --seed --ulp-threshold"
    for option in (options + " --config --csv --details --json --verbose").split():
        assert option in result.stdout, option
    assert "Examples:" in result.stdout


def test_python_m_version():
    proc = subprocess.run(
        [sys.executable, "-m", "bce_audit", "--version"],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"bce-audit, version {__version__}"
    assert "Traceback" not in proc.stderr


def test_list_shows_every_formulation_its_domain_its_engine_and_its_reference():
    from bce_audit.formulations.builtins import BUILTINS

    result = runner().invoke(main, ["list"], env={"COLUMNS": "400"})  # wide enough for one table
    assert_exit(result, 0)
    assert len(NATIVE_DOMAIN) == 7
    rows, engines, references = {}, {}, {}
    for name, domain, engine, source, reference, _definition in table_rows(result.stdout, "name"):
        assert source == "built-in", name
        rows[name] = domain
        engines[name] = engine
        references[name] = reference
    # the default set (torch) first, then the family's members and the other engines' built-ins
    assert {n: rows[n] for n in NATIVE_DOMAIN} == NATIVE_DOMAIN, result.stdout
    assert {n: rows[n] for n in FAMILY_BUILTINS} == dict.fromkeys(FAMILY_BUILTINS, "logits")
    assert list(rows) == list(BUILTINS)
    assert engines == {name: f.engine for name, f in BUILTINS.items()}
    assert {engines[n] for n in NATIVE_DOMAIN} == {"torch"}
    assert set(engines.values()) == {"torch", "jax", "tensorflow", "keras"}
    # the default set is measured against plain BCE, the family's members against their own
    assert {n: references[n] for n in NATIVE_DOMAIN} == dict.fromkeys(NATIVE_DOMAIN, "bce")
    assert {n: references[n] for n in FAMILY_BUILTINS} == FAMILY_BUILTINS
    # what every figure is measured against is said where the formulations are listed
    assert "reference: the exact function each formulation is measured against" in " ".join(result.stdout.split())
    assert "bce is plain, unweighted BCE at the label given" in " ".join(result.stdout.split())


# --------------------------------------------------------------------------- a small sweep


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """One tiny sweep with every export; shared by the tests that read its files."""
    out = tmp_path_factory.mktemp("tiny")
    paths = {k: out / f"{k}.{ext}" for k, ext in (("csv", "csv"), ("details", "csv"), ("json", "json"))}
    args = ["sweep", *TINY, "--seed", "3"]
    for key, path in paths.items():
        args += [f"--{key}", str(path)]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    return result, {k: p.read_text(encoding="utf-8") for k, p in paths.items()}, paths


def test_sweep_prints_loss_and_grad_scoreboards(tiny_sweep):
    result, _, paths = tiny_sweep
    out = result.stdout
    assert re.search(r"^loss: worst status and stable range", out, re.M), out
    assert re.search(r"^grad: worst status and stable range", out, re.M), out
    assert out.index("loss:") < out.index("grad:")
    assert re.search(r"^\s*naive\s+logits\s+\S+", out, re.M), out
    assert "float16" in out
    # naive on logits overflows: sigmoid(z) rounds to 1 for large z in half precision
    assert re.search(r"^\s*naive\s+logits\s+(nan|inf)\b", out, re.M), out
    assert "4 cases" in out and "seed 3" in out
    assert "per-case figures" not in out
    # the reports go to stdout, the notices about written files to stderr
    for path in paths.values():
        assert f"wrote {path}" in result.stderr
        assert f"wrote {path}" not in out


def test_verbose_adds_the_per_case_table():
    result = runner().invoke(main, ["sweep", *TINY, "--points", "20", "--verbose"])
    assert_exit(result, 0)
    out = result.stdout
    assert "per-case figures" in out
    assert re.search(r"^loss:", out, re.M) and re.search(r"^grad:", out, re.M)
    # one row per case: naive logits float16, labels 0 and 1, loss and grad
    rows = re.findall(r"^\s*naive\s+logits\s+float16\s+(\d)\s+(loss|grad)\b", out, re.M)
    assert sorted(rows) == [("0", "grad"), ("0", "loss"), ("1", "grad"), ("1", "loss")], out


def test_summary_csv(tiny_sweep):
    _, texts, _ = tiny_sweep
    text = texts["csv"]
    assert text.splitlines()[0] == SUMMARY_HEADER
    header, rows = read_csv(text)
    assert len(rows) == 1 * 1 * 1 * 2 * 2
    keys = {(r["formulation"], r["domain"], r["dtype"], float(r["label"]), r["quantity"]) for r in rows}
    assert keys == {("naive", "logits", "float16", y, q) for y in (0.0, 1.0) for q in ("loss", "grad")}
    for r in rows:
        points = int(r["points"])
        assert points >= 50
        assert sum(int(r[s]) for s in STATUSES) == points, r
        assert float(r["max_ulp"]) >= float(r["p99_ulp"]) >= 0
        assert float(r["max_ulp"]) >= float(r["mean_ulp"]) >= 0
        lo, hi = float(r["stable_lo"]), float(r["stable_hi"])
        assert lo <= 0 <= hi
        assert np.float16(r["worst_input"]) == float(r["worst_input"])


def test_summary_csv_one_row_per_case(tmp_path):
    path = tmp_path / "s.csv"
    args = "sweep -f naive -f max-abs -d float16 -d bfloat16 --domain both -y 0 -y 0.25 -y 1 --points 10".split()
    args += ["--csv", str(path)]
    assert_exit(runner().invoke(main, args), 0)
    header, rows = read_csv(path.read_text())
    assert ",".join(header) == SUMMARY_HEADER
    assert len(rows) == 2 * 2 * 2 * 3 * 2
    keys = [(r["formulation"], r["domain"], r["dtype"], r["label"], r["quantity"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert {k[0] for k in keys} == {"naive", "max-abs"}
    assert {k[1] for k in keys} == {"logits", "probabilities"}
    assert {k[2] for k in keys} == {"float16", "bfloat16"}
    assert {float(k[3]) for k in keys} == {0.0, 0.25, 1.0}
    for r in rows:
        assert sum(int(r[s]) for s in STATUSES) == int(r["points"]), r


def _exact_in(dtype: str, v: float) -> bool:
    if math.isnan(v):
        return True
    if dtype == "float16":
        return float(np.float16(v)) == v
    if dtype == "float32":
        return float(np.float32(v)) == v
    if dtype == "bfloat16":
        import torch

        return torch.tensor(v, dtype=torch.float64).to(torch.bfloat16).item() == v
    return dtype == "float64"


def test_details_csv(tiny_sweep):
    _, texts, _ = tiny_sweep
    text = texts["details"]
    assert text.splitlines()[0] == DETAILS_HEADER
    _, rows = read_csv(text)
    _, summary = read_csv(texts["csv"])
    assert rows
    inputs = set()
    for r in rows:
        x, o = float(r["input"]), float(r["output"])
        assert _exact_in(r["dtype"], x), r
        assert _exact_in(r["dtype"], o), r
        assert r["input"] == repr(x) and r["output"] == repr(o)
        float(r["truth"])
        assert r["status"] in STATUSES, r
        inputs.add(r["input"])
    for special in ("inf", "-inf", "nan"):
        assert special in inputs
    assert {"0.0", "-0.0", "65504.0", "-65504.0"} <= inputs
    # the finite points of each case are the ones the summary counts
    for s in summary:
        key = (s["formulation"], s["domain"], s["dtype"], s["label"], s["quantity"])
        case = [r for r in rows if (r["formulation"], r["domain"], r["dtype"], r["label"], r["quantity"]) == key]
        finite = [r for r in case if math.isfinite(float(r["input"]))]
        assert len(finite) == int(s["points"])
        assert len(case) - len(finite) == 3
        for status in STATUSES:
            assert sum(r["status"] == status for r in finite) == int(s[status]), (key, status)


def test_details_exact_in_other_dtypes(tmp_path):
    path = tmp_path / "d.csv"
    args = "sweep -f max-abs -d bfloat16 -d float32 --domain both -y 0.1 --points 15".split()
    args += ["--details", str(path)]
    assert_exit(runner().invoke(main, args), 0)
    _, rows = read_csv(path.read_text())
    assert {r["dtype"] for r in rows} == {"bfloat16", "float32"}
    assert {r["domain"] for r in rows} == {"logits", "probabilities"}
    inexact_in_bf16 = 0
    for r in rows:
        x, o = float(r["input"]), float(r["output"])
        assert _exact_in(r["dtype"], x) and _exact_in(r["dtype"], o), r
        if r["dtype"] == "float32" and not _exact_in("bfloat16", x):
            inexact_in_bf16 += 1
    assert inexact_in_bf16 > 0  # the float32 grid really is float32, not a coarser one


def test_json_report(tiny_sweep):
    _, texts, _ = tiny_sweep
    doc = _strict_json(texts["json"])
    prov = doc["provenance"]
    for key in ("bce_audit", "torch", "numpy", "mpmath", "python", "cpu_capability", "platform"):
        assert key in prov, key
        assert isinstance(prov[key], str) and prov[key], key
    assert prov["bce_audit"] == __version__
    assert prov["numpy"] == np.__version__
    settings = doc["settings"]
    assert settings["seed"] == 3
    assert settings["points"] == 50
    assert settings["formulations"] == ["naive"]
    assert settings["dtypes"] == ["float16"]
    assert settings["domains"] == ["logits"]
    _, summary = read_csv(texts["csv"])
    cases = doc["cases"]
    assert isinstance(cases, list) and len(cases) == len(summary)
    for case, row in zip(cases, summary, strict=True):
        assert case["formulation"] == row["formulation"]
        assert case["quantity"] == row["quantity"]
        assert case["points"] == int(row["points"])
        assert case["counts"] == {s: int(row[s]) for s in case["counts"]}


# --------------------------------------------------------------------------- determinism


def _csv_for_seed(tmp_path: Path, seed: int, name: str) -> str:
    path = tmp_path / name
    args = ["sweep", *TINY, "--domain", "both", "--seed", str(seed), "--csv", str(path)]
    assert_exit(runner().invoke(main, args), 0)
    return path.read_text()


def test_same_seed_same_csv_other_seed_other_csv(tmp_path):
    a = _csv_for_seed(tmp_path, 11, "a.csv")
    b = _csv_for_seed(tmp_path, 11, "b.csv")
    c = _csv_for_seed(tmp_path, 12, "c.csv")
    assert a == b
    assert a != c
    assert a.splitlines()[0] == c.splitlines()[0]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, culprits",
    [
        (["-f", "naiv"], ["'naiv'", "'naive'"]),
        (["-f", "naive", "-f", "nope"], ["'nope'"]),
        (["-d", "float15"], ["'float15'", "float16"]),
        (["-y", "1.5"], ["1.5", "[0, 1]"]),
        (["-y", "-0.5"], ["-0.5", "[0, 1]"]),
        (["-y", "nan"], ["nan"]),
        (["-y", "abc"], ["'abc'", "not a number"]),
        (["--range", "5:5"], ["5:5", "empty or inverted"]),
        (["--range", "3:-3"], ["3:-3", "empty or inverted"]),
        (["--range", "abc"], ["'abc'", "LO:HI"]),
        (["--range", "1:2:3"], ["'1:2:3'"]),
        (["--points", "0"], ["points", "0"]),
        (["--points", "-3"], ["points", "-3"]),
        (["--points", "many"], ["--points", "'many'"]),
        (["--domain", "logit"], ["--domain", "'logit'"]),
        (["--seed", "-1"], ["seed", "-1"]),
        (["--ulp-threshold", "-1"], ["threshold", "-1"]),
        (["--no-such-flag"], ["--no-such-flag"]),
    ],
)
def test_bad_flags(args, culprits, sweep_calls):
    result = runner().invoke(main, ["sweep", *TINY, *args])
    assert_usage_error(result, *culprits)
    assert sweep_calls == []  # refused before any work


def test_unknown_command():
    assert_usage_error(runner().invoke(main, ["swep"]), "'swep'")


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(missing)]), str(missing), "not found")


def test_malformed_config(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('points = 10\ndtypes = ["float16"\n')
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(cfg)]), str(cfg), "malformed TOML")


def test_unknown_key_in_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("pointz = 10\n")
    line = assert_usage_error(runner().invoke(main, ["sweep", "--config", str(cfg)]), "'pointz'", str(cfg))
    assert "'points'" in line  # the suggestion


@pytest.mark.parametrize(
    "toml, culprits",
    [
        ('points = "ten"\n', ["points", "str"]),
        ("points = true\n", ["points", "bool"]),
        ("points = 1.5\n", ["points", "float"]),
        ('formulations = "naive"\n', ["formulations"]),
        ("dtypes = [16]\n", ["dtypes", "16"]),
        ('labels = ["one"]\n', ["labels", "'one'"]),
        ("verbose = 1\n", ["verbose"]),
        ("seed = 1.0\n", ["seed"]),
        ("tool = 5\n", ["'tool'"]),
        ("[tool]\nbce-audit = 5\n", ["tool.bce-audit", "table"]),
    ],
)
def test_wrong_type_in_config(tmp_path, toml, culprits):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(cfg)]), *culprits)


@pytest.mark.parametrize(
    "toml, culprits",
    [
        ('dtypes = ["float15"]\n', ["'float15'", "float16"]),
        ('formulations = ["naiv"]\n', ["'naiv'", "'naive'"]),
        ("labels = [0.0, 2.0]\n", ["2.0", "[0, 1]"]),
        ('range = "3:-3"\n', ["3:-3"]),
        ("range = [1.0]\n", ["range"]),
        ("points = 0\n", ["points"]),
        ('domain = "logit"\n', ["'logit'"]),
        ('sampling = "all"\n', ["'all'"]),
    ],
)
def test_bad_values_in_config(tmp_path, toml, culprits):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert_usage_error(runner().invoke(main, ["sweep", "--config", str(cfg)]), *culprits)


def test_pyproject_with_unknown_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an isolated filesystem
    Path("pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.bce-audit]\npoints = 5\ncolour = true\n')
    assert_usage_error(runner().invoke(main, ["sweep"]), "pyproject.toml", "'colour'")


def test_pyproject_malformed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("pyproject.toml").write_text("[tool.bce-audit\npoints = 5\n")
    assert_usage_error(runner().invoke(main, ["sweep"]), "pyproject.toml", "malformed")


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("bad_flag", ["--csv", "--details", "--json"])
def test_output_in_missing_directory_fails_before_the_sweep(tmp_path, bad_flag, sweep_calls):
    others = {"--csv": tmp_path / "ok.csv", "--details": tmp_path / "ok-details.csv", "--json": tmp_path / "ok.json"}
    bad = tmp_path / "no" / "such" / "dir" / "report.out"
    args = ["sweep"]  # the full default audit: minutes of work if the check came after it
    for flag, path in others.items():
        args += [flag, str(bad if flag == bad_flag else path)]
    result = runner().invoke(main, args)
    assert_usage_error(result, bad_flag, str(bad), "does not exist")
    assert sweep_calls == []  # refused before the sweep, not after minutes of work
    assert not bad.parent.exists()
    assert list(tmp_path.iterdir()) == []
    for flag, path in others.items():
        assert not path.exists(), f"{flag} {path} was written by a failing command"


def test_output_path_that_is_a_directory(tmp_path, sweep_calls):
    target = tmp_path / "a-directory"
    target.mkdir()
    other = tmp_path / "summary.csv"
    result = runner().invoke(main, ["sweep", "--csv", str(other), "--json", str(target)])
    assert_usage_error(result, "--json", str(target), "directory")
    assert sweep_calls == []
    assert not other.exists()
    assert list(target.iterdir()) == []


def test_existing_output_untouched_on_usage_error(tmp_path):
    out = tmp_path / "report.csv"
    out.write_text("precious,data\n1,2\n")
    before = out.stat().st_mtime_ns
    for bad in (["-y", "1.5"], ["--json", str(tmp_path / "nodir" / "r.json")], ["-d", "float15"]):
        result = runner().invoke(main, ["sweep", *TINY, "--csv", str(out), *bad])
        assert_usage_error(result)
        assert out.read_text() == "precious,data\n1,2\n"
        assert out.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_existing_output_replaced_on_success(tmp_path):
    out = tmp_path / "report.csv"
    out.write_text("old content that is longer than nothing\n" * 100)
    assert_exit(runner().invoke(main, ["sweep", *TINY, "--points", "10", "--csv", str(out)]), 0)
    assert out.read_text().splitlines()[0] == SUMMARY_HEADER
    assert "old content" not in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out.csv"
    _io.atomic_write(path, "a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n"
    _io.atomic_write(path, "c\n")
    assert path.read_text() == "c\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_write_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _io.atomic_write(Path("rel.json"), "{}\n")
    assert (tmp_path / "rel.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rel.json"]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_atomic_write_failure_keeps_original(tmp_path, monkeypatch, exc, where):
    path = tmp_path / "baseline.json"
    path.write_text("original\n")
    calls = []

    def boom(*args, **kwargs):
        calls.append(args)
        raise exc

    monkeypatch.setattr(_io.os, where, boom)
    # an OSError is reported naming the file (exit 2); an interrupt goes on ending the run
    with pytest.raises(_io.OutputsNotWritten if isinstance(exc, OSError) else type(exc)):
        _io.atomic_write(path, "half-written new content\n" * 1000)
    monkeypatch.undo()
    assert calls, f"os.{where} was never called"
    assert path.read_text() == "original\n"
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]


def test_atomic_write_new_file_failure_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "new.csv"

    def boom(*args, **kwargs):
        raise OSError("no")

    monkeypatch.setattr(_io.os, "replace", boom)
    with pytest.raises(_io.OutputsNotWritten, match="new.csv: cannot write: no; nothing was written"):
        _io.atomic_write(path, "x\n")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- sampling


def test_exhaustive_streams_float32_and_notes_float64(tmp_path):
    path = tmp_path / "ex.csv"
    args = "sweep -f naive --domain logits -d float16 -d float32 -d float64 -y 0 --points 20 --range 1:1.01".split()
    args += ["--sampling", "exhaustive", "--csv", str(path)]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "float64" in notes[0], result.stderr
    assert "note:" not in result.stdout
    _, rows = read_csv(path.read_text())
    points = {r["dtype"]: int(r["points"]) for r in rows}
    # every float16 and every float32 in [1, 1.01] (rounded inwards), float64 sampled
    n16 = int(np.float16(1.01).view(np.uint16)) - int(np.float16(1.0).view(np.uint16)) + 1
    top32 = np.float32(1.01)
    top32 = top32 if top32 <= 1.01 else np.nextafter(top32, np.float32(0))
    n32 = int(top32.view(np.uint32)) - int(np.float32(1.0).view(np.uint32)) + 1
    assert n16 == 11 and n32 == 83887
    assert points["float16"] >= n16
    assert points["float32"] == n32
    assert points["float64"] < 100  # sampled: --points plus the special inputs


def test_exhaustive_on_16bit_only_has_no_note():
    args = "sweep -f naive --domain logits -d bfloat16 -y 1 --range 2:4 --sampling exhaustive".split()
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    assert "note:" not in result.stderr


def test_progress_counts_every_oracle_point_once():
    from bce_audit.settings import Settings
    from bce_audit.sweep.run import grids, run_sweep
    from bce_audit.vocabulary import Domain, DType

    calls = []
    settings = Settings(
        formulations=("naive",), dtypes=(DType.FLOAT16, DType.FLOAT32), domains=tuple(Domain), points=40
    )
    result = run_sweep(settings, progress=lambda n, total: calls.append((n, total)))
    # the distinct (domain, label, input) points of every grid: labels 0 and 1 are the same in
    # both dtypes, so an input that is in both grids (±0, the non-finite ones) is needed once
    distinct = set()
    for grid in grids(settings):
        for x in np.concatenate([grid.finite, grid.nonfinite]).tolist():
            for y in settings.labels:
                distinct.add((grid.domain, y, struct.pack("<d", x)))
    assert result.truth_points == len(distinct) == result.truth_computed
    assert sum(n for n, _ in calls) == result.truth_points
    assert {total for _, total in calls} == {result.truth_points}
