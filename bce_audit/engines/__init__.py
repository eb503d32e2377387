"""Engines: the frameworks that evaluate a formulation and its gradient (see ``interface``).

Each engine is imported only when one of its formulations runs, so `bce-audit --help` and a
sweep of another engine never import its framework. ``sandbox`` runs user code, for any engine,
in a child process.
"""

from __future__ import annotations

import functools
import importlib

from bce_audit.engines.interface import Engine, Evaluation, GridEvaluation

# engine name -> (module, class)
ENGINES = {"torch": ("bce_audit.engines.torch_engine", "TorchEngine")}


@functools.cache
def get_engine(name: str) -> Engine:
    """The engine called ``name``, imported on first use."""
    module, cls = ENGINES[name]
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine


__all__ = ["ENGINES", "Engine", "Evaluation", "GridEvaluation", "get_engine"]
