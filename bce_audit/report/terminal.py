"""The terminal report: the two scoreboards, a legend in plain words, per-case figures on
request (--verbose), and the cases that need a word of their own.

Everything is laid out by ``layout`` for the width it is given (None: natural width, for logs and
pipes), so no column is ever dropped or cut.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Sequence

from rich.text import Text

from bce_audit.figures import FIGURES, Figure, Kind
from bce_audit.report import numbers
from bce_audit.report.layout import Column, table, wrap
from bce_audit.sweep.result import AuditResult, CaseResult
from bce_audit.vocabulary import Domain, DType, Quantity, Status

STATUS_STYLE = {
    Status.OK: "green",
    Status.INACCURATE: "yellow",
    Status.ZERO: "magenta",
    Status.INF: "red",
    Status.NAN: "bold red",
    Status.ERROR: "bold red",
}

# What the exact values are: the one reference every figure is measured against.
REFERENCE = (
    "reference: the exact value of plain, unweighted BCE at the label given, "
    "-(y·log p + (1-y)·log(1-p)) with p = σ(z) on logits, and its derivative by the input; "
    "a pos_weight, a weight, label smoothing or a focal term is not part of it"
)
# The same for a list of formulations that each name their reference (`bce-audit list`).
REFERENCE_COLUMN = (
    "reference: the exact function each formulation is measured against, and its derivative by the "
    "input: bce is plain, unweighted BCE at the label given, -(y·log p + (1-y)·log(1-p)) with "
    "p = σ(z) on logits; bce(pos_weight, weight), focal(gamma, alpha, form) and "
    "label-smoothed-bce(smoothing, convention) are the BCE family's other members (docs/oracle.md)"
)


def reference_legend(references: tuple[tuple[str, str], ...]) -> str:
    """What the exact values are: ``REFERENCE`` when every formulation is plain BCE's, else
    each formulation's own reference named."""
    if not references:
        return REFERENCE
    named = "; ".join(f"{name}: {key}" for name, key in references)
    return (
        "reference: the exact value at the label given, and its derivative by the input, of each "
        "formulation's own reference: plain, unweighted BCE, -(y·log p + (1-y)·log(1-p)) with "
        f"p = σ(z) on logits, except {named} (the BCE family, docs/oracle.md)"
    )


def status_legend(threshold: float) -> str:
    t = numbers.compact(threshold)
    return (
        f"statuses: ok = within {t} ULPs of the exact value; inaccurate = more than {t} ULPs off; "
        "zero = 0 where the exact value is not (underflow, cancellation, a vanished gradient); "
        "inf = ±inf where the exact value is finite; nan = NaN where the exact value is a number; "
        "error = the formulation raised, or could not be run"
    )


RANGE_LEGEND = (
    "stable range: the widest interval around the centre (z = 0, p = 0.5) where every evaluated input "
    "is ok, for every label, its ends refined to exact edges (--failures maps them); max: the dtype's "
    "largest finite value; but 0: only the centre's own value fails in it; none: the centre fails, "
    "and not alone"
)
CASE_TABLE_HEADING = "per-case figures (ULP errors over the points where output and truth are finite)"


def _intersect(ranges: Sequence[tuple[float, float]]) -> tuple[float, float]:
    los, his = zip(*ranges, strict=True)
    if any(math.isnan(v) for v in los + his):
        return math.nan, math.nan
    return max(los), min(his)


def scoreboard_heading(result: AuditResult, quantity: Quantity) -> str:
    labels = ", ".join(numbers.label(y) for y in result.settings.labels)
    return f"{quantity}: worst status and stable range over labels {labels}"


