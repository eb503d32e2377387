"""The time of one sweep per execution mode of the torch engine (--mode), and its ratio to eager.

The same grid (the dtypes and domains asked for, labels 0 and 1) and the same truth for every
mode: the truth table is computed once first (a warm cache in a temporary directory), so each
timing is the engine's work in that mode, the metrics and the failure map's refinement (which
re-evaluates in the same mode). Each mode runs in a sweep of its own (``modes=[mode]``).
compile is timed twice: the first sweep compiles its graphs (one per formulation, dtype and
domain), the second reuses them, as the rest of a long sweep would.

Run: python benchmarks/bench_modes.py [--points N] [-f NAME]... [-d DTYPE]... [--modes eager,vmap,...]
e.g. the default built-ins without compile, then compile on one formulation and dtype:
    python benchmarks/bench_modes.py --modes eager,vmap,autocast
    python benchmarks/bench_modes.py -f max-abs -d float32 --modes eager,compile
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000, help="points per (dtype, domain) grid (default 1000)")
    parser.add_argument("-f", "--formulation", action="append", help="formulations (default: the default set)")
    parser.add_argument("-d", "--dtype", action="append", help="dtypes (default: all four)")
    parser.add_argument("--modes", default="eager,vmap,autocast", help="comma list (default eager,vmap,autocast)")
    args = parser.parse_args()

    import bce_audit

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    kw = {"points": args.points, "dtypes": args.dtype, "labels": [0, 1], "jobs": 1}
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        bce_audit.audit(args.formulation, cache_dir=cache_dir, modes="eager", **kw)  # truth, warm-up
        print(f"truth and warm-up: {time.perf_counter() - start:.1f} s")
        times: dict[str, float] = {}
        for mode in modes:
            runs = 2 if mode == "compile" else 1
            for run in range(runs):
                start = time.perf_counter()
                result = bce_audit.audit(args.formulation, cache_dir=cache_dir, modes=mode, **kw)
                took = time.perf_counter() - start
                name = mode if runs == 1 else f"{mode} ({'first: compiles' if run == 0 else 'second: cached'})"
                times[name] = took
                errors = sum(c.error is not None for c in result.cases)
                print(f"{name:28} {took:8.1f} s  {len(result.cases)} cases, {errors} error")
        if "eager" in times:
            print("ratio to eager:")
            for name, took in times.items():
                print(f"  {name:26} {took / times['eager']:8.2f}x")


if __name__ == "__main__":
    main()
