"""What an engine does, whatever the framework: evaluate a formulation and its gradient on a grid.

An engine converts the grid into its own arrays in each dtype (exactly: every input is a value of
the dtype), runs the formulation and its derivative by the input in its own framework, with its
own domain adapters (sigmoid for a probability-native formulation fed logits, logit for the
other way round), pins the framework's global state around all of it, and says in the
provenance which versions and switches computed the results. Results come back as float64 numpy
arrays, which hold every value of the four dtypes exactly.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.formulations.interface import Formulation
    from bce_audit.vocabulary import Domain, DType


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Outputs of one formulation at one (domain, dtype, label), as exact float64 values.

    loss / grad: outputs at each input (NaN-filled when ``error`` is set).
    error: the message of an exception the formulation raised, else None.
    output_dtype: the dtype the loss came back in when it is not the input's (autocast may compute
        in another; a user's loss given float64 may return float32), e.g. ``"float32"``; None when
        it is the input's.
    """

    loss: np.ndarray
    grad: np.ndarray
    error: str | None = None
    output_dtype: str | None = None


@dataclasses.dataclass(frozen=True)
class GridEvaluation:
    """One formulation on one grid at one label: the finite inputs in one batch (they make the
    statistics), then each non-finite input alone, so that a formulation that rejects NaN (torch's
    BCE raises) does not take the finite points down with it.

    finite: the batch of finite inputs.
    nonfinite: one Evaluation of one point per non-finite input.
    lost: why nothing could be evaluated at all (the process running a user's function died,
        hung past the time limit or ran out of memory); None when it was evaluated. A lost
        evaluation is neither a pass nor a failure: ``bce-audit check`` reports it apart.
    """

    finite: Evaluation
    nonfinite: tuple[Evaluation, ...]
    lost: str | None = None

    @classmethod
    def lost_as(cls, reason: str, n_finite: int, n_nonfinite: int) -> GridEvaluation:
        def nothing(n: int) -> Evaluation:
            nan = np.full(n, np.nan)
            return Evaluation(nan, nan.copy(), error=reason)

        return cls(nothing(n_finite), tuple(nothing(1) for _ in range(n_nonfinite)), lost=reason)

    @classmethod
    def refused(cls, reason: str, n_finite: int, n_nonfinite: int) -> GridEvaluation:
        """Every point an error with ``reason``: what a mode or device the engine cannot run gives
        (error rows for that variant only; the others run)."""
        nan = np.full(n_finite, np.nan)
        one = np.full(1, np.nan)
        return cls(
            Evaluation(nan, nan.copy(), error=reason),
            tuple(Evaluation(one.copy(), one.copy(), error=reason) for _ in range(n_nonfinite)),
        )


class Engine(Protocol):
    """A framework that evaluates formulations (see the module's docstring)."""

    name: str

    def evaluate_grid(
        self,
        formulation: Formulation,
        domain: Domain,
        dtype: DType,
        finite: np.ndarray,
        nonfinite: np.ndarray,
        label: float,
    ) -> GridEvaluation: ...

    def provenance(self) -> dict[str, str]: ...
