"""`bce-audit check`: threshold rules, baselines, exit codes, and the CI reports (text, GitHub, JUnit, Markdown)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ENV, ROOT, assert_exit, assert_usage_error, runner

from bce_audit.cli import main
from bce_audit.figures import CaseFigures
from bce_audit.gate.baseline import fingerprint, read_baseline, render_baseline
from bce_audit.gate.compare import compare
from bce_audit.gate.interface import (
    CaseComparison,
    CaseKey,
    CaseRecord,
    Change,
    Direction,
    FigureDelta,
    Verdict,
    first_few,
)
from bce_audit.gate.plan import still_raising_warning
from bce_audit.gate.thresholds import evaluate_rules, parse_rules
from bce_audit.gate.tolerance import Tolerance, parse_tolerance

SAMPLES = ROOT / "sample_configs"

# 8 cases: max-abs and torch-logsigmoid, float32 logits, y in {0, 1}, loss and grad. Known figures:
# max-abs's autograd gradient at z = 0 is 1 - y instead of 1/2 - y, so for y = 0 it is 1 where the
# truth is 0.5: 0.5 / ulp(0.5) = 2^23 = 8388608 ULPs, at the inputs +0 and -0 (2 inaccurate points).
SWEEP = """
formulations = ["max-abs", "torch-logsigmoid"]
dtypes = ["float32"]
domain = "logits"
points = 50
"""
MAX_ABS_GRAD_0 = CaseKey("max-abs", "logits", "float32", 0.0, "grad")
MAX_ABS_GRAD_1 = CaseKey("max-abs", "logits", "float32", 1.0, "grad")


def _config(tmp_path: Path, extra: str = "", name: str = "gate.toml") -> Path:
    path = tmp_path / name
    path.write_text(SWEEP + extra, encoding="utf-8")
    return path


def check(*args, env: dict | None = None):
    r = runner() if not env else CliRunner(env={**ENV, **env})
    return r.invoke(main, ["check", *map(str, args)])


@pytest.fixture(scope="module")
def made_baseline(tmp_path_factory) -> tuple[str, str]:
    """A baseline of SWEEP, written once by --update-baseline: (its text, what the update printed)."""
    tmp = tmp_path_factory.mktemp("made")
    cfg = _config(tmp)
    path = tmp / "base.json"
    result = check("--config", cfg, "--baseline", path, "--update-baseline")
    assert_exit(result, 0)
    return path.read_text(encoding="utf-8"), result.stdout


@pytest.fixture
def gate(tmp_path, made_baseline):
    """A directory with the config and a fresh copy of the baseline that tests may edit."""
    path = tmp_path / "base.json"
    path.write_text(made_baseline[0], encoding="utf-8")
    return _config(tmp_path), path


def _edit_case(path: Path, key: CaseKey, **changes) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    for row in doc["cases"]:
        if CaseKey(row["formulation"], row["domain"], row["dtype"], row["label"], row["quantity"]) == key:
            before = dict(row)
            row.update(changes)
            path.write_text(json.dumps(doc), encoding="utf-8")
            return before
    raise AssertionError(f"{key} not in {path}")


def _case_row(path: Path, key: CaseKey) -> dict:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return next(
        r for r in doc["cases"] if CaseKey(r["formulation"], r["domain"], r["dtype"], r["label"], r["quantity"]) == key
    )


@pytest.fixture
def sweep_calls(monkeypatch):
    """Records (and refuses) every call of run_sweep: these errors must come before the sweep."""
    import bce_audit.sweep.run

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("run_sweep called before the configuration was checked")

    monkeypatch.setattr(bce_audit.sweep.run, "run_sweep", refuse)
    return calls


# --------------------------------------------------------------------------- thresholds


def test_thresholds_pass(tmp_path):
    cfg = _config(
        tmp_path,
        """
[[thresholds]]
formulation = "torch-logsigmoid"
quantity = "loss"
max_ulp = 1
inaccurate = 0
""",
    )
    result = check("--config", cfg)
    assert_exit(result, 0)
    out = result.stdout
    # two cases: labels 0 and 1
    expected = "thresholds[0] formulation=torch-logsigmoid quantity=loss (2 cases): max_ulp <= 1, inaccurate <= 0"
    expected = "  ok      " + expected
    assert expected in out.splitlines(), out
    assert out.splitlines()[-1] == "check passed: 1 rule, 8 cases checked, 0 failed"
    assert result.stderr == ""


def test_threshold_fails_with_case_bound_value_and_worst_input(tmp_path):
    cfg = _config(
        tmp_path,
        """
[[thresholds]]
name = "max-abs gradient"
formulation = "max-abs"
quantity = "grad"
label = 0
max_ulp = 4
""",
    )
    result = check("--config", cfg)
    assert_exit(result, 1)
    out = result.stdout
    assert 'FAIL    thresholds[0] "max-abs gradient" (1 of 1 case fail): max_ulp <= 4' in out
    assert "max-abs logits float32 y=0 grad: max_ulp 8388608 > 4 (worst input 0)" in out
    assert out.splitlines()[-1] == "check FAILED: 1 rule (1 failed), 8 cases checked, 1 failed"
    assert all(len(line) <= 120 for line in out.splitlines()), out


def test_several_bounds_and_only_failing_ones_named(tmp_path):
    cfg = _config(
        tmp_path,
        """
[[thresholds]]
formulation = "max-abs"
quantity = "grad"
label = 1
zero = 2
nan = 0
inaccurate = 5
""",
    )
    result = check("--config", cfg)
    assert_exit(result, 1)
    assert "max-abs logits float32 y=1 grad: zero 3 > 2 (worst input 0)" in result.stdout
    assert "nan 0" not in result.stdout and "inaccurate 1" not in result.stdout


def test_glob_selectors(tmp_path):
    cfg = _config(
        tmp_path,
        """
[[thresholds]]
formulation = "torch-*"
quantity = "g*"
dtype = "float*"
nan = 0
max_ulp = 1

