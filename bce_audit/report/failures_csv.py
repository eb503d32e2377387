"""The failure map CSV (``--failures``): one row per failing interval of every case.

Columns: the key (formulation, the variant dimensions of the run, domain, dtype, label, quantity),
then ``sweep.result.FAILURE_COLUMNS``: status; lo and hi (exact floats); edges (enumerated, exact,
lo-exact, hi-exact or sampled: see ``FailureInterval.edges``); floats (representable values in
[lo, hi], -0 and +0 apart); worst_input and worst_ulp (empty when no input of the interval has a
ULP error); cause (empty until traced).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from bce_audit.report.interface import Format
from bce_audit.report.numbers import exact
from bce_audit.sweep.result import FAILURE_COLUMNS, AuditResult, key_fields


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return exact(value)
    return value


class FailuresCsvFormat(Format):
    """Every failing interval of every case's failure map, in case order and input order."""

    def render(self, result: AuditResult) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*key_fields(c.key for c in result.cases), *FAILURE_COLUMNS])
        for record in result.failure_records():
            w.writerow([_cell(v) for v in record.values()])
        return buf.getvalue()
