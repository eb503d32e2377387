"""Engines: the frameworks that evaluate a formulation and its gradient (see ``interface``).

Each engine is imported only when one of its formulations runs, so `bce-audit --help` and a
sweep of another engine never import its framework. ``sandbox`` runs user code, for any engine,
in a child process.
"""

from __future__ import annotations

import functools
import importlib

from bce_audit.engines.common import REQUIREMENTS, require
from bce_audit.engines.interface import Engine, Evaluation, GridEvaluation

# engine name -> (module, class); what each needs installed: common.REQUIREMENTS
ENGINES = {
    "torch": ("bce_audit.engines.torch_engine", "TorchEngine"),
    "jax": ("bce_audit.engines.jax_engine", "JaxEngine"),
    "tensorflow": ("bce_audit.engines.tensorflow_engine", "TensorFlowEngine"),
    "keras": ("bce_audit.engines.tensorflow_engine", "KerasEngine"),
}
assert set(ENGINES) == set(REQUIREMENTS)


@functools.cache
def get_engine(name: str) -> Engine:
    """The engine called ``name``, imported on first use (a MissingExtra naming the pip command
    when its framework is not installed)."""
    require(name, f"the {name} engine")
    module, cls = ENGINES[name]
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine


__all__ = ["ENGINES", "Engine", "Evaluation", "GridEvaluation", "get_engine", "require"]