def scoreboard(result: AuditResult, quantity: Quantity, width: int | None) -> list[Text]:
    """Rows: formulation × domain; columns: dtypes; cell: worst status over the labels, and the
    stable range on which every label is ok (for one quantity: loss or grad)."""
    s = result.settings
    variants = result.variants
    groups: dict[tuple[tuple[str, ...], Domain, DType], list[CaseResult]] = {}
    for case in result.cases:
        if case.quantity is quantity:
            groups.setdefault((_subject(case, variants), case.domain, case.dtype), []).append(case)
    # each formulation's rows: one per variant it ran in (in run order), each with every domain
    subjects: dict[str, list[tuple[str, ...]]] = {name: [] for name in s.formulations}
    for subject in dict.fromkeys(g[0] for g in groups):
        subjects[subject[0]].append(subject)
    rows: list[list[Text | str]] = []
    breaks: set[int] = set()
    for subject in (v for name in s.formulations for v in subjects[name] or [(name, *("-" for _ in variants))]):
        for domain in s.domains:
            cells: list[Text | str] = [*subject, domain.short]
            for dtype in s.dtypes:
                cases = groups.get((subject, domain, dtype), [])
                if not cases:
                    cells.append("-")
                    continue
                worst = max((c.worst_status for c in cases), key=lambda st: st.severity)
                cell = Text(worst.value, style=STATUS_STYLE[worst])
                if worst is not Status.ERROR:
                    lo, hi = _intersect([(c.figures.stable_lo, c.figures.stable_hi) for c in cases if c.figures])
                    but = domain.centre if any(c.stable_but_centre for c in cases) else None
                    cell.append("\n" + numbers.interval(lo, hi, dtype.format.largest_finite, but))
                cells.append(cell)
            rows.append(cells)
        breaks.add(len(rows) - 1)
    keys = [Column("formulation"), *(Column(v) for v in variants), Column("domain")]
    return table(keys, [Column(str(d)) for d in s.dtypes], rows, width, breaks)


def _subject(case: CaseResult, variants: tuple[str, ...]) -> tuple[str, ...]:
    """The formulation and the value of each variant dimension the run shows."""
    return (case.formulation, *(getattr(case, v) for v in variants))


TABLE_FIGURES: tuple[Figure, ...] = tuple(f for f in FIGURES if f.header is not None)


def _cell(figure: Figure, case: CaseResult) -> Text:
    """One figure of a case, as the --verbose table shows it."""
    fig = case.figures
    value = getattr(fig, figure.name)
    if figure.kind is Kind.COUNT:
        status = Status(figure.name)
        return Text(str(value), style=STATUS_STYLE[status] if value and status is not Status.OK else "")
    if figure.kind is Kind.INPUT:
        return Text("-" if math.isnan(value) else numbers.value(value, case.dtype.format.largest_finite))
    if figure.decimals is not None:
        return Text(f"{value:.{figure.decimals}f}")
    return Text(numbers.stat(value))


def case_table(result: AuditResult, width: int | None) -> list[Text]:
    """Every case with its figures (the --verbose report)."""
    variants = result.variants
    keys = [
        Column("formulation"),
        *(Column(v) for v in variants),
        Column("domain"),
        Column("dtype"),
        Column("y", right=True, tag="y="),
        Column("qty"),
    ]
    values = [Column(f.header or f.name, right=True) for f in TABLE_FIGURES]
    rows = []
    for c in result.cases:
        head: list[Text | str] = [
            *_subject(c, variants),
            c.domain.short,
            str(c.dtype),
            numbers.label(c.label),
            str(c.quantity),
        ]
        if c.figures is None:
            # the message goes in the lines under the tables (error_lines): in a cell, a long one
            # would squeeze every column of the table
            rows.append(head + [Text("error", style=STATUS_STYLE[Status.ERROR])] + ["-"] * (len(values) - 1))
            continue
        rows.append(head + [_cell(f, c) for f in TABLE_FIGURES])
    return table(keys, values, rows, width, gap=1)  # narrow numeric columns: one space apart


NONFINITE_HEADING = (
    "±inf and NaN inputs whose result is not the exact limit, as when the loss at z = +inf with y = 1 is not 0"
)


def nonfinite_lines(result: AuditResult) -> list[str]:
    """One line per case whose ±inf / NaN inputs are not handled as the limits say."""
    lines = []
    for c in result.cases:
        bad = [p for p in c.nonfinite if p.status is not Status.OK]
        if not bad:
            continue
        parts = []
        for p in bad:
            got, want = numbers.apart(p.output, p.truth)
            parts.append(
                f"{numbers.short(p.input)} -> {p.status.value}"
                + (f" ({p.error})" if p.error else f" (got {got}, want {want})")
            )
        lines.append(f"{c.key}: " + "; ".join(parts))
    return lines


MODES_HEADING = "cases where an execution mode has more non-ok points than eager has in the same case"


