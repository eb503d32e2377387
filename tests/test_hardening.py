"""The classes of fault that a hostile try of the tool found, each reproduced and closed.

Nobody let in (the cache never follows a link), nothing lost (outputs all-or-nothing), user code
changes nothing else and cannot fake a pass (the sandbox), SIGTERM leaves nothing behind, and
honest answers (empty grids, finite error figures, what the reference is).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, assert_exit, assert_usage_error, read_csv, runner

from bce_audit import files as _io
from bce_audit.cli import main
from bce_audit.oracle.cache import ORACLE_VERSION

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra) -> dict:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", PYTHONPATH=str(ROOT), **extra)
    env.pop("BCE_AUDIT_DEBUG", None)
    return env


def _cli(*args, cwd=None, **popen):
    return subprocess.run(
        [sys.executable, "-m", "bce_audit", *map(str, args)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
        **popen,
    )


# --------------------------------------------------------------------------- the truth cache


def _cache_file(cache: Path) -> Path:
    files = sorted((cache / f"oracle-v{ORACLE_VERSION}").glob("logits-*.truth"))
    assert files, list(cache.rglob("*"))
    return files[0]


def test_a_cache_file_replaced_by_a_link_never_writes_through_it(tmp_path):
    cache, victim = tmp_path / "cache", tmp_path / "victim.txt"
    victim.write_text("not bce-audit's\n")
    args = ["sweep", *TINY, "--cache-dir", str(cache)]
    assert_exit(runner().invoke(main, args), 0)
    planted = _cache_file(cache)
    planted.unlink()
    planted.symlink_to(victim)
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    assert victim.read_text() == "not bce-audit's\n"  # the target was neither read as a cache nor written
    assert "never follows a link" in result.stderr and str(planted) in result.stderr
    assert planted.is_file() and not planted.is_symlink()  # the write replaced the link itself


def test_a_version_directory_replaced_by_a_link_is_not_used(tmp_path):
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache.mkdir()
    (cache / f"oracle-v{ORACLE_VERSION}").symlink_to(elsewhere)
    result = runner().invoke(main, ["sweep", *TINY, "--cache-dir", str(cache)])
    assert_exit(result, 0)
    assert list(elsewhere.iterdir()) == []  # nothing written through the planted link
    assert "symbolic link" in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_the_cache_is_never_opened(tmp_path):
    cache = tmp_path / "cache"
    args = ["sweep", *TINY, "--cache-dir", str(cache)]
    assert_exit(runner().invoke(main, args), 0)
    planted = _cache_file(cache)
    planted.unlink()
    os.mkfifo(planted)  # opening it for reading would block forever
    result = runner().invoke(main, args)
    assert_exit(result, 0)
    assert "not a regular file" in result.stderr


def test_a_hard_link_in_the_cache_does_not_change_its_other_name(tmp_path):
    cache, victim = tmp_path / "cache", tmp_path / "victim.truth"
    args = ["sweep", *TINY, "--cache-dir", str(cache)]
    assert_exit(runner().invoke(main, args), 0)
    planted = _cache_file(cache)
    planted.unlink()
    victim.write_bytes(b"precious")
    os.link(victim, planted)
    assert_exit(runner().invoke(main, args), 0)
    assert victim.read_bytes() == b"precious"  # replaced by rename: the other name keeps its data


def test_private_dir_refuses_links_and_leaves_no_temporary_file(tmp_path):
    private = _io.PrivateDir(tmp_path, "mine")
    private.write("a", b"1")
    assert private.read("a") == b"1" and private.read("absent") is None
    (tmp_path / "mine" / "b").symlink_to(tmp_path / "outside")
    with pytest.raises(_io.LinkRefused):
        private.read("b")
    private.write("b", b"2")
    assert not (tmp_path / "outside").exists()
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["a", "b"]


# --------------------------------------------------------------------------- outputs together


def test_a_failing_output_leaves_the_others_untouched_and_says_so(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    csv = tmp_path / "r.csv"
    csv.write_text("old\n")
    result = runner().invoke(main, ["sweep", *TINY, "--csv", str(csv), "--json", "/dev/full"])
    assert_exit(result, 2)  # the report was printed; the files could not be written, and that is said
    (line,) = result.stderr.splitlines()
    assert line == "bce-audit: error: --json /dev/full: cannot write: No space left on device; nothing was written"
    assert csv.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_outputs_are_replaced_together_or_not_at_all(tmp_path, monkeypatch, failure):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.json", tmp_path / "c.csv"
    for p in (a, b, c):
        p.write_text("old\n")
    staged = []
    real_mkstemp = _io.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        staged.append(kwargs.get("prefix"))
        if len(staged) == 3:  # the third output fails while the first two are staged
            raise failure
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(_io.tempfile, "mkstemp", mkstemp)
    outputs = [(_io.Output("--csv", a), "new"), (_io.Output("--json", b), "new"), (_io.Output("--details", c), "new")]
    with pytest.raises(_io.OutputsNotWritten if isinstance(failure, OSError) else KeyboardInterrupt) as info:
        _io.write_outputs(outputs)
    if isinstance(failure, OSError):
        assert str(info.value) == f"--details {c}: cannot write: No space left on device; nothing was written"
    assert [p.read_text() for p in (a, b, c)] == ["old\n"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json", "c.csv"]  # no temporary file left


def test_a_failed_rename_says_exactly_what_was_written(tmp_path, monkeypatch):
    a, b = tmp_path / "a.csv", tmp_path / "b.json"
    real_replace = os.replace
    calls = []

    def replace(src, dst, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(_io.os, "replace", replace)
    with pytest.raises(_io.OutputsNotWritten) as info:
        _io.write_outputs([(_io.Output("--csv", a), "x"), (_io.Output("--json", b), "y")])
    # all or nothing: the csv renamed first is taken back (it did not exist: it is removed again)
    assert str(info.value) == (
        f"--json {b}: cannot write: Input/output error; nothing was written; put back as they were: --csv {a}"
    )
    assert not a.exists() and not b.exists() and list(tmp_path.iterdir()) == []


def test_signals_are_held_while_the_outputs_are_renamed():
    got = []
    previous = signal.signal(signal.SIGINT, lambda *a: got.append("delivered"))
    try:
        with _io.signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            got.append("renamed")
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert got == ["renamed", "delivered"]


def test_dash_is_standard_output_and_the_report_moves_to_stderr(tmp_path):
    result = runner().invoke(main, ["sweep", *TINY, "--csv", "-"])
    assert_exit(result, 0)
    header, rows = read_csv(result.stdout)
    assert header[:2] == ["formulation", "domain"] and len(rows) == 4
    assert "worst status and stable range" in result.stderr
    assert not (Path.cwd() / "-").exists()
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--csv", "-", "--json", "-"]), "--json -", "--csv -")


def test_closed_standard_output_still_writes_the_files(tmp_path):
    csv = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "bce_audit", "sweep", *TINY, "--csv", str(csv)],
        env=_env(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=180,
        preexec_fn=lambda: os.close(1),  # `>&-`: descriptor 1 closed
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert csv.read_text().startswith("formulation,")


# --------------------------------------------------------------------------- user code: isolated


LOSSES = """
import os
import sys
import time

