"""The time of one sweep per engine: the same grid (every dtype, both domains, labels 0 and 1) and
the same truth, evaluated by a built-in of each engine, and the ratio of each to torch's.

The truth table is computed once, first (warm cache in a temporary directory), so the timings are
the engines' work: converting the grid, the loss, the gradient, the conversions back, and the
metrics (the same for all). Each engine is imported and warmed up before it is timed; its import
time is reported apart, on top of what was imported before it (torch by the truth sweep,
TensorFlow before Keras). An engine whose extra is not installed
is skipped with the pip command.
Run: python benchmarks/bench_engines.py [--points N] [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time

# engine -> a built-in of it, of the same formula family (the logit-native log-sigmoid form)
FORMULATIONS = {
    "torch": "torch-logsigmoid",
    "jax": "jax-logsigmoid",
    "tensorflow": "tf-sigmoid-ce",
    "keras": "keras-bce-logits",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1000, help="points per (dtype, domain) grid (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="sweeps per engine; the best is kept (default 3)")
    args = parser.parse_args()

    import bce_audit
    from bce_audit.engines import get_engine
    from bce_audit.errors import MissingExtra

    with tempfile.TemporaryDirectory() as cache_dir:

        def sweep(name: str) -> float:
            start = time.perf_counter()
            bce_audit.audit([name], points=args.points, cache_dir=cache_dir, labels=[0.0, 1.0])
            return time.perf_counter() - start

        sweep("torch-logsigmoid")  # the truth, once, into the cache
        times: dict[str, float] = {}
        for engine, name in FORMULATIONS.items():
            try:
                start = time.perf_counter()
                get_engine(engine).provenance()  # imports the framework (Keras too) and runs a first op
                first_import = time.perf_counter() - start
            except MissingExtra as exc:
                print(f"{engine:<11} skipped: {exc}")
                continue
            sweep(name)  # warm-up: first calls compile or trace kernels
            times[engine] = min(sweep(name) for _ in range(args.repeat))
            version = importlib.import_module({"keras": "keras", "tensorflow": "tensorflow"}.get(engine, engine))
            print(
                f"{engine:<11} {name:<18} best of {args.repeat}: {times[engine]:6.2f} s"
                f"  (import {first_import:5.2f} s, version {getattr(version, '__version__', '?')})"
            )
    base = times.get("torch")
    if base:
        print()
        print("sweep time relative to torch: " + ", ".join(f"{e} {t / base:.2f}x" for e, t in times.items()))


if __name__ == "__main__":
    main()
