"""`--failures PATH`: the failure map CSV, written with the run's other outputs, never over an input."""

from __future__ import annotations

from helpers import assert_exit, assert_usage_error, read_csv, runner

from bce_audit.cli import main

FAILURES_HEADER = "formulation,domain,dtype,label,quantity,status,lo,hi,edges,floats,worst_input,worst_ulp,cause"
SMALL = ["-f", "max-abs", "-d", "float32", "--domain", "logits", "-y", "0", "--points", "200"]


def test_failures_writes_the_map_beside_the_other_outputs(tmp_path):
    failures, summary = tmp_path / "failures.csv", tmp_path / "summary.csv"
    result = runner().invoke(main, ["sweep", *SMALL, "--failures", str(failures), "--csv", str(summary)])
    assert_exit(result, 0)
    assert f"wrote {failures}" in result.stderr and f"wrote {summary}" in result.stderr
    text = failures.read_text()
    assert text.splitlines()[0] == FAILURES_HEADER
    _, rows = read_csv(text)
    # max-abs's gradient at y = 0 fails at z = -0 and +0 alone; its loss only in the underflow band
    # near z = -103.9 where the truth rounds to the smallest subnormal (tests/sweep/test_failure_map.py
    # checks that band's edges against a dense scan of torch)
    loss, grad = rows
    assert (grad["quantity"], grad["status"], grad["lo"], grad["hi"], grad["edges"], grad["floats"]) == (
        "grad",
        "inaccurate",
        "-0.0",
        "0.0",
        "enumerated",
        "2",
    )
    assert (loss["quantity"], loss["status"], loss["edges"]) == ("loss", "zero", "exact")
    assert -104 < float(loss["lo"]) < float(loss["hi"]) < -102.8
    # the gradient's cause: autograd's one-sided derivative at the kink of max(z, 0)
    # (explanation.failures; tests/cli/test_failure_causes.py)
    assert "at its kink" in grad["cause"] and grad["cause"].endswith("fix: subgradient-at-kink")
    # and the scoreboard says "all but 0" instead of "none"
    assert "all but 0" in result.stdout and "none" not in result.stdout.split("statuses:")[0]


def test_failures_to_standard_output_sends_the_report_to_stderr():
    result = runner().invoke(main, ["sweep", *SMALL, "--failures", "-"])
    assert_exit(result, 0)
    assert result.stdout.splitlines()[0] == FAILURES_HEADER
    assert "all but 0" in result.stderr


def test_failures_never_overwrites_another_output_or_an_input(tmp_path):
    same = tmp_path / "out.csv"
    result = runner().invoke(main, ["sweep", *SMALL, "--failures", str(same), "--csv", str(same)])
    assert_usage_error(result, "--failures", "--csv")
    assert not same.exists()
    config = tmp_path / "audit.toml"
    config.write_text('formulations = ["max-abs"]\n')
    result = runner().invoke(main, ["sweep", "--config", str(config), "--failures", str(config)])
    assert_usage_error(result, "--failures", "--config")
    assert config.read_text() == 'formulations = ["max-abs"]\n'


def test_failures_from_the_config(tmp_path):
    config = tmp_path / "audit.toml"
    target = tmp_path / "map.csv"
    config.write_text(f'formulations = ["max-abs"]\ndtypes = ["float32"]\ndomain = "logits"\nfailures = "{target}"\n')
    result = runner().invoke(main, ["sweep", "--config", str(config), "--points", "100"])
    assert_exit(result, 0)
    assert target.read_text().splitlines()[0] == FAILURES_HEADER
