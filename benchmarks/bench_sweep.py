"""Wall time and peak memory of real `bce-audit sweep` runs, cold and warm truth cache.

Each figure is one `bce-audit` process started from the shell, as users run it (interpreter
start-up and imports included), with a fresh cache directory for the cold runs. Figures, not
assertions: compare ratios measured in one run on one machine.
Run: python benchmarks/bench_sweep.py [--exhaustive] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the largest process) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{err}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exhaustive", action="store_true", help="also time the 16-bit exhaustive sweep")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="default: the cores")
    args = parser.parse_args()

    cli = [sys.executable, "-m", "bce_audit"]
    env = dict(os.environ, CI="1", NO_COLOR="1")
    wall, _ = _run([sys.executable, "-c", "import torch"], env)
    print(f"{'python -c import torch:':<42}{wall:6.2f} s")
    wall, _ = _run([*cli, "--help"], env)
    print(f"{'bce-audit --help:':<42}{wall:6.2f} s")

    cache = Path(tempfile.mkdtemp(prefix="bce-audit-bench-"))
    try:
        env["BCE_AUDIT_CACHE_DIR"] = str(cache)
        runs = [("default sweep", [], False)]
        if args.exhaustive:
            config = ROOT / "sample_configs" / "exhaustive-16bit.toml"
            runs.append(("exhaustive 16-bit", ["--config", str(config)], True))
        for name, extra, both_jobs in runs:
            jobs = [1, args.jobs] if both_jobs and args.jobs > 1 else [args.jobs]
            for j in jobs:
                shutil.rmtree(cache, ignore_errors=True)
                wall, rss = _run([*cli, "sweep", *extra, "-j", str(j)], env)
                label = f"{name}, cold cache, -j {j}:"
                print(f"{label:<42}{wall:6.2f} s  peak {rss:5.0f} MB")
            wall, rss = _run([*cli, "sweep", *extra], env)
            label = f"{name}, warm cache:"
            print(f"{label:<42}{wall:6.2f} s  peak {rss:5.0f} MB")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
