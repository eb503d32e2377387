"""The oracle against a plain mpmath loop (mp.prec = 128, high-level mpf API, textbook formulas).

Prints, in one run: the throughput of the plain loop (rounding into float32 only) and of the
bce-audit oracle in one process (rounding into all four formats at once) on the same points,
timed alternately, best of --repeat; the oracle in one process and on all cores on a bigger set;
then how many points the plain loop rounds wrongly where the oracle is right (checked against
4,000-bit evaluations). No cache is involved.
Run: python benchmarks/bench_oracle.py [--points N] [--big N] [--jobs N] [--repeat N] [--one-label]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

VERBOSE = False


def plain_logit(mp, z: float, y: float):
    zz, yy = mp.mpf(z), mp.mpf(y)
    loss = max(zz, 0) - yy * zz + mp.log1p(mp.exp(-abs(zz)))
    grad = 1 / (1 + mp.exp(-zz)) - yy
    return loss, grad


def plain_probability(mp, p: float, y: float):
    pp, yy = mp.mpf(p), mp.mpf(y)
    loss = -(yy * mp.log(pp) + (1 - yy) * mp.log1p(-pp))
    grad = (pp - yy) / (pp * (1 - pp))
    return loss, grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=20000, help="points for the side-by-side run")
    parser.add_argument("--big", type=int, default=200000, help="points for the all-cores run")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings of each (default 3)")
    parser.add_argument(
        "--one-label",
        action="store_true",
        help="each input with one label (0, 1 or soft, in turn) instead of all three: nothing to share",
    )
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="processes (default: cores)")
    args = parser.parse_args()

    import mpmath

    from bce_audit.floats import round_float, round_to_format
    from bce_audit.oracle import table as truth_table
    from bce_audit.oracle.table import FORMATS, build_truth_table
    from bce_audit.sweep.grid import build_grid
    from bce_audit.vocabulary import Domain, DType, Sampling

    fmt = DType.FLOAT32.format
    rng = np.random.default_rng(1)
    soft = [round_float(float(v), fmt) for v in rng.uniform(0, 1, 8)]
    # as in a sweep, every input with every label: 0, 1 and one of 8 soft labels

    def make_points(n: int, seed: int) -> list:
        out = []
        for domain in Domain:
            grid = build_grid(DType.FLOAT32, domain, n // 6, Sampling.BITS, seed).finite
            for i, x in enumerate(grid.tolist()):
                if domain is Domain.PROBABILITIES and x in (0.0, 1.0):
                    continue  # limits: the plain formulas divide by zero there
                labels = (0.0, 1.0, soft[i % len(soft)])
                for y in labels[i % 3 : i % 3 + 1] if args.one_label else labels:
                    out.append((domain, x, y))
        return out

    def requests_of(pts: list) -> list:
        groups = {}
        for domain, x, y in pts:
            groups.setdefault((domain, y), []).append(x)
        return [(domain, y, np.array(xs)) for (domain, y), xs in groups.items()]

    def best_of(fn):
        # the best of several timings: what the code costs, not what the machine's neighbours do
        times, result = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return min(times), result

    points = make_points(args.points, 1)

    def rnd(v):
        s, m, e, _ = v._mpf_
        return round_to_format(s, int(m), e, fmt)

    mp = mpmath.mp

    def plain_loop():
        mp.prec = 128
        out = []
        for domain, x, y in points:
            f = plain_logit if domain is Domain.LOGITS else plain_probability
            loss, grad = f(mp, x, y)
            out.append((rnd(loss), rnd(grad)))
        return out

    # the oracle through the sweep's entry point (no cache), timed alternately with the plain loop
    requests = requests_of(points)
    t_plain = t_ours = math.inf
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        plain = plain_loop()
        t_plain = min(t_plain, time.perf_counter() - t0)
        t0 = time.perf_counter()
        table, _ = build_truth_table(requests, jobs=1)
        t_ours = min(t_ours, time.perf_counter() - t0)

    # every core, on a bigger set so that starting the workers does not dominate
    big = requests_of(make_points(args.big, 2))
    truth_table.PARALLEL_MIN_POINTS = 0
    t_big_one, _ = best_of(lambda: build_truth_table(big, jobs=1))
    t_big_all, (_, work) = best_of(lambda: build_truth_table(big, jobs=args.jobs))

    col_loss = FORMATS.index(fmt)
    col_grad = col_loss + len(FORMATS)
    ours = []
    for domain, x, y in points:
        row = table.rows(domain, y, np.array([x]))[0]
        ours.append((float(row[col_loss]), float(row[col_grad])))

    wrong_plain = wrong_ours = undecided = 0

    def on_boundary(v) -> bool:
        s, m, e, _ = v._mpf_
        m = int(m) << 8
        return round_to_format(s, m - 1, e - 8, fmt) != round_to_format(s, m + 1, e - 8, fmt)

    mp.prec = 4000
    for (domain, x, y), p_val, o_val in zip(points, plain, ours, strict=True):
        if p_val == o_val:
            continue
        f = plain_logit if domain is Domain.LOGITS else plain_probability
        ref_values = f(mp, x, y)
        if any(on_boundary(v) for v in ref_values):
            # the 4,000-bit value sits exactly on a rounding boundary: a term below 2^-4000
            # (e^-|z| for huge |z|) decides the rounding, and only its sign can tell
            undecided += 1
            continue
        ref = tuple(rnd(v) for v in ref_values)
        same = [(a == b and math.copysign(1, a) == math.copysign(1, b)) for a, b in zip(o_val, ref, strict=True)]
        wrong_ours += not all(same)
        if not all(same) and VERBOSE:
            print(domain, x, y, "ours", o_val, "plain", p_val, "ref", ref)
        wrong_plain += p_val != ref
    n = len(points)
    with_labels = "one of the labels 0, 1, soft" if args.one_label else "labels 0, 1 and a soft one"
    print(f"points: {n} (float32 logits and probabilities; each input with {with_labels})")
    print(f"best of {args.repeat}, plain and oracle timed alternately, no cache:")
    print(f"  plain mpmath loop, 128 bits, float32 only:  {n / t_plain:8.0f} points/s")
    print(f"  bce-audit oracle, 1 process, all 4 formats: {n / t_ours:8.0f} points/s  ratio {t_plain / t_ours:.2f}x")
    print(f"on {work.points} other points of the same kind:")
    print(f"  bce-audit oracle, 1 process:                {work.points / t_big_one:8.0f} points/s")
    print(
        f"  bce-audit oracle, {work.jobs} processes:              {work.points / t_big_all:8.0f} points/s  "
        f"ratio to the plain loop {(work.points / t_big_all) / (n / t_plain):.2f}x (worker start-up included)"
    )
    print(f"points the plain loop rounds wrongly: {wrong_plain}; the oracle: {wrong_ours}")
    print(f"points where even 4,000 bits sit on a rounding boundary (not counted): {undecided}")


if __name__ == "__main__":
    main()
