"""The JSON report: the summary plus provenance and the resolved settings."""

from __future__ import annotations

import dataclasses
import json
import math

from bce_audit.audit.result import SweepResult
from bce_audit.report.interface import Format

SCHEMA_VERSION = 1


def json_safe(x):
    """x as strict JSON can hold it: inf / NaN as strings that float() parses back, in lists and
    dicts too (the report's figures and settings, a baseline's settings)."""
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    if isinstance(x, dict):  # a user formulation's parameters may be inf
        return {k: json_safe(v) for k, v in x.items()}
    return x


class JsonFormat(Format):
    def render(self, result: SweepResult) -> str:
        cases = []
        for case in result.cases:
            row = {
                "formulation": case.formulation,
                "domain": str(case.domain),
                "dtype": str(case.dtype),
                "label": case.label,
                "quantity": str(case.quantity),
                "worst_status": str(case.worst_status),
                "error": case.error,
            }
            if case.stats is not None:
                stats = dataclasses.asdict(case.stats)
                row.update({k: json_safe(v) for k, v in stats.items() if k != "counts"})
                row["counts"] = stats["counts"]
            row["nonfinite_inputs"] = [
                {
                    "input": json_safe(p.input),
                    "output": json_safe(p.output),
                    "truth": json_safe(p.truth),
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
            "elapsed_s": round(result.elapsed_s, 3),
            "cases": cases,
        }
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
