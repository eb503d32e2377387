"""A hostile QA pass over the command line: every cheap attempt kept as a test.

Each test states the behaviour the tool must have; each began as an attack that broke it.

Classes: user code (the sandbox), timeouts, CLI values, configs, baselines, the filesystem, the
terminal and standard streams, signals, installed entry points. Everything is written under
tmp_path; nothing here reads or writes the user's cache (tests/conftest.py gives each test its
own).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import TINY, assert_exit, assert_usage_error, read_csv, runner

from bce_audit.cli import main

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["-d", "float32", "--domain", "logits", "-y", "0", "--points", "30"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _env(**extra) -> dict:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", PYTHONPATH=str(ROOT))
    env.pop("BCE_AUDIT_DEBUG", None)
    env.update(extra)
    return env


def _cli(*args, timeout=120, env=None, **popen) -> subprocess.CompletedProcess:
    """bce-audit in a fresh interpreter; output captured as text unless ``popen`` says otherwise."""
    kwargs = {"capture_output": True, "text": True, **popen}
    return subprocess.run(
        [sys.executable, "-m", "bce_audit", *map(str, args)], env=env or _env(), timeout=timeout, **kwargs
    )


def _rows(csv_text: str, name: str) -> list[dict]:
    return [r for r in read_csv(csv_text)[1] if r["formulation"] == name]


def _no_internal_error(result) -> None:
    text = result.stderr + result.output
    assert "internal error" not in text and "Traceback" not in text, text


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


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


# =========================================================================== user code

HOSTILE = """
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from bce_audit import formulation


