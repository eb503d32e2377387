"""Literal, synthetic data for the report and gate tests: no sweep runs, every number is written out.

The builders make the objects the renderers and the gate consume, from literal figures:

* ``figures(...)``: a case's CaseFigures (a clean case, with the given fields changed);
* ``case(...)``: a CaseResult with those figures, or an error (the formulation raised), or lost;
* ``result(cases)``: an AuditResult with fixed settings, provenance and elapsed time, so that every
  report of it is the same text on every machine;
* ``key(...)`` and ``record(...)``: what the gate knows of a case (CaseKey, CaseRecord);
* ``rules(...)`` and ``verdict(...)``: threshold rules parsed from their config tables, and a Verdict
  built by the gate's own evaluate_rules and compare from them.

The awkward values (NaN figures, ±max inputs, subnormals, the largest float64 as an error figure, a
label of 0.1 + 0.2, messages with ``|``, ``<``, ``%``, newlines and control characters) are named
below so that the tests say which one they use.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np

from bce_audit.figures import CaseFigures
from bce_audit.floats import position
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.formulations.user import UserFormulationSpec
from bce_audit.gate.compare import compare
from bce_audit.gate.interface import BaselineUpdate, CaseRecord, ThresholdRule, Tolerance, Verdict
from bce_audit.gate.thresholds import evaluate_rules, parse_rules
from bce_audit.gate.tolerance import ZERO_TOLERANCE
from bce_audit.settings import Settings
from bce_audit.sweep.result import AuditResult, CaseKey, CaseResult, FailureInterval, NonFinitePoint, PointDetails
from bce_audit.vocabulary import Domain, DType, Quantity, Status

NAN = math.nan
INF = math.inf

# the largest finite value of each dtype (a report writes them `max`)
F16_MAX = 65504.0
F32_MAX = 3.4028234663852886e38
F64_MAX = 1.7976931348623157e308  # also the cap of every error figure
# the smallest subnormal of each dtype
F16_TINY = 5.960464477539063e-08
F32_TINY = 1.401298464324817e-45
F64_TINY = 5e-324

LABEL = 0.30000000000000004  # 0.1 + 0.2: never to be written as 0.3
ODD = "_my.bce+v2-rc"  # a user's formulation: every kind of character a name may hold
# A formulation's error message as a sweep records it: one line (errors.describe joins the lines),
# but every other character kept: markup, '|', '%', '&', quotes and a control character (BEL).
NASTY = 'ValueError: bad | <input> at 100% & "x" \x07'
# Text from files, where nothing made it one line: an error message read from a baseline, a rule's
# name in a config (a TOML string may hold any of it).
NASTY_LINES = "RuntimeError: 50% | <b>\nline two,\r\nline: three\x01"
LOST = "killed by SIGKILL (out of memory?): the process running it died"

PROVENANCE = {
    "bce_audit": "0.1.0",
    "torch": "2.13.0+cpu",
    "numpy": "2.4.6",
    "mpmath": "1.3.0",
    "mpmath_backend": "gmpy",
    "python": "3.11.7",
    "cpu_capability": "AVX512",
    "platform": "Linux-synthetic",
    "device": "cpu",
}
ELAPSED_S = 12.3456  # shown as 12.3 s, written as 12.346


def figures(**changes: float) -> CaseFigures:
    """A clean float32 case on logits (every point ok, the stable range every finite value), with
    ``changes`` on top."""
    clean = CaseFigures(
        points=1010,
        ok=1010,
        inaccurate=0,
        inf=0,
        nan=0,
        zero=0,
        nonfinite=0,
        max_ulp=1.0,
        p99_ulp=1.0,
        mean_ulp=0.031683168316831684,
        mean_bits=0.031683168316831684,
        max_rel_err=1.1920928955078125e-07,
        worst_input=-19.151866912841797,
        stable_lo=-F32_MAX,
        stable_hi=F32_MAX,
    )
    return dataclasses.replace(clean, **changes)


def key(
    formulation: str = "max-abs",
    domain: str = "logits",
    dtype: str = "float32",
    label: float = 0.0,
    quantity: str = "loss",
) -> CaseKey:
    return CaseKey(formulation, domain, dtype, label, quantity)


def named(k: CaseKey) -> tuple[str, str, str, float, str]:
    """The positional arguments of ``case`` that name ``k``: its five fields (the variant
    dimensions go by keyword)."""
    return (k.formulation, k.domain, k.dtype, k.label, k.quantity)


def point(input: float, output: float, truth: float, status: str, error: str | None = None) -> NonFinitePoint:
    """A ±inf or NaN input with its result."""
    return NonFinitePoint(input, output, truth, Status(status), error)


def details(*rows: tuple[float, float, float, float, str]) -> PointDetails:
    """Per-point data: one (input, output, truth, ulp_error, status) per point."""
    inputs, outputs, truth, ulps, statuses = zip(*rows, strict=True)
    as_float = lambda values: np.array(values, dtype=np.float64)  # noqa: E731
    return PointDetails(as_float(inputs), as_float(outputs), as_float(truth), as_float(ulps), np.array(statuses))


_CLEAN = object()


def case(
    formulation: str = "max-abs",
    domain: str = "logits",
    dtype: str = "float32",
    label: float = 0.0,
    quantity: str = "loss",
    figs: CaseFigures | object = _CLEAN,
    *,
    error: str | None = None,
    lost: str | None = None,
    nonfinite: Iterable[NonFinitePoint] = (),
    details: PointDetails | None = None,
    parameters: str = "",
    mode: str = "eager",
    device: str = "cpu",
    failure_map: Iterable[FailureInterval] = (),
    stable_but_centre: bool = False,
) -> CaseResult:
    """A case with ``figs`` (a clean case by default), or none when it raised (``error``) or was
    lost (``lost``; the error then holds the same text, as a sweep records it)."""
    if lost is not None:
        error = lost
    if error is not None:
        figs = None
    elif figs is _CLEAN:
        figs = figures()
    return CaseResult(
        formulation,
        Domain(domain),
        DType(dtype),
        label,
        Quantity(quantity),
        figs,  # type: ignore[arg-type]
        nonfinite=tuple(nonfinite),
        error=error,
        details=details,
        lost=lost,
        parameters=parameters,
        mode=mode,
        device=device,
        failure_map=tuple(failure_map),
        stable_but_centre=stable_but_centre,
    )


def interval(
    status: str, lo: float, hi: float, *, exact: tuple[bool, bool] = (True, True), **changes: float
) -> FailureInterval:
    """A float32 failure map's interval: evaluated at its two ends only unless ``evaluated`` is
    given; its count of floats by bit-pattern arithmetic."""
    floats = int(np.diff(position(np.array([lo, hi]), DType.FLOAT32.format))[0]) + 1
    fields = {"evaluated": min(2, floats), "worst_input": NAN, "worst_ulp": NAN, **changes}
    return FailureInterval(Status(status), lo, hi, exact[0], exact[1], floats, **fields)  # type: ignore[arg-type]


def settings(cases: Iterable[CaseResult] = (), **changes) -> Settings:
    """Settings that plan exactly the formulations, dtypes, domains and labels of ``cases`` (each in
    its canonical order); a name that is no built-in is a user's formulation on logits."""
    cases = list(cases)
    names = tuple(dict.fromkeys(c.formulation for c in cases))
    kw = dict(
        formulations=names,
        user_formulations=tuple(
            UserFormulationSpec(n, f"losses.py:{n.replace('.', '_')}", Domain.LOGITS)
            for n in names
            if n not in BUILTINS
        ),
        dtypes=tuple(d for d in DType if any(c.dtype is d for c in cases)),
        domains=tuple(d for d in Domain if any(c.domain is d for c in cases)),
        labels=tuple(sorted({c.label for c in cases})),
        points=1000,
        seed=0,
    )
    return Settings(**(kw | changes))


