"""--repro DIR: the standalone pytest files fail, for the right reason, on today's torch.

Each generated file is run with pytest in a subprocess (torch and pytest only), and its failure
message is held to the audit's own numbers: the status and the ULP error of the point.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
from helpers import assert_exit, assert_usage_error, read_csv, runner

import bce_audit
from bce_audit.cli import main
from bce_audit.engines.torch_engine import TorchEngine
from bce_audit.floats import round_float
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.report.repro import file_names, file_stem, render
from bce_audit.sweep.metrics import point_status, ulp_error
from bce_audit.sweep.reproduce import FailingCase, chosen_indices, failing_cases, failing_point
from bce_audit.sweep.result import CaseKey


def _pytest(path: Path) -> subprocess.CompletedProcess[str]:
    """Run one generated file as a user would, in a fresh interpreter, away from this repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["COLUMNS"] = "10000"  # the summary lines whole
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", str(path.name)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def torch_bce_f32() -> bce_audit.AuditResult:
    # torch-bce fails on logits (sigmoid rounds to 0 and 1, log is clamped at -100); max-abs is ok
    return bce_audit.audit(["torch-bce", "max-abs"], dtypes="float32", domain="logits", labels=[1], details=True)


def test_a_file_per_failing_case_and_none_for_an_ok_one(tmp_path):
    # in float16 max-abs's loss is ok on every input (in float32 it returns 0 in the narrow band
    # where the true loss is the smallest subnormal); torch-bce fails
    result = bce_audit.audit(["torch-bce", "max-abs"], dtypes="float16", domain="logits", labels=[1], details=True)
    written = bce_audit.write_repro(result, tmp_path / "repro")
    failing = [c for c in result.cases if c.worst_status is not bce_audit.Status.OK]
    ok = [c for c in result.cases if c.worst_status is bce_audit.Status.OK]
    assert [(c.formulation, c.quantity) for c in ok] == [("max-abs", "loss")]
    assert sorted(p.name for p in written) == sorted(f"{file_stem(c.key)}.py" for c in failing)
    assert sorted(os.listdir(tmp_path / "repro")) == sorted(p.name for p in written)
    assert "test_max_abs_logits_float16_y1_loss.py" not in os.listdir(tmp_path / "repro")


def test_the_generated_file_fails_with_the_status_and_the_ulp_error(torch_bce_f32, tmp_path):
    (case,) = [c for c in torch_bce_f32.cases if c.formulation == "torch-bce" and c.quantity == "loss"]
    written = bce_audit.write_repro(torch_bce_f32, tmp_path)
    path = next(p for p in written if p.name == f"{file_stem(case.key)}.py")
    chosen = chosen_indices(case)
    assert chosen, "torch-bce on float32 logits fails"
    run = _pytest(path)
    assert run.returncode == 1, run.stdout + run.stderr
    d = case.details
    failed = re.findall(r"^FAILED \S+::(\w+) - (\w+): (.*)$", run.stdout, re.M)
    assert len(failed) == len(chosen), run.stdout  # every chosen point fails
    for (index, reasons), (name, exception, message) in zip(chosen.items(), failed, strict=True):
        status = str(d.statuses[index])
        assert name == "test_" + "_and_".join(r.replace(" ", "_") for r in reasons)
        if status == "error":  # the formulation raised at this input (torch's BCE rejects NaN): so does the file
            assert exception == "RuntimeError" and "between 0 and 1" in message
            continue
        assert exception == "AssertionError" and message.startswith(f"{status}: "), message
        assert f"at z = {float(d.inputs[index]).hex()}" in message
        if not math.isnan(d.ulp_errors[index]):  # the file measures the ULP error as the audit does
            assert f"ULP error {d.ulp_errors[index]:.4g}" in message
        assert f"expected {float(d.truth[index])!r}" in message
    assert "passed" not in run.stdout.splitlines()[-1]


