"""The vectorized oracle against the exact path, on the same float32 points, in one run.

Prints for each domain: points/s of ``oracle.vectorized.truth`` (float32 only: the estimate,
then the exact path for the unsettled points), of ``estimate`` rounding into all three narrow
formats, and of ``oracle.table.evaluate_points`` (the fast path and the reference: every format),
the ratio, and the share of points the vectorized path left to the exact path. Inputs are
float32 values uniform over bit patterns (every binade) plus a band of |z| < 40, each with the
labels 0, 1 and a soft one; best of --repeat, one process, no cache.
Run: python benchmarks/bench_vectorized.py [--points N] [--exact-points N] [--repeat N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def float32_points(n: int, seed: int, probabilities: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = bits.view(np.float32).astype(np.float64)
    z = np.concatenate([z[np.isfinite(z)], rng.uniform(-40, 40, n // 4).astype(np.float32).astype(np.float64)])
    return np.abs(z[np.abs(z) <= 1]) if probabilities else z


def best(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000, help="points for the vectorized path")
    parser.add_argument("--exact-points", type=int, default=20_000, help="points for the exact path")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings (default 3)")
    args = parser.parse_args()

    from bce_audit.oracle.table import evaluate_points
    from bce_audit.oracle.vectorized import NARROW, estimate, truth
    from bce_audit.vocabulary import Domain, DType

    f32 = DType.FLOAT32.format
    labels = [0.0, 1.0, float(np.float32(0.3))]
    print(f"labels {labels}, best of {args.repeat}")
    for domain in Domain:
        xs = float32_points(args.points, 1, domain is Domain.PROBABILITIES)
        small = xs[: args.exact_points]
        n, m = len(xs) * len(labels), len(small) * len(labels)
        t_truth = best(args.repeat, lambda d=domain, v=xs: [truth(d, v, y, f32) for y in labels])
        t_all = best(args.repeat, lambda d=domain, v=xs: [estimate(d, v, y, NARROW) for y in labels])
        t_exact = best(1, lambda d=domain, v=small: [evaluate_points(d, v, y) for y in labels])
        unsettled = sum(truth(domain, xs, y, f32)[4] for y in labels)  # what truth sent to the exact path
        v32, v_all, v_exact = n / t_truth, n / t_all, m / t_exact
        print(
            f"{domain}: vectorized float32 {v32:,.0f} points/s ({n:,} points, {unsettled:,} = "
            f"{unsettled / n:.2e} left to the exact path); vectorized 3 narrow formats {v_all:,.0f} points/s; "
            f"exact path (fast path + reference) {v_exact:,.0f} points/s ({m:,} points); "
            f"ratio {v32 / v_exact:,.0f}x (float32), {v_all / v_exact:,.0f}x (3 formats)"
        )


if __name__ == "__main__":
    main()
