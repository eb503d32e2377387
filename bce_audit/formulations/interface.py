"""What a formulation is: one way to compute the elementwise BCE loss, and where its code runs."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, Protocol

from bce_audit.errors import UsageError
from bce_audit.reference import PLAIN_BCE, Member, Reference
from bce_audit.vocabulary import Domain, ParsableEnum

# The values a parameter may take: TOML / JSON scalars, so that settings stay data.
Scalar = bool | int | float | str
PARAMETER_TYPES = (bool, int, float, str)
# What a user's keyword argument (a parameter, or a constructor argument in ``init``) may be:
# a scalar, None (TOML has none: the config writes ``{ none = true }``), or a list of scalars
# (a TOML array; the function gets a Python list, never a tensor: it converts what it needs).
Value = Scalar | None | tuple[Scalar, ...]


def value_from_data(value: object) -> Value:
    """A keyword argument's value as JSON / the config gives it: a list becomes a tuple (frozen)."""
    if isinstance(value, list | tuple):
        return tuple(value)
    if value is None or isinstance(value, PARAMETER_TYPES):
        return value
    raise TypeError(f"not a keyword argument's value: {value!r}")


def value_as_argument(value: Value) -> object:
    """What the function is called with: a tuple (a config's list) as a list."""
    return list(value) if isinstance(value, tuple) else value


class ArgumentOrder(ParsableEnum):
    """The order of a user's loss's two positional arguments (the config's ``arguments``)."""

    INPUT_TARGET = "input, target"  # torch's convention: loss(input, target)
    TARGET_INPUT = "target, input"  # Keras' convention: loss(y_true, y_pred)

    @classmethod
    def parse_spaced(cls, text: str, what: str) -> ArgumentOrder:
        """``"target,input"`` and ``"target , input"`` read as ``"target, input"``."""
        return cls.parse(", ".join(part.strip() for part in text.split(",")), what)


class CallShape(ParsableEnum):
    """The shape a user's loss is called with (the config's ``shape``): the grid of N inputs
    (and the targets) reshaped before the call, the loss's output flattened back (it must have
    the shape it was given)."""

    FLAT = "(N,)"
    COLUMN = "(N, 1)"  # a batch of N one-logit samples
    ROW = "(1, N)"  # one sample of N logits (a segmentation mask, a multi-label row)

    @classmethod
    def parse_spaced(cls, text: str, what: str) -> CallShape:
        compact = "".join(text.split())
        for shape in cls:
            if "".join(shape.value.split()) == compact:
                return shape
        return cls.parse(text, what)

    def of(self, n: int) -> tuple[int, ...]:
        return {CallShape.FLAT: (n,), CallShape.COLUMN: (n, 1), CallShape.ROW: (1, n)}[self]


@dataclasses.dataclass(frozen=True)
class Calling:
    """How a user's loss is called, as written (its own convention, not torch's).

    order: which positional argument is the input (prediction) and which the target.
    shape: the shape both are given (the output is flattened back to the grid's).
    """

    order: ArgumentOrder = ArgumentOrder.INPUT_TARGET
    shape: CallShape = CallShape.FLAT

    @property
    def is_default(self) -> bool:
        return self == Calling()

    def describe(self) -> str:
        """A clause for the formula text, e.g. ``called as f(target, input) on shape (N, 1)``."""
        parts = []
        if self.order is not ArgumentOrder.INPUT_TARGET:
            parts.append(f"called as f({self.order})")
        if self.shape is not CallShape.FLAT:
            parts.append(f"on shape {self.shape}")
        return " ".join(parts)


