"""The failure map's ``cause`` column: each failing interval explained at one of its inputs
(``explanation.failures``), filled only for the outputs that hold it (--failures, --json)."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap

import pytest
from helpers import assert_exit, read_csv, runner

import bce_audit
from bce_audit import audit
from bce_audit.cli import main
from bce_audit.explanation import failures as causes_module
from bce_audit.explanation.failures import NOT_TORCH, explain_failures
from bce_audit.formulations import selection
from bce_audit.report import numbers
from bce_audit.vocabulary import DType

FAILURES_HEADER = "formulation,domain,dtype,label,quantity,status,lo,hi,edges,floats,worst_input,worst_ulp,cause"
NAIVE = ["-f", "naive", "-d", "float32", "--domain", "logits", "-y", "0", "--points", "200"]


def _explained_input(row: dict[str, str]) -> float:
    """The input a row is explained at: its worst input, else its low edge."""
    return float(row["worst_input"]) if row["worst_input"] else float(row["lo"])


def test_every_failing_row_of_naive_names_its_op_chain_and_a_fix():
    result = runner().invoke(main, ["sweep", *NAIVE, "--failures", "-"])
    assert_exit(result, 0)
    header, rows = read_csv(result.stdout)
    assert ",".join(header) == FAILURES_HEADER
    assert rows and {r["formulation"] for r in rows} == {"naive"}
    fmt = DType.FLOAT32.format
    for row in rows:
        cause = row["cause"]
        assert "\n" not in cause
        # naive's first op is sigmoid(z), at the very input the row is explained at
        x = _explained_input(row)
        assert f"sigmoid({numbers.in_format(x, fmt)})" in cause, row
        assert "; fix: " in cause, row
    # where the loss overflows to inf (sigmoid rounds to 1 past z ~ 16.6), the chain ends in log(0)
    inf = [r for r in rows if r["quantity"] == "loss" and r["status"] == "inf"]
    assert len(inf) == 1 and float(inf[0]["hi"]) == fmt.largest_finite
    assert "log(0) = -inf" in inf[0]["cause"] and inf[0]["cause"].endswith("fix: log-of-sigmoid")
    # the NaN interval has no worst input: it is explained at its low edge, -max
    nan = [r for r in rows if r["quantity"] == "loss" and r["status"] == "nan"]
    assert len(nan) == 1 and nan[0]["worst_input"] == "" and float(nan[0]["lo"]) == -fmt.largest_finite
    assert "0 * -inf = NaN" in nan[0]["cause"]


def test_a_case_that_is_ok_everywhere_has_no_row(tmp_path):
    failures = tmp_path / "map.csv"
    args = ["sweep", "-f", "torch-logsigmoid", "-d", "float16", "--domain", "logits", "--failures", str(failures)]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    assert failures.read_text().splitlines() == [FAILURES_HEADER]


def test_a_plain_sweep_traces_nothing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("traced without --failures or --json")

    monkeypatch.setattr(causes_module, "trace", refuse)
    assert_exit(runner().invoke(main, ["sweep", *NAIVE]), 0)
    assert audit("naive", dtypes="float32", domain="logits", labels=0, points=200).failure_records()[0]["cause"] == ""


def test_the_json_report_holds_the_same_causes(tmp_path):
    report, failures = tmp_path / "r.json", tmp_path / "map.csv"
    result = runner().invoke(main, ["sweep", *NAIVE, "--json", str(report), "--failures", str(failures)])
    assert_exit(result, 0)
    _, rows = read_csv(failures.read_text())
    data = json.loads(report.read_text())
    in_json = [iv["cause"] for case in data["cases"] for iv in case.get("failures", [])]
    assert in_json == [r["cause"] for r in rows] and all(in_json)


def test_audit_with_causes_matches_the_command_line():
    result = audit("naive", dtypes="float32", domain="logits", labels=0, points=200, causes=True)
    records = result.failure_records()
    assert records and all("; fix: log-of-sigmoid" in r["cause"] for r in records if r["quantity"] == "loss")
    cli = runner().invoke(main, ["sweep", *NAIVE, "--failures", "-"])
    assert [r["cause"] for r in read_csv(cli.stdout)[1]] == [r["cause"] for r in records]


def test_a_formulation_in_another_engine_is_not_traced(monkeypatch):
    result = audit("naive", dtypes="float32", domain="logits", labels=0, points=200)
    real = selection.resolve

    def as_jax(*args, **kwargs):
        return [dataclasses.replace(f, engine="jax") for f in real(*args, **kwargs)]

    def refuse(*args, **kwargs):
        raise AssertionError("a JAX formulation was traced with torch")

    monkeypatch.setattr(selection, "resolve", as_jax)
    monkeypatch.setattr(causes_module, "trace", refuse)
    records = explain_failures(result).failure_records()
    assert records and {r["cause"] for r in records} == {NOT_TORCH.format(name="naive", engine="jax")}


@pytest.fixture
def user_losses(tmp_path, monkeypatch):
    (tmp_path / "losses.py").write_text(
        textwrap.dedent(
            """
            import os
            import torch

            def mine(z, y):
                p = torch.sigmoid(z)
                return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))

            def hangs_when_traced(z, y):
                if z.numel() % 128 == 0:
                    import time
                    time.sleep(60)
                p = torch.sigmoid(z)
                return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))

            def raises(z, y):
                raise ValueError("not on my watch")

            def dies_when_traced(z, y):
                # the trace repeats each input 128 times; the sweep's batches are other sizes
                if z.numel() % 128 == 0:
                    os._exit(3)
                p = torch.sigmoid(z)
                return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
            """
        )
    )
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("user_losses")
def test_a_user_target_is_traced_in_the_sandbox():
    args = ["sweep", "--impl", "losses.py:mine@logits", *NAIVE[2:], "--failures", "-"]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    _, rows = read_csv(result.stdout)
    assert rows and {r["formulation"] for r in rows} == {"mine"}
    inf = [r for r in rows if r["quantity"] == "loss" and r["status"] == "inf"]
    assert len(inf) == 1 and "log(0) = -inf" in inf[0]["cause"] and inf[0]["cause"].endswith("fix: log-of-sigmoid")


@pytest.mark.usefixtures("user_losses")
def test_a_user_target_that_dies_when_traced_gets_the_reason():
    args = ["sweep", "--impl", "losses.py:dies_when_traced@logits", *NAIVE[2:], "--failures", "-"]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    _, rows = read_csv(result.stdout)
    # the sweep itself evaluated it (its failures are mapped), only the trace died
    assert rows and all(not math.isnan(float(r["lo"])) for r in rows)
    assert {r["cause"] for r in rows} == {
        "not traced: the process running it exited with code 3 before it answered (os._exit, or a crash)"
    }


def test_no_causes_leaves_the_column_empty(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("traced with --no-causes")

    monkeypatch.setattr(causes_module, "trace", refuse)
    result = runner().invoke(main, ["sweep", *NAIVE, "--failures", "-", "--no-causes"])
    assert_exit(result, 0)
    header, rows = read_csv(result.stdout)
    assert ",".join(header) == FAILURES_HEADER
    assert rows and all(r["cause"] == "" for r in rows)


def test_check_fills_the_causes_of_its_failure_map(tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text('formulations = ["max-abs"]\ndtypes = ["float32"]\ndomain = "logits"\npoints = 50\n')
    failures = tmp_path / "map.csv"
    args = ["check", "--config", str(config), "--baseline", str(tmp_path / "b.json"), "--update-baseline"]
    result = runner().invoke(main, [*args, "--failures", str(failures)])
    assert_exit(result, 0)
    _, rows = read_csv(failures.read_text())
    # max-abs's autograd gradient at the kink z = ±0, for both labels
    kinks = [r for r in rows if r["quantity"] == "grad" and r["lo"] == "-0.0" and r["hi"] == "0.0"]
    assert {r["label"] for r in kinks} == {"0.0", "1.0"}
    assert all(r["cause"].endswith("fix: subgradient-at-kink") for r in kinks)
    assert all(r["cause"] for r in rows)


@pytest.mark.usefixtures("user_losses")
def test_a_case_that_raised_is_not_traced_and_says_what_it_raised(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a case that raised was traced")

    monkeypatch.setattr(causes_module, "trace", refuse)
    args = ["sweep", "--impl", "losses.py:raises@logits", *NAIVE[2:], "--failures", "-"]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    _, rows = read_csv(result.stdout)
    assert [(r["quantity"], r["status"]) for r in rows] == [("loss", "error"), ("grad", "error")]
    assert {r["cause"] for r in rows} == {"not traced: it raised ValueError: not on my watch"}


@pytest.mark.usefixtures("user_losses")
def test_a_user_target_that_hangs_when_traced_is_traced_once(monkeypatch):
    calls = []
    real = causes_module.trace

    def counted(*args, **kwargs):
        calls.append(args[3])  # the dtype
        return real(*args, **kwargs)

    monkeypatch.setattr(causes_module, "trace", counted)
    # two labels: two traced runs were due; the first hangs, the second is not tried
    args = ["sweep", "--impl", "losses.py:hangs_when_traced@logits", *NAIVE[2:], "-y", "1", "--timeout", "2"]
    result = runner().invoke(main, [*args, "--failures", "-"])
    assert_exit(result, 0)
    _, rows = read_csv(result.stdout)
    assert {r["label"] for r in rows} == {"0.0", "1.0"}
    assert {r["cause"] for r in rows} == {
        "not traced: tracing hangs_when_traced did not finish within 2 s (--timeout); its process was killed"
    }
    assert len(calls) == 1


def test_a_row_says_what_explain_says_at_its_input_against_the_formulations_own_reference():
    # torchvision-focal is measured against the focal loss, not plain BCE: the cause's exact value
    # is the focal one, as `bce-audit explain --at` prints it at the row's input
    args = ["sweep", "-f", "torchvision-focal", "-d", "float32", "--domain", "logits", "-y", "0", "--points", "200"]
    result = runner().invoke(main, [*args, "--failures", "-"])
    assert_exit(result, 0)
    _, rows = read_csv(result.stdout)
    assert rows
    for row in rows[:3]:
        (e,) = bce_audit.explain(
            "torchvision-focal",
            dtypes="float32",
            labels=0,
            domain="logits",
            quantity=row["quantity"],
            at=_explained_input(row),
        )
        fix = f"; fix: {e.fixes[0].pattern}" if e.fixes else ""
        assert row["cause"] == e.cause + fix
        assert e.status.value == row["status"]
