"""Which formulations a sweep audits: -f names, --impl targets, the config's list, entry points.

Also the catalogue that `bce-audit list` prints. User code is only ever loaded in the sandbox
process (see ``formulations.user``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bce_audit.errors import UsageError, did_you_mean
from bce_audit.formulations.builtins import BUILTINS, DEFAULT, get_formulation
from bce_audit.formulations.interface import Formulation, Origin, Scalar, UserFormulationSpec, Value
from bce_audit.formulations.user import (
    NAME_PATTERN,
    complete,
    distribution,
    entry_point_spec,
    entry_points,
    installed_entry_points,
    load,
    spec_from_impl,
    spec_from_table,
)
from bce_audit.reference import MEMBER_PARAMETERS, Reference

if TYPE_CHECKING:  # pragma: no cover
    from importlib.metadata import EntryPoint

    from bce_audit.engines.sandbox import Sandbox


def _unknown(name: str, installed: dict[str, EntryPoint], own: Iterable[str | None] = ()) -> UsageError:
    others = [n for n in installed if NAME_PATTERN.match(n)]
    mine = [n for n in own if n is not None]
    extra = f"; or an installed one: {', '.join(others)}" if others else ""
    extra += f"; or your own: {', '.join(mine)}" if mine else ""
    return UsageError(
        f"unknown formulation {name!r}{did_you_mean(name, list(BUILTINS) + others + mine)}; "
        f"choose from {', '.join(BUILTINS)}{extra}"
    )


@dataclasses.dataclass(frozen=True)
class Selection:
    """The formulations a sweep audits, in report order.

    names: every formulation's name (built-ins, installed ones, the user's own).
    user: what each name that is not a plain built-in stands for (a target, a built-in with other
        parameters, an entry point), completed (name, domain and formula known).
    """

    names: tuple[str, ...]
    user: tuple[UserFormulationSpec, ...] = ()

    @classmethod
    def default(cls) -> Selection:
        """The default built-ins (``DEFAULT``), nothing else: what a sweep audits when nothing
        is selected."""
        return cls(DEFAULT)


def select_formulations(
    flag_names: Iterable[str],
    impl_targets: Iterable[str],
    config_items: list[Any] | None,
    config_source: str | None,
    sandbox: Sandbox | None = None,
    extra: tuple[str, ...] = (),
) -> Selection:
    """The formulations of a sweep from -f names, --impl targets and the config's list.

    Flags win per kind: ``-f`` replaces the config's names, ``--impl`` its tables. Report order:
    the -f names (else the config's list in its order, names and tables), then the --impl targets.
    Nothing selected: every built-in (``Selection.default()``). User formulations alone (no -f, no
    names in the config) are audited alone; -f NAME adds built-ins or installed ones. Every user
    formulation is loaded in ``sandbox`` (an ``engines.sandbox.Sandbox``; one is made for the call
    when None) before any sweep work: one that cannot be is a UsageError naming it. ``extra``:
    the names of formulations given as Python callables, audited after the others.
    """
    flag_names, impl_targets = list(flag_names), list(impl_targets)
    base_dir = str(Path(config_source).resolve().parent) if config_source else str(Path.cwd())
    items: list[str | UserFormulationSpec] = list(flag_names)
    for i, item in enumerate(config_items or []):
        if isinstance(item, str):
            if not flag_names:
                items.append(item)
        elif not impl_targets:
            items.append(spec_from_table(item, f"{config_source or 'config'} formulations[{i}]", base_dir))
    items += [spec_from_impl(t) for t in impl_targets]
    if not items and not extra:
        return Selection.default()

    # Load the user's functions first: a -f name may then refer to one of them. They load in a
    # sandbox; one made here starts its process only if something needs it (a user's target, or
    # an installed entry point named with -f).
    if sandbox is None:
        from bce_audit.engines.sandbox import Sandbox

        with Sandbox() as box:
            return select_formulations(flag_names, impl_targets, config_items, config_source, box, extra)
    completed = {id(item): complete(item, sandbox) for item in items if not isinstance(item, str)}
    user_names = {spec.name for spec in completed.values()}
    installed = None  # entry points: looked up only when a name is not a built-in
    names: list[str] = []
    specs: list[UserFormulationSpec] = []
    tables: dict[str, UserFormulationSpec] = {}  # the config's tables by name: one table per name
    for item in items:
        if isinstance(item, str):
            if item in BUILTINS:
                names.append(item)
                continue
            installed = entry_points() if installed is None else installed
            if item in installed:
                spec = complete(entry_point_spec(installed[item]), sandbox)
                assert spec.name is not None  # completed
            elif item in user_names:
                continue  # -f naming one of the user's own formulations: it is there already
            else:
                raise _unknown(item, installed, user_names)
        else:
            spec = completed[id(item)]
            assert spec.name is not None  # completed
            if spec.origin is Origin.CONFIG:
                other = tables.setdefault(spec.name, spec)
                if other is not spec:  # a copy-and-paste that forgot to change the name (or anything)
                    same = " (the same table twice)" if other == spec else ""
                    raise UsageError(f"{spec.where}: the name {spec.name!r} is taken by {other.where}{same}")
            if spec.is_builtin and not spec.parameters and spec.name == spec.target:
                names.append(spec.name)  # a config table that only names a built-in
                continue
            if spec.name in BUILTINS:
                fix = "a name key" if spec.origin is Origin.CONFIG else "@formulation(name=...)"
                raise UsageError(f"{spec.where}: the name {spec.name!r} is a built-in's; give it another with {fix}")
        clash = next((s for s in specs if s.name == spec.name), None)
        if clash is not None:
            if clash == spec:
                continue  # the same formulation twice on the command line: once is enough
            raise UsageError(f"{spec.where}: the name {spec.name!r} is taken by {clash.where}")
        names.append(spec.name)
        specs.append(spec)
    for name in extra:
        if name in names or name in BUILTINS:
            raise UsageError(f"two formulations are named {name!r}; give the function another name")
        names.append(name)
    return Selection(tuple(dict.fromkeys(names)), tuple(specs))


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    """One row of `bce-audit list`."""

    name: str
    domain: str
    engine: str
    source: str
    definition: str
    reference: str = "bce"  # the key of the reference it is measured against (bce_audit.reference)


def catalogue(
    impl_targets: Iterable[str], config_items: list[Any] | None, config_source: str | None, sandbox: Sandbox
) -> list[CatalogueEntry]:
    """Every formulation bce-audit knows of: built-ins, installed entry points, the user's own.

    A broken entry point is listed with its error (it fails a sweep only when selected), an
    ignored one (a built-in's name, or one an earlier entry point has) with why; a broken --impl
    or config target is a usage error, as it is for a sweep.
    """
    rows = [
        CatalogueEntry(f.name, str(f.native_domain), f.engine, str(Origin.BUILTIN), f.formula, f.reference.key)
        for f in BUILTINS.values()
    ]
    for ep, ignored in installed_entry_points():
        name, source = ep.name, f"{Origin.ENTRY_POINT} ({distribution(ep)})"
        if ignored is not None:
            rows.append(CatalogueEntry(name, "-", "-", source, ignored, "-"))
            continue
        try:
            f = load(complete(entry_point_spec(ep), sandbox))
        except UsageError as exc:
            rows.append(CatalogueEntry(name, "?", "?", source, f"error: {exc}", "?"))
            continue
        rows.append(CatalogueEntry(name, str(f.native_domain), f.engine, source, f.formula, f.reference.key))
    selected = select_formulations((), impl_targets, config_items, config_source, sandbox)
    for spec in selected.user:
        assert spec.name is not None  # completed
        f = load(spec)
        rows.append(
            CatalogueEntry(spec.name, str(f.native_domain), f.engine, str(spec.origin), f.formula, f.reference.key)
        )
    return rows


# One swept parameter: its name and the values asked for, as typed (``--param gamma=0,0.5,2``).
ParameterSweep = tuple[tuple[str, tuple[str, ...]], ...]


# The spelling of None in --param (TOML's ``{ none = true }``): a user's function may be called
# with None (``alpha=None``: no class weighting); a string parameter's ``none`` stays a string.
NONE_TEXT = "none"


def _parameter_value(formulation: Formulation, name: str, text: str) -> Scalar | None:
    """A swept value as the type of the formulation's own value of that parameter: a string
    parameter's text as it is; a boolean's ``true`` or ``false``; a number's number, or ``none``
    (None) for a user's function (a built-in takes numbers only); a parameter that is None now,
    ``none``, a number, ``true`` or ``false``. A list-valued parameter is not swept (a one-line
    UsageError), nor is any text its parameter cannot take."""
    current = _sweepable(formulation)[name]
    where = f"--param {name}={text}"
    if isinstance(current, tuple):
        shown = "[" + ", ".join(_value_text(v) for v in current) + "]"
        raise UsageError(
            f"--param {name}: {formulation.name}'s {name} is a list ({shown}), and --param sweeps single values; "
            "give each list its own config table"
        )
    if isinstance(current, str):
        return text
    if isinstance(current, bool):
        if text not in ("true", "false"):
            raise UsageError(f"{where}: {formulation.name} takes true or false")
        return text == "true"
    user = formulation.implementation is None  # a user's function, which may be given None
    if text == NONE_TEXT and (user or current is None):
        return None
    if current is None and text in ("true", "false"):
        return text == "true"
    try:
        value = float(text)
    except ValueError:
        takes = "none or a number" if user else "a number"
        raise UsageError(f"{where}: {formulation.name} takes {takes}") from None
    return int(value) if isinstance(current, int) and value.is_integer() else value


def _value_text(value: Scalar | None) -> str:
    """A swept value as the variant's text shows it, the same however it was spelled (0.5, 0.50
    and 5e-1 are one case, so a baseline keys on the value): the shortest text that reads back as
    the value, without a trailing ``.0``."""
    if value is None:
        return NONE_TEXT
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _sweepable(formulation: Formulation) -> dict[str, Value]:
    """The parameters --param can sweep, with their current values: the formulation's own, and a
    user's keywords whose signature default its reference reads (``signature_defaults``: a
    focal loss's ``gamma=2.0`` is swept as if it were in its parameters)."""
    return {**dict(formulation.signature_defaults), **dict(formulation.parameters)}


# A parameter that never changes the elementwise loss: sweeping it against a fixed reference is
# meaningful ("none" keeps the loss elementwise; any reducing value is refused by the first-call check).
_REFERENCE_FREE = ("reduction",)


def _fixed_reference(f: Formulation, name: str) -> str | None:
    """Why ``f``'s reference cannot follow the swept parameter ``name`` that it does not read
    (not one of its member's), or None when it can or need not. It cannot when the reference is a
    table (``reference_parameters``) that fixes every parameter of its member, or one the swept
    name stands for under another name (``label_smoothing`` for ``smoothing``): the loss would
    change while its reference stays where the table put it. ``reduction`` never changes the
    elementwise loss, and is swept."""
    if f.reference_member is None or f.reference_parameters is None or name in _REFERENCE_FREE:
        return None
    own = MEMBER_PARAMETERS[f.reference_member]
    if name in own:
        return None
    named = dict(f.reference_parameters)
    # another name for a named one: one name inside the other (a short one, "a", is no evidence)
    low = name.lower()
    alias = [p for p in named if min(len(p), len(name)) >= 4 and (p.lower() in low or low in p.lower())]
    if not alias and not all(p in named for p in own):
        return None
    shown = ", ".join(f"{k}={_value_text(v)}" for k, v in named.items())  # type: ignore[arg-type]  # scalars
    if alias:
        follow = f"name the loss's parameter {alias[0]} as the reference does and drop it from the reference"
    else:
        follow = "drop a parameter from the reference to let it come from the loss"
    return (
        f"--param {name}: {f.name}'s reference is fixed ({f.reference_member} with {shown}), so it cannot follow "
        f"the loss's {name}; to let it follow, {follow}, or give each value its own config table and reference"
    )


def _not_taken(name: str, formulations: list[Formulation]) -> str:
    """Why no selected formulation takes ``name``, and how one would, for --param's error."""
    for f in formulations:
        spec = f.spec
        init = dict(spec.init or ()) if spec is not None else {}
        if name in init or name in dict(f.constructor_defaults):
            return (
                f"; {f.name}'s {name} is a constructor (init) argument, which --param cannot sweep: give each "
                "value its own config table (init = { " + name + " = ... })"
            )
    members = [m for m, names in MEMBER_PARAMETERS.items() if name in names]
    if members and any(f.spec is not None and f.reference_member not in members for f in formulations):
        return (
            f"; a keyword's signature default (def loss(z, y, {name}=...)) is swept only when the loss's "
            f'reference is {members[0]} (reference = "{members[0]}"), which has {name}; or give {name} in the '
            "config table's parameters"
        )
    takers = sorted({k for f in formulations for k in _sweepable(f)})
    if takers:
        return f"; the selected formulations take {', '.join(takers)}"
    return "; --param sweeps a formulation's parameters (a config table's parameters = { ... })"


def _check_reference_value(f: Formulation, name: str, value: Scalar | None, text: str) -> None:
    """The swept value against the reference that takes it (``gamma = -1`` is no focal loss): a
    UsageError naming --param and the formulation, without the hint meant for a config (a swept
    value is the loss's own, and its reference follows it)."""
    member = f.reference_member
    if member is None or name not in MEMBER_PARAMETERS[member] or name in dict(f.reference_parameters or ()):
        return
    if value is None:  # None from the loss: the parameter's neutral value (Reference.for_loss)
        return
    try:
        Reference.for_member(member, {name: value})
    except UsageError as exc:
        raise UsageError(f"--param for {f.name}: {name}={text}: {exc}") from None


def parameter_variants(formulations: list[Formulation], sweep: ParameterSweep) -> list[tuple[Formulation, str]]:
    """Each formulation once per combination of the swept values of the parameters it takes,
    with the text of that combination (``gamma=0.5``; "" for a formulation that takes none of
    them, which runs once as it is). Its reference follows its parameters where it takes them
    from the loss (``Reference.for_loss``). A swept parameter that no formulation takes (with why
    and how one would), one its reference cannot follow (named explicitly in its reference table,
    or the reference table is fixed: ``_fixed_reference``), or a value a formulation or its
    reference refuses, is a UsageError naming --param and the formulation."""
    if not sweep:
        return [(f, "") for f in formulations]
    out: list[tuple[Formulation, str]] = []
    taken: set[str] = set()
    for f in formulations:
        declared = dict(f.parameters)
        mine = [(name, texts) for name, texts in sweep if name in _sweepable(f)]
        if not mine:
            out.append((f, ""))
            continue
        taken.update(name for name, _ in mine)
        named = dict(f.reference_parameters or ()) if f.reference_member is not None else {}
        fixed = [name for name, _ in mine if name in named]
        if fixed:
            name = fixed[0]
            value = _value_text(named[name])  # type: ignore[arg-type]  # a reference's value is a scalar
            raise UsageError(
                f"--param {name}: {f.name}'s reference names {name} = {value} itself, so it would stay fixed while "
                f"the loss's {name} changes; drop {name} from its reference to let it follow the swept value"
            )
        for name, _ in mine:
            why = _fixed_reference(f, name)
            if why is not None:
                raise UsageError(why)
        seen: set[str] = set()
        for combination in itertools.product(*[[(name, t) for t in texts] for name, texts in mine]):
            values = {name: _parameter_value(f, name, t) for name, t in combination}
            for name, t in combination:
                _check_reference_value(f, name, values[name], t)
            text = " ".join(f"{name}={_value_text(value)}" for name, value in values.items())
            if text in seen:  # 1 and 1.0 for an integer parameter: one value, one case
                continue
            seen.add(text)
            merged = tuple({**declared, **values}.items())
            try:
                spec = None if f.spec is None else dataclasses.replace(f.spec, parameters=merged)
                variant = dataclasses.replace(f, parameters=merged, spec=spec)
                variant.reference  # noqa: B018  # validates the values against the reference
            except UsageError as exc:
                raise UsageError(f"--param for {f.name} ({text}): {exc}") from None
            out.append((variant, text))
    for name, _ in sweep:
        if name not in taken:
            raise UsageError(f"--param {name}: no selected formulation takes it{_not_taken(name, formulations)}")
    return out


def parse_parameter_sweep(texts: Iterable[str]) -> ParameterSweep:
    """``NAME=V1,V2,...`` texts as (name, values). A value given twice (``gamma=1,1``, or
    ``0.5,0.50``: one number) is an error, as is a number written with ``_`` (``1_0``: Python
    reads it as 10, but a typo is likelier)."""
    out: dict[str, tuple[str, ...]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip()
        parts = [v.strip() for v in values.split(",")]
        if not sep or not NAME_PATTERN.match(name) or not all(parts):
            raise UsageError(f"--param {text!r} is not of the form NAME=V1,V2,... (for example gamma=0,0.5,2)")
        if name in out:
            raise UsageError(f"--param {name} is given twice; list its values once: {name}=V1,V2,...")
        canonical: dict[str, str] = {}
        for part in parts:
            if "_" in part and _reads_as_number(part):
                raise UsageError(
                    f"--param {name}={values.strip()}: {part!r} is not a number as --param reads them (no '_' "
                    "in numbers); write it without"
                )
            value = _canonical(part)
            if value in canonical:
                same = "" if canonical[value] == part else f" (as {canonical[value]})"
                raise UsageError(
                    f"--param {name}={values.strip()}: the value {part} is given twice{same}; list it once"
                )
            canonical[value] = part
        out[name] = tuple(canonical)
    return tuple(out.items())


def _canonical(text: str) -> str:
    """A value as one spelling: a number as its shortest text (0.50 and 5e-1 are 0.5), true and
    false in lower case, anything else as given; the run's settings, and so a baseline's, key on
    this."""
    if text.lower() in ("true", "false"):
        return text.lower()
    if text == NONE_TEXT:
        return text
    try:
        return _value_text(float(text))
    except ValueError:
        return text


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def resolve(selection: Selection, functions: tuple[Formulation, ...] = ()) -> list[Formulation]:
    """The formulations of a sweep, in report order: the one place the pipeline gets them.
    ``functions``: formulations given as Python callables, by name."""
    user = {spec.name: spec for spec in selection.user}
    given = {f.name: f for f in functions}
    return [
        given[name] if name in given else load(user[name]) if name in user else get_formulation(name)
        for name in selection.names
    ]
