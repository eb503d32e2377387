"""Engines: the frameworks that evaluate a formulation and its gradient (see ``interface``).

Each engine is imported only when one of its formulations runs, so `bce-audit --help` and a
sweep of another engine never import its framework. ``sandbox`` runs user code, for any engine,
in a child process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from bce_audit.engines.common import REQUIREMENTS, require
from bce_audit.engines.interface import Engine, Evaluation, GridEvaluation
from bce_audit.vocabulary import Device, Mode

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from bce_audit.formulations.interface import Formulation
    from bce_audit.vocabulary import Domain, DType

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


def evaluate_variant(
    formulation: Formulation,
    mode: Mode,
    device: Device,
    domain: Domain,
    dtype: DType,
    finite: np.ndarray,
    nonfinite: np.ndarray,
    label: float,
) -> GridEvaluation:
    """``evaluate_grid`` of a formulation run in this process, in an execution mode on a device:
    the torch engine runs every mode on every device it has; another engine runs eager on the
    CPU only, and any other variant of it is error rows saying so (that variant only)."""
    if formulation.engine == "torch":
        from bce_audit.engines.torch_engine import TorchEngine

        return TorchEngine().evaluate_grid(formulation, domain, dtype, finite, nonfinite, label, mode, device)
    if mode is not Mode.EAGER or device is not Device.CPU:
        why = f"mode {mode} on {device} is for the torch engine only ({formulation.name} runs in {formulation.engine})"
        return GridEvaluation.refused(why, len(finite), len(nonfinite))
    try:
        return get_engine(formulation.engine).evaluate_grid(formulation, domain, dtype, finite, nonfinite, label)
    finally:
        if formulation.implementation is None and "torch" in sys.modules:
            # a user's function, in this process, may switch torch's state too: the built-ins
            # evaluated after it rely on a run's single pin (pinned_run), so it is set again
            from bce_audit.engines.torch_state import repin

            repin()


def evaluate_labelled(
    formulation: Formulation,
    mode: Mode,
    device: Device,
    domain: Domain,
    dtype: DType,
    inputs: np.ndarray,
    labels: np.ndarray,
) -> Evaluation:
    """A torch formulation's loss and gradient at inputs with one label each, in one batch (the
    refinement shares batches between the labels of a built-in: ``sweep.refine``)."""
    if formulation.engine != "torch":
        raise ValueError(f"one label per input is for torch formulations, not {formulation.engine}")
    from bce_audit.engines.torch_engine import TorchEngine

    return TorchEngine().evaluate(formulation, domain, dtype, inputs, labels, mode, device)


@contextlib.contextmanager
def pinned_run(engines: Iterable[str]) -> Iterator[None]:
    """The global state of each engine in ``engines`` (those that run in this process) pinned once
    around a run's evaluations, so that each evaluation of a built-in need not pin its own (see
    ``torch_state.pinned``); the caller's state is given back at the end. Only torch has such a
    pin; a run without torch does not import it."""
    if "torch" not in engines:
        yield
        return
    from bce_audit.engines.torch_state import pinned

    with pinned():
        yield


def check_device(device: Device) -> None:
    """A UsageError (one line, exit 2) when torch has no such device here; nothing for the CPU."""
    if device is not Device.CPU:
        require("torch", f"--device {device}")
        from bce_audit.engines.torch_engine import check_device as check

        check(device)


__all__ = [
    "ENGINES",
    "Engine",
    "Evaluation",
    "GridEvaluation",
    "evaluate_labelled",
    "pinned_run",
    "check_device",
    "evaluate_variant",
    "get_engine",
    "require",
]