def result(cases: Iterable[CaseResult], **setting_changes) -> AuditResult:
    """An AuditResult of ``cases`` with fixed settings (see ``settings``), provenance and time."""
    cases = tuple(cases)
    return AuditResult(
        settings=settings(cases, **setting_changes),
        cases=cases,
        provenance_source=lambda: dict(PROVENANCE),
        elapsed_s=ELAPSED_S,
        truth_points=len(cases) * 1010,
        truth_computed=len(cases) * 1010,
    )


def record(*, error: str | None = None, lost: str | None = None, **changes: float) -> CaseRecord:
    """What the gate knows of a case: the figures (a clean case with ``changes``), or none when it
    raised or was lost (as ``CaseRecord.of`` makes them)."""
    if lost is not None:
        return CaseRecord(CaseFigures.none(), error=lost, lost=lost)
    if error is not None:
        return CaseRecord(CaseFigures.none(), error=error)
    return CaseRecord(figures(**changes))


def rules(*tables: Mapping, where: str = "gate.toml") -> tuple[ThresholdRule, ...]:
    """Threshold rules from their `[[thresholds]]` tables, parsed as a config's are."""
    return parse_rules([dict(t) for t in tables], where)


def verdict(
    run: Mapping[CaseKey, CaseRecord],
    rule_tables: Iterable[Mapping] = (),
    baseline: Mapping[CaseKey, CaseRecord] | None = None,
    *,
    tolerance: Tolerance | None = None,
    allow_missing: bool = False,
    config: str | None = "gate.toml",
    baseline_path: str = "base.json",
    warnings: tuple[str, ...] = (),
) -> Verdict:
    """The verdict on ``run``: the rules evaluated and the baseline compared by the gate itself."""
    rule_tables = list(rule_tables)
    outcomes = evaluate_rules(rules(*rule_tables, where=config or "config"), dict(run)) if rule_tables else ()
    tolerance = Tolerance() if tolerance is None else tolerance
    comparisons = () if baseline is None else compare(dict(baseline), dict(run), tolerance, allow_missing)
    return Verdict(
        rules=outcomes,
        comparisons=comparisons,
        cases_checked=len(run),
        config=config if rule_tables else None,
        baseline=None if baseline is None else baseline_path,
        tolerance=None if baseline is None else tolerance,
        warnings=warnings,
        lost=tuple((k, r.lost) for k, r in run.items() if r.lost is not None),
    )


