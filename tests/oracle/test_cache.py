"""The persistent truth cache and --jobs: neither may change a single result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, assert_exit, assert_usage_error, runner

from bce_audit.cli import main
from bce_audit.oracle import table as truth_table
from bce_audit.oracle.cache import _MAGIC, ORACLE_VERSION, TruthCache
from bce_audit.oracle.table import build_truth_table, evaluate_points
from bce_audit.settings import Settings
from bce_audit.sweep.grid import build_grid
from bce_audit.sweep.run import run_sweep
from bce_audit.vocabulary import Domain, DType, Sampling

SMALL = ["-f", "max-abs", "-f", "naive", "-d", "float16", "-d", "float32", "--points", "60"]


def _cache_files(root: Path) -> list[Path]:
    return sorted((root / f"oracle-v{ORACLE_VERSION}").glob("*.truth"))


def _sweep(args, tmp_path, *extra):
    csv = tmp_path / "out.csv"
    result = runner().invoke(main, ["sweep", *args, "--csv", str(csv), *extra])
    assert_exit(result, 0)
    return result, csv.read_text()


# --------------------------------------------------------------------------- the cache


def test_cache_round_trip_and_warm_run_computes_nothing(tmp_path):
    warnings = []
    cache = TruthCache(tmp_path, warn=warnings.append)
    grid = build_grid(DType.FLOAT16, Domain.LOGITS, 200, Sampling.BITS, 0).finite
    requests = [(Domain.LOGITS, 0.0, grid), (Domain.LOGITS, 1.0, grid)]
    cold, cold_work = build_truth_table(requests, cache=cache)
    assert cold_work.computed == cold_work.points == 2 * len(np.unique(grid.view(np.int64)))  # -0.0 is not 0.0
    assert len(_cache_files(tmp_path)) == 2
    warm, warm_work = build_truth_table(requests, cache=TruthCache(tmp_path))
    assert (warm_work.points, warm_work.computed) == (cold_work.points, 0)
    for y in (0.0, 1.0):
        assert warm.rows(Domain.LOGITS, y, grid).tobytes() == cold.rows(Domain.LOGITS, y, grid).tobytes()
        assert cold.rows(Domain.LOGITS, y, grid).tobytes() == evaluate_points(Domain.LOGITS, grid, y).tobytes()
    assert warnings == []


def test_cache_adds_new_points_to_what_it_has(tmp_path):
    cache = TruthCache(tmp_path)
    xs = np.linspace(-5, 5, 41)
    build_truth_table([(Domain.LOGITS, 0.5, xs[:20])], cache=cache)
    _, work = build_truth_table([(Domain.LOGITS, 0.5, xs)], cache=cache)
    assert work.computed == 21
    keys, rows = cache.load(Domain.LOGITS, 0.5)
    assert len(keys) == 41
    assert rows.tobytes() == evaluate_points(Domain.LOGITS, keys.view(np.float64), 0.5).tobytes()


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip a value":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) - 100])
    elif how == "garbage":
        path.write_bytes(b"\x00\x01garbage" * 10)
    elif how == "other oracle":
        head, rest = data[len(_MAGIC) :].split(b"\n", 1)
        header = json.loads(head)
        header["oracle"] = ORACLE_VERSION - 1
        path.write_bytes(_MAGIC + json.dumps(header).encode() + b"\n" + rest)
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["flip a value", "truncate", "garbage", "other oracle", "empty"])
def test_corrupt_cache_file_is_reported_and_recomputed(tmp_path, how):
    cache_dir = tmp_path / "cache"
    _, clean = _sweep([*TINY, "--cache-dir", str(cache_dir)], tmp_path)
    (victim,) = [p for p in _cache_files(cache_dir) if "y0000" in p.name]
    _corrupt(victim, how)
    result, again = _sweep([*TINY, "--cache-dir", str(cache_dir)], tmp_path)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("bce-audit: warning: ignoring corrupt cache file")
    assert victim.name in warnings[0]
    assert again == clean  # the corrupt values were not used
    # and the file was rewritten whole: the next run is silent
    result, third = _sweep([*TINY, "--cache-dir", str(cache_dir)], tmp_path)
    assert "warning" not in result.stderr
    assert third == clean


def test_no_cache_reads_and_writes_nothing(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("BCE_AUDIT_CACHE_DIR", str(cache_dir))
    _sweep(TINY, tmp_path, "--no-cache")
    assert not cache_dir.exists()
    _sweep(TINY, tmp_path)  # the environment variable picks the default place
    assert len(_cache_files(cache_dir)) == 2


def test_cache_dir_from_config_and_cache_off_in_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'cache_dir = "{tmp_path / "from-config"}"\n')
    _sweep([*TINY, "--config", str(cfg)], tmp_path)
    assert len(_cache_files(tmp_path / "from-config")) == 2
    cfg.write_text(f'cache = false\ncache_dir = "{tmp_path / "off"}"\n')
    _sweep([*TINY, "--config", str(cfg)], tmp_path)
    assert not (tmp_path / "off").exists()


def test_unwritable_cache_warns_once_and_the_sweep_goes_on(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = runner().invoke(main, ["sweep", *TINY, "--cache-dir", str(blocker)])
    assert_usage_error(result, "--cache-dir", str(blocker))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / f"oracle-v{ORACLE_VERSION}").write_text("a file where the directory should be")
    result = runner().invoke(main, ["sweep", *TINY, "--cache-dir", str(cache_dir)])
    assert_exit(result, 0)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot write the truth cache" in warnings[0], result.stderr
    assert "naive" in result.stdout


_WRITER = """
import sys
import numpy as np
from bce_audit.vocabulary import Domain
from bce_audit.oracle.cache import TruthCache
from bce_audit.oracle.table import evaluate_points
cache = TruthCache(sys.argv[1])
start = int(sys.argv[2])
for i in range(15):
    xs = np.arange(start + 10 * i, start + 10 * i + 10, dtype=np.float64) / 8
    cache.store(Domain.LOGITS, 0.0, xs.view(np.int64), evaluate_points(Domain.LOGITS, xs, 0.0))