def _non_ok(case: CaseResult) -> int | None:
    """The points of a case that are not ok, finite and ±inf/NaN together; None when it raised."""
    f = case.figures
    return None if f is None else f.points - f.ok + f.nonfinite


def mode_lines(result: AuditResult) -> list[str]:
    """One line per case that a mode (--mode) makes worse than eager: more non-ok points, or an
    error where eager ran. Each is a finding about that mode: the same function, the same
    inputs, another way of running it."""
    eager = {c.key: c for c in result.cases if c.mode == "eager"}
    lines = []
    for c in result.cases:
        base = eager.get(dataclasses.replace(c.key, mode="eager")) if c.mode != "eager" else None
        if base is None:
            continue
        theirs, ours = _non_ok(base), _non_ok(c)
        if theirs is None or (ours is not None and ours <= theirs):
            continue
        got = "raised" if ours is None else numbers.count(ours, "non-ok point")
        lines.append(f"{c.key}: {got}, eager {theirs}")
    return lines


def error_lines(result: AuditResult) -> list[str]:
    """One line per formulation and message: the cases in which the formulation raised (or was lost)."""
    counts = collections.Counter((c.key.subject, c.error) for c in result.cases if c.error is not None)
    return [f"{name} ({numbers.count(n, 'case')}): {error}" for (name, error), n in counts.items()]


def output_dtype_lines(result: AuditResult) -> list[str]:
    """One line per formulation and (input, output) dtypes, for losses that return another dtype
    than their input's (the case's figures compare that output with the truth in the input's)."""
    counts = collections.Counter(
        (c.key.subject, str(c.dtype), c.output_dtype) for c in result.cases if c.output_dtype is not None
    )
    return [
        f"{name} ({numbers.count(n, 'case')}): {given} in, {returned} out"
        for (name, given, returned), n in counts.items()
    ]


def report(result: AuditResult, width: int | None, verbose: bool) -> list[Text]:
    """The whole terminal report, line by line."""
    out: list[Text] = []

    def para(text: str, indent: str = "", rest: str | None = None) -> None:
        out.extend(Text(line) for line in wrap(text, width, indent, rest))

    for quantity in Quantity:
        para(scoreboard_heading(result, quantity))
        out.append(Text(""))
        out.extend(scoreboard(result, quantity, width))
        out.append(Text(""))
    para(status_legend(result.settings.ulp_threshold))
    para(RANGE_LEGEND)
    para(reference_legend(result.references))
    if verbose:
        out.append(Text(""))
        para(CASE_TABLE_HEADING)
        out.append(Text(""))
        out.extend(case_table(result, width))
    failures = error_lines(result)
    if failures:
        out.append(Text(""))
        para("formulations that raised or could not be run (their cases are `error`):")
        for line in failures:
            para(line, "  ", "    ")
    worse = mode_lines(result)
    if worse:
        out.append(Text(""))
        para(f"{MODES_HEADING} ({numbers.count(len(worse), 'case')}):")
        shown = worse if verbose else worse[:8]
        for line in shown:
            para(line, "  ", "    ")
        if len(shown) < len(worse):
            para(f"... and {len(worse) - len(shown)} more (--verbose shows all)", "  ")
    converted = output_dtype_lines(result)
    if converted:
        out.append(Text(""))
        para(
            "losses returned in another dtype than their input (a finding: their outputs are compared with "
            "the exact value rounded into the input's dtype):"
        )
        for line in converted:
            para(line, "  ", "    ")
    lines = nonfinite_lines(result)
    if lines:
        out.append(Text(""))
        para(f"{NONFINITE_HEADING} ({numbers.count(len(lines), 'case')}):")
        shown = lines if verbose else lines[:8]
        for line in shown:
            para(line, "  ", "    ")
        if len(shown) < len(lines):
            para(f"... and {len(lines) - len(shown)} more (--verbose shows all)", "  ")
    s = result.settings
    points = sum(c.figures.points for c in result.cases if c.figures is not None)
    out.append(Text(""))
    para(
        f"{numbers.count(len(result.cases), 'case')}, {numbers.count(points, 'point')}, seed {s.seed}, "
        f"ulp threshold {numbers.compact(s.ulp_threshold)}, {result.elapsed_s:.1f} s"
    )
    return out