# --------------------------------------------------------------------------- the data sets of the golden files

# the cases of the data sets
LOSS_0 = key("max-abs", "logits", "float32", 0.0, "loss")
GRAD_0 = key("max-abs", "logits", "float32", 0.0, "grad")
LOSS_LABEL = key("max-abs", "logits", "float32", LABEL, "loss")
F16_GRAD_1 = key("max-abs", "logits", "float16", 1.0, "grad")
NAIVE_LOSS = key("naive", "probabilities", "float16", 0.0, "loss")
NAIVE_GRAD = key("naive", "probabilities", "float16", LABEL, "grad")
ODD_LOSS = key(ODD, "logits", "float32", 0.0, "loss")
ODD_GRAD = key(ODD, "logits", "float32", 0.0, "grad")
ODD_LOST = key(ODD, "logits", "float64", 1.0, "loss")
ODD_LOST_GRAD = key(ODD, "logits", "float64", 1.0, "grad")
LOGSIGMOID = key("torch-logsigmoid", "logits", "float32", 0.0, "loss")
LOGSIGMOID_GRAD = key("torch-logsigmoid", "logits", "float32", 0.0, "grad")
WITH_LOGITS = key("torch-bce-with-logits", "logits", "float64", 1.0, "grad")
RETIRED = key("retired", "probabilities", "bfloat16", 0.5, "loss")

