"""The terminal report: a scoreboard first, per-case figures on request (--verbose)."""

from __future__ import annotations

import collections
import math

from bce_audit._types import Domain, Quantity, Status
from bce_audit.result import CaseResult, SweepResult

STATUS_STYLE = {
    Status.OK: "green",
    Status.INACCURATE: "yellow",
    Status.ZERO: "magenta",
    Status.INF: "red",
    Status.NAN: "bold red",
    Status.ERROR: "bold red",
}


def fmt_value(x: float) -> str:
    """Three significant digits, but values just below 1 as 1-d, so 0.9995 is not shown as 1."""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if 0.99 < x < 1:
        return f"1-{_g(1 - x)}"
    return _g(x)


def _g(x: float) -> str:
    """3 significant digits, 2 for tiny or huge values, with a compact exponent (4.9e-4)."""
    text = f"{x:.2e}" if x != 0 and not 1e-3 <= abs(x) < 1e5 else f"{x:.3g}"
    text = f"{float(text):.2g}" if "e" in text else text
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def fmt_stat(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else fmt_value(x)


def fmt_range(lo: float, hi: float, largest: float = math.inf) -> str:
    """The stable range; the dtype's largest finite value is written `max` to save room."""
    if math.isnan(lo) or math.isnan(hi):
        return "none"

    def end(x: float) -> str:
        return ("-max" if x < 0 else "max") if abs(x) == largest else fmt_value(x)

    return f"[{end(lo)}, {end(hi)}]"


def _intersect(ranges):
    los, his = zip(*ranges, strict=True)
    if any(math.isnan(v) for v in los + his):
        return math.nan, math.nan
    return max(los), min(his)


def scoreboard(result: SweepResult, quantity: Quantity):
    """Rows: formulation × domain; columns: dtypes; cell: worst status over the labels, and the
    stable range on which every label is ok (for one quantity: loss or grad)."""
    from rich.table import Table
    from rich.text import Text

    s = result.settings
    from rich import box

    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),
    )
    table.add_column("formulation", no_wrap=True, min_width=21)
    table.add_column("domain", no_wrap=True, min_width=6)
    for dtype in s.dtypes:
        table.add_column(str(dtype), no_wrap=True, ratio=1)
    groups: dict[tuple, list[CaseResult]] = {}
    for case in result.cases:
        if case.quantity is quantity:
            groups.setdefault((case.formulation, case.domain, case.dtype), []).append(case)
    for name in s.formulations:
        for domain in s.domains:
            cells = []
            for dtype in s.dtypes:
                cases = groups.get((name, domain, dtype), [])
                if not cases:
                    cells.append(Text("-"))
                    continue
                worst = max((c.worst_status for c in cases), key=lambda st: st.severity)
                cell = Text(worst.value, style=STATUS_STYLE[worst])
                if worst is not Status.ERROR:
                    lo, hi = _intersect([(c.stats.stable_lo, c.stats.stable_hi) for c in cases])
                    largest = dtype.format.largest_finite
                    cell.append("\n" + fmt_range(lo, hi, largest), style="default")
                cells.append(cell)
            short = "probs" if domain is Domain.PROBABILITIES else str(domain)
            table.add_row(name, short, *cells, end_section=domain is s.domains[-1])
    return table


def scoreboard_heading(result: SweepResult, quantity: Quantity) -> str:
    labels = ", ".join(f"{y:g}" for y in result.settings.labels)
    return f"{quantity}: worst status and stable range over labels {labels}"


SCOREBOARD_LEGEND = (
    "stable range: the widest interval around the centre (z = 0, p = 0.5) where every sampled input "
    "is ok; max: the dtype's largest finite value; none: the centre itself is not ok"
)
CASE_TABLE_HEADING = "per-case figures (ULP errors over points where output and truth are finite)"


def case_table(result: SweepResult):
    """Every case with its figures (the --verbose report)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),
    )
    # only the formulation column is pinned; the others take their natural width
    for col, justify in [
        ("formulation", "left"),
        ("domain", "left"),
        ("dtype", "left"),
        ("y", "right"),
        ("qty", "left"),
        ("ok", "right"),
        ("inacc", "right"),
        ("inf", "right"),
        ("nan", "right"),
        ("zero", "right"),
        ("max ulp", "right"),
        ("p99 ulp", "right"),
        ("mean ulp", "right"),
        ("bits", "right"),
        ("worst input", "right"),
    ]:
        table.add_column(col, justify=justify, no_wrap=True, min_width=21 if col == "formulation" else None)
    for c in result.cases:
        domain = "probs" if c.domain is Domain.PROBABILITIES else str(c.domain)
        head = [c.formulation, domain, str(c.dtype), f"{c.label:g}", str(c.quantity)]
        if c.stats is None:
            # the message goes in the lines under the tables (error_lines): in a cell, a long one
            # would squeeze every column of the table
            table.add_row(*head, Text("error", style=STATUS_STYLE[Status.ERROR]), *["-"] * 9)
            continue
        st = c.stats

        def count(status: Status, counts=st.counts) -> Text:
            v = counts[status.value]
            return Text(str(v), style=STATUS_STYLE[status] if v and status is not Status.OK else "")

        table.add_row(
            *head,
            count(Status.OK),
            count(Status.INACCURATE),
            count(Status.INF),
            count(Status.NAN),
            count(Status.ZERO),
            fmt_stat(st.max_ulp),
            fmt_stat(st.p99_ulp),
            fmt_stat(st.mean_ulp),
            f"{st.mean_bits:.2f}",
            fmt_stat(st.worst_input),
        )
    return table


def nonfinite_lines(result: SweepResult) -> list[str]:
    """One line per case whose ±inf / NaN inputs are not handled as the limits say."""
    lines = []
    for c in result.cases:
        bad = [p for p in c.nonfinite if p.status is not Status.OK]
        if not bad:
            continue
        parts = [
            f"{fmt_value(p.input)} -> {p.status.value}"
            + (f" ({p.error})" if p.error else f" (got {fmt_value(p.output)}, want {fmt_value(p.truth)})")
            for p in bad
        ]
        lines.append(f"{c.formulation} {c.domain} {c.dtype} y={c.label:g} {c.quantity}: " + "; ".join(parts))
    return lines


def error_lines(result: SweepResult) -> list[str]:
    """One line per formulation and message: the cases in which the formulation raised."""
    counts = collections.Counter((c.formulation, c.error) for c in result.cases if c.error is not None)
    return [f"{name} ({n} cases): {error}" for (name, error), n in counts.items()]
