"""`bce-audit explain`: the wiring of its options, a user's target through --impl (run in the
sandbox), and one-line errors."""

from __future__ import annotations

import textwrap

import pytest
from helpers import assert_exit, assert_usage_error, runner

import bce_audit
from bce_audit.cli import main


def test_explain_at_a_point_prints_the_chain_and_the_fix():
    result = runner().invoke(
        main, ["explain", "softplus-threshold", "-d", "float32", "-y", "0", "--quantity", "grad", "--at", "89"]
    )
    assert_exit(result, 0)
    out = result.stdout
    assert out.startswith("softplus-threshold on logits, float32, y=0, grad at z = 89 (--at)")
    assert "exp(89) = inf in the branch that where() discards" in out
    assert "0 * inf = NaN" in out
    assert "fix (where-discards-overflow)" in out and "rewrite: " in out
    # the same explanation as the API's
    (e,) = bce_audit.explain("softplus-threshold", dtypes="float32", labels=0, quantity="grad", at=89.0)
    assert f"  cause: {e.cause}" in out.splitlines()


def test_explain_without_at_explains_the_swept_failures():
    result = runner().invoke(main, ["explain", "max-abs", "-y", "1", "--quantity", "grad", "--points", "100"])
    assert_exit(result, 0)
    assert "(the worst input)" in result.stdout or "(the failing input nearest the centre)" in result.stdout
    assert "fix (subgradient-at-kink)" in result.stdout


def test_all_ops_lists_every_traced_op():
    result = runner().invoke(
        main, ["explain", "naive", "--domain", "logits", "-y", "0", "--quantity", "loss", "--at", "17", "--all-ops"]
    )
    assert_exit(result, 0)
    lines = result.stdout.splitlines()
    start = lines.index("  every op (* the chain):")
    listed = lines[start + 1 :]
    assert any(line.lstrip().startswith("*[") and "sigmoid(17)" in line for line in listed)
    assert any("backward" in line for line in listed)


def test_a_case_that_is_right_says_so():
    result = runner().invoke(main, ["explain", "torch-logsigmoid", "-y", "0", "--quantity", "loss", "--at", "1"])
    assert_exit(result, 0)
    assert "cause: ok:" in result.stdout


def test_a_user_target_through_impl(tmp_path, monkeypatch):
    (tmp_path / "losses.py").write_text(
        textwrap.dedent(
            """
            import os
            import torch

            def focal(p, y, gamma=0.5):
                return -(y * (1 - p) ** gamma * torch.log(p) + (1 - y) * p ** gamma * torch.log(1 - p))

            def dies(z, y):
                os._exit(3)

            def hangs(z, y):
                import time
                time.sleep(60)
                return z
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    args = ["explain", "--impl", "losses.py:focal@probabilities", "-y", "1", "--quantity", "grad", "--at", "1"]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    assert result.stdout.startswith("focal on probabilities, float32, y=1, grad at p = 1 (--at)")
    assert "pow(0, -0.5) = inf" in result.stdout and "fix (pow-zero-negative)" in result.stdout
    # a function that kills its process is explained as not traced; the tool carries on
    args = ["explain", "--impl", "losses.py:dies@logits", "-y", "0", "--quantity", "loss", "--at", "1"]
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    assert "not traced: the process running it exited with code 3" in result.stdout
    # one that hangs is killed at the time limit
    args = ["explain", "--impl", "losses.py:hangs@logits", "-y", "0", "--quantity", "loss", "--at", "1"]
    result = runner().invoke(main, [*args, "--timeout", "2"])
    assert_exit(result, 0)
    assert "not traced: tracing hangs did not finish within 2 s" in result.stdout


@pytest.mark.parametrize(
    ("args", "culprits"),
    [
        (["explain", "nave"], ("nave", "naive")),
        (["explain", "naive", "--at", "2"], ("--at 2", "probabilities")),
        (["explain", "naive", "--at", "nan"], ("--at NaN",)),
        (["explain"], ("--impl",)),
        (["explain", "naive", "--impl", "x.py:f@logits"], ("--impl",)),
        (["explain", "naive", "-d", "float8"], ("float8",)),
        (["explain", "naive", "--quantity", "both"], ("--quantity",)),
    ],
)
def test_errors_are_one_line_exit_2(args, culprits):
    assert_usage_error(runner().invoke(main, args), *culprits)