# Their figures (changes to a clean case). GRAD_0 is max-abs's autograd gradient at z = ±0 for
# y = 0: 1 where the exact value is 0.5, 2^23 ULPs off; no stable range since the centre is wrong.
GRAD_0_FIGURES = dict(
    ok=990,
    inaccurate=20,
    max_ulp=8388608.0,
    mean_ulp=166111.04950495049,
    mean_bits=0.4554455445544554,
    max_rel_err=1.0,
    worst_input=-0.0,
    stable_lo=NAN,
    stable_hi=NAN,
)
# a zero, a p99 just below 1, a subnormal worst input, a stable range up to a finite value
LOSS_LABEL_FIGURES = dict(
    ok=1009,
    zero=1,
    max_ulp=4.5,
    p99_ulp=0.99951171875,
    mean_ulp=0.5,
    mean_bits=0.125,
    max_rel_err=5.960464477539063e-08,
    worst_input=F32_TINY,
    stable_hi=88.72283935546875,
)
# every status, the largest float64 as an error figure, the dtype's max as the worst input
F16_GRAD_1_FIGURES = dict(
    ok=1000,
    inaccurate=5,
    inf=2,
    nan=1,
    zero=2,
    nonfinite=1,
    max_ulp=F64_MAX,
    p99_ulp=512.0,
    mean_ulp=1.7798942919428867e305,
    mean_bits=0.3,
    max_rel_err=F64_MAX,
    worst_input=F16_MAX,
    stable_lo=-11.0859375,
    stable_hi=11.0859375,
)
# NaN at every point: the ULP figures undefined, 16 bits of error each
NAIVE_LOSS_FIGURES = dict(
    ok=0,
    nan=1010,
    nonfinite=1,
    max_ulp=NAN,
    p99_ulp=NAN,
    mean_ulp=NAN,
    mean_bits=16.0,
    max_rel_err=NAN,
    worst_input=0.5,
    stable_lo=NAN,
    stable_hi=NAN,
)
# exact everywhere: no worst input; a stable range from a subnormal to just below 1
NAIVE_GRAD_FIGURES = dict(
    max_ulp=0.0,
    p99_ulp=0.0,
    mean_ulp=0.0,
    mean_bits=0.0,
    max_rel_err=0.0,
    worst_input=NAN,
    stable_lo=F16_TINY,
    stable_hi=0.99951171875,
)


def awkward_result() -> AuditResult:
    """Ten cases with every awkward value a report must write (see the figures above), two cases
    that raised with a nasty message, two lost ones, ±inf and NaN inputs with their results, and
    per-point details (±max, -0.0, subnormals, inf, NaN)."""
    return result(
        [
            case(
                *named(LOSS_0),
                nonfinite=[point(INF, INF, INF, "ok"), point(-INF, 0.0, 0.0, "ok"), point(NAN, NAN, NAN, "ok")],
                details=details(
                    (-F32_MAX, 0.0, 0.0, 0.0, "ok"),
                    (-0.0, 0.6931471824645996, 0.6931471805599453, 0.031954796984791756, "ok"),
                    (F32_TINY, 0.6931471824645996, 0.6931471805599453, 0.031954796984791756, "ok"),
                    (F32_MAX, F32_MAX, F32_MAX, 0.0, "ok"),
                    (INF, INF, INF, NAN, "ok"),
                    (NAN, NAN, NAN, NAN, "ok"),
                ),
            ),
            case(*named(GRAD_0), figures(**GRAD_0_FIGURES)),
            case(*named(LOSS_LABEL), figures(**LOSS_LABEL_FIGURES)),
            case(
                *named(F16_GRAD_1),
                figures(**F16_GRAD_1_FIGURES),
                nonfinite=[point(INF, NAN, 0.0, "nan"), point(-INF, -1.0, -1.0, "ok"), point(NAN, NAN, NAN, "ok")],
                details=details(
                    (-F16_MAX, -1.0, -1.0, 0.0, "ok"),
                    (F16_TINY, -0.5, -0.4999999850988388, 0.0, "ok"),
                    (F16_MAX, INF, 0.0, NAN, "inf"),
                    (INF, NAN, 0.0, NAN, "nan"),
                ),
            ),
            case(
                *named(NAIVE_LOSS),
                figures(**NAIVE_LOSS_FIGURES),
                nonfinite=[point(NAN, 0.0, NAN, "inaccurate")],
            ),
            case(*named(NAIVE_GRAD), figures(**NAIVE_GRAD_FIGURES)),
            case(*named(ODD_LOSS), error=NASTY),
            case(*named(ODD_GRAD), error=NASTY),
            case(*named(ODD_LOST), lost=LOST),
            case(*named(ODD_LOST_GRAD), lost=LOST),
        ],
        seed=12345,
        ulp_threshold=0.5,
    )