# How a function is called unless told otherwise: (input, target), the grid's flat shape.
DEFAULT_CALLING = Calling()


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
    reference_member: the member of the BCE family it implements (``bce_audit.reference``); each
        of its parameters is the reference's own value (``reference_parameters``), else the loss's
        own of that name (``parameters``, a class target's ``init``, ``constructor_defaults``,
        ``signature_defaults``), else the family's default (``Reference.for_loss``), so a
        formulation is measured against the loss it computes. None (the default): plain BCE,
        whatever its parameters are called.
    reference_parameters: the member's parameters the user names explicitly (the config's
        ``reference = { loss = "focal", gamma = 2.0 }``); they stay fixed whatever the loss is
        called with. None: none named (``reference = "focal"``).
    calling: how the function is called (argument order, shape); a user's function only.
    signature_defaults: the literal defaults the loss's call signature (a function's, an
        ``nn.Module``'s ``forward``) gives the member's parameters that ``parameters`` does not
        (read where the function is loaded); ``--param`` sweeps them as parameters.
    constructor_defaults: a class target's: the literal defaults its constructor gives the
        member's parameters that ``init`` does not (the instance was built with them).

    Exactly one of implementation, function and spec is set.
    """

    name: str
    native_domain: Domain
    formula: str
    engine: str = "torch"
    implementation: str | None = None
    function: Callable[..., Any] | None = None
    spec: UserFormulationSpec | None = None
    parameters: tuple[tuple[str, Value], ...] = ()
    reference_member: Member | None = None
    reference_parameters: tuple[tuple[str, Value], ...] | None = None
    calling: Calling = Calling()
    signature_defaults: tuple[tuple[str, Value], ...] = ()
    constructor_defaults: tuple[tuple[str, Value], ...] = ()

    def __post_init__(self) -> None:
        given = [x for x in (self.implementation, self.function, self.spec) if x is not None]
        if len(given) != 1:
            raise ValueError(f"formulation {self.name!r}: give exactly one of implementation, function, spec")
        if self.reference_member is not None and self.implementation is None:
            # a user's loss, loaded: every source of its reference's parameters is known now
            try:
                self._reference(complete=True)
            except UsageError as exc:
                where = self.spec.where if self.spec is not None and self.spec.where else f"formulation {self.name!r}"
                raise UsageError(f"{where}: {exc}") from None

    @property
    def reference(self) -> Reference:
        """The exact function its figures are measured against: its member with its parameters."""
        return self._reference()

    def _reference(self, complete: bool = False) -> Reference:
        if self.reference_member is None:
            return PLAIN_BCE
        init = None if self.spec is None else self.spec.init
        return reference_of_loss(
            self.reference_member,
            self.reference_parameters,
            self.parameters,
            init,
            self.constructor_defaults,
            self.signature_defaults,
            complete,
        )

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
    parameters: keyword arguments of every call, as (name, value) pairs (``Value``s).
    origin: how it was declared (--impl, config, entry point).
    where: how error messages name it, e.g. ``--impl 'losses.py:bce'``.
    base_dir: the directory a relative file target is resolved from and that is on sys.path while
        the target is imported (the cwd for --impl, the config file's directory for a config);
        None for an entry point (an installed package needs no path).

    formula: the one-line definition `bce-audit list` and the reports show (None until
        ``complete`` reads it from the decorator, the docstring or the target).
    builtin: the target is a built-in's name (a config table that runs it with other parameters).
    reference: the member of the BCE family the function implements (a config table's
        ``reference`` key); None: plain BCE. Its parameters: see ``Formulation.reference_member``.
    reference_parameters: the member's parameters the config names in a ``reference`` table
        (``{ loss = "focal", gamma = 2.0 }``); the others are the loss's own (``parameters``,
        ``init``, the defaults below), else the family's defaults.
    init: the target is a class: its constructor's keyword arguments (the config's ``init``);
        it is instantiated once per sandbox process and the instance is the loss. None: the
        target is called as it is (a class without ``init`` is instantiated with no argument).
    calling: the loss's own calling convention (argument order, shape).
    engine: the framework that evaluates it (the config's ``engine``, else the decorator's, else
        torch; None until ``complete`` reads it).
    signature_defaults, constructor_defaults: the literal defaults of the loss's call and (a
        class target's) constructor signatures for the reference's parameters (as
        ``Formulation``'s; read by ``complete`` in the sandbox: derived from the code, not part
        of what identifies the spec).

    Only name, target, domain, parameters, the reference (when given), init, a calling
    convention other than the default and an engine other than torch identify a spec (and go
    into the settings' dict).
    """

    name: str | None
    target: str
    domain: Domain | None
    parameters: tuple[tuple[str, Value], ...] = ()
    origin: Origin = dataclasses.field(default=Origin.IMPL, compare=False)
    where: str = dataclasses.field(default="", compare=False)
    base_dir: str | None = dataclasses.field(default=None, compare=False)
    formula: str | None = dataclasses.field(default=None, compare=False)
    builtin: bool = dataclasses.field(default=False, compare=False)
    reference: Member | None = None
    engine: str | None = None
    reference_parameters: tuple[tuple[str, Value], ...] | None = None
    init: tuple[tuple[str, Value], ...] | None = None
    calling: Calling = Calling()
    signature_defaults: tuple[tuple[str, Value], ...] = dataclasses.field(default=(), compare=False)
    constructor_defaults: tuple[tuple[str, Value], ...] = dataclasses.field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.reference is not None:  # the member and its parameters, checked once here
            reference_of_loss(
                self.reference,
                self.reference_parameters,
                self.parameters,
                self.init,
                self.constructor_defaults,
                self.signature_defaults,
            )
        elif self.reference_parameters is not None:
            raise UsageError(f"{self.where or self.target}: reference parameters without a reference loss")
        for kind, pairs in (("parameter", self.parameters), ("init argument", self.init or ())):
            for key, value in pairs:
                if not isinstance(key, str) or not _is_value(value):
                    raise UsageError(
                        f"{self.where or self.target}: {kind} {key!r} must be a number, bool, string, "
                        "{ none = true } or a list of those"
                    )

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
        if self.reference_parameters is not None:
            found["reference_parameters"] = dict(self.reference_parameters)
        if self.init is not None:
            found["init"] = dict(self.init)
        if self.calling.order is not ArgumentOrder.INPUT_TARGET:
            found["arguments"] = str(self.calling.order)
        if self.calling.shape is not CallShape.FLAT:
            found["shape"] = str(self.calling.shape)
        if self.engine not in (None, "torch"):  # a torch formulation's settings read as before engines
            found["engine"] = self.engine
        return found

    def to_wire(self) -> dict[str, Any]:
        """Every field as JSON data: how a spec travels to the sandbox process."""
        return {
            **self.to_dict(),
            "parameters": [[k, v] for k, v in self.parameters],
            "reference_parameters": None
            if self.reference_parameters is None
            else [[k, v] for k, v in self.reference_parameters],
            "init": None if self.init is None else [[k, v] for k, v in self.init],
            "arguments": str(self.calling.order),
            "shape": str(self.calling.shape),
            "origin": str(self.origin),
            "where": self.where,
            "base_dir": self.base_dir,
            "formula": self.formula,
            "builtin": self.builtin,
            "engine": self.engine,
            "signature_defaults": [[k, v] for k, v in self.signature_defaults],
            "constructor_defaults": [[k, v] for k, v in self.constructor_defaults],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> UserFormulationSpec:
        domain = data["domain"]
        return cls(
            name=data["name"],
            target=data["target"],
            domain=None if domain is None else Domain(domain),
            parameters=_pairs(data["parameters"]),
            origin=Origin(data["origin"]),
            where=data["where"],
            base_dir=data["base_dir"],
            formula=data["formula"],
            builtin=bool(data["builtin"]),
            reference=None if data.get("reference") is None else Member(data["reference"]),
            engine=data.get("engine"),
            reference_parameters=None
            if data.get("reference_parameters") is None
            else _pairs(data["reference_parameters"]),
            init=None if data.get("init") is None else _pairs(data["init"]),
            calling=Calling(
                ArgumentOrder(data.get("arguments", "input, target")), CallShape(data.get("shape", "(N,)"))
            ),
            signature_defaults=_pairs(data.get("signature_defaults", [])),
            constructor_defaults=_pairs(data.get("constructor_defaults", [])),
        )


def reference_of_loss(
    member: Member,
    named: tuple[tuple[str, Value], ...] | None,
    parameters: tuple[tuple[str, Value], ...],
    init: tuple[tuple[str, Value], ...] | None,
    constructor_defaults: tuple[tuple[str, Value], ...],
    signature_defaults: tuple[tuple[str, Value], ...],
    complete: bool = False,
) -> Reference:
    """The reference of a loss that implements ``member``: the parameters the reference names,
    else the loss's own (its call's parameters, its init, its constructor's defaults, its call
    signature's defaults), else the family's defaults (``Reference.for_loss``)."""
    return Reference.for_loss(
        member,
        dict(named or ()),
        (
            ("parameters", dict(parameters)),
            ("init", dict(init or ())),
            ("constructor default", dict(constructor_defaults)),
            ("signature default", dict(signature_defaults)),
        ),
        complete,
    )


def _pairs(data: list[list[Any]]) -> tuple[tuple[str, Value], ...]:
    return tuple((str(k), value_from_data(v)) for k, v in data)


def _optional_pairs(data: list[list[Any]] | None) -> tuple[tuple[str, Value], ...] | None:
    return None if data is None else _pairs(data)


def _is_value(value: object) -> bool:
    if isinstance(value, tuple):
        return all(isinstance(item, PARAMETER_TYPES) for item in value)
    return value is None or isinstance(value, PARAMETER_TYPES)


class Loader(Protocol):
    """Where a user's target is imported and described: the sandbox process
    (``engines.sandbox.Sandbox``), never bce-audit's own."""

    def describe(self, spec: UserFormulationSpec) -> dict[str, Any]:
        """The completed spec's name, domain and formula; a UsageError naming the target when it
        cannot be loaded or called."""
        ...

    def refuse_a_reduction(self, spec: UserFormulationSpec) -> None:
        """A UsageError naming the completed spec's target when its loss returns one value for a
        batch (it reduces: a mean cannot be audited elementwise)."""
        ...