[[thresholds]]
formulation = "*-abs"
quantity = "grad"
max_ulp = 4
""",
    )
    result = check("--config", cfg)
    assert_exit(result, 1)
    out = result.stdout
    assert re.search(r"^  ok +thresholds\[0\] .*\(2 cases\): max_ulp <= 1, nan <= 0$", out, re.M), out
    assert re.search(r"^  FAIL +thresholds\[1\] .*\(2 of 2 cases fail\): max_ulp <= 4$", out, re.M), out
    assert "max-abs logits float32 y=0 grad: max_ulp 8388608 > 4" in out
    assert "max-abs logits float32 y=1 grad: max_ulp" in out
    assert "torch-logsigmoid" not in out.split("thresholds[1]")[1]
    assert "check FAILED: 2 rules (1 failed), 8 cases checked, 2 failed" in out


@pytest.mark.parametrize(
    "rule, culprits",
    [
        ('formulation = "max-abz"\nnan = 0', ["thresholds[0]", "selects no case", "'max-abs'"]),
        ('formulation = "naive"\nnan = 0', ["thresholds[0]", "selects no case", "'naive'"]),
        ('dtype = "float16"\nnan = 0', ["thresholds[0]", "selects no case", "float16", "float32"]),
        ('domain = "probabilities"\nnan = 0', ["thresholds[0]", "probabilities"]),
        ("label = 0.5\nnan = 0", ["thresholds[0]", "selects no case", "label 0.5"]),
        ('formulation = "torch-*"\nquantity = "loss"\nlabel = 0.25\nnan = 0', ["thresholds[0]", "label 0.25"]),
    ],
)
def test_rule_selecting_nothing_is_a_config_error_before_the_sweep(tmp_path, rule, culprits, sweep_calls):
    cfg = _config(tmp_path, "\n[[thresholds]]\n" + rule + "\n")
    result = check("--config", cfg)
    assert_usage_error(result, str(cfg), *culprits)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "rule, culprits",
    [
        ("max_ulps = 1", ["thresholds[0]", "unknown key 'max_ulps'", "'max_ulp'"]),
        ('formulation = "max-abs"', ["thresholds[0]", "sets no bound"]),
        ("max_ulp = -1", ["thresholds[0].max_ulp", ">= 0"]),
        ('max_ulp = "one"', ["thresholds[0].max_ulp", "'one'"]),
        ("nan = 1.5", ["thresholds[0].nan", "whole number"]),
        ("nan = true", ["thresholds[0].nan", "True"]),
        ("stable_range = [5, -5]", ["thresholds[0].stable_range", "inverted"]),
        ("stable_range = [5]", ["thresholds[0].stable_range", "[LO, HI]"]),
        ('dtype = "float15"\nnan = 0', ["thresholds[0]", "'float15'", "float16"]),
        ('quantity = "gradient"\nnan = 0', ["thresholds[0]", "'gradient'"]),
        ("label = 2\nnan = 0", ["thresholds[0].label", "[0, 1]"]),
        ("name = 3\nnan = 0", ["thresholds[0].name"]),
    ],
)
def test_bad_rules(tmp_path, rule, culprits, sweep_calls):
    cfg = _config(tmp_path, "\n[[thresholds]]\n" + rule + "\n")
    assert_usage_error(check("--config", cfg), str(cfg), *culprits)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "toml, culprits",
    [
        ("thresholds = 5\n", ["thresholds", "wrong type"]),
        ("thresholds = [1]\n", ["thresholds", "wrong item 1"]),
        ("baseline = 5\n", ["baseline", "wrong type"]),
        ("tolerance = 1\n", ["tolerance", "wrong type"]),
        ('allow_missing = "yes"\n', ["allow_missing", "wrong type"]),
        ("baseline = 'b.json'\n[tolerance]\nmax_ulps = 1\n", ["tolerance", "'max_ulps'"]),
        ("baseline = 'b.json'\n[tolerance]\nstable_range = 1\n", ["tolerance", "may never shrink"]),
        ("baseline = 'b.json'\n[tolerance]\nzero = 0.5\n", ["tolerance", "zero", "whole number"]),
        ("baseline = 'b.json'\n[tolerance]\nmax_ulp = -1\n", ["tolerance", "max_ulp", ">= 0"]),
    ],
)
def test_bad_gate_config(tmp_path, toml, culprits, sweep_calls):
    cfg = _config(tmp_path, "\n" + toml)
    assert_usage_error(check("--config", cfg), *culprits)
    assert sweep_calls == []


def test_stable_range_rule(tmp_path):
    cfg = _config(
        tmp_path,
        """
[[thresholds]]
formulation = "max-abs"
quantity = "loss"
stable_range = [-1e38, 1e38]