def nonfinite_result() -> AuditResult:
    """Ten float64 cases, each with ±inf or NaN inputs that miss their limit: more than the eight
    lines a report shows without --verbose. The gradient raised at NaN."""
    cases = []
    for y in (0.0, 0.25, LABEL, 0.5, 1.0):
        cases.append(
            case(
                "torch-bce-with-logits",
                "logits",
                "float64",
                y,
                "loss",
                figures(nonfinite=2, stable_lo=-F64_MAX, stable_hi=F64_MAX, worst_input=F64_TINY),
                nonfinite=[point(INF, NAN, INF, "nan"), point(-INF, INF, 0.0, "inf")],
            )
        )
        cases.append(
            case(
                "torch-bce-with-logits",
                "logits",
                "float64",
                y,
                "grad",
                figures(nonfinite=1, stable_lo=-F64_MAX, stable_hi=F64_MAX, worst_input=-F64_MAX),
                nonfinite=[point(NAN, NAN, NAN, "error", error="RuntimeError: NaN | <nan> 100%")],
            )
        )
    return result(cases)


def variants_result() -> AuditResult:
    """Cases in the variant dimensions: a user's focal loss at two parameter values, one of them
    also compiled, beside max-abs in none (eager, on the CPU, no parameter swept). Each report shows
    the parameters and mode columns, and max-abs's cells in them hold the defaults."""
    cases = []
    for parameters, mode in (("gamma=0", "eager"), ("gamma=2", "eager"), ("gamma=2", "compile")):
        for quantity in ("loss", "grad"):
            bad = parameters == "gamma=2" and mode == "compile" and quantity == "grad"
            figs = figures(nan=3, ok=1007, max_ulp=12.0, stable_lo=-88.5, stable_hi=88.5) if bad else figures()
            # a NaN band above 88.5 up to the largest float32, its lower edge refined, its upper
            # one the end of the range; an inaccurate stretch known from samples only
            found = (
                [
                    interval("ok", -F32_MAX, 88.5, evaluated=1007),
                    interval("nan", 88.50000762939453, F32_MAX),
                ]
                if bad
                else []
            )
            cases.append(
                case("focal", quantity=quantity, figs=figs, parameters=parameters, mode=mode, failure_map=found)
            )
    # max-abs's gradient fails at z = ±0 alone around the centre (its stable range is everything
    # but 0 up to 2.5), then on a stretch from 3 (sampled: 2.5 was the sample before) to 3.5 (exact)
    but_zero = [
        interval("ok", -F32_MAX, -F32_TINY, evaluated=500, worst_input=-1.5, worst_ulp=0.5),
        interval("zero", -0.0, 0.0, worst_input=-0.0, worst_ulp=8388608.0),
        interval("ok", F32_TINY, 2.5, evaluated=200),
        interval("inaccurate", 3.0, 3.5, exact=(False, True), evaluated=8, worst_input=3.25, worst_ulp=1e300),
        interval("ok", 3.5000002384185791, F32_MAX, evaluated=300),
    ]
    grad = figures(zero=2, inaccurate=8, ok=1000, max_ulp=1e300, stable_lo=-F32_MAX, stable_hi=2.5)
    cases += [
        case("max-abs", quantity="loss"),
        case("max-abs", quantity="grad", figs=grad, failure_map=but_zero, stable_but_centre=True),
    ]
    return result(cases)


CONFIG = "ci, gate: v2.toml"  # ',' and ':' are escaped in a GitHub annotation's properties
BASELINE = "base 100%.json"
STILL_RAISES_WARNING = (
    "1 case raised in the baseline and still raises, so it was not checked: _my.bce+v2-rc logits float32 y=0 grad"
)


