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


# --------------------------------------------------------------------------- nonsense arguments


def _result():
    return bce_audit.audit("naive", dtypes="float16", points=20, labels=1.0, details=True)


# (call, the argument named, what it says it expects): each public function of bce_audit, every
# argument whose wrong kind used to surface as a raw TypeError or AttributeError from deep inside
NONSENSE = [
    (lambda: bce_audit.audit(42), "formulations", "a name, a target, a callable, or a list of them"),
    (lambda: bce_audit.audit(b"naive"), "formulations", "a list of them"),
    (lambda: bce_audit.audit("naive", dtypes=3), "dtypes", "a name or a list of names"),
    (lambda: bce_audit.audit("naive", dtypes=[None]), "dtypes", "a name or a list of names"),
    (lambda: bce_audit.audit("naive", domain=1), "domain", "a string"),
    (lambda: bce_audit.audit("naive", labels={"y": 1}), "labels", "a number in [0, 1]"),
    (lambda: bce_audit.audit("naive", range=5), "range", '"LO:HI" or a pair of numbers'),
    (lambda: bce_audit.audit("naive", sampling=1), "sampling", "a string"),
    (lambda: bce_audit.audit("naive", ulp_threshold="4"), "ulp_threshold", "a number"),
    (lambda: bce_audit.audit("naive", config=5), "config", "a TOML file's path or a dict"),
    (lambda: bce_audit.audit("naive", details="no"), "details", "True or False"),
    (lambda: bce_audit.audit("naive", causes=1), "causes", "True or False"),
    (lambda: bce_audit.audit("naive", cache="no"), "cache", "True, False or None"),
    (lambda: bce_audit.audit("naive", cache_dir=5), "cache_dir", "a path"),
    (lambda: bce_audit.audit("torchvision-focal", parameters=5), "parameters", "a dict"),
    (lambda: bce_audit.audit("torchvision-focal", parameters={"gamma": object()}), "parameters['gamma']", "a value"),
    (lambda: bce_audit.audit("torchvision-focal", parameters={1: 2}), "parameters key", "a string"),
    (lambda: bce_audit.audit([]), "formulations", "an empty list chooses nothing"),
    (lambda: bce_audit.audit("naive", dtypes=[]), "dtypes", "an empty list chooses nothing"),
    (lambda: bce_audit.audit("naive", labels=[]), "labels", "an empty list chooses nothing"),
    (lambda: bce_audit.audit("naive", modes=[]), "modes", "an empty list chooses nothing"),
    (lambda: bce_audit.audit("naive", labels=True), "labels", "a number in [0, 1]"),
    (lambda: bce_audit.audit("naive", labels=[0, None]), "labels", "a number"),
    (lambda: bce_audit.audit("naive", range=("a", "b")), "range", "a number"),
    (lambda: bce_audit.audit("naive", range=[]), "range", "a pair of numbers"),
    (lambda: bce_audit.audit("naive", range=(1, 2, 3)), "range", "a pair of numbers"),
    (lambda: bce_audit.audit("naive", ulp_threshold=10**400), "ulp_threshold", "an integer beyond 1.8e308"),
    (lambda: bce_audit.explain("naive", at=-(10**400)), "at", "an integer below -1.8e308"),
    (lambda: bce_audit.check(42), "formulations", "a list of them"),
    (lambda: bce_audit.check("naive", thresholds=5), "thresholds", "a list of dicts"),
    (lambda: bce_audit.check("naive", thresholds=[5]), "thresholds", "a list of dicts"),
    (lambda: bce_audit.check("naive", baseline=5), "baseline", "a path"),
    (lambda: bce_audit.check("naive", tolerance=5), "tolerance", "a dict"),
    (lambda: bce_audit.check("naive", allow_missing="x"), "allow_missing", "True, False or None"),
    (lambda: bce_audit.check("naive", update_baseline="x"), "update_baseline", "True or False"),
    (lambda: bce_audit.check("naive", details="x"), "details", "True or False"),
    (lambda: bce_audit.explain(42), "formulation", "one formulation"),
    (lambda: bce_audit.explain(b"naive"), "formulation", "one formulation"),
    (lambda: bce_audit.explain("naive", at="1"), "at", "a number"),
    (lambda: bce_audit.explain("naive", at=True), "at", "a number"),
    (lambda: bce_audit.explain("naive", quantity=5), "quantity", "a string"),
    (lambda: bce_audit.explain("naive", layout=5), "layout", "a string"),
    (lambda: bce_audit.formulation(domain="logits")(5), "@formulation", "a function or a class"),
    (lambda: bce_audit.formulation(5), "@formulation", "keyword arguments only"),
    (lambda: bce_audit.write_repro("x", "."), "write_repro: result", "the AuditResult"),
    (lambda: bce_audit.write_plots(None, "."), "write_plots: result", "the AuditResult"),
    (lambda: bce_audit.write_repro(_result(), 5), "write_repro: directory", "a path"),
    (lambda: bce_audit.write_plots(_result(), None), "write_plots: directory", "a path"),
]


@pytest.mark.parametrize(("call", "argument", "expects"), NONSENSE)
def test_a_nonsense_argument_is_a_usage_error_naming_it(call, argument, expects):
    from bce_audit.errors import ArgumentError

    with pytest.raises(bce_audit.UsageError) as caught:
        call()
    assert isinstance(caught.value, ArgumentError)
    message = str(caught.value)
    assert message.startswith(argument) and expects in message, message
    # Python's own exceptions for a wrong argument still catch it
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_arguments_given_as_generators_are_read_once():
    result = bce_audit.audit(
        (f for f in ["naive"]), dtypes=(d for d in ["float16"]), labels=[1.0], points=20, range=iter([-5.0, 5.0])
    )
    assert {(c.formulation, str(c.dtype)) for c in result.cases} == {("naive", "float16")}
    assert all(c.figures is not None and c.figures.points > 0 for c in result.cases)
