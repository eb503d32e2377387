"""What a formulation is: one way to compute the elementwise BCE loss, and where its code runs."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, Protocol

from bce_audit.errors import UsageError
from bce_audit.reference import PLAIN_BCE, Member, Reference
from bce_audit.vocabulary import Domain

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
    engine: the framework that evaluates it (an ``EngineName``: torch, jax, tensorflow, keras).
    implementation: ``module:function`` of a built-in's code, run in bce-audit's process.
    function: a callable given to the Python API, run in the caller's process.
    spec: a user's target (--impl, a config table, an entry point), run only in the sandbox.
    parameters: the keyword arguments of every call, as (name, value) pairs: a built-in's
        declared parameters with their values (defaults, or a config table's), a user's own.
    reference_member: the member of the BCE family it implements (``bce_audit.reference``); its
        parameters are those of ``parameters`` named as the member's (``reference``), so a
        formulation is measured against the loss it claims to compute. None (the default): plain
        BCE, whatever its parameters are called.

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
    reference_member: Member | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.implementation, self.function, self.spec) if x is not None]
        if len(given) != 1:
            raise ValueError(f"formulation {self.name!r}: give exactly one of implementation, function, spec")

    @property
    def reference(self) -> Reference:
        """The exact function its figures are measured against: its member with its parameters."""
        if self.reference_member is None:
            return PLAIN_BCE
        return Reference.for_member(self.reference_member, dict(self.parameters))

    @property
    def sandboxed(self) -> bool:
        """Whether it runs in the sandbox process (a user's target) rather than in this one."""
        return self.spec is not None


class Origin(enum.StrEnum):
    """Where a formulation was declared (the `source` column of `bce-audit list`)."""

    BUILTIN = "built-in"
    ENTRY_POINT = "entry point"
    IMPL = "--impl"
    CONFIG = "config"


@dataclasses.dataclass(frozen=True)
class UserFormulationSpec:
    """A formulation the user brings: what to load and how to call it.

    name: the name it is selected by and reported under (None until ``complete`` reads it from the
        config, the decorator, or the function's name in the target).
    target: where the function lives, without the domain suffix: ``module:function``,
        ``path/to/file.py:function`` (relative to ``base_dir``), or a built-in's name (config only).
    domain: its native domain (None until ``complete`` reads it from the decorator).
    parameters: keyword arguments of every call, as (name, value) pairs of TOML scalars.
    origin: how it was declared (--impl, config, entry point).
    where: how error messages name it, e.g. ``--impl 'losses.py:bce'``.
    base_dir: the directory a relative file target is resolved from and that is on sys.path while
        the target is imported (the cwd for --impl, the config file's directory for a config);
        None for an entry point (an installed package needs no path).

    formula: the one-line definition `bce-audit list` and the reports show (None until
        ``complete`` reads it from the decorator, the docstring or the target).
    builtin: the target is a built-in's name (a config table that runs it with other parameters).
    reference: the member of the BCE family the function implements (a config table's
        ``reference`` key), its parameters taken from ``parameters``; None: plain BCE.
    engine: the framework that evaluates it (the config's ``engine``, else the decorator's, else
        torch; None until ``complete`` reads it).

    Only name, target, domain, parameters, the reference (when given) and an engine other than
    torch identify a spec (and go into the settings' dict).
    """

    name: str | None
    target: str
    domain: Domain | None
    parameters: tuple[tuple[str, Scalar], ...] = ()
    origin: Origin = dataclasses.field(default=Origin.IMPL, compare=False)
    where: str = dataclasses.field(default="", compare=False)
    base_dir: str | None = dataclasses.field(default=None, compare=False)
    formula: str | None = dataclasses.field(default=None, compare=False)
    builtin: bool = dataclasses.field(default=False, compare=False)
    reference: Member | None = None
    engine: str | None = None

    def __post_init__(self) -> None:
        if self.reference is not None:  # the member and its parameters, checked once here
            Reference.for_member(self.reference, dict(self.parameters))
        for key, value in self.parameters:
            if not isinstance(key, str) or not isinstance(value, PARAMETER_TYPES):
                raise UsageError(f"{self.where or self.target}: parameter {key!r} must be a number, bool or string")

    @property
    def is_builtin(self) -> bool:
        return self.builtin

    def to_dict(self) -> dict[str, Any]:
        found = {
            "name": self.name,
            "target": self.target,
            "domain": None if self.domain is None else str(self.domain),
            "parameters": dict(self.parameters),
            **({} if self.reference is None else {"reference": str(self.reference)}),
        }
        if self.engine not in (None, "torch"):  # a torch formulation's settings read as before engines
            found["engine"] = self.engine
        return found

    def to_wire(self) -> dict[str, Any]:
        """Every field as JSON data: how a spec travels to the sandbox process."""
        return {
            **self.to_dict(),
            "parameters": [[k, v] for k, v in self.parameters],
            "origin": str(self.origin),
            "where": self.where,
            "base_dir": self.base_dir,
            "formula": self.formula,
            "builtin": self.builtin,
            "engine": self.engine,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> UserFormulationSpec:
        domain = data["domain"]
        return cls(
            name=data["name"],
            target=data["target"],
            domain=None if domain is None else Domain(domain),
            parameters=tuple((k, v) for k, v in data["parameters"]),
            origin=Origin(data["origin"]),
            where=data["where"],
            base_dir=data["base_dir"],
            formula=data["formula"],
            builtin=bool(data["builtin"]),
            reference=None if data.get("reference") is None else Member(data["reference"]),
            engine=data.get("engine"),
        )


class Loader(Protocol):
    """Where a user's target is imported and described: the sandbox process
    (``engines.sandbox.Sandbox``), never bce-audit's own."""

    def describe(self, spec: UserFormulationSpec) -> dict[str, Any]:
        """The completed spec's name, domain and formula; a UsageError naming the target when it
        cannot be loaded or called."""
        ...
