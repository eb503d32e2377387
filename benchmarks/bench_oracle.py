"""The oracle against a plain mpmath loop (mp.prec = 128, high-level mpf API, textbook formulas).

Prints throughput of both on the same points, in one run, and how many points the plain loop
rounds wrongly where the adaptive oracle is right (checked against 4,000-bit evaluations).
Run: python benchmarks/bench_oracle.py [--points N]
"""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument("--points", type=int, default=4000)
    args = parser.parse_args()

    import mpmath

    from bce_audit._rounding import round_float, round_to_format
    from bce_audit._types import Domain, DType, Sampling
    from bce_audit.grid import build_grid
    from bce_audit.truth import logit_truth, probability_truth

    fmt = DType.FLOAT32.format
    rng = np.random.default_rng(1)
    soft = [round_float(float(v), fmt) for v in rng.uniform(0, 1, 8)]
    points = []
    for domain in Domain:
        grid = build_grid(DType.FLOAT32, domain, args.points // 2, Sampling.BITS, 1).finite
        for i, x in enumerate(grid.tolist()):
            if domain is Domain.PROBABILITIES and x in (0.0, 1.0):
                continue  # limits: the plain formulas divide by zero there
            y = (0.0, 1.0, soft[i % len(soft)])[i % 3]
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

    t0 = time.perf_counter()
    ours = []
    for domain, x, y in points:
        f = logit_truth if domain is Domain.LOGITS else probability_truth
        t = f(x, y, (fmt,))
        ours.append((t.loss[0], t.grad[0]))
    t_ours = time.perf_counter() - t0

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
    print(f"points: {n} (float32 logits and probabilities, labels 0, 1 and soft)")
    print(f"plain mpmath loop, 128 bits: {n / t_plain:8.0f} points/s")
    print(f"bce-audit oracle (adaptive): {n / t_ours:8.0f} points/s  ratio {t_plain / t_ours:.2f}x")
    print(f"points the plain loop rounds wrongly: {wrong_plain}; the oracle: {wrong_ours}")
    print(f"points where even 4,000 bits sit on a rounding boundary (not counted): {undecided}")


if __name__ == "__main__":
    main()