"""


def test_two_processes_sharing_a_cache_never_corrupt_it(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(start)], stderr=subprocess.PIPE)
        for start in (0, 1000)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    warnings = []
    keys, rows = TruthCache(tmp_path, warn=warnings.append).load(Domain.LOGITS, 0.0)
    assert warnings == []
    # every entry that survived is right; the last writer's are all there
    assert rows.tobytes() == evaluate_points(Domain.LOGITS, keys.view(np.float64), 0.0).tobytes()
    assert len(keys) >= 150
    assert not list(tmp_path.rglob("*.tmp"))


# --------------------------------------------------------------------------- --jobs


def test_results_identical_for_any_number_of_jobs(monkeypatch, tmp_path):
    # force the process pool even for a small sweep
    monkeypatch.setattr(truth_table, "PARALLEL_MIN_POINTS", 1)
    _, one = _sweep([*SMALL, "--no-cache", "-j", "1"], tmp_path)
    _, three = _sweep([*SMALL, "--no-cache", "-j", "3"], tmp_path)
    assert one == three
    settings = Settings(formulations=("naive",), dtypes=(DType.FLOAT32,), points=80, labels=(0.0, 0.3, 1.0))
    calls = []
    a = run_sweep(settings, jobs=2, progress=lambda n, total: calls.append((n, total)))
    b = run_sweep(settings, jobs=1)
    assert sum(n for n, _ in calls) == a.truth_computed == a.truth_points
    for ca, cb in zip(a.cases, b.cases, strict=True):
        assert ca.figures == cb.figures


def test_jobs_must_be_positive():
    result = runner().invoke(main, ["sweep", *TINY, "-j", "0"])
    assert_usage_error(result, "--jobs", "0")


def test_negative_zero_key_beside_positive_keys_is_not_out_of_order(tmp_path):
    # -0.0's key is the smallest int64: a difference with a positive key would wrap around
    warnings = []
    xs = np.array([-0.0, 0.25])
    build_truth_table([(Domain.PROBABILITIES, 0.5, xs)], cache=TruthCache(tmp_path, warn=warnings.append))
    _, work = build_truth_table([(Domain.PROBABILITIES, 0.5, xs)], cache=TruthCache(tmp_path, warn=warnings.append))
    assert (work.computed, warnings) == (0, [])


@pytest.mark.parametrize("points", ["1e999", "-1", '"many"', "[[[[" * 2000 + "]]]]" * 2000])
def test_absurd_header_is_corrupt_not_a_crash(tmp_path, points):
    cache = TruthCache(tmp_path)
    xs = np.array([0.5, 1.5])
    build_truth_table([(Domain.LOGITS, 0.0, xs)], cache=cache)
    path = cache.path(Domain.LOGITS, 0.0)
    head, rest = path.read_bytes()[len(_MAGIC) :].split(b"\n", 1)
    text = head.decode().replace(f'"points": {2}', f'"points": {points}')
    assert text != head.decode()
    path.write_bytes(_MAGIC + text.encode() + b"\n" + rest)
    warnings = []
    _, work = build_truth_table([(Domain.LOGITS, 0.0, xs)], cache=TruthCache(tmp_path, warn=warnings.append))
    assert work.computed == 2
    assert len(warnings) == 1 and "ignoring corrupt cache file" in warnings[0]


def test_bad_jobs_and_cache_dir_in_the_config_name_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text("jobs = 0\n")
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--config", str(cfg)]), "config jobs", "0")
    cfg.write_text(f'cache_dir = "{blocker}"\n')
    assert_usage_error(runner().invoke(main, ["sweep", *TINY, "--config", str(cfg)]), "config cache_dir", str(blocker))


# --------------------------------------------------------------------------- kept crossings


def _crossing_files(root: Path) -> list[Path]:
    return sorted((root / f"oracle-v{ORACLE_VERSION}").glob("crossings-*.values"))


@pytest.mark.parametrize("dtype", [DType.FLOAT16, DType.FLOAT64], ids=str)
def test_kept_crossings_are_the_computed_ones_and_a_warm_grid_computes_none(tmp_path, monkeypatch, dtype):
    from bce_audit.oracle import crossings

    labels = [0.0, 1.0, 0.25]
    fresh = build_grid(dtype, Domain.LOGITS, 200, Sampling.BITS, 0, labels=labels).finite
    kept = build_grid(dtype, Domain.LOGITS, 200, Sampling.BITS, 0, labels=labels, cache=TruthCache(tmp_path)).finite
    assert len(_crossing_files(tmp_path)) == 1
    monkeypatch.setattr(crossings, "_crossing_inputs", lambda *a: pytest.fail("computed again"))
    warm = build_grid(dtype, Domain.LOGITS, 200, Sampling.BITS, 0, labels=labels, cache=TruthCache(tmp_path)).finite
    assert fresh.tobytes() == kept.tobytes() == warm.tobytes()
    # the labels are the key, in any order: another set is another file
    reordered = build_grid(
        dtype, Domain.LOGITS, 200, Sampling.BITS, 0, labels=[0.25, 1.0, 0.0], cache=TruthCache(tmp_path)
    )
    assert reordered.finite.tobytes() == fresh.tobytes()
    with pytest.raises(pytest.fail.Exception):
        build_grid(dtype, Domain.LOGITS, 200, Sampling.BITS, 0, labels=[0.5], cache=TruthCache(tmp_path))


@pytest.mark.parametrize("how", ["flip a value", "truncate", "garbage", "other oracle", "empty", "link"])
def test_corrupt_or_linked_crossings_are_reported_and_recomputed(tmp_path, how):
    cache_dir = tmp_path / "cache"
    _, clean = _sweep([*TINY, "--cache-dir", str(cache_dir)], tmp_path)
    victim = _crossing_files(cache_dir)[0]
    secret = tmp_path / "secret"
    if how == "link":
        secret.write_bytes(victim.read_bytes())
        victim.unlink()
        victim.symlink_to(secret)
    elif how == "other oracle":
        data = victim.read_bytes()
        victim.write_bytes(data.replace(f'"oracle": {ORACLE_VERSION}'.encode(), b'"oracle": 999'))
    else:
        _corrupt(victim, how)
    result, again = _sweep([*TINY, "--cache-dir", str(cache_dir)], tmp_path)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert victim.name in warnings[0]
    assert again == clean  # recomputed: the same grid, the same figures
    if how == "link":
        assert victim.is_symlink() or victim.is_file()
        assert secret.read_bytes() != b""  # the target was never written through


def test_a_warm_default_sweep_imports_no_mpmath_and_reports_it_when_asked(tmp_path):
    """With every truth point and crossing in the cache, the default sweep needs nothing of the
    oracle's arithmetic: mpmath is not imported (a tenth of a second of every everyday run); the
    JSON report still names its version, imported then."""
    code = (
        "import sys; from bce_audit.cli.app import main\n"
        "try: main(sys.argv[1:], standalone_mode=False)\n"
        "finally: print('MPMATH', 'mpmath' in sys.modules, file=sys.stderr)\n"
    )
    env = {**__import__("os").environ, "BCE_AUDIT_CACHE_DIR": str(tmp_path / "cache")}
    for expected in ("True", "False"):  # cold, then warm
        run = subprocess.run(
            [sys.executable, "-c", code, "sweep"], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr
        assert f"MPMATH {expected}" in run.stderr
    report = tmp_path / "r.json"
    run = subprocess.run(
        [sys.executable, "-c", code, "sweep", "--json", str(report)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(report.read_text())["provenance"]["mpmath"]


def _big_result(n: int) -> bytes:
    return bytes(n)


def test_an_abandoned_pool_shuts_down_though_a_worker_died_mid_result():
    """Ctrl-C during the parallel truth kills the workers. One killed while it sent a result left
    half a message in the result pipe, the pool's manager thread waited on the rest for good, and
    so did the shutdown (a sweep still there a minute after Ctrl-C, under load). _abandon closes
    this process's end of that pipe once the workers are dead, so the manager reads EOF and the
    shutdown ends. Results of 64 MB take a while to send: the kill lands mid-send."""
    import concurrent.futures
    import multiprocessing
    import threading
    import time

    for _ in range(3):
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork"))
        for _ in range(40):
            pool.submit(_big_result, 64_000_000)
        time.sleep(0.7)
        truth_table._abandon(pool)
        done = threading.Event()

        def shutdown(pool: concurrent.futures.ProcessPoolExecutor = pool, done: threading.Event = done) -> None:
            pool.shutdown(wait=True, cancel_futures=True)
            done.set()

        threading.Thread(target=shutdown, daemon=True).start()
        assert done.wait(30), "the pool's shutdown did not end"
