"""--plot DIR: the status bands, deterministic PNG and SVG files, and a clear error without matplotlib."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

import bce_audit
from bce_audit.figures import CaseFigures
from bce_audit.report.bands import Band, bands
from bce_audit.sweep.result import CaseResult, PointDetails
from bce_audit.vocabulary import Domain, DType, Quantity, Status


def _case(inputs: list[float], statuses: list[str]) -> CaseResult:
    n = len(inputs)
    nan = np.full(n, math.nan)
    details = PointDetails(np.array(inputs), nan, nan, nan, np.array(statuses, dtype=object))
    figures = CaseFigures.none()
    figures = CaseFigures(**{**figures.__dict__, "points": n})
    return CaseResult("f", Domain.LOGITS, DType.FLOAT16, 1.0, Quantity.LOSS, figures, details=details)


def test_bands_are_the_runs_of_one_status_that_is_not_ok():
    case = _case(
        [-5.0, -4.0, -3.0, -0.0, 0.0, 1.0, 2.0, 3.0],
        ["nan", "nan", "inaccurate", "ok", "ok", "zero", "ok", "inf"],
    )
    assert bands(case) == [
        Band(-5.0, -4.0, Status.NAN),
        Band(-3.0, -3.0, Status.INACCURATE),
        Band(1.0, 1.0, Status.ZERO),
        Band(3.0, 3.0, Status.INF),
    ]
    assert bands(_case([1.0, 2.0], ["ok", "ok"])) == []


def test_bands_of_a_sweep_end_next_to_its_stable_range():
    """The stable range is the widest ok run around 0: the bands nearest it start at the sampled
    inputs just outside it."""
    result = bce_audit.audit("torch-bce", dtypes="float32", domain="logits", labels=[1], details=True)
    for case in result.cases:
        inputs = case.details.inputs[: case.figures.points]
        lo, hi = case.figures.stable_lo, case.figures.stable_hi
        found = bands(case)
        assert found, f"{case.key} fails somewhere"
        above = [b for b in found if b.lo > hi]
        below = [b for b in found if b.hi < lo]
        assert all(b.hi < lo or b.lo > hi for b in found)  # no band inside the stable range
        i_hi, i_lo = int(np.searchsorted(inputs, hi, side="right")), int(np.searchsorted(inputs, lo)) - 1
        if i_hi < len(inputs):
            assert min(b.lo for b in above) == inputs[i_hi]
        if i_lo >= 0:
            assert max(b.hi for b in below) == inputs[i_lo]


@pytest.fixture(scope="module")
def small() -> bce_audit.AuditResult:
    return bce_audit.audit(["naive"], dtypes=["float16", "bfloat16"], points=300, details=True)


def test_plots_are_written_deterministically(small, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (pip install 'bce-audit[plot]')")
    first = bce_audit.write_plots(small, tmp_path / "a")
    second = bce_audit.write_plots(small, tmp_path / "b")
    names = sorted(p.name for p in first)
    assert names == ["naive_grad.png", "naive_grad.svg", "naive_loss.png", "naive_loss.svg"]
    assert names == sorted(p.name for p in second)
    for name in names:
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b, f"{name} differs between two writes"
    png = (tmp_path / "a" / "naive_loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = (tmp_path / "a" / "naive_loss.svg").read_text(encoding="utf-8")
    assert "<dc:date>" not in svg and "bce-audit" in svg
    assert "naive: loss" in svg  # the title, as text


def test_without_matplotlib_plot_is_one_line_naming_the_extra(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from bce_audit.cli import main\n"
        "sys.argv = ['bce-audit', 'sweep', '-f', 'naive', '-d', 'float16', '--points', '50', '--plot', 'plots']\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bce-audit: error:"), run.stderr
    assert "pip install 'bce-audit[plot]'" in lines[0]
    assert not (tmp_path / "plots").exists()


def test_an_error_figure_at_the_largest_float64_is_drawn(tmp_path):
    """clipped on float64: 1e-7 where the exact loss is 0 or subnormal is ERROR_CAP ULPs off; the
    error axis must stay finite (a limit of inf was an internal error)."""
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (pip install 'bce-audit[plot]')")
    result = bce_audit.audit("clipped", dtypes="float64", points=100, details=True)
    assert max(c.figures.max_ulp for c in result.cases) == np.finfo(np.float64).max
    written = bce_audit.write_plots(result, tmp_path)
    assert sorted(p.name for p in written) == [
        "clipped_grad.png",
        "clipped_grad.svg",
        "clipped_loss.png",
        "clipped_loss.svg",
    ]