def failing_verdict() -> Verdict:
    """Exit 1. Rules: one holds; the others fail on a bound and a stable range, on cases that
    raised (and one that was lost), on the largest float64 against 1e300, on a figure that rounds
    onto its bound. Against the baseline: a case within the tolerance; regressions of a figure
    beyond the tolerance with a shrunk stable range, of a count, of the input grid, of a formulation
    that now raises; two improved, two new, one missing, one still raising, one lost; two warnings."""
    run = {
        LOSS_0: record(),
        GRAD_0: record(**GRAD_0_FIGURES),
        LOSS_LABEL: record(**LOSS_LABEL_FIGURES),
        F16_GRAD_1: record(**F16_GRAD_1_FIGURES),
        ODD_LOSS: record(error=NASTY),
        ODD_GRAD: record(error=NASTY),
        ODD_LOST: record(lost=LOST),
        LOGSIGMOID: record(),
        LOGSIGMOID_GRAD: record(),
        WITH_LOGITS: record(stable_lo=-F64_MAX, stable_hi=F64_MAX),
        NAIVE_LOSS: record(**NAIVE_LOSS_FIGURES),
    }
    baseline = {
        LOSS_0: record(max_ulp=0.5),  # worse by 0.5, within the tolerance of 1
        GRAD_0: record(**(GRAD_0_FIGURES | dict(max_ulp=8388000.0, stable_lo=-1.0, stable_hi=1.0))),
        LOSS_LABEL: record(**(LOSS_LABEL_FIGURES | dict(ok=1010, zero=0, max_ulp=5.0, p99_ulp=0.9995))),
        F16_GRAD_1: record(**(F16_GRAD_1_FIGURES | dict(points=1000, ok=990))),
        ODD_LOSS: record(),
        ODD_GRAD: record(error=NASTY),
        ODD_LOST: record(),
        WITH_LOGITS: record(max_ulp=3.0, nan=2, ok=1008, stable_lo=-1.0, stable_hi=1.0),
        NAIVE_LOSS: record(**(NAIVE_LOSS_FIGURES | dict(mean_bits=F64_MAX))),
        RETIRED: record(),
    }
    rule_tables = [
        {
            "name": "loss, exact",
            "formulation": "max-abs",
            "quantity": "loss",
            "label": 0,
            "max_ulp": 1,
            "inaccurate": 0,
        },
        {"name": 'grad <y=0> | "strict", 100%', "quantity": "grad", "label": 0, "max_ulp": 4, "stable_range": [-1, 1]},
        {"formulation": "_my*", "nan": 0},
        {"dtype": "float16", "formulation": "max-abs", "max_ulp": 1e300, "mean_bits": 0.25},
        {"label": LABEL, "p99_ulp": 0.9995},
    ]
    warnings = (
        STILL_RAISES_WARNING,
        f"baseline {BASELINE} was made in another environment, so figures may differ: "
        "torch 2.12.0+cpu -> 2.13.0+cpu; cpu_capability AVX2 -> AVX512",
    )
    return verdict(run, rule_tables, baseline, config=CONFIG, baseline_path=BASELINE, warnings=warnings)


def multiline_verdict() -> Verdict:
    """Exit 1, with text from files that holds line breaks and control characters: a rule's name
    from the config, and an error message read from the baseline."""
    run = {GRAD_0: record(**GRAD_0_FIGURES), ODD_GRAD: record(error=NASTY)}
    baseline = {GRAD_0: record(**GRAD_0_FIGURES), ODD_GRAD: record(error=NASTY_LINES)}
    rule_tables = [{"name": NASTY_LINES, "quantity": "grad", "max_ulp": 4}]
    warnings = (STILL_RAISES_WARNING,)
    return verdict(run, rule_tables, baseline, config=CONFIG, baseline_path=BASELINE, warnings=warnings)


