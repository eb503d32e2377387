"""A formulation whose framework is not installed: one line on stderr naming the pip command, exit
2, before any sweep work. Absence is simulated in a fresh process (``sys.modules[name] = None``
makes ``import name`` fail and ``importlib.util.find_spec(name)`` find nothing), so these tests
run whether the extras are installed or not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

# what is hidden -> a formulation that needs it, and the pip command the error must name
CASES = {
    "jax": ("optax-sigmoid-bce", "pip install 'bce-audit[jax]'"),
    "optax": ("jax-logsigmoid", "pip install 'bce-audit[jax]'"),
    "tensorflow": ("tf-sigmoid-ce", "pip install 'bce-audit[tensorflow]'"),
    "keras": ("keras-bce", "pip install 'bce-audit[keras]'"),
}


def _run_without(hidden: str, code: str, tmp_path) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nsys.modules[{hidden!r}] = None\n"
    env = {**os.environ, "BCE_AUDIT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=env,
    )


@pytest.mark.parametrize("hidden", list(CASES))
def test_a_missing_extra_is_one_line_naming_the_pip_command(hidden, tmp_path):
    name, pip = CASES[hidden]
    code = f"""
        import time
        from bce_audit.cli import main
        start = time.perf_counter()
        try:
            main(["sweep", "-f", {name!r}, "-d", "float32", "--csv", {str(tmp_path / "s.csv")!r}])
        finally:
            # before any work: no truth computed, no framework half-imported
            print("seconds", round(time.perf_counter() - start, 1), file=sys.stdout)
            print("imported", sorted(m for m in ("jax", "tensorflow", "keras", "optax") if sys.modules.get(m)))
    """
    proc = _run_without(hidden, code, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert pip in lines[0] and repr(name) in lines[0] and "Traceback" not in proc.stderr
    assert "imported []" in proc.stdout
    assert not (tmp_path / "s.csv").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.*"))


def test_the_api_raises_the_usage_error(tmp_path):
    code = """
        import bce_audit
        try:
            bce_audit.audit(["tf-sigmoid-ce"], dtypes="float32", points=20)
        except bce_audit.UsageError as exc:
            print("usage error:", exc)
    """
    proc = _run_without("tensorflow", code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage error:" in proc.stdout and "pip install 'bce-audit[tensorflow]'" in proc.stdout


def test_a_user_formulation_declared_for_a_missing_engine(tmp_path):
    """A user's function that says engine="jax", where JAX is not installed: the same one line."""
    (tmp_path / "losses_nojax.py").write_text(
        textwrap.dedent(
            """
            from bce_audit import formulation

            @formulation(domain="logits", engine="jax")
            def jaxy(z, y):
                return z * y
            """
        )
    )
    target = str(tmp_path / "losses_nojax.py") + ":jaxy"
    code = f"""
        from bce_audit.cli import main
        main(["sweep", "--impl", {target!r}, "-d", "float32", "--points", "20"])
    """
    proc = _run_without("jax", code, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'bce-audit[jax]'" in lines[0] and "'jaxy'" in lines[0], proc.stderr
