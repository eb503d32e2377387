"""The summary CSV (one row per case) and the per-point CSV, columns as DESIGN fixes them."""

from __future__ import annotations

import csv
import io

from bce_audit.audit.result import SweepResult
from bce_audit.report.interface import Format
from bce_audit.report.numbers import csv_cell as _cell
from bce_audit.report.numbers import exact as number

SUMMARY_COLUMNS = (
    "formulation,domain,dtype,label,quantity,points,ok,inaccurate,inf,nan,zero,"
    "max_ulp,p99_ulp,mean_ulp,mean_bits,max_rel_err,worst_input,stable_lo,stable_hi"
).split(",")
DETAILS_COLUMNS = ("formulation,domain,dtype,label,quantity,input,output,truth,ulp_error,status").split(",")


def _case_columns(case) -> list:
    """The five columns that name a case, shared by both CSVs."""
    return [case.formulation, case.domain, case.dtype, number(case.label), case.quantity]


class SummaryCsvFormat(Format):
    def render(self, result: SweepResult) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(SUMMARY_COLUMNS)
        for case in result.cases:
            head = _case_columns(case)
            s = case.stats
            if s is None:  # the formulation raised: no figures
                w.writerow(head + [0] + [""] * (len(SUMMARY_COLUMNS) - 6))
                continue
            c = s.counts
            w.writerow(
                head
                + [s.points, c["ok"], c["inaccurate"], c["inf"], c["nan"], c["zero"]]
                + [_cell(v) for v in (s.max_ulp, s.p99_ulp, s.mean_ulp)]
                + [_cell(v) for v in (s.mean_bits, s.max_rel_err, s.worst_input)]
                + [_cell(s.stable_lo), _cell(s.stable_hi)]
            )
        return buf.getvalue()


class DetailsCsvFormat(Format):
    """Every point: input and output as Python reprs (exact), truth rounded to float64."""

    def render(self, result: SweepResult) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(DETAILS_COLUMNS)
        for case in result.cases:
            d = case.details
            if d is None:
                continue
            head = _case_columns(case)
            for x, o, t, e, st in zip(
                d.inputs.tolist(),
                d.outputs.tolist(),
                d.truth_f64.tolist(),
                d.ulp_errors.tolist(),
                d.statuses.tolist(),
                strict=True,
            ):
                w.writerow(head + [number(x), number(o), number(t), _cell(e), st])
        return buf.getvalue()