def passing_verdict() -> Verdict:
    """Exit 0: three rules hold; against the baseline a case is unchanged, one moved within the
    tolerance, two improved (one in every way a figure can: an undefined figure defined, counts
    down, a stable range where there was none), two are new, one missing but allowed, and one
    still raises with the same message."""
    run = {
        LOSS_0: record(),
        LOSS_LABEL: record(max_ulp=2.5, mean_bits=0.2),
        WITH_LOGITS: record(stable_lo=-F64_MAX, stable_hi=F64_MAX),
        LOGSIGMOID: record(),
        LOGSIGMOID_GRAD: record(),
        NAIVE_GRAD: record(**NAIVE_GRAD_FIGURES),
        ODD_GRAD: record(error=NASTY),
    }
    baseline = {
        LOSS_0: record(),
        LOSS_LABEL: record(max_ulp=1.5, mean_bits=0.1),  # both worse now, within the tolerance
        WITH_LOGITS: record(ok=1007, nan=2, inf=1, max_ulp=NAN, p99_ulp=2.0, stable_lo=NAN, stable_hi=NAN),
        NAIVE_GRAD: record(**(NAIVE_GRAD_FIGURES | dict(ok=1009, zero=1, mean_bits=0.015625, worst_input=0.5))),
        ODD_GRAD: record(error=NASTY),
        RETIRED: record(),
    }
    rule_tables = [
        {"formulation": "max-abs", "quantity": "loss", "max_ulp": 4},
        {"name": "every finite input", "formulation": "torch-*", "stable_range": [-1e38, 1e38], "nan": 0},
        {"dtype": "float32", "label": LABEL, "mean_bits": 0.2, "zero": 0},
    ]
    return verdict(run, rule_tables, baseline, allow_missing=True, warnings=(STILL_RAISES_WARNING,))


def incomplete_verdict() -> Verdict:
    """Exit 4: nothing failed, but two cases could not be evaluated: a rule selects only them,
    another selects them and a case that passes; against the baseline one of them was there and one
    is not."""
    run = {
        LOSS_0: record(),
        ODD_LOSS: record(lost=LOST),
        ODD_GRAD: record(lost="did not finish within 60 s (--timeout)"),
    }
    rule_tables = [{"formulation": ODD, "max_ulp": 1}, {"max_ulp": 1}]
    return verdict(run, rule_tables, {LOSS_0: record(), ODD_LOSS: record()})


def lost_only_verdict() -> Verdict:
    """Neither rules nor a baseline, only a case that could not be evaluated (the JUnit report
    then has a suite of its own for it)."""
    return Verdict(rules=(), comparisons=(), cases_checked=1, lost=((ODD_LOST, LOST),))


def updates() -> dict[str, BaselineUpdate]:
    """What `check --update-baseline` reports: a new file (with errors and failing rules), a file
    updated case by case, an unreadable one replaced, and one made with other settings."""
    old = {
        LOSS_0: record(),
        GRAD_0: record(**(GRAD_0_FIGURES | dict(max_ulp=8388000.0))),
        LOSS_LABEL: record(**(LOSS_LABEL_FIGURES | dict(ok=1007, zero=3))),
        ODD_GRAD: record(error="ValueError: bad | <input> at 99% & 'x'"),
        ODD_LOSS: record(error=NASTY),
        RETIRED: record(),
    }
    new = {
        LOSS_0: record(),
        GRAD_0: record(**GRAD_0_FIGURES),
        LOSS_LABEL: record(**LOSS_LABEL_FIGURES),
        ODD_GRAD: record(error=NASTY),
        ODD_LOSS: record(error=NASTY),
        LOGSIGMOID: record(),
    }
    errors = tuple(
        key(ODD, "logits", dtype, y, q)
        for dtype in ("float32", "float64")
        for y in (0.0, 1.0)
        for q in ("loss", "grad")
    )
    outcomes = evaluate_rules(rules({"max_ulp": 4}, {"formulation": "max-abs", "zero": 0}), new)
    failed = tuple(o for o in outcomes if not o.passed)
    compared = compare(old, new, ZERO_TOLERANCE, allow_missing=True)
    unreadable = (
        f"baseline {BASELINE}: not valid JSON (truncated or corrupt?): Expecting value: line 1 column 1 (char 0)"
    )
    settings_changes = ("points 2000 (baseline 1000)", 'sampling "exhaustive" (baseline "bits")')
    return {
        "created": BaselineUpdate(BASELINE, 14, None, None, (), (), failed, errors[:7]),
        "updated": BaselineUpdate(BASELINE, 6, 6, None, (), compared),
        "unreadable": BaselineUpdate(BASELINE, 6, None, unreadable, (), ()),
        "settings": BaselineUpdate(BASELINE, 6, 6, None, settings_changes, compared),
    }
