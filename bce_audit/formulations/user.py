"""Formulations users bring: their own loss functions, from a module, a file or an installed package.

Three ways in, one shape out (a ``UserFormulationSpec`` in the settings, a ``Formulation`` in the
sweep):

* ``--impl TARGET``, TARGET being ``module:function`` or ``path/to/file.py:function``, optionally
  suffixed ``@logits`` or ``@probabilities``;
* a table in the config's ``formulations`` list: ``target``, ``name``, ``domain``, ``parameters``
  (the target may also be a built-in's name, to run it with other parameters);
* an entry point in the group ``bce_audit.formulations`` of an installed package, selected by its
  name with ``-f NAME`` (never part of the default set).

The function is called as ``fn(input, target, **parameters)`` and audited like a built-in. It is
imported and called only in the sandbox process (``engines.sandbox``), which calls this module's
``complete_here`` and ``load_here``; here, ``complete`` asks the sandbox. Loading problems are
usage errors raised before any sweep work; a function that fails at run time only turns its own
cases into ``error`` rows.

This module is imported by ``bce_audit/__init__.py`` (for the decorator), so it stays light: no
torch, no mpmath, and the heavier standard modules are imported where they are used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

from bce_audit.errors import ArgumentError, UsageError, describe, did_you_mean, stops_the_run
from bce_audit.formulations.builtins import BUILTINS
from bce_audit.formulations.interface import (
    DEFAULT_CALLING,
    ArgumentOrder,
    Calling,
    CallShape,
    Formulation,
    Loader,
    Origin,
    UserFormulationSpec,
    Value,
    value_as_argument,
    value_from_data,
)
from bce_audit.reference import MEMBER_PARAMETERS, Member, Reference
from bce_audit.vocabulary import Domain, EngineName

if TYPE_CHECKING:  # pragma: no cover
    from importlib.metadata import EntryPoint
    from types import ModuleType

# A context manager factory that holds the framework's global state around user code (see _user_code).
Pin: TypeAlias = Callable[[], contextlib.AbstractContextManager[object]]
_F = TypeVar("_F", bound=Callable[..., Any])

ENTRY_POINT_GROUP = "bce_audit.formulations"

# The attributes @formulation sets on a function; read back when the function is loaded.
DOMAIN_ATTR = "__bce_audit_domain__"
NAME_ATTR = "__bce_audit_name__"
FORMULA_ATTR = "__bce_audit_formula__"
ENGINE_ATTR = "__bce_audit_engine__"
REFERENCE_ATTR = "__bce_audit_reference__"
INIT_ATTR = "__bce_audit_init__"
ARGUMENTS_ATTR = "__bce_audit_arguments__"
SHAPE_ATTR = "__bce_audit_shape__"

# A name users can type after -f and read in a CSV cell: no spaces, not starting with '-'.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")
_NAME_RULE = "letters, digits, '_', '.', '+' or '-', not starting with '.', '+' or '-'"

# The packages bce-audit runs on: a user file or module of the same name would replace them.
_SHADOWABLE = ("torch", "numpy", "mpmath", "bce_audit")

_TARGET_FORMS = "not of the form MODULE:FUNCTION or FILE.py:FUNCTION (optionally @logits or @probabilities)"


@overload
def formulation(
    fn: _F,
    /,
    *,
    domain: str | None = None,
    name: str | None = None,
    formula: str | None = None,
    engine: str | None = None,
    reference: str | dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    arguments: str | None = None,
    shape: str | None = None,
) -> _F: ...


@overload
def formulation(
    fn: None = None,
    /,
    *,
    domain: str | None = None,
    name: str | None = None,
    formula: str | None = None,
    engine: str | None = None,
    reference: str | dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    arguments: str | None = None,
    shape: str | None = None,
) -> Callable[[_F], _F]: ...


def formulation(
    fn: _F | None = None,
    /,
    *,
    domain: str | None = None,
    name: str | None = None,
    formula: str | None = None,
    engine: str | None = None,
    reference: str | dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    arguments: str | None = None,
    shape: str | None = None,
) -> _F | Callable[[_F], _F]:
    """Mark a loss function for bce-audit; it only sets attributes, the function is unchanged.

    domain: ``"logits"`` or ``"probabilities"``, what the first argument is. A ``@logits`` /
        ``@probabilities`` suffix on the target, or ``domain`` in the config, wins over it.
    name: the name it is reported under (default: the function's name in the target).
    formula: a one-line definition shown by ``bce-audit list``.
    engine: the framework the function is written in: ``"torch"`` (the default), ``"jax"``,
        ``"tensorflow"`` or ``"keras"``; it is called with that framework's arrays and
        differentiated by it. ``engine`` in the config wins over it.
    reference: the member of the BCE family it implements, ``"focal"``, or with its parameters,
        ``{"loss": "focal", "gamma": 2.0, "alpha": 0.25}``; the config's ``reference`` wins.
    init: on a class: the keyword arguments it is instantiated with (once per process); the
        instance is the loss. The config's ``init`` wins.
    arguments: ``"target, input"`` for a loss written ``f(y_true, y_pred)`` (Keras' order).
    shape: ``"(N, 1)"`` or ``"(1, N)"``: the layout the loss is called with (see the config's
        ``shape``). The config's ``arguments`` and ``shape`` win when they are not the default.

    Use it as ``@formulation(domain="logits")`` (or bare, ``@formulation``, which marks nothing).
    """

    # checked here, at the decorator's call: a mistake shows where it is written
    if fn is not None and not callable(fn):
        example = f'domain="{fn}"' if str(fn) in {str(d) for d in Domain} else 'domain="logits"'
        raise ArgumentError(
            f"@formulation takes keyword arguments only: write @formulation({example}), not @formulation({fn!r})"
        )
    marks: dict[str, object] = {}
    if domain is not None:
        try:
            marks[DOMAIN_ATTR] = str(Domain.parse(str(domain), "domain"))
        except UsageError as exc:
            raise ArgumentError(f"@formulation: {exc}") from None
    if name is not None:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ArgumentError(f"@formulation: name {name!r} must be {_NAME_RULE}")
        marks[NAME_ATTR] = name
    if formula is not None:
        marks[FORMULA_ATTR] = str(formula)
    if engine is not None:
        try:
            marks[ENGINE_ATTR] = str(EngineName.parse(str(engine), "engine"))
        except UsageError as exc:
            raise ArgumentError(f"@formulation: {exc}") from None

    try:
        if reference is not None:
            marks[REFERENCE_ATTR] = _reference_mark(reference)
        if init is not None:
            if not isinstance(init, dict) or not all(isinstance(k, str) for k in init):
                raise UsageError(f"init must be a dict of keyword arguments, not {init!r}")
            marks[INIT_ATTR] = tuple((k, value_from_data(v)) for k, v in init.items())
        if arguments is not None:
            marks[ARGUMENTS_ATTR] = ArgumentOrder.parse_spaced(str(arguments), "arguments")
        if shape is not None:
            marks[SHAPE_ATTR] = CallShape.parse_spaced(str(shape), "shape")
    except (UsageError, TypeError) as exc:
        raise ArgumentError(f"@formulation: {exc}") from None

    import inspect

    def mark(f: _F) -> _F:
        if not callable(f):
            raise ArgumentError(f"@formulation marks a function or a class, not {type(f).__name__} {f!r}")
        if INIT_ATTR in marks and not inspect.isclass(f):  # as the config's init on a function target
            raise ArgumentError(
                f"@formulation: init is for a class, and {getattr(f, '__name__', f)!r} is a "
                f"{type(f).__name__}; give a function's keyword arguments in the config's parameters"
            )
        for attr, value in marks.items():
            setattr(f, attr, value)
        return f

    return mark if fn is None else mark(fn)


def _reference_mark(reference: object) -> tuple[Member, tuple[tuple[str, Value], ...] | None]:
    """The decorator's ``reference``: a member's name, or a dict with ``loss`` and its parameters."""
    if isinstance(reference, str):
        return Member.parse(reference, "reference"), None
    if not isinstance(reference, dict) or not isinstance(reference.get("loss"), str):
        raise UsageError(f'reference must be a loss\'s name or {{"loss": "focal", ...}}, not {reference!r}')
    member = Member.parse(reference["loss"], "reference")
    parameters = tuple((k, value_from_data(v)) for k, v in reference.items() if k != "loss")
    own = MEMBER_PARAMETERS[member]
    for key, _ in parameters:
        if key not in own:
            raise UsageError(f"reference {member} has no parameter {key!r}; its parameters are {', '.join(own)}")
    Reference.for_member(member, dict(parameters))
    return member, parameters


# --------------------------------------------------------------------------- declaring


def parse_target(text: str, where: str) -> tuple[str, Domain | None]:
    """``'module:function@logits'`` -> ``('module:function', Domain.LOGITS)``; the suffix is optional."""
    ref, domain = text, None
    head, at, tail = text.rpartition("@")
    if at and not any(c in tail for c in ":/\\"):  # an '@' inside a directory name is not a suffix
        ref = head
        try:
            domain = Domain.parse(tail, "domain")
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
    location, colon, attr = ref.rpartition(":")
    if not colon or not location or not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(f"{where}: {_TARGET_FORMS}")
    if not _is_file(location) and not all(part.isidentifier() for part in location.split(".")):
        raise UsageError(f"{where}: {_TARGET_FORMS}")
    if _is_file(location) and Path(location).stem in _SHADOWABLE:
        raise UsageError(f"{where}: {_shadows(Path(location).name, Path(location).stem)}")
    return ref, domain


def _shadows(file: str | Path, package: str) -> str:
    return f"{file} would shadow the installed package {package}; rename it"


def _is_file(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def source_file(spec: UserFormulationSpec) -> Path | None:
    """The .py file a target names (``path/loss.py:fn``), relative to where it was named; None for
    a module name, an entry point or a built-in. No output may overwrite it."""
    if spec.is_builtin:
        return None
    location = spec.target.rpartition(":")[0]
    if not _is_file(location):
        return None
    return (Path(spec.base_dir) if spec.base_dir else Path.cwd()) / location


def spec_from_impl(text: str) -> UserFormulationSpec:
    """One ``--impl`` value; a relative file path is relative to the current directory."""
    where = f"--impl {text!r}"
    ref, domain = parse_target(text, where)
    return UserFormulationSpec(None, ref, domain, (), Origin.IMPL, where, str(Path.cwd()))


def spec_from_table(table: dict[str, Any], where: str, base_dir: str) -> UserFormulationSpec:
    """One table of the config's ``formulations`` list (its keys and types checked by config.py)."""
    target = table["target"]
    where = f"{where} (target {target!r})"
    name = table.get("name")
    parameters = _config_values(table.get("parameters", {}))
    init = None if "init" not in table else _config_values(table["init"])
    calling = _config_calling(table, where)
    domain: Domain | None
    engine = None
    if "engine" in table:
        try:
            engine = str(EngineName.parse(table["engine"], "engine"))
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
    if target in BUILTINS:
        if "domain" in table:
            raise UsageError(f"{where}: a built-in has its own domain; drop the domain key")
        if engine is not None and engine != BUILTINS[target].engine:
            raise UsageError(f"{where}: {target} runs in {BUILTINS[target].engine}; drop the engine key")
        engine = BUILTINS[target].engine
        domain = BUILTINS[target].native_domain
    else:
        if ":" not in target and not _is_file(target.partition("@")[0]):  # meant a built-in's name
            raise UsageError(
                f"{where}: unknown formulation {target!r}{did_you_mean(target, list(BUILTINS))}; a target is "
                f"a built-in ({', '.join(BUILTINS)}), MODULE:FUNCTION or FILE.py:FUNCTION"
            )
        ref, domain = parse_target(target, where)
        target = ref
        if "domain" in table:
            try:
                declared = Domain.parse(table["domain"], "domain")
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}") from None
            if domain is not None and declared is not domain:
                raise UsageError(f"{where}: domain {str(declared)!r} contradicts the suffix @{domain}")
            domain = declared
    if name is not None and not NAME_PATTERN.match(name):
        raise UsageError(f"{where}: name {name!r} must be {_NAME_RULE}")
    builtin = target in BUILTINS
    if "reference" in table and builtin:
        raise UsageError(f"{where}: a built-in declares its own reference; drop the reference key")
    for key in ("init", "arguments", "shape"):
        if key in table and builtin:
            raise UsageError(f"{where}: a built-in is called by bce-audit itself; drop the {key} key")
    loss: str | None = table.get("reference")
    reference_parameters = None
    if isinstance(loss, dict):  # { loss = "focal", gamma = 2.0 }: the member and its own parameters
        reference_parameters = _config_values({k: v for k, v in loss.items() if k != "loss"})
        loss = loss["loss"]
    try:  # the member of the BCE family it implements, checked with its parameters
        reference = Member.parse(loss, "reference") if loss is not None else None
        if reference is not None and reference_parameters is not None:
            own = MEMBER_PARAMETERS[reference]
            for key, _ in reference_parameters:
                if key not in own:
                    raise UsageError(
                        f"reference {reference} has no parameter {key!r}; its parameters are {', '.join(own)}"
                    )
        return UserFormulationSpec(
            name,
            target,
            domain,
            parameters,
            Origin.CONFIG,
            where,
            base_dir,
            builtin=builtin,
            reference=reference,
            engine=engine,
            reference_parameters=reference_parameters,
            init=init,
            calling=calling,
        )
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _config_values(table: dict[str, Any]) -> tuple[tuple[str, Value], ...]:
    """A config table of keyword arguments (checked by config.py): ``{ none = true }`` is None,
    a list a tuple (a list again when the function is called)."""
    return tuple((key, None if isinstance(value, dict) else value_from_data(value)) for key, value in table.items())


def _config_calling(table: dict[str, Any], where: str) -> Calling:
    """The config's ``arguments`` and ``shape`` keys, checked."""
    try:
        order = ArgumentOrder.parse_spaced(table.get("arguments", str(ArgumentOrder.INPUT_TARGET)), "arguments")
        shape = CallShape.parse_spaced(table.get("shape", str(CallShape.FLAT)), "shape")
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return Calling(order, shape)


def installed_entry_points() -> list[tuple[EntryPoint, str | None]]:
    """Every entry point of the group, each with why it is ignored (None if it is not).

    A built-in's name is ignored (built-ins win: installing a package never changes what a name
    means), and so is a name an earlier entry point already has (the first one found wins).
    """
    from importlib.metadata import entry_points as installed

    found: list[tuple[EntryPoint, str | None]] = []
    seen: dict[str, EntryPoint] = {}
    for ep in installed(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
            found.append((ep, f"ignored: the built-in {ep.name!r} has this name; rename the entry point"))
        elif ep.name in seen:
            found.append((ep, f"ignored: the entry point of {distribution(seen[ep.name])} has this name"))
        else:
            seen[ep.name] = ep
            found.append((ep, None))
    return found


def entry_points() -> dict[str, EntryPoint]:
    """Installed formulations: entry-point name -> EntryPoint, the ignored ones left out."""
    return {ep.name: ep for ep, ignored in installed_entry_points() if ignored is None}


def distribution(ep: EntryPoint) -> str:
    """The package that registered an entry point, as 'name version'."""
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"


def entry_point_spec(ep: EntryPoint) -> UserFormulationSpec:
    """An entry point's value is ``module:function``, its domain from @formulation (or a suffix)."""
    where = f"entry point {ep.name!r} of {distribution(ep)} ({ep.value!r})"
    if not NAME_PATTERN.match(ep.name):
        raise UsageError(f"{where}: the name {ep.name!r} is not a formulation name ({_NAME_RULE})")
    value = "".join(ep.value.split("[", 1)[0].split())  # extras and spaces are legal in the syntax
    ref, domain = parse_target(value, where)
    if _is_file(ref.rpartition(":")[0]):
        raise UsageError(f"{where}: an entry point names a module, not a file")
    return UserFormulationSpec(ep.name, ref, domain, (), Origin.ENTRY_POINT, where, None)


# --------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _user_code(path_entry: str | None, where: str, pin: Pin) -> Iterator[None]:
    """Run user code: its prints go to stderr (never into a report on stdout), its directory is
    importable while it is imported (as `python file.py` would have it), and sys.path is restored.

    The sandbox imports torch, numpy and mpmath before any user code, so a module of the user's
    directory named like one of them is never picked up; one that an import took for bce_audit
    (or for a package not imported yet) is forgotten again, and is a UsageError naming it.
    ``pin`` is a context manager that holds the framework's global state (nothing a module
    switches at import, such as flush-denormal or np.seterr, outlives the import).
    """
    added = path_entry if path_entry is not None and path_entry not in sys.path else None
    before = set(sys.modules)
    if added is not None:
        sys.path.insert(0, added)
    try:
        with contextlib.redirect_stdout(sys.stderr), pin():
            yield
    finally:
        if added is not None:
            try:
                sys.path.remove(added)
            except ValueError:
                pass
        shadow = _forget_shadows(before, path_entry) if path_entry is not None else None
    if shadow is not None:
        raise UsageError(f"{where}: {_shadows(shadow[0], shadow[1])}")


def _forget_shadows(before: set[str], directory: str) -> tuple[str, str] | None:
    """(file, package) of a module newly imported from ``directory`` under a name bce-audit
    runs on, after removing it (and its submodules) from sys.modules; None if there is none."""
    found: tuple[str, str] | None = None
    for package in _SHADOWABLE:
        module = sys.modules.get(package)
        if package in before or module is None:
            continue
        file = getattr(module, "__file__", None)
        if file is None:
            continue
        path = Path(file).resolve()
        home = path.parent if path.name != "__init__.py" else path.parent.parent
        if home != Path(directory).resolve():
            continue
        for key in [k for k in sys.modules if k not in before and (k == package or k.startswith(package + "."))]:
            del sys.modules[key]
        found = found or (str(path), package)
    return found


def _import_file(path: Path, where: str, pin: Pin) -> ModuleType:
    """A .py file as a module, once per process: its module name is derived from its path."""
    import hashlib
    import importlib.util

    path = path.resolve()
    if not path.is_file():
        raise UsageError(f"{where}: file {path} not found")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"_bce_audit_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{where}: {path} cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec, as import does: dataclasses and pickle look it up
    try:
        with _user_code(str(path.parent), where, pin):
            spec.loader.exec_module(module)
    except ArgumentError as exc:  # a mistake in its @formulation, raised as the module is imported
        del sys.modules[name]
        raise UsageError(f"{where}: {path.name}: {exc}") from None
    except UsageError:
        del sys.modules[name]
        raise
    except BaseException as exc:  # noqa: BLE001 - even a KeyboardInterrupt it raises is its fault (the sandbox ignores Ctrl-C)
        del sys.modules[name]
        if stops_the_run(exc):
            raise
        raise UsageError(f"{where}: cannot import {path.name}: {describe(exc)}") from None
    return module


def _import_module(name: str, base_dir: str | None, where: str, pin: Pin) -> ModuleType:
    import importlib

    top = name.partition(".")[0]
    if top in _SHADOWABLE and base_dir is not None:
        for local in (Path(base_dir) / f"{top}.py", Path(base_dir) / top / "__init__.py"):
            if local.is_file():  # the installed package would be imported, not this
                raise UsageError(f"{where}: {_shadows(local, top)}")
    try:
        with _user_code(base_dir, where, pin):
            return importlib.import_module(name)
    except ArgumentError as exc:  # as in _import_file
        raise UsageError(f"{where}: {name}: {exc}") from None
    except UsageError:
        raise
    except BaseException as exc:  # noqa: BLE001 - as in _import_file
        if stops_the_run(exc):
            raise
        raise UsageError(f"{where}: cannot import {name}: {describe(exc)}") from None


def load_function(spec: UserFormulationSpec, pin: Pin = contextlib.nullcontext) -> Callable[..., Any]:
    """The callable a (non built-in) target names; UsageError naming the target otherwise.
    ``pin``: see ``_user_code``."""
    location, _, attr = spec.target.rpartition(":")
    file = source_file(spec)
    if file is not None:
        module = _import_file(file, spec.where, pin)
    else:
        module = _import_module(location, spec.base_dir, spec.where, pin)
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except BaseException:  # noqa: BLE001 - a module __getattr__ is the user's code too
            public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
            raise UsageError(f"{spec.where}: {location} has no function {attr!r}{did_you_mean(attr, public)}") from None
    if not callable(obj):
        raise UsageError(f"{spec.where}: {attr} is not callable (it is a {type(obj).__name__})")
    return obj


# A class target's instance, once per process: spec's (target, base_dir, init) -> the instance.
_INSTANCES: dict[tuple[str, str | None, str], Callable[..., Any]] = {}


def load_loss(spec: UserFormulationSpec, pin: Pin = contextlib.nullcontext) -> Callable[..., Any]:
    """The loss a (non built-in) target names: its function, or an instance of its class built
    once per process with the spec's ``init`` (an ``nn.Module``'s ``__call__`` runs its forward);
    UsageError naming the target otherwise."""
    import inspect
    import json

    obj = load_function(spec, pin)
    if not inspect.isclass(obj):
        if spec.init is not None:
            raise UsageError(f"{spec.where}: init is for a class, and {spec.target} is a {type(obj).__name__}")
        return obj
    init = declared_init(spec, obj)
    key = (spec.target, spec.base_dir, json.dumps(init))
    if key in _INSTANCES:
        return _INSTANCES[key]
    kwargs = {k: value_as_argument(v) for k, v in init}
    call = f"{obj.__name__}({_parameters_text(init)})"
    try:
        inspect.signature(obj).bind(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{spec.where}: cannot be instantiated as {call}: {exc}") from None
    except ValueError:  # no signature to read (a C type): the call itself says
        pass
    try:
        with _user_code(None, spec.where, pin):
            instance = obj(**kwargs)
    except UsageError:
        raise
    except BaseException as exc:  # noqa: BLE001 - its constructor is the user's code (the sandbox ignores Ctrl-C)
        raise UsageError(f"{spec.where}: {call} failed: {describe(exc)}") from None
    if not callable(instance):
        raise UsageError(f"{spec.where}: an instance of {obj.__name__} is not callable; give it __call__ or forward")
    _INSTANCES[key] = instance
    return instance


def declared_init(spec: UserFormulationSpec, cls: object) -> tuple[tuple[str, Value], ...]:
    """A class target's constructor arguments: the config's ``init``, else the decorator's, else none."""
    if spec.init is not None:
        return spec.init
    declared: tuple[tuple[str, Value], ...] = getattr(cls, INIT_ATTR, ())
    return declared


def _check_call(
    fn: Callable[..., Any], parameters: tuple[tuple[str, Value], ...], where: str, calling: Calling = DEFAULT_CALLING
) -> None:
    """Refuse, before the sweep, a function that cannot take its two arguments and **parameters."""
    import inspect

    # an nn.Module's __call__ takes anything: its forward says what it takes
    forward = getattr(fn, "forward", None) if not inspect.isfunction(fn) else None
    try:
        signature = inspect.signature(forward if callable(forward) else fn)
    except (TypeError, ValueError):  # not introspectable (a C function): a failure shows up as error rows
        return
    try:
        signature.bind(None, None, **{k: value_as_argument(v) for k, v in parameters})
    except TypeError as exc:
        call = ", ".join([str(calling.order)] + [f"{k}={v!r}" for k, v in parameters])
        raise UsageError(f"{where}: cannot be called as f({call}): {exc}") from None


def complete(spec: UserFormulationSpec, sandbox: Loader) -> UserFormulationSpec:
    """The spec with its name, domain and formula filled in, loading the function to read them.

    Name: the config's ``name``, else the decorator's, else the function's name in the target.
    Domain: the suffix or the config's ``domain``, else the decorator's; none at all is an error.
    A built-in target is completed here; a user's function is imported only in ``sandbox`` (an
    ``engines.sandbox.Sandbox``), never in this process.
    """
    if spec.is_builtin:
        return complete_here(spec)
    info = sandbox.describe(spec)
    done = UserFormulationSpec.from_wire(info["spec"])
    completed = dataclasses.replace(
        spec,
        name=done.name,
        domain=done.domain,
        formula=done.formula,
        engine=done.engine,
        init=done.init,
        calling=done.calling,
        reference=done.reference,
        reference_parameters=done.reference_parameters,
        signature_defaults=done.signature_defaults,
        constructor_defaults=done.constructor_defaults,
    )
    sandbox.refuse_a_reduction(completed)
    return completed


def _builtin_parameters(spec: UserFormulationSpec) -> tuple[tuple[str, Value], ...]:
    """A built-in's declared parameters with a config table's values on top (checked)."""
    builtin = BUILTINS[spec.target]
    declared = dict(builtin.parameters)
    for key, value in spec.parameters:
        if key not in declared:
            accepted = f"its parameters are {', '.join(declared)}" if declared else "it takes no parameter"
            raise UsageError(f"{spec.where}: {spec.target} has no parameter {key!r}; {accepted}")
        if isinstance(declared[key], str):  # a choice, e.g. a label smoothing convention
            if not isinstance(value, str):
                raise UsageError(f"{spec.where}: parameter {key!r} of {spec.target} must be a string, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{spec.where}: parameter {key!r} of {spec.target} must be a number, got {value!r}")
    merged = {**declared, **dict(spec.parameters)}
    try:  # the reference it is measured against takes its parameters from these
        if builtin.reference_member is not None:
            Reference.for_member(builtin.reference_member, merged)
    except UsageError as exc:
        raise UsageError(f"{spec.where}: {exc}") from None
    return tuple(merged.items())


def complete_here(spec: UserFormulationSpec, pin: Pin = contextlib.nullcontext) -> UserFormulationSpec:
    """``complete`` in this process: the sandbox's side of it (and the built-ins')."""
    if spec.is_builtin:
        _builtin_parameters(spec)
        builtin = BUILTINS[spec.target]
        formula = builtin.formula + (f"  with {_parameters_text(spec.parameters)}" if spec.parameters else "")
        return dataclasses.replace(
            spec, name=spec.name or spec.target, formula=formula, engine=BUILTINS[spec.target].engine
        )
    fn = load_loss(spec, pin)
    name = spec.name or getattr(fn, NAME_ATTR, None) or spec.target.rpartition(":")[2].rpartition(".")[2]
    domain = spec.domain
    if domain is None:
        declared = getattr(fn, DOMAIN_ATTR, None)
        if declared is None:
            if spec.origin is Origin.ENTRY_POINT:  # the package's code is the only place to say it
                raise UsageError(
                    f"{spec.where}: declare its domain: decorate the function with "
                    '@formulation(domain="logits") or @formulation(domain="probabilities")'
                )
            raise UsageError(
                f"{spec.where}: declare its domain: suffix the target with @logits or @probabilities, "
                "set domain in the config, or decorate the function with @formulation(domain=...)"
            )
        try:
            domain = Domain.parse(str(declared), "domain")
        except UsageError as exc:
            raise UsageError(f"{spec.where}: {exc}") from None
    init = spec.init
    if any(fn is instance for instance in _INSTANCES.values()):
        init = declared_init(spec, type(fn))
    calling = spec.calling
    if calling.order is ArgumentOrder.INPUT_TARGET:
        calling = dataclasses.replace(calling, order=getattr(fn, ARGUMENTS_ATTR, calling.order))
    if calling.shape is CallShape.FLAT:
        calling = dataclasses.replace(calling, shape=getattr(fn, SHAPE_ATTR, calling.shape))
    reference, reference_parameters = spec.reference, spec.reference_parameters
    if reference is None and hasattr(fn, REFERENCE_ATTR):
        reference, reference_parameters = getattr(fn, REFERENCE_ATTR)
    _check_call(fn, spec.parameters, spec.where, calling)
    built = any(fn is instance for instance in _INSTANCES.values())
    constructor_defaults, signature_defaults = _loss_defaults(
        fn, reference, reference_parameters, spec.parameters, init, built, spec.where
    )
    formula = getattr(fn, FORMULA_ATTR, None) or _first_doc_line(fn) or spec.target
    if init is not None:
        formula += f"  as {type(fn).__name__}({_parameters_text(init)})"
    if spec.parameters:
        formula += f"  with {_parameters_text(spec.parameters)}"
    if not calling.is_default:
        formula += f"  {calling.describe()}"
    engine = spec.engine or _declared_engine(fn, spec.where)
    try:
        return dataclasses.replace(
            spec,
            name=name,
            domain=domain,
            formula=formula,
            engine=engine,
            init=init,
            calling=calling,
            reference=reference,
            reference_parameters=reference_parameters,
            signature_defaults=signature_defaults,
            constructor_defaults=constructor_defaults,
        )
    except UsageError as exc:  # the decorator's reference with the config's parameters
        raise UsageError(f"{spec.where}: {exc}") from None


def _literal_defaults(
    target: object, member: Member | None, skip: set[str], needed: set[str], where: str, what: str
) -> tuple[tuple[str, Value], ...]:
    """The literal defaults ``target``'s signature gives the parameters of ``member`` that are
    not in ``skip``. A default that is not a literal (a tensor) for a name the reference has
    nowhere else (``needed``) is a UsageError: the reference cannot take it, and must not fall
    back to the family's default silently. ``what``: how the message names the signature."""
    import inspect

    if member is None:
        return ()
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]  # any callable
    except (TypeError, ValueError):  # not introspectable (a C function): no defaults to read
        return ()
    found: list[tuple[str, Value]] = []
    for name in MEMBER_PARAMETERS[member]:
        parameter = signature.parameters.get(name)
        if name in skip or parameter is None or parameter.default is parameter.empty:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            continue
        try:
            found.append((name, value_from_data(parameter.default)))
        except TypeError:
            if name in needed:
                raise UsageError(
                    f"{where}: reference {member} takes {name} from the loss's {what}, "
                    f"{type(parameter.default).__name__} {parameter.default!r}, which is not a number: name {name} "
                    "in the reference"
                ) from None
    return tuple(found)


def _loss_defaults(
    fn: object,
    member: Member | None,
    named: tuple[tuple[str, Value], ...] | None,
    parameters: tuple[tuple[str, Value], ...],
    init: tuple[tuple[str, Value], ...] | None,
    built: bool,
    where: str,
) -> tuple[tuple[tuple[str, Value], ...], tuple[tuple[str, Value], ...]]:
    """(constructor defaults, call defaults) of a loss for its reference ``member``: for an
    instance bce-audit built from a class target (``built``), the literal defaults of its
    constructor's keywords that ``init`` does not give (it was built with them); and the literal
    defaults of its call's keywords (``forward`` for an ``nn.Module``) that ``parameters`` does not
    give (``--param`` can sweep those). See ``Formulation.signature_defaults``."""
    import inspect

    if member is None:  # plain BCE: no parameter to read
        return (), ()
    given = {k for pairs in (named or (), parameters, init or ()) for k, _ in pairs}
    constructor: tuple[tuple[str, Value], ...] = ()
    if built:
        skip = {k for k, _ in init or ()}
        constructor = _literal_defaults(
            type(fn), member, skip, set(MEMBER_PARAMETERS[member]) - given, where, "constructor default"
        )
        given |= {k for k, _ in constructor}
    forward = getattr(fn, "forward", None) if not inspect.isfunction(fn) else None
    needed = set(MEMBER_PARAMETERS[member]) - given
    call = _literal_defaults(
        forward if callable(forward) else fn, member, {k for k, _ in parameters}, needed, where, "signature default"
    )
    return constructor, call


def _declared_engine(fn: object, where: str) -> str:
    """The engine ``@formulation(engine=...)`` declared on ``fn``, else torch."""
    declared = getattr(fn, ENGINE_ATTR, None)
    if declared is None:
        return str(EngineName.TORCH)
    try:
        return str(EngineName.parse(str(declared), "engine"))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _parameters_text(parameters: tuple[tuple[str, Value], ...]) -> str:
    return ", ".join(f"{k}={value_as_argument(v)!r}" for k, v in parameters)


def load(spec: UserFormulationSpec) -> Formulation:
    """The Formulation the sweep runs for a completed spec: a built-in with the spec's parameters
    runs in this process; a user's function is only named here (``spec`` set), and runs in the
    sandbox."""
    if spec.name is None or spec.domain is None or spec.formula is None:
        raise UsageError(f"{spec.where or spec.target}: not completed (name and domain unknown)")
    if spec.is_builtin:
        builtin = BUILTINS[spec.target]
        return dataclasses.replace(builtin, name=spec.name, formula=spec.formula, parameters=_builtin_parameters(spec))
    engine = spec.engine or str(EngineName.TORCH)
    return Formulation(
        spec.name,
        spec.domain,
        spec.formula,
        engine=engine,
        spec=spec,
        parameters=spec.parameters,
        reference_member=spec.reference,
        reference_parameters=spec.reference_parameters,
        calling=spec.calling,
        signature_defaults=spec.signature_defaults,
        constructor_defaults=spec.constructor_defaults,
    )


def load_here(spec: UserFormulationSpec, pin: Pin = contextlib.nullcontext) -> Formulation:
    """The Formulation with its function loaded into this process (the sandbox's side)."""
    if spec.is_builtin:
        return load(spec)
    fn = load_loss(spec, pin)
    if spec.name is None or spec.domain is None:
        raise UsageError(f"{spec.where or spec.target}: not completed (name and domain unknown)")
    engine = spec.engine or _declared_engine(fn, spec.where)
    return Formulation(
        spec.name,
        spec.domain,
        spec.formula or spec.target,
        engine=engine,
        function=fn,
        parameters=spec.parameters,
        calling=spec.calling,
    )


def formulation_of_callable(fn: Callable[..., Any]) -> Formulation:
    """A Python callable given to the API, as a Formulation that runs in the caller's process.

    Its name, domain and formula come from ``@formulation`` (the name defaults to the function's,
    the formula to its docstring's first line); a domain is required.
    """
    if not callable(fn):
        raise UsageError(f"{fn!r} is not callable: give a loss function, or a formulation's name")
    label = getattr(fn, "__qualname__", None) or repr(fn)
    declared = getattr(fn, DOMAIN_ATTR, None)
    if declared is None:
        raise UsageError(
            f'{label}: declare its domain: decorate it with @bce_audit.formulation(domain="logits") '
            'or (domain="probabilities")'
        )
    name = getattr(fn, NAME_ATTR, None) or getattr(fn, "__name__", None) or "function"
    if not NAME_PATTERN.match(name):
        raise UsageError(f"{label}: name {name!r} must be {_NAME_RULE}; give one with @formulation(name=...)")
    formula = getattr(fn, FORMULA_ATTR, None) or _first_doc_line(fn) or label
    engine = _declared_engine(fn, label)
    # the decorator's calling convention and reference (a class's init is for targets: give an instance)
    calling = Calling(getattr(fn, ARGUMENTS_ATTR, ArgumentOrder.INPUT_TARGET), getattr(fn, SHAPE_ATTR, CallShape.FLAT))
    member, reference_parameters = getattr(fn, REFERENCE_ATTR, (None, None))
    # an instance given here was built by the caller, with arguments unknown: only its call's defaults
    _, defaults = _loss_defaults(fn, member, reference_parameters, (), None, False, label)
    return Formulation(
        name,
        Domain.parse(str(declared), "domain"),
        formula,
        engine=engine,
        function=fn,
        calling=calling,
        reference_member=member,
        reference_parameters=reference_parameters,
        signature_defaults=defaults,
    )


def _first_doc_line(fn: object) -> str:
    import inspect

    if inspect.isfunction(fn):
        doc = inspect.getdoc(fn)
    elif any(fn is instance for instance in _INSTANCES.values()):  # its class's own docstring, not a base's
        own = vars(type(fn)).get("__doc__")
        doc = inspect.cleandoc(own) if isinstance(own, str) else None
    else:
        doc = None
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""
