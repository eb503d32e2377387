"""Shared by the engine tests: evaluating a built-in or a callable in an engine, directly."""

from __future__ import annotations

import numpy as np

from bce_audit.engines import get_engine
from bce_audit.engines.interface import Evaluation
from bce_audit.floats import round_float
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.formulations.interface import Formulation
from bce_audit.vocabulary import Domain, DType

# every new built-in, its engine and native domain
NEW_BUILTINS = {name: f for name, f in BUILTINS.items() if f.engine != "torch"}


def evaluate(
    formulation: Formulation, x: list[float] | np.ndarray, label: float, dtype: DType, domain: Domain | None = None
) -> Evaluation:
    """The formulation at inputs ``x`` (rounded into the dtype first) in its own engine."""
    values = np.array([round_float(float(v), dtype.format) for v in np.asarray(x, dtype=np.float64)])
    y = round_float(label, dtype.format)
    ev = get_engine(formulation.engine).evaluate_grid(
        formulation, domain or formulation.native_domain, dtype, values, np.array([]), y
    )
    assert ev.lost is None
    return ev.finite


def callable_formulation(name: str, fn, domain: Domain, engine: str) -> Formulation:
    return Formulation(name, domain, name, engine=engine, function=fn)