import numpy as np
import torch

from bce_audit import formulation

torch.set_flush_denormal(True)  # at import: must not reach the built-ins
np.seterr(all="raise")


@formulation(domain="logits")
def fine(z, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


@formulation(domain="logits")
def exits(z, y):
    os._exit(0)


@formulation(domain="logits")
def closes_stdout(z, y):
    sys.stdout.close()
    return fine(z, y)


@formulation(domain="logits")
def hangs(z, y):
    time.sleep(1000)


@formulation(domain="logits")
def hogs_memory(z, y):
    hoard = []
    while True:
        hoard.append(torch.empty(1 << 30, dtype=torch.uint8))  # address space, never touched


@formulation(domain="logits")
def segfaults(z, y):
    import ctypes
    ctypes.string_at(0)
"""

SMALL = ["-d", "float32", "--domain", "logits", "-y", "0", "--points", "30"]


@pytest.fixture
def losses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.py").write_text(LOSSES)
    return tmp_path


def _figures(csv_text: str, name: str) -> list[dict]:
    return [r for r in read_csv(csv_text)[1] if r["formulation"] == name]


def test_state_a_user_module_sets_at_import_does_not_reach_the_built_ins(losses):
    args = ["-f", "max-abs", "-d", "float32", "--domain", "logits", "-y", "0", "-y", "1", "--points", "200"]
    alone = runner().invoke(main, ["sweep", *args, "--csv", "-"])
    assert_exit(alone, 0)
    beside = runner().invoke(main, ["sweep", *args, "--impl", "hostile.py:fine", "--csv", "-"])
    assert_exit(beside, 0)
    assert _figures(beside.stdout, "max-abs") == _figures(alone.stdout, "max-abs")
    # and the smallest subnormal's gradient is the exact 1/2 - y, not 1.0 of a flushed input
    grad = [r for r in _figures(beside.stdout, "max-abs") if r["quantity"] == "grad"]
    assert all(r["nan"] == "0" for r in grad)


def test_evaluate_pins_the_callers_state_and_gives_it_back():
    import torch

    from bce_audit.engines.torch_engine import TorchEngine
    from bce_audit.formulations.builtins import BUILTINS
    from bce_audit.vocabulary import Domain, DType

    evaluate = TorchEngine().evaluate

    tiny = 1.401298464324817e-45  # the smallest float32 subnormal
    torch.set_flush_denormal(True)
    try:
        ev = evaluate(BUILTINS["max-abs"], Domain.LOGITS, DType.FLOAT32, np.array([tiny]), 0.0)
        assert torch.tensor(tiny, dtype=torch.float32).mul(1).item() == 0  # still the caller's state
    finally:
        torch.set_flush_denormal(False)
    assert ev.loss[0] == np.float32(math.log(2))  # the input reached torch as itself, not as 0
    assert ev.grad[0] != 1.0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("exits", "exited with code 0 before it answered"),
        ("hogs_memory", "ran out of memory"),
        ("segfaults", "killed by SIGSEGV"),
    ],
)
def test_a_function_that_dies_is_not_evaluated_and_check_cannot_pass(losses, name, reason):
    (losses / "gate.toml").write_text("[[thresholds]]\nnan = 0\n")
    junit = losses / "j.xml"
    result = runner().invoke(
        main,
        ["check", "--config", "gate.toml", "--impl", f"hostile.py:{name}", "-f", "max-abs", *SMALL, "--junit", junit],
    )
    assert_exit(result, 4)
    assert reason in result.stdout
    assert f"{name} logits float32 y=0 loss: not evaluated" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("check INCOMPLETE:")
    xml = junit.read_text()
    assert 'errors="1" skipped="0"' in xml and 'failures="0"' in xml  # an error (could not run), not a failure
    assert f"{name} logits float32 y=0 grad: not evaluated" in xml
    sweep = runner().invoke(main, ["sweep", "--impl", f"hostile.py:{name}", *SMALL, "--csv", "s.csv"])
    assert_exit(sweep, 0)  # a sweep reports findings; the cases are error rows with the reason
    assert reason in sweep.stdout


def test_a_function_that_hangs_is_killed_after_the_time_limit(losses):
    result = runner().invoke(
        main,
        ["check", "--impl", "hostile.py:hangs", *SMALL, "--timeout", "1", "--baseline", "b.json", "--update-baseline"],
    )
    assert_exit(result, 4)  # a lost case can never become a baseline
    assert "did not finish within 1 s (--timeout)" in result.stderr
    assert not (losses / "b.json").exists()


def test_a_function_that_closes_stdout_changes_nothing(losses):
    result = runner().invoke(
        main, ["sweep", "--impl", "hostile.py:closes_stdout", "-f", "torch-bce-with-logits", *SMALL, "--csv", "-"]
    )
    assert_exit(result, 0)
    user, builtin = _figures(result.stdout, "closes_stdout"), _figures(result.stdout, "torch-bce-with-logits")
    assert [{**r, "formulation": ""} for r in user] == [{**r, "formulation": ""} for r in builtin]


def test_a_failing_rule_wins_over_a_lost_case(losses):
    (losses / "gate.toml").write_text('[[thresholds]]\nformulation = "max-abs"\nquantity = "grad"\nmax_ulp = 1\n')
    result = runner().invoke(
        main, ["check", "--config", "gate.toml", "--impl", "hostile.py:exits", "-f", "max-abs", *SMALL]
    )
    assert_exit(result, 1)  # a real regression is reported as one; the lost cases are listed too
    assert "not evaluated" in result.stdout


def test_a_sandbox_child_dies_with_its_parent(losses):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bce_audit", "sweep", "--impl", "hostile.py:hangs", *SMALL, "--timeout", "600"],
        cwd=losses,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        child = _wait_for(lambda: _live_descendants(proc.pid, 2))  # the fork server and the sandbox
        proc.kill()  # SIGKILL: no handler runs; the kernel must end the child
        proc.wait(30)
        _wait_for(lambda: not any(_alive(pid) for pid in child))
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if _alive(proc.pid) else None


def _descendants(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    for child in list(out):
        out |= _descendants(child)
    return out


def _live_descendants(pid: int, at_least: int) -> set[int] | None:
    """The live processes below ``pid`` once there are at least ``at_least`` of them."""
    alive = {p for p in _descendants(pid) if _alive(p)}
    return alive if len(alive) >= at_least else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, seconds: float = 60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_sigterm_ends_a_parallel_sweep_with_143_and_no_orphan(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("old\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bce_audit",
            "sweep",
            "-d",
            "float32",
            "--points",
            "40000",
            "--no-cache",
            "-j",
            "2",
            "--csv",
            str(csv),
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        workers = _wait_for(lambda: _live_descendants(proc.pid, 2))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "bce-audit: error: terminated" in err.decode()
        _wait_for(lambda: not any(_alive(p) for p in workers), 30)
        assert csv.read_text() == "old\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
    finally:
        if _alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- honest answers


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--range", "70000:80000", "-d", "float16"], ["range 70000:80000", "float16", "65504"]),
        (
            ["--range", "40:50", "-d", "float16", "--domain", "probabilities"],
            ["range 40:50", "float16", "probabilities"],
        ),
    ],
)
def test_an_empty_grid_is_an_error_naming_dtype_and_range(args, named):
    assert_usage_error(runner().invoke(main, ["sweep", "-f", "naive", *args]), *named)
    assert_usage_error(
        runner().invoke(main, ["check", "-f", "naive", *args, "--baseline", "b.json", "--update-baseline"])
    )


def test_a_case_with_no_point_never_passes_a_rule():
    from bce_audit.figures import CaseFigures
    from bce_audit.gate.interface import CaseKey, CaseRecord, ThresholdRule
    from bce_audit.gate.thresholds import evaluate_rule

    empty = CaseRecord(CaseFigures.none())
    rule = ThresholdRule(0, None, None, None, None, None, None, (("nan", 0),))
    outcome = evaluate_rule(rule, {CaseKey("f", "logits", "float32", 0.0, "loss"): empty})
    assert not outcome.passed and len(outcome.failures) == 1


def test_the_largest_finite_input_is_max_not_inf():
    from bce_audit.report import numbers

    big = 1.7976931348623157e308
    assert numbers.value(big, big) == "max" and numbers.value(-big, big) == "-max"
    for x in (big, -big, 3.4028234663852886e38, 65504.0, 9.99e307, 1e308):
        assert "inf" not in numbers.short(x) and "inf" not in numbers.compact(x) and "inf" not in numbers.figure(x)
    result = runner().invoke(
        main, ["sweep", "-f", "naive", "-d", "float64", "--domain", "logits", "--points", "50", "-v"]
    )
    assert_exit(result, 0)
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("naive  ") and "float64" in line]
    worst = [row[-1] for row in rows]
    assert len(worst) == 4 and "-max" in worst and not {"inf", "-inf"} & set(worst), worst


def test_error_figures_stay_finite():
    from bce_audit.sweep.metrics import ERROR_CAP, summarize, ulp_error
    from bce_audit.vocabulary import DType

    f64 = DType.FLOAT64.format
    assert ulp_error(np.array([1e-7]), np.array([0.0]), f64)[0] == ERROR_CAP  # 2e316 ULPs, written as a bound
    from bce_audit.vocabulary import Domain

    out, truth = np.array([1e-7, 1e-7, 0.5]), np.array([0.0, 0.0, 0.5])
    stats, _, _ = summarize(np.array([0.0, 1.0, 0.5]), out, truth, truth, f64, Domain.PROBABILITIES, 4.0)
    assert math.isfinite(stats.max_ulp) and math.isfinite(stats.mean_ulp) and math.isfinite(stats.max_rel_err)
    result = runner().invoke(
        main, ["sweep", "-f", "clipped", "-d", "float64", "--domain", "probabilities", "--csv", "-"]
    )
    assert_exit(result, 0)
    for row in read_csv(result.stdout)[1]:
        for figure in ("max_ulp", "p99_ulp", "mean_ulp", "max_rel_err"):
            assert row[figure] == "" or math.isfinite(float(row[figure])), row


def test_the_reference_is_named_where_users_look():
    for args in (["--help"], ["sweep", "--help"], ["list"]):
        result = runner().invoke(main, args)
        assert_exit(result, 0)
        assert "plain, unweighted BCE" in " ".join(result.stdout.split()), args
    result = runner().invoke(main, ["sweep", *TINY])
    assert "reference: the exact value of plain, unweighted BCE" in " ".join(result.stdout.split())


# --------------------------------------------------------------------------- the terminal


@pytest.mark.parametrize("columns", ["80", "40"])
def test_no_column_disappears_at_any_width(columns):
    result = runner().invoke(main, ["sweep", "--domain", "logits", "--points", "50", "-v"], env={"COLUMNS": columns})
    assert_exit(result, 0)
    text = result.stdout
    assert "…" not in text
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        assert dtype in text
    for header in ("max ulp", "p99 ulp", "mean ulp", "worst input"):
        assert header in text
    width = int(columns)
    too_wide = [line for line in text.splitlines() if len(line) > width and " " in line.strip()]
    assert not too_wide, too_wide


def test_piped_output_has_natural_width_tables():
    # not a terminal and no COLUMNS: the deliberate layout of logs and pipes, one whole table
    result = runner().invoke(main, ["sweep", "--domain", "logits", "--points", "50"], env={"COLUMNS": None})
    assert_exit(result, 0)
    header = next(line for line in result.stdout.splitlines() if line.startswith("formulation"))
    assert header.split() == ["formulation", "domain", "float16", "bfloat16", "float32", "float64"]


def test_check_wraps_at_the_console_width():
    result = runner().invoke(
        main, ["check", "--config", str(ROOT / "sample_configs" / "ci-gate.toml")], env={"COLUMNS": "80"}
    )
    assert_exit(result, 0)
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout


def test_the_legend_explains_every_status():
    result = runner().invoke(main, ["sweep", *TINY])
    text = " ".join(result.stdout.split())
    for explained in (
        "ok = within 4 ULPs",
        "inaccurate = more than 4 ULPs",
        "zero = 0 where",
        "inf = ±inf",
        "nan = NaN",
    ):
        assert explained in text


# --------------------------------------------------------------------------- user errors


def test_huge_points_is_a_usage_error():
    assert_usage_error(
        runner().invoke(main, ["sweep", "--points", "1000000000000"]), "points 1000000000000", "10,000,000"
    )


@pytest.mark.parametrize("where", ["config", "pyproject"])
def test_a_config_that_is_not_utf8_is_a_usage_error(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    if where == "config":
        (tmp_path / "c.toml").write_bytes(b"points = 5\n# caf\xe9\n")
        assert_usage_error(runner().invoke(main, ["sweep", "--config", "c.toml"]), "c.toml", "UTF-8")
    else:
        (tmp_path / "pyproject.toml").write_bytes(b"[tool.bce-audit]\n# caf\xe9\n")
        assert_usage_error(runner().invoke(main, ["sweep"]), "pyproject.toml", "UTF-8")


def test_a_function_that_switches_state_inside_a_pinned_run_reaches_no_built_in():
    """A sweep pins torch once around all its evaluations and built-ins skip their own pin: a
    function given to the API (run in this process, between built-ins) that turns on flush-denormal
    and anomaly mode must still reach no built-in evaluated after it, and the caller's state
    comes back at the end."""
    import torch

    import bce_audit

    @bce_audit.formulation(domain="logits")
    def switches(z, y):  # type: ignore[no-untyped-def]
        torch.set_flush_denormal(True)
        torch.autograd.set_detect_anomaly(True)
        return torch.clamp_min(z, 0) - y * z + torch.log1p(torch.exp(-torch.abs(z)))

    small = dict(dtypes="float32", domain="logits", points=200, labels=[0.0, 1.0])
    alone = bce_audit.audit("max-abs", **small).to_records()
    beside = bce_audit.audit([switches, "max-abs"], **small).to_records()
    assert [r for r in beside if r["formulation"] == "max-abs"] == alone
    assert torch.tensor(1.401298464324817e-45, dtype=torch.float32).mul(1).item() != 0
    assert not torch.is_anomaly_enabled()


def test_a_trusted_pin_inside_a_pin_costs_nothing_and_an_untrusted_one_restores_the_outer():
    import torch

    from bce_audit.engines import torch_state

    calls = []
    real = torch_state.capture

    def counting():  # type: ignore[no-untyped-def]
        calls.append(1)
        return real()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch_state, "capture", counting)
        with torch_state.pinned():
            outer = len(calls)
            with torch_state.pinned(trusted=True):
                pass
            assert len(calls) == outer  # nothing captured, nothing applied
            with torch_state.pinned():
                torch.set_flush_denormal(True)
            assert len(calls) > outer
            assert torch.tensor(1.401298464324817e-45, dtype=torch.float32).mul(1).item() != 0
        with torch_state.pinned(trusted=True):  # outside any pin, a trusted one pins too
            assert torch.get_num_threads() == 1


def test_the_flush_denormal_probe_is_right_when_first_made_while_flushing():
    """The probe's subnormal is made from its bits: made by converting the float while denormals
    were flushed, it held 0, and every later probe said 'flushing' (a pinned block then gave its
    caller flush-denormal on at exit, and a sweep ran built-ins with it)."""
    import torch

    from bce_audit.engines import torch_state

    torch_state._subnormal.cache_clear()
    torch.set_flush_denormal(True)
    try:
        assert torch_state.capture().flush_denormal
    finally:
        torch.set_flush_denormal(False)
    assert not torch_state.capture().flush_denormal


def test_a_function_of_another_engine_that_switches_torch_state_reaches_no_built_in():
    """A JAX function given to the API runs in this process outside torch's pin: if it turns on
    flush-denormal, the torch built-ins evaluated after it (which rely on the run's single pin)
    must still see the canonical state, point for point."""
    pytest.importorskip("jax", reason="the jax extra is not installed (pip install 'bce-audit[jax]')")
    import jax.numpy as jnp
    import torch

    import bce_audit

    @bce_audit.formulation(domain="logits", engine="jax")
    def flips(z, y):  # type: ignore[no-untyped-def]
        torch.set_flush_denormal(True)
        return jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))

    small = dict(dtypes="float32", domain="logits", points=400, labels=[0.0], cache=False, details=True)
    alone = [r for r in bce_audit.audit("max-abs", **small).point_records()]
    try:
        beside = [r for r in bce_audit.audit([flips, "max-abs"], **small).point_records()]
    finally:
        torch.set_flush_denormal(False)
    assert repr([r for r in beside if r["formulation"] == "max-abs"]) == repr(alone)
