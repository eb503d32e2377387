"""The JSON report: the summary plus provenance and the resolved settings."""

from __future__ import annotations

import dataclasses
import json
import math

from bce_audit._format.interface import Format
from bce_audit.result import SweepResult

SCHEMA_VERSION = 1


def _clean(x):
    # JSON has no inf/NaN: write them as strings that float() parses back.
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, dict):  # a user formulation's parameters may be inf
        return {k: _clean(v) for k, v in x.items()}
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
                row.update({k: _clean(v) for k, v in stats.items() if k != "counts"})
                row["counts"] = stats["counts"]
            row["nonfinite_inputs"] = [
                {
                    "input": _clean(p.input),
                    "output": _clean(p.output),
                    "truth": _clean(p.truth),
                    "status": str(p.status),
                    "error": p.error,
                }
                for p in case.nonfinite
            ]
            cases.append(row)
        doc = {
            "schema_version": SCHEMA_VERSION,
            "provenance": result.provenance,
            "settings": {k: _clean(v) for k, v in result.settings.to_dict().items()},
            "elapsed_s": round(result.elapsed_s, 3),
            "cases": cases,
        }
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
