"""The public Python API: bce_audit.audit() and bce_audit.check() (docs/api.md)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import read_csv, runner

import bce_audit
from bce_audit.cli import main

SMALL = dict(dtypes=["float32"], domain="logits", points=60, jobs=1)


@bce_audit.formulation(domain="logits")
def my_bce(z, y):
    return torch.clamp_min(z, 0) - y * z + torch.log1p(torch.exp(-torch.abs(z)))


def test_the_docs_example_matches_the_command_line():
    result = bce_audit.audit([my_bce, "torch-bce-with-logits"], **SMALL)
    rows = result.to_records()
    assert [r["formulation"] for r in rows][::4] == ["my_bce", "torch-bce-with-logits"]
    # my_bce is max-abs written out: the same figures as the built-in, through the command line
    cli = runner().invoke(
        main, ["sweep", "-f", "max-abs", "-d", "float32", "--domain", "logits", "--points", "60", "--csv", "-"]
    )
    builtin = read_csv(cli.stdout)[1]
    for mine, theirs in zip(rows[:4], builtin, strict=True):
        for figure in ("points", "ok", "inaccurate", "inf", "nan", "zero"):
            assert mine[figure] == int(theirs[figure]), figure
        assert mine["max_ulp"] == float(theirs["max_ulp"])
        assert mine["stable_lo"] == (float(theirs["stable_lo"]) if theirs["stable_lo"] else None)
    # its gradient is wrong at z = 0 (the subgradient of abs), found at the worst input
    grad0 = next(r for r in rows if r["formulation"] == "my_bce" and r["quantity"] == "grad" and r["label"] == 0)
    assert grad0["worst_input"] == 0.0 and grad0["max_ulp"] == 2.0**23


def test_records_name_every_figure_and_none_where_undefined():
    # float16: torch-logsigmoid is ok on every input there (in float32 its loss is 0 in a narrow
    # band where the truth is the smallest subnormal, which the grid's crossing inputs find)
    (row, *_) = bce_audit.audit("torch-logsigmoid", **(SMALL | {"dtypes": ["float16"]})).to_records()
    for figure in bce_audit.FIGURES:
        names = ("stable_lo", "stable_hi") if figure.name == "stable_range" else (figure.name,)
        for name in names:
            assert name in row
    assert row["worst_status"] == "ok" and row["error"] is None and row["lost"] is None
    assert all(value is None or not (isinstance(value, float) and math.isnan(value)) for value in row.values())


def test_points_are_kept_on_request():
    result = bce_audit.audit("naive", dtypes="float16", domain="logits", points=20, labels=0, details=True)
    points = result.point_records()
    assert len(points) == sum(c.figures.points + len(c.nonfinite) for c in result.cases)
    assert {p["status"] for p in points} >= {"ok", "nan"}
    assert bce_audit.audit("naive", dtypes="float16", domain="logits", points=20).point_records() == []


def test_a_target_runs_in_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "losses.py").write_text("import os\n\ndef dies(z, y):\n    os._exit(0)\n")
    result = bce_audit.audit(["losses.py:dies@logits"], **SMALL)
    assert len(result.lost) == 4 and "exited with code 0" in result.lost[0].lost


def test_mistakes_raise_usage_errors():
    with pytest.raises(bce_audit.UsageError, match="unknown formulation 'naiv'"):
        bce_audit.audit("naiv")
    with pytest.raises(bce_audit.UsageError, match="declare its domain"):
        bce_audit.audit(lambda z, y: z)
    with pytest.raises(bce_audit.UsageError, match="label 2.0 is outside"):
        bce_audit.audit("naive", labels=[2.0])
    with pytest.raises(bce_audit.UsageError, match="two formulations are named 'my_bce'"):
        bce_audit.audit([my_bce, my_bce])


def test_check_passes_fails_and_counts_like_the_command_line(tmp_path):
    rules = [{"quantity": "loss", "max_ulp": 1}, {"quantity": "grad", "nan": 0}]
    good = bce_audit.check(["torch-logsigmoid"], thresholds=rules, **SMALL)
    assert good.passed and good.exit_code == bce_audit.ExitCode.OK
    bad = bce_audit.check([my_bce], thresholds=[{"quantity": "grad", "max_ulp": 4}], **SMALL)
    assert not bad.passed and bad.exit_code == bce_audit.ExitCode.REGRESSION
    failed = [r for r in bad.to_records() if r["failed_rules"]]
    assert {(r["quantity"], r["label"]) for r in failed} == {("grad", 0.0), ("grad", 1.0)}
    assert all(r["failed_rules"] == ["thresholds[0]"] for r in failed)


def test_check_writes_and_reads_a_baseline(tmp_path):
    path = tmp_path / "base.json"
    made = bce_audit.check(["max-abs"], baseline=path, update_baseline=True, **SMALL)
    assert made.baseline_written == path and made.verdict is None and path.exists()
    again = bce_audit.check(["max-abs"], baseline=path, **SMALL)
    assert again.passed
    assert {r["baseline"] for r in again.to_records()} == {"unchanged"}


def test_the_package_exports_its_api():
    for name in (
        "audit",
        "check",
        "explain",
        "formulation",
        "AuditResult",
        "CheckResult",
        "Explanation",
        "UsageError",
        "ExitCode",
    ):
        assert name in bce_audit.__all__ and hasattr(bce_audit, name)