[[thresholds]]
formulation = "max-abs"
quantity = "grad"
label = 1
stable_range = [-1, 1]
""",
    )
    result = check("--config", cfg)
    assert_exit(result, 1)
    out = result.stdout
    assert re.search(r"^  ok +thresholds\[0\] .* \(2 cases\): stable_range contains \[-1e38, 1e38\]$", out, re.M), out
    # the gradient is wrong at z = 0 itself: no stable range at all
    assert "max-abs logits float32 y=1 grad: stable range none does not contain [-1, 1]" in out


def test_a_case_that_raised_fails_every_rule_that_selects_it():
    key = CaseKey("mine", "logits", "float32", 0.0, "loss")
    nan = math.nan
    raised = CaseRecord(CaseFigures(0, 0, 0, 0, 0, 0, 0, nan, nan, nan, nan, nan, nan, nan, nan), "ValueError: boom")
    fine = CaseRecord(CaseFigures(10, 10, 0, 0, 0, 0, 0, 0.5, 0.5, 0.1, 0.1, 1e-8, 1.0, -1.0, 1.0))
    other = CaseKey("other", "logits", "float32", 0.0, "loss")
    rules = parse_rules([{"nan": 0}, {"formulation": "other", "max_ulp": 1}, {"max_ulp": 0.25}], "test")
    outcomes = evaluate_rules(rules, {key: raised, other: fine})
    assert [o.passed for o in outcomes] == [False, True, False]
    assert [f.key for f in outcomes[0].failures] == [key]
    assert outcomes[0].failures[0].error == "ValueError: boom"
    # the undefined figures of a case that raised never hold, and a NaN bound figure never holds
    assert [f.key for f in outcomes[2].failures] == [key, other]
    undefined = CaseRecord(dataclass_replace(fine.figures, max_ulp=nan))
    (outcome,) = evaluate_rules(parse_rules([{"max_ulp": 1e300}], "test"), {other: undefined})
    assert not outcome.passed
    from bce_audit.report.verdict_text import rule_failure_text

    assert (
        rule_failure_text(outcomes[0].failures[0])
        == "mine logits float32 y=0 loss: the formulation raised: ValueError: boom"
    )


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# --------------------------------------------------------------------------- nothing to check, usage


def test_no_thresholds_and_no_baseline_is_a_usage_error(tmp_path, sweep_calls):
    assert_usage_error(check("--config", _config(tmp_path)), "nothing to check")
    assert_usage_error(check("-f", "naive", "-d", "float16"), "nothing to check")
    assert sweep_calls == []


def test_update_baseline_needs_a_path(tmp_path, sweep_calls):
    cfg = _config(tmp_path, "\n[[thresholds]]\nnan = 100\n")
    assert_usage_error(check("--config", cfg, "--update-baseline"), "--update-baseline", "baseline")
    assert sweep_calls == []


@pytest.mark.parametrize("flag", ["--junit", "--markdown", "--baseline"])
def test_output_paths_checked_before_the_sweep(tmp_path, flag, sweep_calls):
    cfg = _config(tmp_path, "\n[[thresholds]]\nnan = 100\n")
    bad = tmp_path / "no" / "such" / "report"
    args = ["--config", cfg, flag, bad] + (["--update-baseline"] if flag == "--baseline" else [])
    assert_usage_error(check(*args), flag, str(bad), "does not exist")
    assert sweep_calls == []
    assert not bad.parent.exists()


def test_unwritable_baseline_from_the_config_is_named_as_the_config_key(tmp_path, sweep_calls):
    cfg = _config(tmp_path, '\nbaseline = "no/such/b.json"\n')
    where = f"baseline (from {cfg}) {tmp_path / 'no' / 'such' / 'b.json'}"
    assert_usage_error(check("--config", cfg, "--update-baseline"), where, "does not exist")
    assert sweep_calls == []


@pytest.mark.parametrize("text", ["max_ulp", "max_ulp:x", "bogus:+1", "zero:+0.5", "max_ulp:-1"])
def test_bad_tolerance_flag(gate, text, sweep_calls):
    cfg, path = gate
    assert_usage_error(check("--config", cfg, "--baseline", path, "--tolerance", text), "--tolerance")
    assert sweep_calls == []


def test_tolerance_parsing():
    assert parse_tolerance(None, (), "c") == Tolerance()
    t = parse_tolerance({"max_ulp": 3, "zero": 2}, ("max_ulp:+5", "mean_bits: 0.5"), "c")
    assert [t.allowed(f) for f in ("max_ulp", "zero", "mean_bits", "p99_ulp", "nan")] == [5.0, 2, 0.5, 1.0, 0]
    assert str(Tolerance()) == "max_ulp +1, p99_ulp +1, mean_bits +0.1, counts +0"


# --------------------------------------------------------------------------- baseline round trip


def test_update_then_check_passes(tmp_path, made_baseline):
    text, printed = made_baseline
    assert re.fullmatch(r"baseline \S+base\.json: created, 8 cases\n", printed), printed
    doc = json.loads(text)  # strict JSON
    assert doc["schema_version"] == 1
    for key in ("bce_audit", "torch", "numpy", "mpmath", "cpu_capability", "device"):
        assert isinstance(doc["provenance"][key], str) and doc["provenance"][key]
    assert doc["settings"]["points"] == 50 and doc["settings"]["formulations"] == ["max-abs", "torch-logsigmoid"]
    assert doc["fingerprint"] == fingerprint(doc["settings"])
    assert len(doc["cases"]) == 8
    row = _case_row_from(doc, MAX_ABS_GRAD_0)
    assert row["max_ulp"] == 8388608.0 and row["inaccurate"] == 2 and row["stable_range"] == ["nan", "nan"]
    # one line per case, so that a diff shows which cases moved
    assert sum(line.lstrip().startswith('{"formulation"') for line in text.splitlines()) == 8

    path = tmp_path / "base.json"
    path.write_text(text, encoding="utf-8")
    result = check("--config", _config(tmp_path), "--baseline", path)
    assert_exit(result, 0)
    assert "  ok      8 cases as in the baseline (within the tolerance)" in result.stdout
    assert result.stdout.splitlines()[-1] == "check passed: 0 rules, 8 cases checked, 0 failed, 0 improved, 0 new"
    assert path.read_text(encoding="utf-8") == text


def _case_row_from(doc: dict, key: CaseKey) -> dict:
    return next(
        r for r in doc["cases"] if CaseKey(r["formulation"], r["domain"], r["dtype"], r["label"], r["quantity"]) == key
    )


def test_baseline_floats_round_trip_exactly(gate):
    _, path = gate
    text = path.read_text(encoding="utf-8")
    b = read_baseline(path)
    assert render_baseline(b.figures, b.settings, b.provenance) == text
    fig = b.figures[MAX_ABS_GRAD_0].figures
    assert math.isnan(fig.stable_lo) and fig.max_ulp == 8388608.0
    mean = fig.mean_ulp
    assert repr(mean) in text and float(repr(mean)) == mean


def test_same_seed_same_baseline(tmp_path, made_baseline):
    path = tmp_path / "again.json"
    assert_exit(check("--config", _config(tmp_path), "--baseline", path, "--update-baseline"), 0)
    assert path.read_text(encoding="utf-8") == made_baseline[0]


def test_baseline_path_in_config_is_relative_to_the_config(tmp_path, made_baseline, monkeypatch):
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "b.json").write_text(made_baseline[0], encoding="utf-8")
    cfg = _config(sub, '\nbaseline = "b.json"\n')
    monkeypatch.chdir(tmp_path)  # not the config's directory
    result = check("--config", cfg)
    assert_exit(result, 0)
    assert f"baseline {sub / 'b.json'} " in result.stdout


def test_pyproject_config(tmp_path, made_baseline, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("b.json").write_text(made_baseline[0], encoding="utf-8")
    body = "".join(f"{line}\n" for line in SWEEP.strip().splitlines())
    Path("pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.bce-audit]\n' + body + 'baseline = "b.json"\n\n'
        '[[tool.bce-audit.thresholds]]\nformulation = "torch-logsigmoid"\nmax_ulp = 1\n',
        encoding="utf-8",
    )
    result = check()
    assert_exit(result, 0)
    assert "check passed: 1 rule, 8 cases checked, 0 failed, 0 improved, 0 new" in result.stdout


# --------------------------------------------------------------------------- regressions and tolerance


def test_baseline_better_than_reality_fails_naming_the_case(gate):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=8388000.0)
    row = _case_row(path, MAX_ABS_GRAD_1)
    assert row["zero"] == 3
    _edit_case(path, MAX_ABS_GRAD_1, zero=2, ok=row["ok"] + 1)
    before = path.read_bytes()
    result = check("--config", cfg, "--baseline", path)
    assert_exit(result, 1)
    out = result.stdout
    assert "FAIL    max-abs logits float32 y=0 grad: max_ulp 8388000 -> 8388608 (allowed +1) (worst input 0)" in out
    assert "FAIL    max-abs logits float32 y=1 grad: zero 2 -> 3 (allowed +0) (worst input 0)" in out
    assert "  ok      6 cases as in the baseline" in out
    assert out.splitlines()[-1] == "check FAILED: 0 rules, 8 cases checked, 2 failed, 0 improved, 0 new"
    assert path.read_bytes() == before  # never replaced without --update-baseline
    assert sorted(p.name for p in path.parent.iterdir()) == ["base.json", "gate.toml"]


def test_stable_range_may_not_shrink(gate):
    cfg, path = gate
    key = CaseKey("torch-logsigmoid", "logits", "float32", 1.0, "grad")
    row = _case_row(path, key)
    lo, hi = row["stable_range"]
    _edit_case(path, key, stable_range=[lo, hi * 2])  # the baseline claimed more than there is
    result = check("--config", cfg, "--baseline", path)
    assert_exit(result, 1)
    assert (
        "FAIL    torch-logsigmoid logits float32 y=1 grad: stable_range [-max, 6.8e38] -> [-max, max]" in result.stdout
    )


def test_tolerance_respected(gate):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=8388605.0)  # 3 ULPs better than reality
    assert_exit(check("--config", cfg, "--baseline", path), 1)
    assert_exit(check("--config", cfg, "--baseline", path, "--tolerance", "max_ulp:+2"), 1)
    result = check("--config", cfg, "--baseline", path, "--tolerance", "max_ulp:+3")
    assert_exit(result, 0)
    assert "(tolerance max_ulp +3, p99_ulp +1, mean_bits +0.1, counts +0):" in " ".join(result.stdout.split())
    # the same in the config, and the flag wins over it
    cfg.write_text(cfg.read_text() + "\n[tolerance]\nmax_ulp = 3\n")
    assert_exit(check("--config", cfg, "--baseline", path), 0)
    assert_exit(check("--config", cfg, "--baseline", path, "--tolerance", "max_ulp:+1"), 1)


def test_count_tolerance(gate):
    cfg, path = gate
    row = _case_row(path, MAX_ABS_GRAD_1)
    _edit_case(path, MAX_ABS_GRAD_1, zero=1, ok=row["ok"] + 2)
    assert_exit(check("--config", cfg, "--baseline", path, "--tolerance", "zero:+1"), 1)
    assert_exit(check("--config", cfg, "--baseline", path, "--tolerance", "zero:+2"), 0)


def test_improved_and_new_cases_are_reported_not_failed(tmp_path, gate):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=9e6, inaccurate=3, ok=57)  # the baseline was worse
    result = check("--config", cfg, "--baseline", path)
    assert_exit(result, 0)
    assert "better  max-abs logits float32 y=0 grad: max_ulp 9000000 -> 8388608; inaccurate 3 -> 2" in result.stdout
    assert result.stdout.splitlines()[-1] == "check passed: 0 rules, 8 cases checked, 0 failed, 1 improved, 0 new"

    only = tmp_path / "only-max-abs.json"
    assert_exit(check("--config", cfg, "-f", "max-abs", "--baseline", only, "--update-baseline"), 0)
    result = check("--config", cfg, "--baseline", only)
    assert_exit(result, 0)
    new = [line for line in result.stdout.splitlines() if line.startswith("  new ")]
    assert len(new) == 4 and all("torch-logsigmoid" in line and "not in the baseline" in line for line in new)
    assert result.stdout.splitlines()[-1] == "check passed: 0 rules, 8 cases checked, 0 failed, 0 improved, 4 new"


def test_missing_case_fails_unless_allowed(gate):
    cfg, path = gate
    result = check("--config", cfg, "-f", "max-abs", "--baseline", path)
    assert_exit(result, 1)
    missing = [line for line in result.stdout.splitlines() if "not in this run" in line]
    assert len(missing) == 4 and all(line.startswith("  FAIL    torch-logsigmoid") for line in missing)
    assert (
        result.stdout.splitlines()[-1]
        == "check FAILED: 0 rules, 4 cases checked, 4 failed, 0 improved, 0 new, 4 missing"
    )
    result = check("--config", cfg, "-f", "max-abs", "--baseline", path, "--allow-missing")
    assert_exit(result, 0)
    assert (
        "missing torch-logsigmoid logits float32 y=0 loss: in the baseline but not in this run (allowed)"
        in result.stdout
    )
    cfg.write_text(cfg.read_text() + "\nallow_missing = true\n")
    assert_exit(check("--config", cfg, "-f", "max-abs", "--baseline", path), 0)


def _fig(error: str | None = None, **changes) -> CaseRecord:
    base = dict(points=10, ok=10, inaccurate=0, inf=0, nan=0, zero=0, nonfinite=0, max_ulp=1.0, p99_ulp=1.0)
    base |= dict(mean_ulp=0.1, mean_bits=0.1, max_rel_err=1e-7, worst_input=1.0, stable_lo=-5.0, stable_hi=5.0)
    return CaseRecord(CaseFigures(**(base | changes)), error)


@pytest.mark.parametrize(
    "old, new, change, moved",
    [
        ({}, {}, Change.UNCHANGED, []),
        ({}, {"max_ulp": 2.0}, Change.UNCHANGED, [("max_ulp", Direction.TOLERATED)]),
        ({}, {"max_ulp": 2.5}, Change.REGRESSED, [("max_ulp", Direction.WORSE)]),
        ({}, {"max_ulp": math.inf}, Change.REGRESSED, [("max_ulp", Direction.WORSE)]),
        ({"max_ulp": math.inf}, {"max_ulp": math.inf}, Change.UNCHANGED, []),
        ({}, {"max_ulp": math.nan}, Change.REGRESSED, [("max_ulp", Direction.WORSE)]),  # now undefined
        ({"max_ulp": math.nan}, {}, Change.IMPROVED, [("max_ulp", Direction.BETTER)]),
        ({}, {"mean_bits": 0.2}, Change.UNCHANGED, [("mean_bits", Direction.TOLERATED)]),
        ({}, {"mean_bits": 0.25}, Change.REGRESSED, [("mean_bits", Direction.WORSE)]),
        ({}, {"p99_ulp": 0.5}, Change.IMPROVED, [("p99_ulp", Direction.BETTER)]),
        ({}, {"nonfinite": 1}, Change.REGRESSED, [("nonfinite", Direction.WORSE)]),
        ({}, {"zero": 1, "ok": 9}, Change.REGRESSED, [("zero", Direction.WORSE)]),
        ({}, {"stable_hi": 4.0}, Change.REGRESSED, [("stable_range", Direction.WORSE)]),
        ({}, {"stable_lo": -6.0, "stable_hi": 4.0}, Change.REGRESSED, [("stable_range", Direction.WORSE)]),
        ({}, {"stable_lo": -6.0}, Change.IMPROVED, [("stable_range", Direction.BETTER)]),
        ({}, {"stable_lo": math.nan, "stable_hi": math.nan}, Change.REGRESSED, [("stable_range", Direction.WORSE)]),
        ({"stable_lo": math.nan, "stable_hi": math.nan}, {}, Change.IMPROVED, [("stable_range", Direction.BETTER)]),
        ({}, {"points": 11, "ok": 11}, Change.REGRESSED, [("points", Direction.WORSE)]),
        ({}, {"error": "boom"}, Change.REGRESSED, [("error", Direction.WORSE)]),
        ({"error": "boom"}, {}, Change.IMPROVED, [("error", Direction.BETTER)]),
        ({"error": "boom"}, {"error": "other"}, Change.STILL_RAISES, []),  # reported, passes
    ],
)
def test_compare(old, new, change, moved):
    key = CaseKey("f", "logits", "float32", 0.0, "loss")
    (c,) = compare({key: _fig(**old)}, {key: _fig(**new)}, Tolerance(), allow_missing=False)
    assert c.change is change
    assert [(d.figure, d.direction) for d in c.deltas] == moved
    assert c.failed == (change is Change.REGRESSED)


def test_compare_new_and_missing():
    a, b = CaseKey("a", "logits", "float32", 0.0, "loss"), CaseKey("b", "logits", "float32", 0.0, "loss")
    assert [(c.key, c.change) for c in compare({a: _fig()}, {b: _fig()}, Tolerance(), False)] == [
        (b, Change.NEW),
        (a, Change.MISSING),
    ]
    (_, missing) = compare({a: _fig()}, {b: _fig()}, Tolerance(), True)
    assert missing.change is Change.MISSING_ALLOWED and not missing.failed


# --------------------------------------------------------------------------- unreadable baselines


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _set(key, value):
    def edit(text: str) -> str:
        doc = json.loads(text)
        doc[key] = value
        return json.dumps(doc)

    return edit


def _edit_first_case(**changes):
    def edit(text: str) -> str:
        doc = json.loads(text)
        for k, v in changes.items():
            if v is None:
                del doc["cases"][0][k]
            else:
                doc["cases"][0][k] = v
        return json.dumps(doc)

    return edit


@pytest.mark.parametrize(
    "edit, culprit",
    [
        (_truncate, "not valid JSON"),
        (lambda t: t[:-3], "not valid JSON"),
        (lambda t: "", "not valid JSON"),
        (lambda t: "hello", "not valid JSON"),
        (lambda t: t.replace('"max_ulp": 1.0', '"max_ulp": NaN', 1), "not valid JSON"),
        (lambda t: t.replace('"schema_version": 1,', '"schema_version": 1, "schema_version": 1,'), "duplicate"),
        (lambda t: "[1, 2]", "not a bce-audit baseline"),
        (_set("schema_version", 2), "schema_version 2 is not supported"),
        (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "schema_version"}), "no schema_version"),
        (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "cases"}), "missing 'cases'"),
        (_set("cases", []), "non-empty list"),
        (_set("fingerprint", "0" * 64), "fingerprint does not match"),
        (_set("fingerprint", "abc"), "fingerprint"),
        (_set("extra", 1), "unknown field 'extra'"),
        (_edit_first_case(max_ulp=None), "cases[0]: missing 'max_ulp'"),
        (_edit_first_case(max_ulp="big"), "cases[0].max_ulp"),
        (_edit_first_case(zero=-1), "cases[0].zero"),
        (_edit_first_case(zero=7), "do not add up"),
        (_edit_first_case(label=3.0), "cases[0].label"),
        (_edit_first_case(stable_range=[1]), "cases[0].stable_range"),
        (_edit_first_case(colour="red"), "unknown field 'colour'"),
        (_edit_first_case(domain="logit"), "cases[0].domain: expected one of logits, probabilities, got 'logit'"),
        (_edit_first_case(dtype="float8"), "cases[0].dtype: expected one of float16, bfloat16"),
        (_edit_first_case(quantity="gradient"), "cases[0].quantity: expected one of loss, grad"),
        (_edit_first_case(quantity=["loss"]), "cases[0].quantity"),
        (_edit_first_case(stable_range=[5.0, -5.0]), "cases[0].stable_range: expected [lo, hi] with lo <= hi"),
        (_edit_first_case(stable_range=["nan", 1.0]), "cases[0].stable_range: expected [lo, hi] with lo <= hi"),
        (_edit_first_case(stable_range=[-1.0, "nan"]), "cases[0].stable_range"),
        (_edit_first_case(stable_range="none"), "cases[0].stable_range: expected [lo, hi] (or null)"),
        (_edit_first_case(max_ulp=-1.0), "cases[0].max_ulp: expected a number >= 0"),
        (_edit_first_case(p99_ulp="-inf"), "cases[0].p99_ulp: expected a number >= 0"),
        (_edit_first_case(mean_ulp=-0.5), "cases[0].mean_ulp"),
        (_edit_first_case(mean_bits=-0.1), "cases[0].mean_bits: expected a number >= 0"),
        (_edit_first_case(max_rel_err=-1), "cases[0].max_rel_err"),
        (lambda t: json.dumps({**json.loads(t), "cases": json.loads(t)["cases"] * 2}), "appears twice"),
    ],
)
def test_unreadable_baseline_is_a_one_line_error(gate, edit, culprit, sweep_calls):
    cfg, path = gate
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    assert_usage_error(check("--config", cfg, "--baseline", path), f"baseline {path}", culprit)
    assert sweep_calls == []


@pytest.mark.parametrize(
    "changes",
    [
        {"stable_range": "null"},  # no stable range, as ["nan", "nan"]
        {"stable_range": ["nan", "nan"]},
        {"stable_range": [0.0, 0.0]},
        {"max_ulp": "nan", "p99_ulp": "nan", "mean_ulp": "nan", "mean_bits": "nan", "max_rel_err": "nan"},
        {"max_ulp": "inf", "max_rel_err": "inf"},
        {"worst_input": "-inf"},
        {"worst_input": -3.5},
    ],
)
def test_valid_hand_edits_are_read(gate, changes):
    cfg, path = gate
    text = _edit_first_case(**changes)(path.read_text(encoding="utf-8"))
    path.write_text(text.replace('"stable_range": "null"', '"stable_range": null'), encoding="utf-8")
    assert len(read_baseline(path).figures) == 8
    result = check("--config", cfg, "--baseline", path)
    assert result.exit_code in (0, 1) and "error" not in result.stderr  # read and compared: better or worse


def test_missing_binary_and_directory_baselines(tmp_path, sweep_calls):
    cfg = _config(tmp_path)
    missing = tmp_path / "nope.json"
    assert_usage_error(check("--config", cfg, "--baseline", missing), str(missing), "not found", "--update-baseline")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 10)
    assert_usage_error(check("--config", cfg, "--baseline", binary), str(binary), "not UTF-8")
    directory = tmp_path / "dir.json"
    directory.mkdir()
    cfg.write_text(cfg.read_text() + '\nbaseline = "dir.json"\n')
    assert_usage_error(check("--config", cfg), str(directory), "directory")
    assert sweep_calls == []


# --------------------------------------------------------------------------- settings and environment


@pytest.mark.parametrize(
    "flags, culprits",
    [
        (["--points", "60"], ["points 60 (baseline 50)"]),
        (["--seed", "1"], ["seed 1 (baseline 0)"]),
        (["--ulp-threshold", "2"], ["ulp_threshold 2 (baseline 4)"]),
        (["--range", "-5:5"], ["range [-5, 5] (baseline (default))"]),
        (["--sampling", "exhaustive"], ['sampling "exhaustive" (baseline "bits")']),
    ],
)
def test_settings_fingerprint_mismatch_is_exit_2(gate, flags, culprits, sweep_calls):
    cfg, path = gate
    result = check("--config", cfg, "--baseline", path, *flags)
    line = assert_usage_error(result, f"baseline {path}", "not comparable", *culprits)
    assert "--update-baseline" in line
    assert sweep_calls == []


def test_case_selecting_settings_do_not_change_the_fingerprint():
    base = {"formulations": ["a"], "dtypes": ["float32"], "domains": ["logits"], "labels": [0.0], "range": None}
    base |= {"points": 50, "sampling": "bits", "seed": 0, "ulp_threshold": 4.0}
    other = base | {"formulations": ["b", "c"], "dtypes": ["float16"], "labels": [0.5], "domains": ["probabilities"]}
    assert fingerprint(base) == fingerprint(other)
    assert fingerprint(base) == fingerprint(base | {"ulp_threshold": 4, "future_setting": []})
    assert fingerprint(base) != fingerprint(base | {"ulp_threshold": 4.5})
    assert fingerprint(base) != fingerprint(base | {"range": [-5.0, 5.0]})
    assert fingerprint(base) != fingerprint(base | {"future_setting": ["value"]})


def test_other_environment_only_warns(gate):
    cfg, path = gate
    doc = json.loads(path.read_text(encoding="utf-8"))
    real = doc["provenance"]["torch"]
    doc["provenance"].update(torch="1.0.0", cpu_capability="NEON", platform="elsewhere")
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = check("--config", cfg, "--baseline", path)
    assert_exit(result, 0)
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(f"bce-audit: warning: baseline {path} was made in another environment")
    assert f"torch 1.0.0 -> {real}" in warnings[0] and "cpu_capability NEON -> " in warnings[0]
    assert "platform" not in warnings[0]  # informational only
    assert "warning" not in result.stdout
    result = check("--config", cfg, "--baseline", path, "--format", "github")
    assert_exit(result, 0)
    assert re.search(r"^::warning title=bce-audit::baseline .* torch 1\.0\.0 -> ", result.stdout, re.M)


# --------------------------------------------------------------------------- --update-baseline


def test_update_reports_changes_against_the_old_file(gate):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=8388000.0)
    row = _case_row(path, MAX_ABS_GRAD_1)
    _edit_case(path, MAX_ABS_GRAD_1, zero=5, ok=row["ok"] - 2)
    result = check("--config", cfg, "--baseline", path, "--update-baseline")
    assert_exit(result, 0)
    assert result.stdout.splitlines() == [
        f"baseline {path}: updated, 8 cases (it had 8)",
        "  worse   max-abs logits float32 y=0 grad: max_ulp 8388000 -> 8388608",
        "  better  max-abs logits float32 y=1 grad: zero 5 -> 3",
        "1 worse, 1 better, 0 added, 0 removed, 6 unchanged",
    ]
    assert_exit(check("--config", cfg, "--baseline", path), 0)  # the new figures hold


def test_update_lists_added_and_removed_cases_and_setting_changes(gate):
    cfg, path = gate
    result = check("--config", cfg, "--baseline", path, "--update-baseline", "-f", "max-abs", "--points", "40")
    assert_exit(result, 0)
    out = result.stdout
    assert "settings changed: points 40 (baseline 50); the figures are not compared" in out
    assert len(re.findall(r"^  removed torch-logsigmoid", out, re.M)) == 4
    assert "worse" not in out and "better" not in out
    assert out.splitlines()[-1] == "0 added, 4 removed"
    assert read_baseline(path).settings["points"] == 40


def test_update_replaces_an_unreadable_baseline_with_a_note(gate):
    cfg, path = gate
    path.write_text("{ truncated", encoding="utf-8")
    result = check("--config", cfg, "--baseline", path, "--update-baseline")
    assert_exit(result, 0)
    assert result.stdout.startswith(f"baseline {path}: replaced an unreadable file, 8 cases\n")
    assert "the old file could not be read" in result.stdout and "not valid JSON" in result.stdout
    assert len(read_baseline(path).figures) == 8


def test_update_notes_failing_rules_but_exits_0(gate):
    cfg, path = gate
    cfg.write_text(cfg.read_text() + "\n[[thresholds]]\nformulation = 'max-abs'\nmax_ulp = 1\n")
    result = check("--config", cfg, "--baseline", path, "--update-baseline")
    assert_exit(result, 0)
    assert "note: these figures fail 1 threshold rule(s) (thresholds[0])" in result.stdout
    assert_exit(check("--config", cfg, "--baseline", path), 1)


def test_update_is_atomic(gate, monkeypatch):
    from bce_audit import files as _io

    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=1.0)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, "replace", crash)
    result = check("--config", cfg, "--baseline", path, "--update-baseline")
    assert_exit(result, 130)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["base.json", "gate.toml"]


def test_a_failing_check_never_touches_the_baseline(gate):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=1.0)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    for extra in ([], ["--format", "github"], ["--tolerance", "max_ulp:+0"]):
        assert_exit(check("--config", cfg, "--baseline", path, *extra), 1)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- GitHub


def test_github_escaping():
    from bce_audit.report.github import escape_data, escape_property, workflow_command

    assert escape_data("100% of x\r\ny: a, b") == "100%25 of x%0D%0Ay: a, b"
    assert escape_property("100% of x\r\ny: a, b") == "100%25 of x%0D%0Ay%3A a%2C b"
    assert escape_data("%0A") == "%250A"  # escaped once, not interpreted
    line = workflow_command("error", "a: b,\nc", title="t: 1, 2", file="dir,x/f.toml")
    assert line == "::error title=t%3A 1%2C 2,file=dir%2Cx/f.toml::a: b,%0Ac"
    assert workflow_command("notice", "ok", file=None) == "::notice::ok"


def test_github_format_annotations(gate):
    cfg, path = gate
    cfg.write_text(
        cfg.read_text()
        + '\n[[thresholds]]\nname = "grad, y=0: exact"\nformulation = "max-abs"\nlabel = 0\nmax_ulp = 4\n'
    )
    _edit_case(path, MAX_ABS_GRAD_1, max_ulp=1.0)
    result = check("--config", cfg, "--baseline", path, "--format", "github")
    assert_exit(result, 1)
    commands = [line for line in result.stdout.splitlines() if line.startswith("::")]
    errors = [c for c in commands if c.startswith("::error ")]
    assert len(errors) == 3, commands
    prop = f"file={str(cfg).replace(':', '%3A').replace(',', '%2C')}"
    assert errors[0] == (
        f"::error {prop},title=bce-audit threshold thresholds[0] grad%2C y=0%3A exact::"
        "max-abs logits float32 y=0 grad: max_ulp 8388608 > 4 (worst input 0) [max_ulp <= 4]"
    )
    assert errors[1].startswith("::error file=") and "title=bce-audit baseline regression::" in errors[1]
    regression = r"::max-abs logits float32 y=1 grad: max_ulp 1 -> 1\.\d+e7 \(allowed \+1\) \(worst input 0\)$"
    assert re.search(regression, errors[1]), errors[1]
    assert errors[2].startswith("::error title=bce-audit::check FAILED: 1 rule (1 failed), 8 cases checked, 2 failed")
    # the readable verdict is in the log too
    assert "check FAILED:" in result.stdout.split("::error")[0]


def test_github_format_is_automatic_on_actions_and_text_overrides(gate, tmp_path):
    cfg, path = gate
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = check("--config", cfg, "--baseline", path, env=env)
    assert_exit(result, 0)
    assert "::notice title=bce-audit::check passed" in result.stdout
    assert summary.exists()
    summary.unlink()
    result = check("--config", cfg, "--baseline", path, "--format", "text", env=env)
    assert_exit(result, 0)
    assert "::" not in result.stdout and not summary.exists()


def test_step_summary_is_appended(gate, tmp_path):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=1.0)
    summary = tmp_path / "step-summary.md"
    summary.write_text("# earlier step\n\nkept\n", encoding="utf-8")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    for _ in range(2):
        assert_exit(check("--config", cfg, "--baseline", path, "--format", "github", env=env), 1)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n\nkept\n## bce-audit check failed\n")
    assert text.count("## bce-audit check failed") == 2
    assert "| baseline | max-abs logits float32 y=0 grad | max_ulp 1 -&gt; 8388608 (allowed +1) | 0 |" in text
    assert len(text.encode("utf-8")) < 2**20


def _synthetic_verdict(n: int) -> Verdict:
    comparisons = tuple(
        CaseComparison(
            CaseKey(f"formulation-{i}|<x>", "logits", "float32", 0.0, "grad"),
            Change.REGRESSED,
            (FigureDelta("zero", i, i + 1, 0, Direction.WORSE),),
            worst_input=float(i),
        )
        for i in range(n)
    )
    return Verdict(rules=(), comparisons=comparisons, cases_checked=n, baseline="b.json", tolerance=Tolerance())


def test_markdown_stays_small_with_many_cases():
    from bce_audit.report.markdown import MAX_BYTES, MarkdownFormat

    text = MarkdownFormat().render(_synthetic_verdict(20_000))
    size = len(text.encode("utf-8"))
    assert size <= MAX_BYTES < 65_536 < 2**20
    assert "check FAILED: 0 rules, 20000 cases checked, 20000 failed" in text
    m = re.search(r"\| \.\.\. (\d+) more rows not shown \|", text)
    assert m, text[-500:]
    shown = text.count("| baseline | formulation-")
    assert shown + int(m.group(1)) == 20_000 and shown > 100
    assert "formulation-0\\|&lt;x&gt; logits" in text  # cells escaped
    small = MarkdownFormat().render(_synthetic_verdict(3))
    assert "more rows" not in small and small.count("| baseline | formulation-") == 3


def test_github_annotations_are_capped():
    from bce_audit.report.github import MAX_ERRORS, GithubFormat

    lines = GithubFormat().render(_synthetic_verdict(500)).splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == MAX_ERRORS + 2  # the cap, the "more" line, the summary
    assert "450 more failures" in errors[-2]


# --------------------------------------------------------------------------- JUnit and Markdown files


def test_junit_report(gate, tmp_path):
    cfg, path = gate
    cfg.write_text(
        cfg.read_text()
        + '\n[[thresholds]]\nname = "<&\\"quoted\\"> \\u0001"\nformulation = "max-abs"\nmax_ulp = 4\n'
        + "\n[[thresholds]]\nformulation = 'torch-logsigmoid'\nmax_ulp = 1\n"
    )
    _edit_case(path, MAX_ABS_GRAD_1, zero=0, ok=_case_row(path, MAX_ABS_GRAD_1)["ok"] + 3)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["cases"].append(dict(doc["cases"][0], formulation="retired"))  # a case this run lacks
    path.write_text(json.dumps(doc), encoding="utf-8")
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    result = check("--config", cfg, "--baseline", path, "--junit", junit, "--allow-missing")
    assert_exit(result, 1)
    assert f"wrote {junit}" in result.stderr
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    cases = root.findall(".//testcase")
    # 2 rules + 9 baseline cases (8 run, 1 missing but allowed)
    assert len(cases) == 11
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("11", "2", "1")
    rules = [c for c in cases if c.get("classname") == "bce-audit.thresholds"]
    assert len(rules) == 2
    assert rules[0].get("name").startswith('thresholds[0] "<&"quoted"> \ufffd": max_ulp <= 4')
    assert "(2 of 4 cases fail): max_ulp <= 4" in rules[0].find("failure").get("message")
    assert "max_ulp 8388608 > 4" in rules[0].find("failure").text
    assert rules[1].find("failure") is None
    regressed = [c for c in cases if c.find("failure") is not None and c.get("classname") == "bce-audit.baseline"]
    assert [c.get("name") for c in regressed] == ["max-abs logits float32 y=1 grad"]
    assert "zero 0 -> 3 (allowed +0)" in regressed[0].find("failure").get("message")
    (skipped,) = root.findall(".//skipped")
    assert "retired logits float32 y=0 loss" in skipped.get("message")


def test_markdown_report(gate, tmp_path):
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=1.0)
    md = tmp_path / "summary.md"
    result = check("--config", cfg, "--baseline", path, "--markdown", md)
    assert_exit(result, 1)
    text = md.read_text(encoding="utf-8")
    assert text.startswith("## bce-audit check failed\n\n**check FAILED: 0 rules, 8 cases checked, 1 failed")
    assert "### Failures" in text
    assert "| baseline | max-abs logits float32 y=0 grad | max_ulp 1 -&gt; 8388608 (allowed +1) | 0 |" in text
    # written again, not appended
    assert_exit(check("--config", cfg, "--baseline", path, "--markdown", md), 1)
    assert md.read_text(encoding="utf-8") == text


# --------------------------------------------------------------------------- the CLI around it


def test_verbose_also_prints_the_tables_and_exports_are_written(gate, tmp_path):
    cfg, path = gate
    csv_path = tmp_path / "s.csv"
    result = check("--config", cfg, "--baseline", path, "-v", "--csv", csv_path)
    assert_exit(result, 0)
    assert "loss: worst status and stable range" in result.stdout and "per-case figures" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("check passed:")
    assert len(csv_path.read_text().splitlines()) == 9


def test_check_help_does_not_import_torch():
    code = """
