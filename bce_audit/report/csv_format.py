"""The summary CSV (one row per case) and the per-point CSV.

The summary's columns are those that name a case (the five every case has, with the variant
dimensions of the run after the formulation: see ``sweep.result.key_fields``), then every figure's
columns in the order ``figures.FIGURES`` declares them. Numbers are written so that they parse back
to the exact float.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from bce_audit.figures import FIGURES
from bce_audit.report.interface import Format
from bce_audit.report.numbers import csv_cell, exact
from bce_audit.sweep.result import AuditResult, CaseResult, key_fields

FIGURE_COLUMNS = tuple(column for figure in FIGURES for column in figure.csv)
POINT_COLUMNS = ("input", "output", "truth", "ulp_error", "status")


def _key(case: CaseResult, variants: tuple[str, ...]) -> list[Any]:
    fields = case.key.fields(variants)
    fields["label"] = exact(case.label)
    return list(fields.values())


class SummaryCsvFormat(Format):
    """One row per case; a case whose formulation raised has 0 points and empty figures."""

    def render(self, result: AuditResult) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        variants = result.variants
        w.writerow([*key_fields(c.key for c in result.cases), *FIGURE_COLUMNS])
        for case in result.cases:
            if case.figures is None:  # no figures
                w.writerow([*_key(case, variants), 0] + [""] * (len(FIGURE_COLUMNS) - 1))
                continue
            values = case.figures.csv_values()
            w.writerow([*_key(case, variants), *(v if isinstance(v, int) else csv_cell(v) for v in values)])
        return buf.getvalue()


class DetailsCsvFormat(Format):
    """Every point: input and output exactly (Python's repr), the truth rounded to float64."""

    def render(self, result: AuditResult) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        variants = result.variants
        w.writerow([*key_fields(c.key for c in result.cases), *POINT_COLUMNS])
        for case in result.cases:
            d = case.details
            if d is None:
                continue
            key = _key(case, variants)
            for x, o, t, e, st in zip(
                d.inputs.tolist(),
                d.outputs.tolist(),
                d.truth_f64.tolist(),
                d.ulp_errors.tolist(),
                d.statuses.tolist(),
                strict=True,
            ):
                w.writerow([*key, exact(x), exact(o), exact(t), csv_cell(e), st])
        return buf.getvalue()
