"""The oracle against a plain mpmath loop (mp.prec = 128, high-level mpf API, textbook formulas).

Prints, in one run on the same points: the throughput of the plain loop (rounding into float32
only), of the bce-audit oracle in one process (rounding into all four formats at once), and of
the oracle on all cores; then how many points the plain loop rounds wrongly where the oracle is
right (checked against 4,000-bit evaluations). No cache is involved.
Run: python benchmarks/bench_oracle.py [--points N] [--jobs N]
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
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="processes (default: cores)")
    args = parser.parse_args()

    import mpmath

    from bce_audit import truth_table
    from bce_audit._rounding import round_float, round_to_format
    from bce_audit._types import Domain, DType, Sampling
    from bce_audit.grid import build_grid
    from bce_audit.truth_table import FORMATS, build_truth_table

    fmt = DType.FLOAT32.format
    rng = np.random.default_rng(1)
    soft = [round_float(float(v), fmt) for v in rng.uniform(0, 1, 8)]
    # as in a sweep, every input with every label: 0, 1 and one of 8 soft labels
    points = []
    for domain in Domain:
        grid = build_grid(DType.FLOAT32, domain, args.points // 6, Sampling.BITS, 1).finite
        for i, x in enumerate(grid.tolist()):
            if domain is Domain.PROBABILITIES and x in (0.0, 1.0):
                continue  # limits: the plain formulas divide by zero there
            for y in (0.0, 1.0, soft[i % len(soft)]):
                points.append((domain, x, y))

    def rnd(v):
        s, m, e, _ = v._mpf_
        return round_to_format(s, int(m), e, fmt)

    mp = mpmath.mp
    mp.prec = 128
    t0 = time.perf_counter()
    plain = []
    for domain, x, y in points:
        f = plain_logit if domain is Domain.LOGITS else plain_probability
        loss, grad = f(mp, x, y)
        plain.append((rnd(loss), rnd(grad)))
    t_plain = time.perf_counter() - t0

    # the oracle through the sweep's entry point (no cache): one process, then every core
    groups = {}
    for domain, x, y in points:
        groups.setdefault((domain, y), []).append(x)
    requests = [(domain, y, np.array(xs)) for (domain, y), xs in groups.items()]
    t0 = time.perf_counter()
    table, _ = build_truth_table(requests, jobs=1)
    t_ours = time.perf_counter() - t0
    truth_table.PARALLEL_MIN_POINTS = 0
    t0 = time.perf_counter()
    table_all, work = build_truth_table(requests, jobs=args.jobs)
    t_all = time.perf_counter() - t0

    col_loss = FORMATS.index(fmt)
    col_grad = col_loss + len(FORMATS)
    ours = []
    for domain, x, y in points:
        row = table.rows(domain, y, np.array([x]))[0]
        assert row.tobytes() == table_all.rows(domain, y, np.array([x]))[0].tobytes()
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
    print(f"points: {n} (float32 logits and probabilities; each input with labels 0, 1 and a soft one)")
    print(f"plain mpmath loop, 128 bits, float32 only:   {n / t_plain:8.0f} points/s")
    print(f"bce-audit oracle, 1 process, all 4 formats:  {n / t_ours:8.0f} points/s  ratio {t_plain / t_ours:.2f}x")
    print(
        f"bce-audit oracle, {work.jobs} processes, start-up included: {n / t_all:8.0f} points/s  "
        f"ratio {t_plain / t_all:.2f}x"
    )
    print(f"points the plain loop rounds wrongly: {wrong_plain}; the oracle: {wrong_ours}")
    print(f"points where even 4,000 bits sit on a rounding boundary (not counted): {undecided}")


if __name__ == "__main__":
    main()
