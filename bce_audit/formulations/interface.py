"""What a formulation is: one way to compute the elementwise BCE loss, and where its code runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bce_audit.vocabulary import Domain

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.formulations.user import UserFormulationSpec

# The values a parameter may take: TOML / JSON scalars, so that settings stay data.
Scalar = bool | int | float | str
PARAMETER_TYPES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Formulation:
    """One way to compute the elementwise BCE loss.

    name: the name users select it by and reports show.
    native_domain: what its first argument is (logits or probabilities); fed the other domain, the
        engine converts first (sigmoid or logit), and the conversion is part of the audit.
    formula: the one-line definition `bce-audit list` and the reports show.
    engine: the framework that evaluates it (``torch``).
    implementation: ``module:function`` of a built-in's code, run in bce-audit's process.
    function: a callable given to the Python API, run in the caller's process.
    spec: a user's target (--impl, a config table, an entry point), run only in the sandbox.
    parameters: the keyword arguments of every call, as (name, value) pairs: a built-in's
        declared parameters with their values (defaults, or a config table's), a user's own.

    Exactly one of implementation, function and spec is set.
    """

    name: str
    native_domain: Domain
    formula: str
    engine: str = "torch"
    implementation: str | None = None
    function: Callable[..., Any] | None = None
    spec: UserFormulationSpec | None = None
    parameters: tuple[tuple[str, Scalar], ...] = ()

    def __post_init__(self) -> None:
        given = [x for x in (self.implementation, self.function, self.spec) if x is not None]
        if len(given) != 1:
            raise ValueError(f"formulation {self.name!r}: give exactly one of implementation, function, spec")

    @property
    def sandboxed(self) -> bool:
        """Whether it runs in the sandbox process (a user's target) rather than in this one."""
        return self.spec is not None