def _bce(z, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")


@formulation(domain="logits")
def fine(z, y):
    return _bce(z, y)


@formulation(domain="logits")
def raises_keyboard_interrupt(z, y):
    raise KeyboardInterrupt


class Custom(BaseException):
    pass


@formulation(domain="logits")
def raises_base_exception(z, y):
    raise Custom("not an Exception")


@formulation(domain="logits")
def exits_zero(z, y):
    raise SystemExit(0)


@formulation(domain="logits")
def recurses(z, y):
    return recurses(z, y)


@formulation(domain="logits")
def other_dtype(z, y):
    return _bce(z.double(), y.double())


@formulation(domain="logits")
def other_shape(z, y):
    return _bce(z, y)[:-1]


@formulation(domain="logits")
def meta_device(z, y):
    return torch.empty(z.shape, dtype=z.dtype, device="meta")


@formulation(domain="logits")
def detached(z, y):
    return _bce(z, y).detach()


@formulation(domain="logits")
def not_a_tensor(z, y):
    return 3


@formulation(domain="logits")
def huge(z, y):
    return torch.zeros(20_000_000, dtype=z.dtype)


@formulation(domain="logits")
def flips_every_switch(z, y):
    torch.set_flush_denormal(True)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    torch.autocast("cpu", dtype=torch.bfloat16).__enter__()
    torch.autograd.set_detect_anomaly(True)
    np.seterr(all="raise")
    warnings.simplefilter("error")
    return _bce(z, y)


@formulation(domain="logits")
def mutates_inputs(z, y):
    with torch.no_grad():
        z.mul_(0)
        y.fill_(0.5)
    return _bce(z, y)


@formulation(domain="logits")
def prints_megabytes(z, y):
    sys.stdout.write("x" * (4 << 20))
    print("PRINTED-BY-USER")
    return _bce(z, y)


@formulation(domain="logits")
def moves_and_edits_env(z, y):
    os.chdir("/")
    os.environ["COLUMNS"] = "7"
    os.environ["BCE_AUDIT_CACHE_DIR"] = os.path.join(os.path.dirname(__file__), "evil-cache")
    return _bce(z, y)


@formulation(domain="logits")
def patches_torch(z, y):
    torch.nn.functional.binary_cross_entropy_with_logits = lambda *a, **k: a[0] * 0
    torch.log1p = lambda t: t * 0
    return _bce(z, y)


@formulation(domain="logits")
def ignores_sigterm_and_hangs(z, y):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


@formulation(domain="logits")
def kills_own_group(z, y):
    os.killpg(0, signal.SIGKILL)


@formulation(domain="logits")
def spawns_in_group(z, y):
    marker = os.path.join(os.path.dirname(__file__), "group.pid")
    if not os.path.exists(marker):
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open(marker, "w").write(str(p.pid))
    return _bce(z, y)


@formulation(domain="logits")
def spawns_detached(z, y):
    marker = os.path.join(os.path.dirname(__file__), "detached.pid")
    if not os.path.exists(marker):
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        open(marker, "w").write(str(p.pid))
    return _bce(z, y)


@formulation(domain="logits")
def forks_once(z, y):
    if not hasattr(forks_once, "done"):
        forks_once.done = True
        if os.fork() == 0:
            time.sleep(0.3)  # the copy answers the same request once more, a little later
    return _bce(z, y)


@formulation(domain="logits")
def slow_and_broken(z, y):
    time.sleep(1.5)
    return z * float("nan")
"""


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hostile.py").write_text(HOSTILE)
    return tmp_path


def test_function_raising_keyboard_interrupt_is_an_error_row(hostile):
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:raises_keyboard_interrupt", *SMALL])
    assert_exit(result, 0)
    assert "raises_keyboard_interrupt (2 cases): KeyboardInterrupt" in result.stdout


def test_function_raising_a_base_exception_is_an_error_row(hostile):
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:raises_base_exception", *SMALL])
    assert_exit(result, 0)
    assert "Custom: not an Exception" in result.stdout


def test_check_fails_a_rule_on_a_function_raising_keyboard_interrupt(hostile):
    (hostile / "gate.toml").write_text("[[thresholds]]\nnan = 0\n")
    result = runner().invoke(
        main, ["check", "--config", "gate.toml", "--impl", "hostile.py:raises_keyboard_interrupt", *SMALL]
    )
    _no_internal_error(result)
    assert_exit(result, 1)  # a case whose formulation raised fails every rule that selects it


def test_module_raising_keyboard_interrupt_at_import_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imp_kb.py").write_text("raise KeyboardInterrupt\n")
    assert_usage_error(runner().invoke(main, ["sweep", "--impl", "imp_kb.py:f@logits", *SMALL]), "imp_kb.py")


def test_list_with_a_module_raising_base_exception_at_import_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imp_base.py").write_text("class B(BaseException):\n    pass\n\nraise B('at import')\n")
    assert_usage_error(runner().invoke(main, ["list", "--impl", "imp_base.py:f@logits"]), "imp_base.py")


def test_module_calling_os_exit_at_import_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imp_exit.py").write_text("import os\nos._exit(0)\n")
    line = assert_usage_error(runner().invoke(main, ["sweep", "--impl", "imp_exit.py:f@logits", *SMALL]), "imp_exit.py")
    assert "exited with code 0" in line


def _small_grid_size() -> int:
    """The finite inputs of SMALL's one grid (float32 logits, 30 sampled, the special inputs and
    the threshold-crossing inputs for y = 0)."""
    from bce_audit.settings import Settings
    from bce_audit.sweep.run import grids
    from bce_audit.vocabulary import Domain, DType

    settings = Settings(
        formulations=("naive",), dtypes=(DType.FLOAT32,), domains=(Domain.LOGITS,), labels=(0.0,), points=30
    )
    (grid,) = grids(settings)
    return len(grid.finite)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("exits_zero", "RuntimeError: the function called sys.exit(0)"),
        ("recurses", "RecursionError: maximum recursion depth exceeded"),
        ("other_shape", "ValueError: returned shape ({n_minus_1},), expected ({n},)"),
        ("meta_device", "does not require grad"),
        ("detached", "does not require grad"),
        ("not_a_tensor", "TypeError: returned int, expected a torch.Tensor"),
        ("huge", "ValueError: returned shape (20000000,), expected ({n},)"),
    ],
)
def test_a_misbehaving_function_is_an_error_row_and_the_built_in_is_untouched(hostile, name, message):
    result = runner().invoke(main, ["sweep", "--impl", f"hostile.py:{name}", "-f", "max-abs", *SMALL, "--csv", "-"])
    assert_exit(result, 0)
    n = _small_grid_size()
    assert message.format(n=n, n_minus_1=n - 1) in result.stderr  # the report moved to stderr (--csv -)
    user = _rows(result.stdout, name)
    assert len(user) == 2 and all(r["points"] == "0" for r in user), user
    builtin = _rows(result.stdout, "max-abs")
    alone = runner().invoke(main, ["sweep", "-f", "max-abs", *SMALL, "--csv", "-"])
    assert builtin == _rows(alone.stdout, "max-abs") and len(builtin) == 2, builtin


def test_a_function_that_returns_another_dtype_is_audited_in_it(hostile):
    """float32 in, float64 out: not an error, a finding (the output is compared as it is)."""
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:other_dtype", *SMALL, "--json", "-"])
    assert_exit(result, 0)
    cases = json.loads(result.stdout)["cases"]
    assert len(cases) == 2 and all(c["error"] is None and c["output_dtype"] == "float64" for c in cases)
    assert all(c["points"] == _small_grid_size() for c in cases)


@pytest.mark.parametrize("name", ["flips_every_switch", "mutates_inputs", "prints_megabytes", "moves_and_edits_env"])
def test_user_code_does_not_change_the_built_ins(hostile, name):
    args = ["-f", "max-abs", "-f", "torch-bce-with-logits", "-d", "float32", "--domain", "logits", "--points", "100"]
    alone = runner().invoke(main, ["sweep", *args, "--csv", "-"])
    assert_exit(alone, 0)
    beside = runner().invoke(main, ["sweep", *args, "--impl", f"hostile.py:{name}", "--csv", "-"])
    assert_exit(beside, 0)
    for builtin in ("max-abs", "torch-bce-with-logits"):
        assert _rows(beside.stdout, builtin) == _rows(alone.stdout, builtin)
    assert "PRINTED-BY-USER" not in beside.stdout and "xxxx" not in beside.stdout
    assert not (hostile / "evil-cache").exists()


def test_a_function_that_changes_directory_does_not_move_the_outputs(hostile):
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:moves_and_edits_env", *SMALL, "--csv", "r.csv"])
    assert_exit(result, 0)
    header, rows = read_csv((hostile / "r.csv").read_text())
    assert header[0] == "formulation" and [r["points"] for r in rows] == [str(_small_grid_size())] * 2


def test_a_function_patching_torch_does_not_change_another_users_function(hostile):
    args = ["-d", "float32", "--domain", "logits", "-y", "0", "--points", "60", "--csv", "-"]
    alone = runner().invoke(main, ["sweep", "--impl", "hostile.py:fine", *args])
    beside = runner().invoke(main, ["sweep", "--impl", "hostile.py:patches_torch", "--impl", "hostile.py:fine", *args])
    assert_exit(alone, 0)
    assert_exit(beside, 0)
    assert _rows(beside.stdout, "fine") == _rows(alone.stdout, "fine")


def test_a_forking_function_cannot_make_check_pass_a_broken_one(hostile):
    (hostile / "gate.toml").write_text('[[thresholds]]\nformulation = "slow_and_broken"\nnan = 0\n')
    result = runner().invoke(
        main,
        [
            "check",
            "--config",
            "gate.toml",
            "--impl",
            "hostile.py:forks_once",
            "--impl",
            "hostile.py:slow_and_broken",
            *SMALL,
        ],
    )
    assert result.exit_code in (1, 4), result.stdout  # slow_and_broken returns NaN everywhere: never a pass
    assert "check passed" not in result.stdout


def test_a_function_ignoring_sigterm_is_killed_after_the_timeout(hostile):
    result = runner().invoke(
        main,
        [
            "check",
            "--impl",
            "hostile.py:ignores_sigterm_and_hangs",
            *SMALL,
            "--timeout",
            "1",
            "--baseline",
            "b.json",
            "--update-baseline",
        ],
    )
    assert_exit(result, 4)
    assert "did not finish within 1 s (--timeout)" in result.stderr
    assert not (hostile / "b.json").exists()


def test_a_function_killing_its_own_group_is_lost_not_a_crash(hostile):
    (hostile / "gate.toml").write_text("[[thresholds]]\nnan = 0\n")
    result = runner().invoke(main, ["check", "--config", "gate.toml", "--impl", "hostile.py:kills_own_group", *SMALL])
    assert_exit(result, 4)
    assert "killed by SIGKILL" in result.stdout


def test_a_subprocess_in_the_sandbox_group_ends_with_the_run(hostile):
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:spawns_in_group", *SMALL])
    assert_exit(result, 0)
    pid = int((hostile / "group.pid").read_text())
    try:
        end = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_detached_subprocess_does_not_outlive_the_run(hostile):
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:spawns_detached", *SMALL])
    assert_exit(result, 0)
    pid = int((hostile / "detached.pid").read_text())
    try:
        end = time.monotonic() + 3
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


# =========================================================================== --timeout


@pytest.mark.parametrize("value", ["1e10", "1e308"])
def test_a_huge_timeout_is_no_limit_or_a_usage_error(hostile, value):
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:fine", *SMALL, "--timeout", value])
    _no_internal_error(result)
    assert result.exit_code in (0, 2)
    if result.exit_code == 2:
        assert_usage_error(result, "--timeout")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_a_usage_error(value):
    line = assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--timeout", value]), "--timeout")
    assert "must be a number of seconds above 0 and at most 86400" in line


@pytest.mark.parametrize(("value", "code"), [("5", 0), ("0", 2), ("-1", 2), ("inf", 2), ("nan", 2)])
def test_the_config_can_set_the_timeout(tmp_path, monkeypatch, value, code):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(f"timeout = {value}\n")
    result = runner().invoke(main, ["sweep", "--config", "c.toml", *TINY])
    if code == 0:
        assert_exit(result, 0)
    else:
        line = assert_usage_error(result, "timeout")
        assert "must be a number of seconds above 0 and at most 86400" in line


# =========================================================================== CLI values


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-y", "nan"], "label nan"),
        (["-y", "inf"], "label inf"),
        (["-y", "-1e-300"], "outside [0, 1]"),
        (["-y", "1.0000000000000002"], "outside [0, 1]"),
        (["-y", "0x1p-3"], "'0x1p-3'"),
        (["--range", "nan:1"], "nan:1"),
        (["--range", "5:1"], "5:1"),
        (["--range", "1:1"], "1:1"),
        (["--range", "1:2:3"], "1:2:3"),
        (["--range", "inf:inf"], "inf:inf"),
        (["--points", "0"], "points"),
        (["--points", "-1"], "points"),
        (["--points", "100000000000000000000"], "10,000,000"),
        (["--ulp-threshold", "nan"], "ulp threshold"),
        (["--ulp-threshold", "-1"], "ulp threshold"),
        (["--seed", "-1"], "seed"),
        (["--jobs", "0"], "--jobs"),
        (["--jobs", "-3"], "--jobs"),
        (["-d", "float8"], "float8"),
        (["--range", "70000:80000"], "65504"),
    ],
)
def test_bad_values_are_one_line_usage_errors(args, named):
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, *args]), named)


def test_negative_zero_label_gives_the_figures_of_zero():
    zero = runner().invoke(main, ["sweep", *TINY, "-y", "0", "--csv", "-"])
    negative = runner().invoke(main, ["sweep", *TINY, "-y", "-0.0", "--csv", "-"])
    assert_exit(zero, 0)
    assert_exit(negative, 0)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "label"} for r in rows]  # noqa: E731
    assert strip(read_csv(negative.stdout)[1]) == strip(read_csv(zero.stdout)[1])
    assert len(read_csv(zero.stdout)[1]) == 2


def test_labels_equal_as_floats_are_swept_once():
    result = runner().invoke(main, ["sweep", *TINY, "-y", "0", "-y", "1e-400", "-y", "0.0", "--csv", "-"])
    assert_exit(result, 0)
    assert [(r["label"], r["quantity"]) for r in read_csv(result.stdout)[1]] == [("0.0", "loss"), ("0.0", "grad")]


def test_infinite_ulp_threshold_is_written_as_strict_json():
    result = runner().invoke(main, ["sweep", *TINY, "--ulp-threshold", "1e400", "--json", "-"])
    assert_exit(result, 0)
    doc = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["settings"]["ulp_threshold"] == "inf"


def test_a_huge_seed_is_deterministic():
    seed = str(2**200 + 1)
    first = runner().invoke(main, ["sweep", *TINY, "--seed", seed, "--csv", "-"])
    second = runner().invoke(main, ["sweep", *TINY, "--seed", seed, "--csv", "-"])
    assert_exit(first, 0)
    assert first.stdout == second.stdout and len(read_csv(first.stdout)[1]) == 4


def test_absurd_jobs_are_capped_or_refused(monkeypatch):
    import concurrent.futures

    asked = []
    real = concurrent.futures.ProcessPoolExecutor

    def pool(max_workers=None, **kwargs):
        asked.append(max_workers)
        return real(max_workers=min(max_workers or 1, 2), **kwargs)  # never really start thousands here

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", pool)
    args = ["sweep", "-f", "naive", "-d", "float32", "-y", "0", "--points", "16000", "--no-cache", "-j", "10000"]
    result = runner().invoke(main, args)
    if result.exit_code == 2:
        assert_usage_error(result, "--jobs")
        return
    assert_exit(result, 0)
    assert asked, "the sweep did not use a process pool"
    assert max(asked) <= (os.cpu_count() or 1), f"asked for {max(asked)} worker processes"


# =========================================================================== configs


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("\ufeffpoints = 50\n", "c.toml"),
        ("ulp_threshold = nan\n", "ulp threshold"),
        ("labels = [nan]\n", "label nan"),
        ("labels = [inf]\n", "label inf"),
        ("range = [nan, 1]\n", "range"),
        ("range = [1, 2, 3]\n", "range"),
        ('range = ["a", 2]\n', "range"),
        ("points = 1e400\n", "points"),
        ("points = 99999999999999999999999999\n", "10,000,000"),
        ("points = true\n", "points"),
        ("seed = -5\n", "seed"),
        ("jobs = 0\n", "jobs"),
        ('verbose = "yes"\n', "verbose"),
        ("pointz = 5\n", "'points'"),
        ('dtypes = "float16"\n', "dtypes"),
        ("[tool]\nx = 1\n", "'tool'"),
        ("[tolerance]\nmax_ulp = nan\n[[thresholds]]\nnan = 0\n", "max_ulp"),
    ],
)
def test_bad_config_values_are_one_line_usage_errors(tmp_path, monkeypatch, text, named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    args = ["-f", "naive", "--domain", "logits", "-d", "float16"]
    if "points" not in text:
        args += ["--points", "50"]
    assert_usage_error(runner().invoke(main, ["check", "--config", "c.toml", *args, "--baseline", "b.json"]), named)


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 5000 + "]" * 5000 + "\n",
        "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n",
        '[[formulations]]\ntarget = "naive"\nname = "n2"\nparameters = {eps = ' + "[" * 3000 + "]" * 3000 + "}\n",
    ],
    ids=["array", "inline-table", "parameter"],
)
def test_a_deeply_nested_config_is_a_usage_error(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.toml").write_text(text)
    assert_usage_error(runner().invoke(main, ["sweep", "--config", "deep.toml", *TINY]), "deep.toml")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_config_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "c.toml")
    try:
        proc = _cli("sweep", "--config", tmp_path / "c.toml", *TINY, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("bce-audit blocked on a FIFO named as the config")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "c.toml" in proc.stderr, proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_as_config_is_refused(tmp_path):
    import resource

    def limit():  # without it the unbounded read takes the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))

    proc = _cli("sweep", "--config", "/dev/zero", *TINY, timeout=60, preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("bce-audit: error:") and "/dev/zero" in proc.stderr


# =========================================================================== baselines


@pytest.fixture
def baseline(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    result = runner().invoke(main, ["check", *TINY, "--baseline", "good.json", "--update-baseline"])
    assert_exit(result, 0)
    return tmp_path / "good.json"


def _edit(path: Path, out: str, change) -> Path:
    text = change(path.read_text())
    target = path.parent / out
    target.write_text(text) if isinstance(text, str) else target.write_bytes(text)
    return target


@pytest.mark.parametrize(
    ("name", "change", "named"),
    [
        ("trunc.json", lambda t: t[: len(t) // 2], "not valid JSON"),
        (
            "dupkey.json",
            lambda t: t.replace('"schema_version": 1,', '"schema_version": 1, "schema_version": 1,', 1),
            "duplicate key",
        ),
        # the first case's max_ulp and points, whatever the run gave
        ("nan.json", lambda t: re.sub(r'"max_ulp": [0-9.e+]+', '"max_ulp": NaN', t, count=1), "NaN"),
        (
            "bigint.json",
            lambda t: re.sub(r'("error": null, "points": )\d+', r"\g<1>" + "9" * 5000, t, count=1),
            "not valid JSON",
        ),
        ("bom.json", lambda t: "\ufeff" + t, "BOM"),
        ("latin1.json", lambda t: t.replace('"naive"', '"na\u00efve"').encode("latin-1"), "not UTF-8"),
        ("array.json", lambda t: "[]", "expected a JSON object"),
        ("negcount.json", lambda t: t.replace('"zero": 0', '"zero": -1', 1), "zero"),
        ("fingerprint.json", lambda t: t.replace('"points": 50', '"points": 51', 1), "fingerprint"),
    ],
)
def test_hand_edited_baselines_are_one_line_usage_errors(baseline, name, change, named):
    broken = _edit(baseline, name, change)
    assert broken.read_bytes() != baseline.read_bytes()
    assert_usage_error(runner().invoke(main, ["check", *TINY, "--baseline", name]), name, named)


def test_a_duplicated_case_is_a_usage_error(baseline):
    doc = json.loads(baseline.read_text())
    doc["cases"].append(doc["cases"][0])
    (baseline.parent / "dup.json").write_text(json.dumps(doc))
    assert_usage_error(runner().invoke(main, ["check", *TINY, "--baseline", "dup.json"]), "dup.json", "appears twice")


def test_a_deeply_nested_baseline_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    assert_usage_error(runner().invoke(main, ["check", *TINY, "--baseline", "deep.json"]), "deep.json")


def test_a_baseline_that_is_a_directory_or_a_link_loop_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bd").mkdir()
    assert_usage_error(runner().invoke(main, ["check", *TINY, "--baseline", "bd"]), "bd", "directory")
    os.symlink("l2", tmp_path / "l1")
    os.symlink("l1", tmp_path / "l2")
    assert_usage_error(runner().invoke(main, ["check", *TINY, "--baseline", "l1"]), "l1")
    assert_usage_error(runner().invoke(main, ["check", *TINY, "--baseline", "l1", "--update-baseline"]), "l1")
    assert os.path.islink(tmp_path / "l1") and os.readlink(tmp_path / "l1") == "l2"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("update", [False, True])
def test_a_fifo_as_baseline_is_refused_not_waited_on(tmp_path, update):
    os.mkfifo(tmp_path / "b.json")
    args = ["check", *TINY, "--baseline", tmp_path / "b.json"] + (["--update-baseline"] if update else [])
    try:
        proc = _cli(*args, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("bce-audit blocked on a FIFO named as the baseline")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "b.json" in proc.stderr, proc.stderr


def test_a_baseline_cannot_inject_workflow_commands(baseline):
    doc = json.loads(baseline.read_text())
    case = dict(doc["cases"][0], formulation="evil\n::notice title=INJECTED::owned")
    doc["cases"].append(case)
    (baseline.parent / "inject.json").write_text(json.dumps(doc))
    args = ["check", *TINY, "--baseline", "inject.json", "--allow-missing", "--format", "github"]
    result = runner().invoke(main, args, env={"COLUMNS": None})  # a CI log: no terminal, natural width
    assert "check passed" in result.stdout or "check FAILED" in result.stdout or result.exit_code == 2
    assert not any(line.startswith("::notice title=INJECTED") for line in result.stdout.splitlines()), result.stdout


@pytest.mark.skipif(IS_ROOT, reason="root may write read-only files")
def test_update_onto_a_read_only_baseline_is_refused_before_the_sweep(baseline):
    baseline.chmod(0o444)
    before = baseline.read_bytes()
    try:
        assert_usage_error(
            runner().invoke(main, ["check", *TINY, "--points", "60", "--baseline", "good.json", "--update-baseline"]),
            "good.json",
            "permission denied",
        )
        assert baseline.read_bytes() == before
    finally:
        baseline.chmod(0o644)


def test_outputs_may_not_be_the_baseline_by_any_path(baseline):
    link = baseline.parent / "link.json"
    link.symlink_to(baseline)
    hard = baseline.parent / "hard.json"
    os.link(baseline, hard)
    before = baseline.read_bytes()
    for out in ("link.json", "hard.json", "./good.json", str(baseline)):
        result = runner().invoke(main, ["check", *TINY, "--baseline", "good.json", "--junit", out])
        assert_usage_error(result, "same file")
    assert baseline.read_bytes() == before


# =========================================================================== the filesystem


def test_an_output_may_not_overwrite_the_users_loss_file(hostile):
    source = (hostile / "hostile.py").read_text()
    result = runner().invoke(main, ["sweep", "--impl", "hostile.py:fine", *SMALL, "--csv", "hostile.py"])
    assert (hostile / "hostile.py").read_text() == source
    assert_usage_error(result, "hostile.py")


def test_an_output_path_ending_in_a_slash_is_not_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner().invoke(main, ["sweep", *TINY, "--csv", "newdir/"])
    assert not (tmp_path / "newdir").is_file()
    assert_usage_error(result, "newdir")


def test_an_error_naming_a_path_with_a_newline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--csv", "no\nsuch/r.csv"]), "--csv")


def test_an_output_that_is_a_link_loop_is_refused_before_the_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--csv", "loop1"]), "--csv loop1")


def test_a_dangling_link_output_is_written_through_and_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path / "target.csv", tmp_path / "link.csv")
    assert_exit(runner().invoke(main, ["sweep", *TINY, "--csv", "link.csv"]), 0)
    assert os.path.islink(tmp_path / "link.csv")
    header, rows = read_csv((tmp_path / "target.csv").read_text())
    assert header[0] == "formulation" and len(rows) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "target.csv"]


def test_a_dangling_link_into_a_missing_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path / "nodir" / "t.csv", tmp_path / "link.csv")
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--csv", "link.csv"]), "--csv link.csv", "does not exist")


def test_an_output_may_not_be_the_config_by_any_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text("points = 50\n")
    os.link(tmp_path / "c.toml", tmp_path / "hard.toml")
    (tmp_path / "sym.toml").symlink_to(tmp_path / "c.toml")
    (tmp_path / "sub").mkdir()
    for out in ("hard.toml", "sym.toml", "./c.toml", "sub/../c.toml", str(tmp_path / "c.toml")):
        result = runner().invoke(main, ["sweep", "--config", "c.toml", "-f", "naive", "-d", "float16", "--csv", out])
        assert_usage_error(result, "--config c.toml", "same file")
    assert (tmp_path / "c.toml").read_text() == "points = 50\n"


def test_two_outputs_through_a_linked_directory_are_one_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--csv", "a/r.csv", "--json", "b/r.csv"]), "same file")
    assert list((tmp_path / "a").iterdir()) == []


def test_a_directory_named_like_an_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.csv").mkdir()
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--csv", "out.csv"]), "--csv out.csv", "is a directory")
    (tmp_path / "afile").write_text("x")
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--json", "afile/r.json"]), "afile", "not a directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_output_with_a_reader_gets_the_report(tmp_path):
    fifo = tmp_path / "r.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    result = runner().invoke(main, ["sweep", *TINY, "--csv", str(fifo)])
    reader.join(30)
    assert_exit(result, 0)
    header, rows = read_csv(got[0])
    assert header[0] == "formulation" and len(rows) == 4
    assert fifo.is_fifo()


def test_a_cache_dir_that_is_a_file_is_refused_or_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfile").write_text("mine\n")
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--cache-dir", "cfile"]), "cfile")
    result = runner().invoke(main, ["sweep", *TINY], env={"BCE_AUDIT_CACHE_DIR": str(tmp_path / "cfile")})
    assert_exit(result, 0)  # the environment's cache is best effort: a warning, the run goes on
    assert "going on without it" in result.stderr
    assert (tmp_path / "cfile").read_text() == "mine\n"


@pytest.mark.skipif(IS_ROOT, reason="root may write into read-only directories")
def test_a_read_only_directory_is_refused_before_the_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        assert_usage_error(
            runner().invoke(main, ["sweep", *TINY, "--csv", "ro/r.csv"]), "ro/r.csv", "permission denied"
        )
    finally:
        (tmp_path / "ro").chmod(0o755)


# =========================================================================== the terminal and the streams


def test_columns_zero_still_prints_the_error():
    result = runner().invoke(main, ["sweep", *TINY, "--range", "5:1"], env={"COLUMNS": "0"})
    assert_usage_error(result, "5:1")


def test_columns_zero_still_prints_the_report():
    result = runner().invoke(main, ["sweep", *TINY], env={"COLUMNS": "0"})
    assert_exit(result, 0)
    assert "worst status and stable range" in result.stdout


@pytest.mark.parametrize("columns", ["1", "10", "abc", "-5", "999999999"])
def test_odd_widths_lose_no_column(columns):
    args = ["sweep", "-f", "naive", "-d", "float16", "-d", "float32", "--domain", "logits", "--points", "50", "-v"]
    result = runner().invoke(main, args, env={"COLUMNS": columns})
    assert_exit(result, 0)
    for word in ("float16", "float32", "max ulp", "p99 ulp", "mean ulp", "worst input", "cases,"):
        assert word in result.stdout, word


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_standard_output_does_not_lose_the_files(tmp_path):
    with open("/dev/full", "w") as full:
        proc = _cli(
            "sweep", *TINY, "--csv", tmp_path / "r.csv", stdout=full, capture_output=False, stderr=subprocess.PIPE
        )
    assert "internal error" not in (proc.stderr or "")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.csv").read_text().startswith("formulation,")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_check_with_a_full_standard_output_keeps_its_verdict(tmp_path):
    base = tmp_path / "b.json"
    assert _cli("check", *TINY, "--baseline", base, "--update-baseline").returncode == 0
    with open("/dev/full", "w") as full:
        proc = _cli(
            "check",
            *TINY,
            "--baseline",
            base,
            "--junit",
            tmp_path / "j.xml",
            stdout=full,
            capture_output=False,
            stderr=subprocess.PIPE,
        )
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr
    assert (tmp_path / "j.xml").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_usage_error_with_a_full_stderr_still_exits_2(tmp_path):
    with open("/dev/full", "w") as full:
        proc = _cli(
            "check",
            *TINY,
            "--range",
            "5:1",
            "--baseline",
            tmp_path / "b.json",
            stdout=subprocess.DEVNULL,
            stderr=full,
            capture_output=False,
        )
    assert proc.returncode == 2


def test_closed_standard_streams_keep_the_exit_codes(tmp_path):
    ok = _cli(
        "sweep",
        *TINY,
        "--csv",
        tmp_path / "r.csv",
        capture_output=False,
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(1),
    )
    assert ok.returncode == 0
    assert (tmp_path / "r.csv").read_text().startswith("formulation,")
    bad = _cli(
        "sweep",
        *TINY,
        "--range",
        "5:1",
        capture_output=False,
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(2),
    )
    assert bad.returncode == 2
    closed = _cli(
        "sweep", *TINY, "--csv", "-", capture_output=False, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1)
    )
    assert closed.returncode == 2 and "standard output is closed" in closed.stderr


# =========================================================================== signals


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_ctrl_c_to_the_process_group_during_parallel_truth(tmp_path):
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
            "400000",
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
        end = time.monotonic() + 60
        seen: set[int] = set()
        while time.monotonic() < end and len(seen) < 2:
            seen |= _descendants(proc.pid)
            time.sleep(0.05)
        assert len(seen) >= 2, "the truth's worker processes never showed up"
        time.sleep(0.5)
        seen |= _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.decode().splitlines() == ["bce-audit: error: interrupted"]
        time.sleep(1)
        assert not [p for p in seen if _alive(p)]
        assert csv.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
    finally:
        if _alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_repeated_ctrl_c_is_still_one_line_and_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "bce_audit", "sweep", "-d", "float32", "--points", "400000", "--no-cache", "-j", "2"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and len(_descendants(proc.pid)) < 2:
            time.sleep(0.05)
        assert len(_descendants(proc.pid)) >= 2, "the truth's worker processes never showed up"
        time.sleep(0.5)
        for _ in range(40):  # an impatient user
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=60)
        text = err.decode()
        assert proc.returncode == 130, (proc.returncode, text)
        assert "Traceback" not in text and text.splitlines()[-1:] == ["bce-audit: error: interrupted"], text
    finally:
        if _alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


# =========================================================================== installed entry points


def _entry_point_dir(tmp_path: Path, body: str) -> Path:
    site = tmp_path / "site"
    info = site / "acme_losses-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-losses\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[bce_audit.formulations]\nacme-ok = acme_ok:bce\nacme-broken = acme_broken:bce\nnaive = acme_ok:bce\n"
    )
    (site / "acme_ok.py").write_text(
        textwrap.dedent(
            """
            import torch
            from bce_audit import formulation

            @formulation(domain="logits")
            def bce(z, y):
                return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
            """
        )
    )
    (site / "acme_broken.py").write_text(body)
    return site


def test_a_broken_entry_point_is_listed_with_its_error(tmp_path):
    site = _entry_point_dir(tmp_path, "raise ImportError('acme is broken')\n")
    proc = _cli("list", env=_env(PYTHONPATH=f"{ROOT}{os.pathsep}{site}", COLUMNS="400"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ok = next(line for line in lines if line.startswith("acme-ok "))
    assert ok.split()[:5] == ["acme-ok", "logits", "torch", "entry", "point"] and "(acme-losses 0.3)" in ok
    broken = next(line for line in lines if line.startswith("acme-broken "))
    assert "acme is broken" in broken
    assert "ignored: the built-in 'naive' has this name" in proc.stdout


def test_an_entry_point_raising_keyboard_interrupt_is_listed_with_its_error(tmp_path):
    site = _entry_point_dir(tmp_path, "raise KeyboardInterrupt\n")
    proc = _cli("list", env=_env(PYTHONPATH=f"{ROOT}{os.pathsep}{site}", COLUMNS="400"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    broken = next(line for line in proc.stdout.splitlines() if line.startswith("acme-broken "))
    assert "KeyboardInterrupt" in broken


def test_the_finite_figures_of_a_function_returning_the_largest_float_stay_finite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.py").write_text(
        "import torch\nfrom bce_audit import formulation\n\n@formulation(domain='logits')\n"
        "def maxout(z, y):\n    return z * 0 + torch.finfo(z.dtype).max\n"
    )
    result = runner().invoke(
        main, ["sweep", "--impl", "big.py:maxout", "-d", "float64", "--domain", "both", "--csv", "-"]
    )
    assert_exit(result, 0)
    rows = read_csv(result.stdout)[1]
    assert len(rows) == 8
    for row in rows:
        for figure in ("max_ulp", "p99_ulp", "mean_ulp", "mean_bits", "max_rel_err"):
            assert row[figure] == "" or math.isfinite(float(row[figure])), (figure, row)
