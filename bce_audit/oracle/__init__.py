"""The exact truth: the loss and gradient of plain BCE, correctly rounded into every dtype.

``reference`` is Ziv's loop in mpmath (adaptive precision); ``fast`` its first step on raw libmp
tuples; ``table`` computes many points at once (deduplicated, in worker processes, rounded into
each format); ``cache`` keeps them on disk. This is the only package that imports mpmath.
"""

from __future__ import annotations

from bce_audit.oracle.table import COLUMNS, FORMATS, TruthTable, TruthWork, build_truth_table, column


def oracle_provenance() -> dict[str, str]:
    """mpmath's version and the integer backend it runs on (gmpy or python)."""
    import mpmath

    return {"mpmath": mpmath.__version__, "mpmath_backend": mpmath.libmp.BACKEND}


__all__ = ["COLUMNS", "FORMATS", "TruthTable", "TruthWork", "build_truth_table", "column", "oracle_provenance"]
