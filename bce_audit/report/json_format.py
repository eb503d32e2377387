"""The JSON report: every case's figures, its failing intervals, the non-finite inputs, the settings
and the provenance."""

from __future__ import annotations

import json
import math
from typing import Any

from bce_audit.figures import FIGURES, Kind
from bce_audit.report.interface import Format
from bce_audit.report.numbers import json_number, json_safe
from bce_audit.sweep.result import AuditResult, FailureInterval

SCHEMA_VERSION = 1


def _figures(case: Any) -> dict[str, Any]:
    """points, the error figures, the worst input and the stable range, then the status counts
    and the non-finite inputs that missed their limit."""
    fig = case.figures
    row: dict[str, Any] = {"points": fig.points}
    for figure in FIGURES:
        if figure.kind is Kind.RANGE:
            row["stable_lo"], row["stable_hi"] = json_number(fig.stable_lo), json_number(fig.stable_hi)
        elif figure.kind is not Kind.COUNT:
            row[figure.name] = json_number(getattr(fig, figure.name))
    row["counts"] = fig.counts
    row["nonfinite"] = fig.nonfinite
    return row


def _interval(iv: FailureInterval) -> dict[str, Any]:
    """A failing interval of the failure map (see ``sweep.failure_map.FailureInterval``)."""
    return {
        "status": str(iv.status),
        "lo": json_number(iv.lo),
        "hi": json_number(iv.hi),
        "edges": iv.edges,
        "floats": iv.floats,
        "evaluated": iv.evaluated,
        "worst_input": None if math.isnan(iv.worst_input) else json_number(iv.worst_input),
        "worst_ulp": None if math.isnan(iv.worst_ulp) else json_number(iv.worst_ulp),
        "alone": [{"input": json_number(x), "status": str(status)} for x, status in iv.alone],
        "cause": iv.cause,
    }


class JsonFormat(Format):
    def render(self, result: AuditResult) -> str:
        cases = []
        variants = result.variants
        for case in result.cases:
            row: dict[str, Any] = {
                **case.key.fields(variants),
                "worst_status": str(case.worst_status),
                "error": case.error,
            }
            if case.lost is not None:
                row["lost"] = case.lost
            if case.output_dtype:  # only then: a report of losses that keep their dtype reads as before
                row["output_dtype"] = case.output_dtype
            if case.figures is not None:
                row.update(_figures(case))
            row["failures"] = [_interval(iv) for iv in case.failures]
            row["nonfinite_inputs"] = [
                {
                    "input": json_number(p.input),
                    "output": json_number(p.output),
                    "truth": json_number(p.truth),
                    "status": str(p.status),
                    "error": p.error,
                }
                for p in case.nonfinite
            ]
            cases.append(row)
        doc = {
            "schema_version": SCHEMA_VERSION,
            "provenance": result.provenance,
            "settings": json_safe(result.settings.to_dict()),
            # only in a run with a reference other than plain BCE, so any other reads as before
            **({"references": dict(result.references)} if result.references else {}),
            "elapsed_s": round(result.elapsed_s, 3),
            "cases": cases,
        }
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
