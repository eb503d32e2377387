"""The everyday run against its floor: `bce-audit sweep` (no flags) beside `python -c "import torch"`.

Importing torch is the floor of any run that evaluates a torch formulation, and the figure the
default sweep is judged by (issue 10: at most 1.5x). Each figure is the best of N fresh
processes, started as users start them (interpreter start-up and imports included); the three
commands are timed in turn, round after round, so that a load that comes and goes on a shared
machine weighs on all of them alike. Cold: a fresh truth cache directory for each run (the
oracle computes every truth point); warm: a cache the first run filled. Figures, not
assertions: compare the ratios, measured in one run on one machine. The CPU time (user +
system) of each process is shown too: on a loaded machine it moves less than the wall time.

Bytecode: every command reads compiled bytecode, as from an installed package (pip compiles a
package's modules when it installs it). An environment that sets PYTHONDONTWRITEBYTECODE would
otherwise compile bce-audit's modules at every start (about 0.1 s) while torch's come compiled
from its wheel; so the commands run with a bytecode cache of their own (PYTHONPYCACHEPREFIX, in a
temporary directory, for torch's modules too), which a first run of each command fills.
Run: python benchmarks/bench_everyday.py [--rounds N] [--baseline DIR]
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


def _timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system, its children included) of one command, which
    must succeed."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a full pipe would block the child
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"{' '.join(args)} failed ({os.waitstatus_to_exitcode(status)}):\n{err.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="fresh processes per command (default: 7)")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a source tree of another revision (e.g. `git archive REV | tar -x -C DIR`), whose sweeps are "
        "timed in the same rounds (it runs with PYTHONPATH=DIR)",
    )
    args = parser.parse_args()

    # the working directory of every command too: `python -m` would prefer a source tree there
    base = Path(tempfile.mkdtemp(prefix="bce-audit-everyday-"))
    env = dict(os.environ, CI="1", NO_COLOR="1", PYTHONPYCACHEPREFIX=str(base / "bytecode"))
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sweep = [sys.executable, "-m", "bce_audit", "sweep"]
    trees: dict[str, dict[str, str]] = {"": env}
    if args.baseline is not None:
        trees["baseline "] = dict(env, PYTHONPATH=str(args.baseline.resolve()))
    # name -> (command, environment, truth cache directory or None)
    commands: dict[str, tuple[list[str], dict[str, str], Path | None]] = {
        "python -c 'import torch'": ([sys.executable, "-c", "import torch"], env, None)
    }
    for tree, tree_env in trees.items():
        for kind in ("warm", "cold"):
            commands[f"{tree}bce-audit sweep, {kind} truth cache"] = (sweep, tree_env, base / f"{tree}{kind}")
    best = dict.fromkeys(commands, float("inf"))
    best_cpu = dict.fromkeys(commands, float("inf"))
    try:
        for command, tree_env, cache in commands.values():  # fill the bytecode and warm truth caches
            _timed(command, tree_env if cache is None else dict(tree_env, BCE_AUDIT_CACHE_DIR=str(cache)), base)
        for _ in range(args.rounds):
            for name, (command, tree_env, cache) in commands.items():
                run_env = tree_env
                if cache is not None:
                    if cache.name.endswith("cold"):
                        shutil.rmtree(cache, ignore_errors=True)
                    run_env = dict(tree_env, BCE_AUDIT_CACHE_DIR=str(cache))
                wall, cpu = _timed(command, run_env, base)
                best[name], best_cpu[name] = min(best[name], wall), min(best_cpu[name], cpu)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    name = "python -c 'import torch'"
    floor, floor_cpu = best[name], best_cpu[name]
    print(f"best of {args.rounds} fresh processes each, timed in turn (wall; CPU: user + system):")
    for name in commands:
        wall, cpu = best[name], best_cpu[name]
        ratios = "" if commands[name][2] is None else f"  {wall / floor:.2f}x, CPU {cpu / floor_cpu:.2f}x"
        print(f"  {name + ':':<45}{wall:6.2f} s  CPU {cpu:5.2f} s{ratios}")


if __name__ == "__main__":
    main()