def test_the_expected_value_is_the_exact_truth_rounded_once_into_the_dtype(torch_bce_f32):
    """Cross-check the oracle's value in a file with mpmath at 300 bits, rounded once to float32."""
    (case,) = [c for c in torch_bce_f32.cases if c.formulation == "torch-bce" and c.quantity == "loss"]
    (fc,) = [f for f in failing_cases(torch_bce_f32) if f.case is case]
    text = render(fc, torch_bce_f32.provenance, "t.py")
    for point in fc.points:
        if not math.isfinite(point.input):
            continue
        with mpmath.workprec(300):
            z = mpmath.mpf(point.input)
            exact = mpmath.log1p(mpmath.exp(-z))  # y = 1: -log(sigmoid(z))
        with mpmath.workprec(24):  # float32's significand; the values here are normal
            rounded = float(+exact)
        assert point.expected == rounded
        assert f'expected = float.fromhex("{rounded.hex()}")' in text
        assert f'evaluate([float.fromhex("{point.input.hex()}")], 0)' in text


def test_a_point_that_fails_only_inside_a_batch_is_reproduced_in_one(tmp_path, monkeypatch):
    """torch's sigmoid rounds some float32 inputs differently in its vectorized body and its scalar
    tail; at a 1 ULP threshold a few points of `naive` fed logits fail in the batch only. Found by
    a dense scan: every failing point evaluated alone in the engine. The repro evaluates 64 copies
    of the point (the vectorized body); where copies would not do, the audit's whole batch."""
    from bce_audit.sweep import reproduce

    result = bce_audit.audit(
        "naive", dtypes="float32", domain="logits", labels=[0], points=2000, ulp_threshold=1, details=True
    )
    (case,) = [c for c in result.cases if c.quantity == "grad"]
    d, n, fmt = case.details, case.figures.points, case.dtype.format
    y = round_float(case.label, fmt)
    failing = np.nonzero(d.statuses[:n] != "ok")[0]
    alone = np.array(
        [
            TorchEngine().evaluate(BUILTINS["naive"], case.domain, case.dtype, d.inputs[i : i + 1], y).grad[0]
            for i in failing
        ]
    )
    ok_alone = failing[point_status(alone, d.truth[failing], ulp_error(alone, d.truth[failing], fmt), 1.0) == "ok"]
    if len(ok_alone) == 0:
        pytest.skip("this torch build rounds every failing point the same alone and in the batch")
    index = int(ok_alone[0])
    x = float(d.inputs[index])
    expected_message = f"AssertionError: {d.statuses[index]}: ULP error {d.ulp_errors[index]:.4g}"

    point = failing_point(case, BUILTINS["naive"], index, ["scanned"], 1.0, None)
    assert point.in_batch and point.batch == (x,) * 64 and point.index == 0
    assert point.output == d.outputs[index] and point.alone_output == alone[list(failing).index(index)]
    path = tmp_path / "test_copies.py"
    path.write_text(render(FailingCase(case, BUILTINS["naive"], (point,), 1.0), result.provenance, path.name))
    text = path.read_text(encoding="utf-8")
    assert "fails only inside a batch" in text and f'evaluate([float.fromhex("{x.hex()}")] * 64, 0)' in text
    run = _pytest(path)
    assert run.returncode == 1 and expected_message in run.stdout, run.stdout + run.stderr

    monkeypatch.setattr(reproduce, "VECTOR_COPIES", 1)  # one copy is the point alone: it passes
    point = failing_point(case, BUILTINS["naive"], index, ["scanned"], 1.0, None)
    assert point.in_batch and point.index == index and len(point.batch) == n and point.batch[index] == x
    path = tmp_path / "test_whole_batch.py"
    path.write_text(render(FailingCase(case, BUILTINS["naive"], (point,), 1.0), result.provenance, path.name))
    text = path.read_text(encoding="utf-8")
    assert "fails only inside the batch the audit evaluated" in text and f"evaluate(BATCH, {index})" in text
    run = _pytest(path)
    assert run.returncode == 1 and expected_message in run.stdout, run.stdout + run.stderr


