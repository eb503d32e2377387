"""What refining the failure map costs: the default sweep (the API, in this process) with the
refinement off (the map from the samples alone, as before it existed) and on, with a cold and a
warm truth cache, and on at several numbers of candidates per step.

Prints wall and CPU seconds of each run and the ratios to the run without refinement, all measured
in one run on one machine (a shared machine makes wall time noisy: CPU time is steadier). Torch is
imported and warmed up before the first timed run.
Run: python benchmarks/bench_refine.py [--candidates 1,3,7,15,63] [--repeat N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="1,3,7,15,63", help="candidates per step to compare (warm cache)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs each")
    args = parser.parse_args()

    import bce_audit
    import bce_audit.sweep.refine as refine_module
    import bce_audit.sweep.run as run_module

    refine = run_module.refine
    bce_audit.audit("naive", dtypes="float16", cache=False)  # imports and warms torch

    def audit(cache_dir: str) -> Any:
        return bce_audit.audit(cache_dir=cache_dir)

    def best(fn: Callable[[], Any]) -> tuple[float, float, Any]:
        runs = [_timed(fn) for _ in range(args.repeat)]
        return min(runs, key=lambda r: r[1])

    rows: list[tuple[str, float, float, int]] = []
    with tempfile.TemporaryDirectory() as cache_dir:
        run_module.refine = lambda *a, **k: []  # type: ignore[assignment]
        wall, cpu, result = best(lambda: audit(cache_dir))  # cold for the grid's truth, then warm
        wall, cpu, result = best(lambda: audit(cache_dir))
        base_cpu = cpu
        rows.append(("refinement off, warm cache", wall, cpu, sum(len(c.failures) for c in result.cases)))
        run_module.refine = refine
        wall, cpu, result = _timed(lambda: audit(cache_dir))  # the refinement's truth is cold here
        rows.append(("refinement on, its truth cold", wall, cpu, sum(len(c.failures) for c in result.cases)))
        wall, cpu, result = best(lambda: audit(cache_dir))
        rows.append(("refinement on, warm cache", wall, cpu, sum(len(c.failures) for c in result.cases)))
        default = refine_module.CANDIDATES_PER_STEP
        for n in (int(v) for v in args.candidates.split(",")):
            refine_module.CANDIDATES_PER_STEP = n
            with tempfile.TemporaryDirectory() as fresh:
                audit(fresh)  # the grid's truth
                run_module.refine = lambda *a, **k: []  # type: ignore[assignment]
                audit(fresh)
                run_module.refine = refine
                wall, cpu, _ = _timed(lambda fresh=fresh: audit(fresh))  # type: ignore[misc]
                rows.append((f"{n} candidates per step, refinement's truth cold", wall, cpu, 0))
                wall, cpu, _ = best(lambda fresh=fresh: audit(fresh))  # type: ignore[misc]
                rows.append((f"{n} candidates per step, warm", wall, cpu, 0))
        refine_module.CANDIDATES_PER_STEP = default
    print(f"{'run':<52} {'wall s':>8} {'cpu s':>8} {'cpu ratio':>10} {'failing intervals':>18}")
    for name, wall, cpu, failing in rows:
        print(f"{name:<52} {wall:8.2f} {cpu:8.2f} {cpu / base_cpu:10.2f} {failing or '':>18}")


if __name__ == "__main__":
    main()