import sys
from click.testing import CliRunner
from bce_audit.cli import main
result = CliRunner(env={"NO_COLOR": "1"}).invoke(main, ["check", "--help"])
assert result.exit_code == 0, result.output
for option in ("--baseline", "--update-baseline", "--tolerance", "--allow-missing", "--format", "--junit", "--markdown",
               "--formulation", "--points", "--config"):
    assert option in result.stdout, option
heavy = sorted(m for m in ("torch", "mpmath", "bce_audit.sweep.run") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------- the dogfood gate of .ci/run


def test_committed_ci_gate_passes():
    """The repository's own gate: its thresholds hold and the committed baseline matches (determinism)."""
    result = check("--config", SAMPLES / "ci-gate.toml")
    assert_exit(result, 0)
    last = result.stdout.splitlines()[-1]
    assert re.fullmatch(r"check passed: 5 rules, 24 cases checked, 0 failed, \d+ improved, 0 new", last), last
    assert result.stdout.count("\n  ok      thresholds[") == 5


def test_committed_baseline_has_every_setting_this_version_writes():
    """Regenerated when a setting is added, so that a diff of a fresh --update-baseline shows only moved figures."""
    from bce_audit.settings import Settings

    doc = json.loads((SAMPLES / "ci-gate.baseline.json").read_text(encoding="utf-8"))
    assert list(doc["settings"]) == list(Settings().to_dict())
    assert doc["settings"]["user_formulations"] == []
    assert doc["fingerprint"] == fingerprint(doc["settings"])


def test_committed_ci_gate_passes_with_other_cpu_kernels(tmp_path):
    """torch's portable kernels instead of the AVX ones: figures may move, only within the tolerance."""
    shutil.copy(SAMPLES / "ci-gate.toml", tmp_path / "ci-gate.toml")
    shutil.copy(SAMPLES / "ci-gate.baseline.json", tmp_path / "ci-gate.baseline.json")
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", ATEN_CPU_CAPABILITY="default")
    env.pop("BCE_AUDIT_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bce_audit", "check", "--config", str(tmp_path / "ci-gate.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check passed: 5 rules, 24 cases checked, 0 failed" in proc.stdout
    recorded = json.loads((tmp_path / "ci-gate.baseline.json").read_text())["provenance"]["cpu_capability"]
    if recorded != "DEFAULT":
        assert "cpu_capability " + recorded + " -> DEFAULT" in proc.stderr


# --------------------------------------------------------------------------- dogfood: user code

_MAX_ABS = """
import torch
from bce_audit import formulation


@formulation(domain="logits")
def my_bce(z, y):
    return torch.clamp_min(z, 0) - y * z + {tail}
"""
_GOOD = "torch.log1p(torch.exp(-torch.abs(z)))"
_DEGRADED = "torch.log(1 + torch.exp(-torch.abs(z)))"  # the classic mistake


def test_degraded_user_formulation_fails_a_baseline_taken_from_the_good_one(tmp_path, monkeypatch):
    # each run loads the function in a new sandbox process, as it is on disk now
    monkeypatch.chdir(tmp_path)
    losses = tmp_path / "losses.py"
    losses.write_text(_MAX_ABS.format(tail=_GOOD))
    gate = tmp_path / "gate.toml"
    gate.write_text(
        'dtypes = ["float32"]\ndomain = "logits"\nlabels = [0.0, 1.0]\npoints = 300\nbaseline = "base.json"\n'
        '[[formulations]]\ntarget = "losses.py:my_bce"\n'
    )
    assert_exit(check("--config", gate, "--update-baseline"), 0)
    baseline = (tmp_path / "base.json").read_text()
    assert_exit(check("--config", gate), 0)

    losses.write_text(_MAX_ABS.format(tail=_DEGRADED))
    bad = check("--config", gate)
    assert_exit(bad, 1)
    # the loss at y = 0 (and y = 1) on float32 logits regressed: named, with the figures
    regressed = [line for line in bad.stdout.splitlines() if "my_bce" in line and "loss" in line]
    assert regressed, bad.stdout
    assert any("logits float32" in line for line in regressed), bad.stdout
    assert "zero" in bad.stdout
    # the gradient is the same code path through autograd: it did not regress
    assert not any("my_bce" in line and "grad" in line and "worse" in line for line in bad.stdout.splitlines())
    assert (tmp_path / "base.json").read_text() == baseline  # never replaced without the flag


# --------------------------------------------------------------------------- outputs that are inputs


def _sweep(*args):
    return runner().invoke(main, ["sweep", *map(str, args)])


@pytest.mark.parametrize(
    "args, culprits",
    [
        (["--junit", "base.json"], ["--junit base.json", "baseline (from gate.toml) base.json"]),
        (["--details", "base.json"], ["--details base.json", "baseline (from gate.toml) base.json"]),
        (["--markdown", "sub/../base.json"], ["--markdown sub/../base.json", "baseline (from gate.toml)"]),
        (["--markdown", "hard.json"], ["--markdown hard.json", "baseline (from gate.toml) base.json"]),
        (["--junit", "gate.toml"], ["--junit gate.toml", "--config gate.toml"]),
        (["--csv", "gate.toml"], ["--csv gate.toml", "--config gate.toml"]),
        (["--junit", "same.out", "--markdown", "same.out"], ["--markdown same.out", "--junit same.out"]),
        (["--json", "same.out", "--junit", "./same.out"], ["--junit same.out", "--json same.out"]),
        (["--baseline", "gate.toml", "--update-baseline"], ["--config gate.toml", "--baseline gate.toml"]),
        (["--baseline", "b.json", "--csv", "b.json", "--update-baseline"], ["--csv b.json", "--baseline b.json"]),
    ],
)
def test_check_refuses_an_output_that_is_the_baseline_the_config_or_another_output(
    tmp_path, monkeypatch, args, culprits, sweep_calls
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    cfg = _config(tmp_path, '\nbaseline = "base.json"\n')
    base = tmp_path / "base.json"
    base.write_text("not even JSON: it must not be read, nor overwritten", encoding="utf-8")
    os.link(base, tmp_path / "hard.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    line = assert_usage_error(check("--config", "gate.toml", *args), *culprits)
    assert "same file" in line
    assert sweep_calls == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert cfg.exists()


@pytest.mark.parametrize(
    "args, config, culprits",
    [
        (["--json", "x", "--csv", "x"], "", ["--json x", "--csv x"]),
        (["--csv", "gate.toml"], "", ["--csv gate.toml", "--config gate.toml"]),
        (["--details", "x"], 'json = "x"\n', ["--details x", "json (from gate.toml) x"]),
    ],
)
def test_sweep_refuses_an_output_that_is_the_config_or_another_output(
    tmp_path, monkeypatch, args, config, culprits, sweep_calls
):
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, "\n" + config)
    before = (tmp_path / "gate.toml").read_bytes()
    line = assert_usage_error(_sweep("--config", "gate.toml", *args), *culprits)
    assert "same file" in line
    assert sweep_calls == []
    assert (tmp_path / "gate.toml").read_bytes() == before and not (tmp_path / "x").exists()


def test_distinct_outputs_are_written(tmp_path, monkeypatch, gate):
    monkeypatch.chdir(tmp_path)
    cfg, path = gate
    result = check("--config", cfg, "--baseline", path, "--junit", "j.xml", "--markdown", "m.md", "--csv", "s.csv")
    assert_exit(result, 0)
    assert all((tmp_path / name).exists() for name in ("j.xml", "m.md", "s.csv"))


# --------------------------------------------------------------------------- a baseline that compares nothing


@pytest.mark.parametrize(
    "extra_args, extra_config",
    [
        ([], ""),
        (["--allow-missing"], ""),
        ([], "\nallow_missing = true\n"),
        (["--allow-missing"], "\n[[thresholds]]\nnan = 1000\n"),  # rules do not make the baseline right
    ],
)
def test_a_baseline_with_no_case_of_the_run_is_refused(gate, extra_args, extra_config, sweep_calls):
    cfg, path = gate
    cfg.write_text(cfg.read_text() + extra_config)
    result = check("--config", cfg, "--baseline", path, "-f", "naive", *extra_args)
    line = assert_usage_error(result, f"no case of this run is in baseline {path}", "(4 new, 8 missing)")
    assert "nothing was compared" in line and "max-abs, torch-logsigmoid" in line
    assert sweep_calls == []


def test_a_baseline_sharing_one_case_is_compared(gate):
    cfg, path = gate
    result = check("--config", cfg, "--baseline", path, "-f", "naive", "-f", "max-abs", "--allow-missing")
    assert_exit(result, 0)
    assert result.stdout.splitlines()[-1].endswith("0 failed, 0 improved, 4 new, 4 missing")


# --------------------------------------------------------------------------- cases that still raise

_RAISES = """
import os

from bce_audit import formulation


@formulation(domain="logits")
def boom(z, y):
    raise ValueError(os.environ.get("BOOM_MESSAGE", "boom"))
"""


def _raising_gate(tmp_path: Path) -> Path:
    (tmp_path / "boom_losses.py").write_text(_RAISES, encoding="utf-8")
    cfg = tmp_path / "raise.toml"
    cfg.write_text(
        'formulations = ["max-abs", {target = "boom_losses.py:boom"}]\ndtypes = ["float32"]\n'
        'domain = "logits"\nlabels = [0.0]\npoints = 50\nbaseline = "raise.json"\n',
        encoding="utf-8",
    )
    return cfg


def test_a_case_that_still_raises_is_reported_not_failed(tmp_path):
    cfg = _raising_gate(tmp_path)
    made = check("--config", cfg, "--update-baseline")
    assert_exit(made, 0)
    assert (
        "note: 2 of the 4 cases are errors (the formulation raised; no figures recorded): "
        "boom logits float32 y=0 loss; boom logits float32 y=0 grad" in " ".join(made.stdout.split())
    )

    result = check("--config", cfg)
    assert_exit(result, 0)
    out = result.stdout
    assert "  raises  boom logits float32 y=0 loss: still raises, as in the baseline: ValueError: boom" in out
    assert "  ok      2 cases as in the baseline (within the tolerance)" in out
    assert out.splitlines()[-1] == "check passed: 0 rules, 4 cases checked, 0 failed, 0 improved, 0 new, 2 still raise"
    (warning,) = result.stderr.splitlines()
    assert warning == (
        "bce-audit: warning: 2 cases raised in the baseline and still raise, so they were not checked: "
        "boom logits float32 y=0 loss; boom logits float32 y=0 grad"
    )

    md = tmp_path / "m.md"
    junit = tmp_path / "j.xml"
    env = {"BOOM_MESSAGE": "other"}
    result = check("--config", cfg, "--format", "github", "--markdown", md, "--junit", junit, env=env)
    assert_exit(result, 0)
    changed = "still raises, as in the baseline; note: the message changed: ValueError: boom -> ValueError: other"
    assert f"boom logits float32 y=0 grad: {changed}" in " ".join(result.stdout.split())
    assert re.search(r"^::warning title=bce-audit::2 cases raised in the baseline and still raise", result.stdout, re.M)
    notice = (
        "::notice title=bce-audit::check passed: 0 rules, 4 cases checked, 0 failed, 0 improved, 0 new, 2 still raise"
    )
    assert notice in result.stdout.splitlines()
    text = md.read_text(encoding="utf-8")
    assert "> **warning:** 2 cases raised in the baseline and still raise" in text
    assert f"| still raises | boom logits float32 y=0 loss: {changed.replace('->', '-&gt;')} |" in text
    root = ET.parse(junit).getroot()
    assert root.get("skipped") == "2" and root.get("failures") == "0"

    updated = check("--config", cfg, "--update-baseline", env=env)
    assert_exit(updated, 0)
    assert (
        "  note    boom logits float32 y=0 loss: still raises; the message changed: "
        "ValueError: boom -> ValueError: other" in updated.stdout
    )
    assert "0 worse, 0 better, 0 added, 0 removed, 4 unchanged" in updated.stdout


def test_a_case_that_starts_raising_still_fails(tmp_path):
    cfg = _raising_gate(tmp_path)
    cfg.write_text(cfg.read_text().replace('{target = "boom_losses.py:boom"}', '"torch-logsigmoid"'))
    assert_exit(check("--config", cfg, "--update-baseline"), 0)
    doc = json.loads((tmp_path / "raise.json").read_text())
    for row in doc["cases"]:
        row["formulation"] = "boom" if row["formulation"] == "torch-logsigmoid" else row["formulation"]
    (tmp_path / "raise.json").write_text(json.dumps(doc))
    cfg.write_text(cfg.read_text().replace('"torch-logsigmoid"', '{target = "boom_losses.py:boom"}'))
    result = check("--config", cfg)
    assert_exit(result, 1)
    assert "FAIL    boom logits float32 y=0 loss: the formulation now raises: ValueError: boom" in result.stdout


# --------------------------------------------------------------------------- one line per diagnostic


def test_stderr_diagnostics_stay_one_line_each(gate, tmp_path):
    cfg, path = gate
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / ("and-another-one-" * 3)
    deep.mkdir(parents=True)
    summary = deep / "not-a-file-but-a-directory"
    summary.mkdir()
    junit = deep / "junit-report-with-a-long-name.xml"
    assert len(str(summary)) > 130
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    result = check("--config", cfg, "--baseline", path, "--format", "github", "--junit", junit, env=env)
    assert_exit(result, 0)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"bce-audit: warning: cannot append to GITHUB_STEP_SUMMARY {summary}: ")
    assert lines[1] == f"wrote {junit}"


# --------------------------------------------------------------------------- the step summary's size


def _failing_gate(cfg: Path, path: Path) -> None:
    """Every case of the baseline claims another input grid (a regression each), and 3 rules fail."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    for row in doc["cases"]:
        row.update(points=row["points"] + 1, ok=row["ok"] + 1)
    path.write_text(json.dumps(doc), encoding="utf-8")
    rules = "".join(
        f'\n[[thresholds]]\nname = "rule {i}"\nformulation = "{f}"\nmean_bits = 0\n'
        for i, f in enumerate(["max-abs", "torch-logsigmoid", "*"])
    )
    cfg.write_text(cfg.read_text() + rules + '\n[[thresholds]]\nname = "passes"\nnan = 1000\n')


def test_step_summary_counts_what_the_file_already_holds(gate, tmp_path):
    cfg, path = gate
    _failing_gate(cfg, path)
    full = tmp_path / "full.md"
    assert_exit(check("--config", cfg, "--baseline", path, "--markdown", full), 1)
    whole = full.read_text(encoding="utf-8")
    failures = whole.count("\n| baseline |") + whole.count("\n| thresholds[")
    assert "more rows" not in whole and failures > 8

    summary = tmp_path / "step-summary.md"
    room = len(whole.encode("utf-8")) * 2 // 3
    earlier = "x" * 99 + "\n"
    summary.write_text(earlier * ((2**20 - room) // 100), encoding="utf-8")
    existing = summary.stat().st_size
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert_exit(check("--config", cfg, "--baseline", path, "--format", "github", env=env), 1)
    assert summary.stat().st_size < 2**20
    added = summary.read_text(encoding="utf-8")[existing:]
    assert added.startswith("## bce-audit check failed\n")
    # the rules come first and are kept whole; then as many failing cases as fit
    rules = added.split("### Threshold rules")[1].split("###")[0]
    assert rules.count("| **FAIL** |") == 3 and rules.count("| ok |") == 1
    m = re.search(r"\| \.\.\. (\d+) more rows not shown \|", added)
    assert m, added
    shown = added.count("\n| baseline |") + added.count("\n| thresholds[")
    assert shown + int(m.group(1)) == failures
    # the note at the end gives the same count
    assert f"_{m.group(1)} more rows left out ({m.group(1)} of Failures)" in added

    # no room for the summary: one line instead, and the file stays under 1 MiB
    summary.write_text(earlier * ((2**20 - 300) // 100), encoding="utf-8")
    existing = summary.stat().st_size
    assert_exit(check("--config", cfg, "--baseline", path, "--format", "github", env=env), 1)
    assert summary.stat().st_size < 2**20
    added = summary.read_text(encoding="utf-8")[existing:]
    assert added.count("\n") == 1 and added.startswith("bce-audit: check FAILED: 4 rules (3 failed)")
    assert "no room left in the step summary" in added


def test_markdown_left_out_counts_agree_across_tables():
    from bce_audit.report.markdown import MarkdownFormat

    verdict = _synthetic_verdict(300)
    improved = tuple(
        CaseComparison(
            CaseKey(f"better-{i}", "logits", "float32", 0.0, "grad"),
            Change.IMPROVED,
            (FigureDelta("zero", i + 1, i, 0, Direction.BETTER),),
        )
        for i in range(40)
    )
    verdict = dataclass_replace(verdict, comparisons=verdict.comparisons + improved)
    text = MarkdownFormat(max_bytes=5000).render(verdict)
    assert len(text.encode("utf-8")) <= 5000
    shown = text.count("| baseline | formulation-")
    m = re.search(r"\| \.\.\. (\d+) more rows not shown \|", text)
    assert m and shown + int(m.group(1)) == 300
    assert f"_{int(m.group(1)) + 40} more rows left out ({m.group(1)} of Failures, 40 of Against the baseline)" in text


def test_long_case_lists_name_five_then_count_the_rest():
    keys = [CaseKey("f", "logits", "float32", i / 10, "loss") for i in range(7)]
    five = "; ".join(str(k) for k in keys[:5])
    assert first_few(keys[:5]) == five
    assert first_few(keys) == five + "; and 2 more"
    many = "7 cases raised in the baseline and still raise, so they were not checked: "
    assert still_raising_warning(keys) == f"{many}{five}; and 2 more"
    one = "1 case raised in the baseline and still raises, so it was not checked: "
    assert still_raising_warning(keys[:1]) == f"{one}{keys[0]}"