def test_file_names_are_safe_distinct_module_names():
    odd = CaseKey("_my.bce+v2-rc", "logits", "bfloat16", 0.30000000000000004, "grad", parameters="alpha=0.25,gamma=2")
    stem = file_stem(odd)
    assert re.fullmatch(r"test_[a-z0-9_]+", stem), stem
    assert stem == "test_my_bce_v2_rc_alpha_0_25_gamma_2_logits_bfloat16_y0_30000000000000004_grad"
    long = CaseKey("x" * 300, "logits", "float16", 1.0, "loss")
    assert len(file_stem(long)) <= 120 and re.fullmatch(r"test_[a-z0-9_]+", file_stem(long))

    class Fake:
        def __init__(self, key: CaseKey):
            self.case = type("C", (), {"key": key})()

    a, b = CaseKey("a-b", "logits", "float16", 1.0, "loss"), CaseKey("a_b", "logits", "float16", 1.0, "loss")
    names = file_names([Fake(a), Fake(b)])  # type: ignore[list-item]
    assert len(set(names)) == 2 and all(n.startswith("test_a_b_logits_float16_y1_loss_") for n in names)


def test_a_link_in_the_directory_is_replaced_never_followed(torch_bce_f32, tmp_path):
    out = tmp_path / "repro"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (case,) = [c for c in torch_bce_f32.cases if c.formulation == "torch-bce" and c.quantity == "loss"]
    planted = out / f"{file_stem(case.key)}.py"
    planted.symlink_to(victim)
    bce_audit.write_repro(torch_bce_f32, out)
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not planted.is_symlink() and planted.read_text(encoding="utf-8").startswith('"""bce-audit repro')


def test_cli_repro_creates_the_directory_and_refuses_a_file(tmp_path, monkeypatch):
    args = ["sweep", "-f", "torch-bce", "-d", "float16", "--domain", "logits", "-y", "1", "--points", "50"]
    monkeypatch.chdir(tmp_path)
    Path("report.csv").write_text("", encoding="utf-8")
    assert_usage_error(runner().invoke(main, [*args, "--repro", "report.csv"]), "--repro report.csv", "not a directory")
    assert_usage_error(
        runner().invoke(main, [*args, "--repro", "no/such/dir"]), "--repro no/such/dir", "does not exist"
    )
    assert_usage_error(
        runner().invoke(main, [*args, "--csv", "out", "--repro", "out"]), "--repro out", "--csv out", "same file"
    )
    assert not Path("out").exists()
    result = runner().invoke(main, [*args, "--repro", "out"])
    assert_exit(result, 0)
    files = sorted(os.listdir("out"))
    assert files == ["test_torch_bce_logits_float16_y1_grad.py", "test_torch_bce_logits_float16_y1_loss.py"]
    assert "wrote 2 files in out" in result.stderr
    # torch-logsigmoid is within 4 ULP everywhere on float16 logits
    ok_args = ["sweep", "-f", "torch-logsigmoid", "-d", "float16", "--domain", "logits", "--points", "50"]
    ok = runner().invoke(main, [*ok_args, "--repro", "ok"])
    assert_exit(ok, 0)
    assert not Path("ok").exists() and "no failing case" in ok.stderr


def test_a_users_function_is_imported_from_its_file_target(tmp_path, monkeypatch):
    """The file imports the user's function from the target the audit loaded (not a copy), so the
    repro follows the user's code; it fails with every status the case has (one test per status)."""
    monkeypatch.chdir(tmp_path)
    Path("losses.py").write_text(
        "import torch\n\n\ndef bce(p, y):\n    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))\n",
        encoding="utf-8",
    )
    args = ["sweep", "--impl", "losses.py:bce@probabilities", "-d", "float32", "--domain", "probabilities"]
    result = runner().invoke(main, [*args, "-y", "1", "--points", "100", "--repro", "out", "--details", "d.csv"])
    assert_exit(result, 0)
    path = tmp_path / "out" / "test_bce_probabilities_float32_y1_loss.py"
    text = path.read_text(encoding="utf-8")
    assert f"_SOURCE = {str(tmp_path / 'losses.py')!r}" in text
    assert "def bce" not in text  # imported, not inlined
    _, rows = read_csv(Path("d.csv").read_text(encoding="utf-8"))
    statuses = {r["status"] for r in rows if r["quantity"] == "loss"} - {"ok"}
    run = _pytest(path)
    assert run.returncode == 1, run.stdout + run.stderr
    failed = re.findall(r"^FAILED \S+::\w+ - (\w+): (\w+):", run.stdout, re.M)
    assert all(exc == "AssertionError" for exc, _ in failed), run.stdout
    assert {status for _, status in failed} == statuses, run.stdout
