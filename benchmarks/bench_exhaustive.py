"""Exhaustive float32: seconds per case over a range, and the extrapolation to wider ranges.

Runs ``sweep.exhaustive.exhaustive_cases`` for one formulation and one label over every float32
logit of --range (default 1:5, 18.9 million inputs), in one process, and, on the same chunks, the
vectorized oracle alone and the engine alone, so that the shares add up. Prints points/s and
the time that rate gives for --range -20:20 and for every finite float32 (per formulation and
label; a case pair loss + grad is one evaluation). An extrapolation, not a measurement: the rate
depends little on the range (the oracle's exact path is rarely taken).
Wall-clock seconds; the CPU time this process used is printed too (on a loaded machine the two
differ). Torch may use more than one thread.
Run: python benchmarks/bench_exhaustive.py [--range LO:HI] [--formulation NAME] [--label Y]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--range", default="1:5", help="logit range LO:HI (default 1:5)")
    parser.add_argument("--formulation", default="torch-logsigmoid")
    parser.add_argument("--label", type=float, default=0.0)
    args = parser.parse_args()
    lo, hi = (float(v) for v in args.range.split(":"))

    import numpy as np

    from bce_audit.engines import get_engine
    from bce_audit.formulations.builtins import get_formulation
    from bce_audit.oracle.vectorized import truth
    from bce_audit.sweep.exhaustive import FLOAT32, chunks, count_inputs, exhaustive_cases
    from bce_audit.vocabulary import Domain, DType

    f = get_formulation(args.formulation)
    engine = get_engine(f.engine)

    def evaluate(formulation, *rest):  # type: ignore[no-untyped-def]
        return engine.evaluate_grid(formulation, *rest)

    n = count_inputs(Domain.LOGITS, (lo, hi))
    start, cpu_start = time.perf_counter(), time.process_time()
    exhaustive_cases(Domain.LOGITS, [args.label], [f], evaluate, (lo, hi), 4.0)
    whole, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    oracle = engine_s = 0.0
    for xs in chunks(Domain.LOGITS, (lo, hi)):
        t = time.perf_counter()
        truth(Domain.LOGITS, xs, args.label, FLOAT32)
        oracle += time.perf_counter() - t
        t = time.perf_counter()
        engine.evaluate_grid(f, Domain.LOGITS, DType.FLOAT32, xs, np.empty(0), args.label)
        engine_s += time.perf_counter() - t
    rate = n / whole
    case = f"{args.formulation} y={args.label} float32 logits, range {lo}:{hi}"
    print(f"{case}: {n:,} inputs in {whole:.1f} s = {rate:,.0f} points/s (CPU time of this process {cpu:.1f} s)")
    rest = whole - oracle - engine_s
    print(f"  measured apart: vectorized oracle {oracle:.1f} s, engine {engine_s:.1f} s, figures etc. {rest:.1f} s")
    for name, bounds in (("--range -20:20", (-20.0, 20.0)), ("every finite float32", None)):
        m = count_inputs(Domain.LOGITS, bounds)
        print(f"  extrapolated, {name}: {m:,} inputs, {m / rate / 60:,.0f} min per formulation and label")


if __name__ == "__main__":
    main()
