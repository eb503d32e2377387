"""What to audit and how to run it: the request (command-line flags or API arguments), the
config file, and the one function that turns both into validated settings.

Flags and API arguments win over the config; what neither gives takes the defaults below. The
command line and the Python API both go through ``resolve``, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bce_audit.errors import UsageError
from bce_audit.processes import DEFAULT_TIMEOUT, MAX_TIMEOUT
from bce_audit.vocabulary import Device, Domain, DType, Mode, Sampling

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.formulations.interface import Formulation, UserFormulationSpec
    from bce_audit.formulations.selection import Selection

DEFAULT_POINTS = 1000
DEFAULT_LABELS = (0.0, 1.0)
DEFAULT_ULP_THRESHOLD = 4.0
DEFAULT_SEED = 0
# Bounds on the size of a sweep, so that a typo is a one-line error, not a MemoryError minutes
# later: each (input, label) of a grid holds a truth row of 72 bytes, and every array of a case
# is as long as its grid.
MAX_POINTS = 10_000_000
MAX_LABELS = 1_000


def _default_formulations() -> tuple[str, ...]:
    from bce_audit.formulations.builtins import DEFAULT

    return DEFAULT  # the family's other members and the other engines' built-ins are selected by name


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to sweep: every setting that decides which cases run and what their figures are.

    formulations: names, in report order: built-ins, installed ones, the user's.
    dtypes / domains: what to evaluate them in and on.
    labels: targets y in [0, 1] as the user gave them (each is rounded to the dtype under test).
    logit_range: (lo, hi) on the logit axis, or None for every finite value; the probability
        domain uses the probabilities whose logit is in it.
    points: sampled inputs per (dtype, domain) grid, besides the special inputs.
    sampling: bits (uniform over bit patterns, plus a dense band) or exhaustive (16-bit dtypes
        and float32, streamed; float64 falls back to bits).
    seed: the random seed; results are deterministic for a given seed.
    ulp_threshold: above this ULP error a point is `inaccurate`.
    user_formulations: what every name that is neither a built-in nor a function stands for (an
        --impl target, a config table, an installed entry point), completed.
    functions: formulations given as Python callables (the API); not data, so they are named in
        ``to_dict`` but not part of equality.
    parameter_sweep: (name, values as typed) of each parameter swept as a case dimension
        (``--param gamma=0,0.5,2``): every formulation that takes it runs once per value.
    modes: the torch engine's execution modes, each a case dimension (``--mode eager,vmap``).
    device: where the torch engine runs (``--device cuda``); a case dimension too.
    """

    formulations: tuple[str, ...] = dataclasses.field(default_factory=_default_formulations)
    dtypes: tuple[DType, ...] = tuple(DType)
    domains: tuple[Domain, ...] = tuple(Domain)
    labels: tuple[float, ...] = DEFAULT_LABELS
    logit_range: tuple[float, float] | None = None
    points: int = DEFAULT_POINTS
    sampling: Sampling = Sampling.BITS
    seed: int = DEFAULT_SEED
    ulp_threshold: float = DEFAULT_ULP_THRESHOLD
    user_formulations: tuple[UserFormulationSpec, ...] = ()
    functions: tuple[Formulation, ...] = dataclasses.field(default=(), compare=False)
    parameter_sweep: tuple[tuple[str, tuple[str, ...]], ...] = ()
    modes: tuple[Mode, ...] = (Mode.EAGER,)
    device: Device = Device.CPU

    def __post_init__(self) -> None:
        from bce_audit.formulations.builtins import BUILTINS, get_formulation

        user = {spec.name: spec for spec in self.user_formulations}
        given = {f.name for f in self.functions}
        for name in self.formulations:
            if name not in user and name not in given:
                get_formulation(name)
        for spec in self.user_formulations:
            if spec.name is None or spec.domain is None or spec.name not in self.formulations:
                raise UsageError(f"{spec.where or spec.target}: user formulation without a name, domain or place")
            if spec.name in BUILTINS:
                raise UsageError(f"{spec.where or spec.target}: the name {spec.name!r} is a built-in's")
        if len(user) != len(self.user_formulations):
            raise UsageError("two user formulations have the same name")
        if not self.formulations or not self.dtypes or not self.domains or not self.labels:
            raise UsageError("nothing to sweep: a formulation, dtype, domain and label are needed")
        if len(self.labels) > MAX_LABELS:
            raise UsageError(f"{len(self.labels)} labels is more than a sweep takes (at most {MAX_LABELS:,})")
        for y in self.labels:
            if isinstance(y, bool) or not (isinstance(y, int | float) and 0.0 <= y <= 1.0):
                raise UsageError(f"label {y!r} is outside [0, 1]")
        if self.logit_range is not None:
            lo, hi = self.logit_range
            if math.isnan(lo) or math.isnan(hi) or lo >= hi:
                raise UsageError(f"range {lo:g}:{hi:g} is empty or inverted (LO must be < HI)")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points <= 0:
            raise UsageError(f"points must be a positive integer, got {self.points!r}")
        if self.points > MAX_POINTS:
            raise UsageError(
                f"points {self.points} is more than bce-audit samples per grid (at most {MAX_POINTS:,}, which "
                "already holds hundreds of megabytes of exact values); use --sampling exhaustive for every "
                "value of a 16-bit dtype or of float32 (streamed)"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (self.ulp_threshold >= 0):
            raise UsageError(f"ulp threshold must be >= 0, got {self.ulp_threshold!r}")
        if not self.modes:
            raise UsageError("nothing to sweep: a mode is needed (eager, vmap, autocast, compile)")

    @property
    def selection(self) -> Selection:
        from bce_audit.formulations.selection import Selection

        return Selection(self.formulations, self.user_formulations)

    def to_dict(self) -> dict[str, Any]:
        users = [spec.to_dict() for spec in self.user_formulations]
        users += [
            {
                "name": f.name,
                "target": f"python:{_qualname(f.function)}",
                "domain": str(f.native_domain),
                "parameters": dict(f.parameters),
            }
            for f in self.functions
        ]
        return {
            "formulations": list(self.formulations),
            "user_formulations": users,
            "dtypes": [str(d) for d in self.dtypes],
            "domains": [str(d) for d in self.domains],
            "labels": list(self.labels),
            "range": None if self.logit_range is None else list(self.logit_range),
            "points": self.points,
            "sampling": str(self.sampling),
            "seed": self.seed,
            "ulp_threshold": self.ulp_threshold,
            # only in a run that sweeps parameters, so any other reads as before
            **({"parameter_sweep": {k: list(v) for k, v in self.parameter_sweep}} if self.parameter_sweep else {}),
            # likewise the modes and the device, only where they are not the defaults
            **({"modes": [str(m) for m in self.modes]} if self.modes != (Mode.EAGER,) else {}),
            **({"device": str(self.device)} if self.device is not Device.CPU else {}),
        }


def _qualname(fn: object) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a sweep; none of it changes a figure.

    jobs: processes for the exact truth, at most the cores this process may use.
    cache_dir: where the truth cache lives (None: no cache).
    timeout: seconds for each import and each call of a user's function (in the sandbox).
    """

    jobs: int
    cache_dir: Path | None
    timeout: float


@dataclasses.dataclass(frozen=True)
class Request:
    """What the user asked for, before the config and the defaults: command-line flags or the
    arguments of ``bce_audit.audit``. None or an empty tuple means "not given".

    formulations: built-in or installed names (-f). impl: targets (--impl). functions: Python
    callables (the API), each decorated with ``@bce_audit.formulation(domain=...)``.
    domain: "logits", "probabilities" or "both". range: "LO:HI" or (lo, hi).
    cache: False for no cache at all. parameters: ``NAME=V1,V2,...`` texts (--param). The rest as
    in Settings and RunOptions.
    """

    formulations: tuple[str, ...] = ()
    impl: tuple[str, ...] = ()
    functions: tuple[Callable[..., Any], ...] = ()
    dtypes: tuple[str, ...] = ()
    domain: str | None = None
    labels: tuple[object, ...] = ()
    range: str | Sequence[float] | None = None
    points: int | None = None
    sampling: str | None = None
    seed: int | None = None
    ulp_threshold: float | None = None
    jobs: int | None = None
    cache: bool | None = None
    cache_dir: str | os.PathLike[str] | None = None
    timeout: float | None = None
    parameters: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    device: str | None = None


def parse_modes(given: object) -> tuple[Mode, ...]:
    """Modes as typed (``--mode`` repeated or comma lists, or the config's list or string) ->
    distinct modes in the order given."""
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
        raise UsageError(f"modes must be names or a list of names, got {given!r}")
    names = [n.strip() for t in texts for n in t.split(",") if n.strip()]
    return tuple(dict.fromkeys(Mode.parse(n, "mode") for n in names))


def parse_range(text: str) -> tuple[float, float]:
    """'LO:HI' -> (lo, hi); either side may be 'inf' / '-inf'."""
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"range {text!r} is not of the form LO:HI (for example -20:20)")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"range {text!r} is not of the form LO:HI (for example -20:20)") from None
    if math.isnan(lo) or math.isnan(hi) or lo >= hi:
        raise UsageError(f"range {text!r} is empty or inverted (LO must be < HI)")
    return lo, hi


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))  # Linux
    except AttributeError:
        return os.cpu_count() or 1


def timeout_option(value: float | None, config: dict[str, Any]) -> float:
    """The time limit for user code: the request's, else the config's, else the default."""
    given, where = (value, "--timeout") if value is not None else (config.get("timeout"), "config timeout")
    if given is None:
        return DEFAULT_TIMEOUT
    if isinstance(given, bool) or not isinstance(given, int | float) or not (0 < given <= MAX_TIMEOUT):
        raise UsageError(f"{where} must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, got {given!r}")
    return float(given)


def resolve(
    request: Request, config: dict[str, Any], config_source: str | None, sandbox: Sandbox | None = None
) -> tuple[Settings, RunOptions]:
    """Settings and run options from the request, with the config under it and the defaults under
    both. Loads the user's formulations (in ``sandbox``, see ``formulations.selection``), so any
    problem with them is a UsageError here, before any sweep work."""
    from bce_audit.formulations.selection import select_formulations
    from bce_audit.formulations.user import formulation_of_callable

    def pick(given: Any, key: str) -> Any:
        return given if given not in (None, ()) else config.get(key)

    functions = tuple(formulation_of_callable(fn) for fn in request.functions)
    selection = select_formulations(
        request.formulations,
        request.impl,
        config.get("formulations"),
        config_source,
        sandbox,
        extra=tuple(f.name for f in functions),
    )
    kw: dict[str, Any] = {"formulations": selection.names, "user_formulations": selection.user}
    if functions:
        kw["functions"] = functions
    dtypes = pick(request.dtypes, "dtypes")
    if dtypes:
        kw["dtypes"] = tuple(dict.fromkeys(DType.parse(d, "dtype") for d in dtypes))
    domain = pick(request.domain, "domain")
    if domain:
        kw["domains"] = tuple(Domain) if domain == "both" else (Domain.parse(domain, "domain"),)
    labels = pick(request.labels, "labels")
    if labels:
        values = []
        for y in labels:
            try:
                values.append(float(y) + 0.0)  # + 0.0: the label -0.0 is the label 0
            except (TypeError, ValueError):
                raise UsageError(f"label {y!r} is not a number") from None
        kw["labels"] = tuple(dict.fromkeys(values))
    rng = pick(request.range, "range")
    if rng is not None:
        if isinstance(rng, str):
            kw["logit_range"] = parse_range(rng)
        else:
            if len(rng) != 2:
                raise UsageError(f"range {list(rng)!r} must have two numbers [LO, HI]")
            # numbers already: Settings checks that the interval is not empty or inverted
            kw["logit_range"] = (float(rng[0]), float(rng[1]))
    for key in ("points", "seed", "ulp_threshold"):
        value = pick(getattr(request, key), key)
        if value is not None:
            kw[key] = value
    sampling = pick(request.sampling, "sampling")
    if sampling:
        kw["sampling"] = Sampling.parse(sampling, "sampling")
    if request.parameters:
        from bce_audit.formulations.selection import parse_parameter_sweep

        kw["parameter_sweep"] = parse_parameter_sweep(request.parameters)
    modes = pick(request.modes, "modes")
    if modes:
        kw["modes"] = parse_modes(modes)
    device = pick(request.device, "device")
    if device:
        if not isinstance(device, str):
            raise UsageError(f"device must be a name, got {device!r}")
        kw["device"] = Device.parse(device, "device")
    return Settings(**kw), run_options(request, config)


def run_options(request: Request, config: dict[str, Any]) -> RunOptions:
    """Jobs, cache and time limit from the request, the config and the defaults."""
    from bce_audit.files import dangling_target, shown
    from bce_audit.oracle.cache import default_cache_dir

    jobs, jobs_from = (request.jobs, "--jobs") if request.jobs is not None else (config.get("jobs"), "config jobs")
    if jobs is None:
        jobs = cores()
    elif isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"{jobs_from} must be at least 1, got {jobs!r}")
    jobs = min(jobs, cores())  # more processes than cores only cost memory (-j 10000 would exhaust it)
    use_cache = request.cache if request.cache is not None else config.get("cache", True)
    cache_dir = None
    if use_cache:
        given, given_from = request.cache_dir, "--cache-dir"
        if given is None:
            given, given_from = config.get("cache_dir"), "config cache_dir"
        if given is not None and not os.fspath(given).strip():  # Path("") would be ".": the cache in the cwd
            raise UsageError(f"{given_from}: empty path; name a directory")
        cache_dir = Path(given) if given is not None else default_cache_dir()
        if given is not None and cache_dir.exists() and not cache_dir.is_dir():
            raise UsageError(f"{given_from} {shown(cache_dir)}: not a directory")
        dangling = dangling_target(cache_dir) if given is not None else None
        if dangling is not None:
            raise UsageError(
                f"{given_from} {shown(cache_dir)}: a symbolic link to {shown(dangling)}, which does not exist; "
                "create that directory, or name another"
            )
    return RunOptions(jobs=jobs, cache_dir=cache_dir, timeout=timeout_option(request.timeout, config))
