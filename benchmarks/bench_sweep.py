"""Print timing figures for the sweep and the oracle (run: python benchmarks/bench_sweep.py).

Figures, not assertions: compare ratios measured in one run on one machine.
"""

from __future__ import annotations

import argparse
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exhaustive", action="store_true", help="also time the 16-bit exhaustive sweep")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import torch  # noqa: F401

    print(f"torch import:            {time.perf_counter() - t0:6.2f} s")

    import mpmath

    from bce_audit._types import FLOAT64, DType, Sampling
    from bce_audit.settings import Settings
    from bce_audit.sweep import run_sweep
    from bce_audit.truth import logit_truth, probability_truth

    formats = (DType.FLOAT32.format, FLOAT64)
    n = 5000
    t0 = time.perf_counter()
    for i in range(n):
        logit_truth((i - n / 2) * 0.0123, float(i & 1), formats)
    dt = time.perf_counter() - t0
    print(f"oracle, logits:          {n / dt:8.0f} loss+grad points/s (mpmath backend {mpmath.libmp.BACKEND})")
    t0 = time.perf_counter()
    for i in range(1, n):
        probability_truth(i / n, float(i & 1), formats)
    dt = time.perf_counter() - t0
    print(f"oracle, probabilities:   {n / dt:8.0f} loss+grad points/s")

    settings = Settings()
    t0 = time.perf_counter()
    result = run_sweep(settings)
    dt = time.perf_counter() - t0
    print(f"default sweep:           {dt:6.2f} s ({len(result.cases)} cases, {result.truth_points} truth points)")

    if args.exhaustive:
        settings = Settings(dtypes=(DType.FLOAT16, DType.BFLOAT16), sampling=Sampling.EXHAUSTIVE)
        t0 = time.perf_counter()
        result = run_sweep(settings)
        dt = time.perf_counter() - t0
        print(f"exhaustive 16-bit sweep: {dt:6.2f} s ({len(result.cases)} cases, {result.truth_points} truth points)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS:                {peak:6.0f} MB")


if __name__ == "__main__":
    main()
