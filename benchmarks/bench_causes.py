"""The cost of the failure map's causes (``--failures``, ``--json``, ``audit(causes=True)``): the
default sweep's time, then the time to explain every failing interval of it
(``explanation.failures.explain_failures``), and the ratio of the two.

The truth cache is warmed first (a temporary directory), so the sweep's time is the engines' work
and the refinement. The causes' time includes the first traced run's one-time import of
torch's dispatch machinery (``torch._dynamo``, about 2 s), which `bce-audit explain` pays too;
it is also reported apart, as the time of the first traced run.

With ``--compare FORMULATION``, that formulation's intervals are also explained one by one with
``explanation.run.explain_points`` (one traced run per interval, and its ``alone`` trace, as
`bce-audit explain` does), to show what grouping the points into one traced batch per case saves.
Run: python benchmarks/bench_causes.py [--compare naive]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", help="also explain this formulation's intervals one by one")
    args = parser.parse_args()

    import bce_audit
    from bce_audit.explanation import failures
    from bce_audit.explanation.failures import explain_failures, interval_point
    from bce_audit.explanation.run import Case, explain_points
    from bce_audit.formulations.selection import resolve

    with tempfile.TemporaryDirectory() as cache_dir:
        bce_audit.audit(cache_dir=cache_dir)  # warm the truth cache
        start = time.perf_counter()
        result = bce_audit.audit(cache_dir=cache_dir)
        sweep_s = time.perf_counter() - start

    runs: list[float] = []
    real_trace = failures.trace

    def timed_trace(*a: object, **kw: object) -> object:
        t = time.perf_counter()
        out = real_trace(*a, **kw)  # type: ignore[arg-type]
        runs.append(time.perf_counter() - t)
        return out

    failures.trace = timed_trace  # type: ignore[assignment]
    start = time.perf_counter()
    explained = explain_failures(result)
    causes_s = time.perf_counter() - start
    failures.trace = real_trace
    intervals = sum(len(c.failures) for c in explained.cases)
    print(f"default sweep: {len(result.cases)} cases, {intervals} failing intervals")
    print(f"sweep {sweep_s:.1f} s; causes {causes_s:.1f} s ({len(runs)} traced runs, the first {runs[0]:.1f} s)")
    ratio = 1 + causes_s / sweep_s
    print(f"per interval {1000 * causes_s / intervals:.1f} ms; sweep with causes / without: {ratio:.2f}")

    if args.compare:
        settings = result.settings
        formulation = {f.name: f for f in resolve(settings.selection, settings.functions)}[args.compare]
        mine = [c for c in result.cases if c.formulation == args.compare and c.failures]
        start = time.perf_counter()
        explain_failures(dataclasses.replace(result, cases=tuple(mine)))
        grouped_s = time.perf_counter() - start
        start = time.perf_counter()
        for c in mine:
            case = Case(formulation, c.domain, c.dtype, c.label, c.quantity)
            for iv in c.failures:
                explain_points(case, [interval_point(iv)], result.settings.ulp_threshold)
        single_s = time.perf_counter() - start
        n = sum(len(c.failures) for c in mine)
        print(
            f"{args.compare}: {n} intervals; grouped {grouped_s:.2f} s, one by one {single_s:.2f} s: "
            f"{single_s / grouped_s:.1f}x"
        )


if __name__ == "__main__":
    main()
