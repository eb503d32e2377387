"""`bce-audit check` from the command line: exit codes, flags against the config, the files it writes,
the errors it reports before any sweep, and the repository's own gate.

What the gate decides and how each report words it are tested on synthetic data, without a sweep:
tests/gate (rules, tolerance, comparison, the baseline file, the plan and the verdict) and
tests/report (every renderer against golden files).
"""

from __future__ import annotations

import json
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
from bce_audit.gate.baseline import fingerprint, read_baseline
from bce_audit.gate.interface import CaseKey
from bce_audit.vocabulary import DType

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


@pytest.mark.parametrize(
    "rule, culprits",
    [
        ('formulation = "max-abz"\nnan = 0', ["thresholds[0]", "selects no case", "'max-abs'"]),
        ("label = 0.5\nnan = 0", ["thresholds[0]", "selects no case", "label 0.5"]),
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
        ("stable_range = [5, -5]", ["thresholds[0].stable_range", "inverted"]),
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
        ("baseline = 'b.json'\n[tolerance]\nzero = 0.5\n", ["tolerance", "zero", "whole number"]),
    ],
)
def test_bad_gate_config(tmp_path, toml, culprits, sweep_calls):
    cfg = _config(tmp_path, "\n" + toml)
    assert_usage_error(check("--config", cfg), *culprits)
    assert sweep_calls == []


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


@pytest.mark.parametrize("text", ["max_ulp:x", "zero:+0.5"])
def test_bad_tolerance_flag(gate, text, sweep_calls):
    cfg, path = gate
    assert_usage_error(check("--config", cfg, "--baseline", path, "--tolerance", text), "--tolerance")
    assert sweep_calls == []


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
    row = next(r for r in doc["cases"] if (r["formulation"], r["label"], r["quantity"]) == ("max-abs", 0.0, "grad"))
    # its gradient fails at z = -0 and +0 alone: the stable range is the whole line but them
    # (the baseline holds the two numbers; see tests/sweep/test_failure_map.py)
    big = DType.FLOAT32.format.largest_finite
    assert row["max_ulp"] == 8388608.0 and row["inaccurate"] == 2 and row["stable_range"] == [-big, big]
    # one line per case, so that a diff shows which cases moved
    assert sum(line.lstrip().startswith('{"formulation"') for line in text.splitlines()) == 8

    path = tmp_path / "base.json"
    path.write_text(text, encoding="utf-8")
    result = check("--config", _config(tmp_path), "--baseline", path)
    assert_exit(result, 0)
    assert "  ok      8 cases as in the baseline (within the tolerance)" in result.stdout
    assert result.stdout.splitlines()[-1] == "check passed: 0 rules, 8 cases checked, 0 failed, 0 improved, 0 new"
    assert path.read_text(encoding="utf-8") == text


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
    zero = row["zero"]  # the vanished gradient for large z with y = 1 (more with the crossing inputs)
    assert zero > 0
    _edit_case(path, MAX_ABS_GRAD_1, zero=zero - 1, ok=row["ok"] + 1)
    before = path.read_bytes()
    result = check("--config", cfg, "--baseline", path)
    assert_exit(result, 1)
    out = result.stdout
    assert "FAIL    max-abs logits float32 y=0 grad: max_ulp 8388000 -> 8388608 (allowed +1) (worst input 0)" in out
    assert f"FAIL    max-abs logits float32 y=1 grad: zero {zero - 1} -> {zero} (allowed +0) (worst input 0)" in out
    assert "  ok      6 cases as in the baseline" in out
    assert out.splitlines()[-1] == "check FAILED: 0 rules, 8 cases checked, 2 failed, 0 improved, 0 new"
    assert path.read_bytes() == before  # never replaced without --update-baseline
    assert sorted(p.name for p in path.parent.iterdir()) == ["base.json", "gate.toml"]


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


# --------------------------------------------------------------------------- unreadable baselines


def _set(key, value):
    def edit(text: str) -> str:
        doc = json.loads(text)
        doc[key] = value
        return json.dumps(doc)

    return edit


def _edit_first_case(**changes):
    def edit(text: str) -> str:
        doc = json.loads(text)
        doc["cases"][0].update(changes)
        return json.dumps(doc)

    return edit


# every kind of invalid file: tests/gate/test_baseline.py; here, that the command reports one
@pytest.mark.parametrize(
    "edit, culprit",
    [
        (lambda t: t[: len(t) // 2], "not valid JSON"),
        (_set("fingerprint", "0" * 64), "fingerprint does not match"),
        (_edit_first_case(zero=7), "cases[0]: the status counts do not add up to points"),
    ],
)
def test_unreadable_baseline_is_a_one_line_error(gate, edit, culprit, sweep_calls):
    cfg, path = gate
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    assert_usage_error(check("--config", cfg, "--baseline", path), f"baseline {path}", culprit)
    assert sweep_calls == []


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


# --------------------------------------------------------------------------- JUnit and Markdown files


def test_junit_report(gate, tmp_path):
    """The file is written where asked, with the rules and every case of the run and the baseline
    (its content: tests/report/golden/junit-*.txt)."""
    cfg, path = gate
    cfg.write_text(cfg.read_text() + "\n[[thresholds]]\nformulation = 'max-abs'\nmax_ulp = 4\n")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["cases"].append(dict(doc["cases"][0], formulation="retired"))  # a case this run lacks
    path.write_text(json.dumps(doc), encoding="utf-8")
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    result = check("--config", cfg, "--baseline", path, "--junit", junit, "--allow-missing")
    assert_exit(result, 1)
    assert f"wrote {junit}" in result.stderr
    root = ET.parse(junit).getroot()
    # 1 rule + 9 baseline cases (8 run, 1 missing but allowed)
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("10", "1", "1")
    (failure,) = root.findall(".//failure")
    assert "max-abs logits float32 y=0 grad: max_ulp 8388608 > 4 (worst input 0)" in failure.text


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


# --------------------------------------------------------------------------- cases that still raise


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


def test_step_summary_counts_what_the_file_already_holds(gate, tmp_path):
    """The runner's file is measured before appending (the cut itself: tests/report/test_renderers.py)."""
    cfg, path = gate
    _edit_case(path, MAX_ABS_GRAD_0, max_ulp=1.0)
    summary = tmp_path / "step-summary.md"
    summary.write_text(("x" * 99 + "\n") * ((2**20 - 300) // 100), encoding="utf-8")
    existing = summary.stat().st_size
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert_exit(check("--config", cfg, "--baseline", path, "--format", "github", env=env), 1)
    assert summary.stat().st_size < 2**20
    added = summary.read_text(encoding="utf-8")[existing:]
    assert added == (
        "bce-audit: check FAILED: 0 rules, 8 cases checked, 1 failed, 0 improved, 0 new "
        "(no room left in the step summary; the verdict is in the job log)\n"
    )
