"""The Python API: an audit or a check in-process, on built-in names or plain Python callables.

    import bce_audit

    @bce_audit.formulation(domain="logits")
    def my_bce(z, y):
        return torch.clamp_min(z, 0) - y * z + torch.log1p(torch.exp(-torch.abs(z)))

    result = bce_audit.audit([my_bce, "torch-bce-with-logits"], dtypes=["float32"])
    result.to_records()          # one dict per case: its key and every figure
    result.to_pandas()           # the same as a DataFrame (needs pandas)

    verdict = bce_audit.check([my_bce], thresholds=[{"quantity": "loss", "max_ulp": 4}])
    verdict.passed, verdict.exit_code

The command line runs on the same functions (``run``, ``resolve``), so both give the same
figures for the same settings. Importing this module imports neither torch nor mpmath.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bce_audit import arguments
from bce_audit.errors import ArgumentError, ExitCode, UsageError
from bce_audit.settings import Request, RunOptions, Settings, resolve

if TYPE_CHECKING:  # pragma: no cover
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.explanation.interface import Explanation
    from bce_audit.files import Output, OutputDir
    from bce_audit.gate.interface import Verdict
    from bce_audit.sweep.result import AuditResult, CaseKey
    from bce_audit.sweep.run import Progress

Formulations = str | Callable[..., Any] | Iterable[str | Callable[..., Any]] | None


def run(
    settings: Settings,
    options: RunOptions,
    sandbox: Sandbox,
    keep_details: bool = False,
    warn: Callable[[str], None] | None = None,
    progress: Progress | None = None,
    case_progress: Progress | None = None,
    full_map: bool = True,
) -> AuditResult:
    """Run a sweep with its run options: the truth cache (warnings go to ``warn``), the oracle's
    processes, the sandbox for user code; ``full_map``: see ``sweep.run.run_sweep``."""
    from bce_audit.oracle.cache import TruthCache
    from bce_audit.sweep.run import run_sweep

    cache = None if options.cache_dir is None else TruthCache(options.cache_dir, warn=warn)
    return run_sweep(
        settings,
        keep_details=keep_details,
        progress=progress,
        jobs=options.jobs,
        cache=cache,
        case_progress=case_progress,
        sandbox=sandbox,
        full_map=full_map,
    )


def _request(formulations: Formulations, **kw: Any) -> Request:
    names: list[str] = []
    targets: list[str] = []
    functions: list[Callable[..., Any]] = []
    items: Iterable[Any]
    if isinstance(formulations, str) or callable(formulations):
        items = [formulations]
    elif formulations is None:
        items = []
    elif isinstance(formulations, bytes | bytearray | Mapping) or not isinstance(formulations, Iterable):
        raise arguments.fail("formulations", "a name, a target, a callable, or a list of them", formulations)
    else:
        items = list(formulations)
        if not items:
            raise arguments.empty_list("formulations")
    for item in items:
        if isinstance(item, str):
            # MODULE:FUNCTION or FILE.py:FUNCTION is a target (it runs in the sandbox); else a name
            (targets if ":" in item else names).append(item)
        elif callable(item):
            functions.append(item)
        else:
            raise UsageError(f"{item!r} is neither a formulation's name, a target nor a callable")

    def strings(value: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        return (value,) if isinstance(value, str | int | float) else tuple(value)

    dtypes = arguments.texts(kw["dtypes"], "dtypes")
    arguments.text(kw["domain"], "domain")
    labels = arguments.numbers(kw["labels"], "labels", "a number in [0, 1] or a list of them")
    arguments.text(kw["sampling"], "sampling")
    arguments.number(kw["ulp_threshold"], "ulp_threshold")
    arguments.flag(kw["cache"], "cache", optional=True)
    arguments.path(kw["cache_dir"], "cache_dir")
    return Request(
        formulations=tuple(names),
        impl=tuple(targets),
        functions=tuple(functions),
        dtypes=strings(dtypes),
        domain=kw["domain"],
        labels=strings(labels),
        range=arguments.logit_range(kw["range"], "range"),
        points=kw["points"],
        sampling=kw["sampling"],
        seed=kw["seed"],
        ulp_threshold=kw["ulp_threshold"],
        jobs=kw["jobs"],
        cache=kw["cache"],
        cache_dir=kw["cache_dir"],
        timeout=kw["timeout"],
        parameters=_parameter_texts(kw.get("parameters")),
        modes=strings(arguments.texts(kw.get("modes"), "modes")),
        device=kw.get("device"),
    )


def _parameter_texts(parameters: Mapping[str, Any] | None) -> tuple[str, ...]:
    """{"gamma": [0, 0.5, 2]} as the texts of --param (``gamma=0,0.5,2``)."""
    arguments.mapping(parameters, "parameters", "values by parameter name")
    if not parameters:
        return ()
    from bce_audit.formulations.selection import parse_parameter_sweep

    texts = []
    for name, values in parameters.items():
        items = arguments.parameter_values(values, f"parameters[{name!r}]")
        text = f"{name}=" + ",".join(_parameter_text(v) for v in items)
        try:  # a value given twice ([1, 1.0]): named as the API's argument, not as --param
            parse_parameter_sweep([text])
        except UsageError as exc:
            raise ArgumentError(f"parameters[{name!r}]: {str(exc).partition(': ')[2] or exc}") from None
        texts.append(text)
    return tuple(texts)


def _parameter_text(value: object) -> str:
    """One swept value as --param spells it: None as ``none``, booleans as ``true``/``false``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _in_given_order(settings: Settings, formulations: Formulations) -> Settings:
    """The settings with the formulations in the order the caller listed them (resolve puts
    names first, then targets, then callables, as the command line orders -f, --impl)."""
    from bce_audit.formulations.user import formulation_of_callable, spec_from_impl

    if formulations is None or isinstance(formulations, str) or callable(formulations):
        return settings
    wanted: list[str] = []
    by_target = {spec.target: spec.name for spec in settings.user_formulations}
    for item in formulations:
        if callable(item):
            wanted.append(formulation_of_callable(item).name)
        elif ":" in item:
            wanted.append(by_target.get(spec_from_impl(item).target) or item)
        else:
            wanted.append(item)
    order = [n for n in wanted if n in settings.formulations]
    order += [n for n in settings.formulations if n not in order]
    return dataclasses.replace(settings, formulations=tuple(order))


def _config(config: str | os.PathLike[str] | Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    from bce_audit.config import load_config, validate

    arguments.path_or_mapping(config, "config")
    if config is None:
        return {}, None
    if isinstance(config, Mapping):
        return validate(dict(config), "config"), None
    return load_config(Path(config), search_pyproject=False)


def audit(
    formulations: Formulations = None,
    *,
    dtypes: str | Sequence[str] | None = None,
    domain: str | None = None,
    labels: float | Sequence[float] | None = None,
    range: str | Sequence[float] | None = None,  # noqa: A002 - the name users know from --range
    points: int | None = None,
    sampling: str | None = None,
    seed: int | None = None,
    ulp_threshold: float | None = None,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    details: bool = False,
    jobs: int | None = 1,
    cache: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    parameters: Mapping[str, Any] | None = None,
    causes: bool = False,
    modes: str | Sequence[str] | None = None,
    device: str | None = None,
) -> AuditResult:
    """Audit formulations in this process and return the result (see docs/api.md).

    formulations: built-in or installed names, targets (``"losses.py:bce@logits"``, run in a
        sandbox process like --impl), or Python callables decorated with
        ``@bce_audit.formulation(domain=...)`` (run here); default the built-ins that need no extra.
    dtypes, domain ("logits", "probabilities" or "both"), labels, range ("LO:HI" or (lo, hi)),
        points, sampling ("bits" or "exhaustive"), seed, ulp_threshold: as the flags of
        `bce-audit sweep`, with the same defaults.
    config: a TOML file or a dict of the same keys; the arguments win over it.
    details: keep every point (``result.point_records()``).
    jobs: processes for the exact truth (None: the cores). cache: False to neither read nor write
        the truth cache; cache_dir: where it lives. timeout: seconds per call of a target.
    parameters: parameters swept as a case dimension, as --param: ``{"gamma": [0, 0.5, 2]}``.
    causes: fill the ``cause`` of every failing interval of the failure map (one traced run per
        case's formulation, dtype, domain and label, and 6 to 10 ms per interval: docs/reports.md),
        as --failures and --json do; else causes stay empty.
    modes, device: the torch engine's execution modes and device, as --mode and --device
        (``modes=["eager", "vmap"]``, ``device="cuda"``); a device torch lacks here raises.

    Raises ``bce_audit.UsageError`` for bad arguments, as the command line exits 2.
    """
    from bce_audit.engines.sandbox import Sandbox

    arguments.flag(details, "details")
    arguments.flag(causes, "causes")

    request = _request(
        formulations,
        dtypes=dtypes,
        domain=domain,
        labels=labels,
        range=range,
        points=points,
        sampling=sampling,
        seed=seed,
        ulp_threshold=ulp_threshold,
        jobs=jobs,
        cache=cache,
        cache_dir=cache_dir,
        timeout=timeout,
        parameters=parameters,
        modes=modes,
        device=device,
    )
    table, source = _config(config)
    with Sandbox() as sandbox:
        settings, options = resolve(request, table, source, sandbox)
        settings = _in_given_order(settings, formulations)
        sandbox.timeout = options.timeout
        result = run(settings, options, sandbox, keep_details=details)
        if causes:
            from bce_audit.explanation.failures import explain_failures

            result = explain_failures(result, sandbox)
        return result


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What ``bce_audit.check`` found.

    verdict: every rule and baseline comparison (``bce_audit.gate.interface.Verdict``).
    audit: the audit that was judged.
    baseline_written: the baseline file written (``update_baseline=True``), else None.
    """

    verdict: Verdict | None
    audit: AuditResult
    baseline_written: Path | None = None

    @property
    def passed(self) -> bool:
        """Every planned case was evaluated and every rule and the baseline hold."""
        return self.verdict is None or self.verdict.passed

    @property
    def exit_code(self) -> ExitCode:
        """What `bce-audit check` would exit with: 0, 1 (a regression) or 4 (incomplete)."""
        return ExitCode.OK if self.verdict is None else self.verdict.exit_code

    def to_records(self) -> list[dict[str, Any]]:
        """One record per case: its key and figures (as ``AuditResult.to_records``), and what the
        check said of it: the rules it failed, its change against the baseline."""
        failed: dict[CaseKey, list[str]] = {}
        change: dict[CaseKey, str] = {}
        if self.verdict is not None:
            for outcome in self.verdict.rules:
                for failure in outcome.failures:
                    failed.setdefault(failure.key, []).append(outcome.rule.id)
            change = {c.key: str(c.change) for c in self.verdict.comparisons}
        rows = []
        for case in self.audit.cases:
            row = case.record()
            row["failed_rules"] = failed.get(case.key, [])
            row["baseline"] = change.get(case.key)
            rows.append(row)
        return rows


def check(
    formulations: Formulations = None,
    *,
    thresholds: Sequence[Mapping[str, Any]] | None = None,
    baseline: str | os.PathLike[str] | None = None,
    tolerance: Mapping[str, float] | None = None,
    allow_missing: bool | None = None,
    update_baseline: bool = False,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    **audit_arguments: Any,
) -> CheckResult:
    """Audit, then hold the result to threshold rules and a baseline, as `bce-audit check` does.

    thresholds: rules as the config's [[thresholds]] tables (dicts of selectors and bounds).
    baseline: the baseline file; tolerance: {figure: allowance}; allow_missing: as the flag.
    update_baseline: write this run as the baseline instead of judging it (``baseline`` needed).
    config: a TOML file or a dict; the arguments win over it. The other keyword arguments are
        those of ``audit``. Usage errors raise ``bce_audit.UsageError``; a run with a case that
        could not be evaluated cannot become a baseline (``bce_audit.IncompleteRun``).
    """
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.files import write_outputs
    from bce_audit.gate.plan import judge, plan_check, render_update_file

    details = audit_arguments.pop("details", False)
    arguments.flag(details, "details")
    rules = arguments.mappings(thresholds, "thresholds", "rules, as the config's [[thresholds]] tables")
    arguments.path(baseline, "baseline")
    arguments.mapping(tolerance, "tolerance", "allowances by figure")
    arguments.flag(allow_missing, "allow_missing", optional=True)
    arguments.flag(update_baseline, "update_baseline")
    keys = (
        "dtypes",
        "domain",
        "labels",
        "range",
        "points",
        "sampling",
        "seed",
        "ulp_threshold",
        "jobs",
        "cache",
        "cache_dir",
        "timeout",
    )
    unknown = set(audit_arguments) - set(keys)
    if unknown:
        raise UsageError(f"check() got unexpected arguments: {', '.join(sorted(unknown))}")
    request = _request(formulations, **{k: audit_arguments.get(k, 1 if k == "jobs" else None) for k in keys})
    table, source = _config(config)
    if rules is not None:
        table["thresholds"] = [dict(rule) for rule in rules]
    if tolerance is not None:
        table["tolerance"] = dict(tolerance)
    if allow_missing is not None:
        table["allow_missing"] = allow_missing
    with Sandbox() as sandbox:
        settings, options = resolve(request, table, source, sandbox)
        settings = _in_given_order(settings, formulations)
        sandbox.timeout = options.timeout
        plan = plan_check(
            table,
            source,
            settings,
            baseline_flag=baseline,
            update=update_baseline,
            tolerance_flags=(),
            allow_missing_flag=None,
        )
        result = run(settings, options, sandbox, keep_details=details)
    if plan.update:
        text, _ = render_update_file(plan, result)
        write_outputs([(plan.baseline_output, text)])
        return CheckResult(None, result, plan.baseline_path)
    return CheckResult(judge(plan, result), result)


def _needs_details(result: AuditResult, what: str) -> None:
    if any(c.details is None and c.figures is not None for c in result.cases):
        raise UsageError(f"{what} needs every point: audit with details=True")


def repro_outputs(
    result: AuditResult, directory: OutputDir, sandbox: Sandbox | None = None
) -> list[tuple[Output, str]]:
    """(output, text) of the pytest file of each failing case, in ``directory`` (see
    ``write_repro``); the user's targets are evaluated in ``sandbox`` (one is opened if needed)."""
    from bce_audit.report.repro import repro_files
    from bce_audit.sweep.reproduce import failing_cases

    _needs_details(result, "a repro")
    files = repro_files(failing_cases(result, sandbox), result.provenance)
    return [(directory.file(name), text) for name, text in files]


def plot_outputs(result: AuditResult, directory: OutputDir) -> list[tuple[Output, bytes]]:
    """(output, bytes) of each figure, PNG and SVG, in ``directory`` (see ``write_plots``)."""
    from bce_audit.report.plot import figures

    _needs_details(result, "a plot")
    return [(directory.file(name), data) for name, data in figures(result)]


def _write_directory(items: Sequence[tuple[Output, str | bytes]]) -> list[Path]:
    from bce_audit.files import write_outputs

    write_outputs(items)
    return [out.path for out, _ in items if out.path is not None]


def write_repro(result: AuditResult, directory: str | os.PathLike[str]) -> list[Path]:
    """Write a standalone pytest file for each failing case of ``result`` (an audit with
    ``details=True``) into ``directory`` (created if missing), as `bce-audit sweep --repro DIR`
    does, and return their paths. Each test fails, naming the status and the ULP error, while
    the formulation misses the exact value at that input (docs/repro-and-plots.md)."""
    from bce_audit.files import OutputDir, check_outputs

    arguments.audit_result(result, "write_repro: result")
    arguments.path(directory, "write_repro: directory", optional=False)
    out = OutputDir.parse("write_repro", directory)
    _needs_details(result, "a repro")
    check_outputs([out])
    return _write_directory(repro_outputs(result, out))


def write_plots(result: AuditResult, directory: str | os.PathLike[str]) -> list[Path]:
    """Write one figure per (formulation, quantity) of ``result`` (an audit with
    ``details=True``), as PNG and SVG, into ``directory`` (created if missing), as
    `bce-audit sweep --plot DIR` does, and return their paths. Needs matplotlib
    (``pip install 'bce-audit[plot]'``)."""
    from bce_audit.files import OutputDir, check_outputs
    from bce_audit.report.plot import require_matplotlib

    arguments.audit_result(result, "write_plots: result")
    arguments.path(directory, "write_plots: directory", optional=False)
    require_matplotlib()
    out = OutputDir.parse("write_plots", directory)
    _needs_details(result, "a plot")
    check_outputs([out])
    return _write_directory(plot_outputs(result, out))


def explain(
    formulation: str | Callable[..., Any],
    *,
    dtypes: str | Sequence[str] | None = None,
    labels: float | Sequence[float] | None = None,
    domain: str | None = None,
    quantity: str | None = None,
    at: float | None = None,
    layout: str = "batch",
    points: int | None = None,
    seed: int | None = None,
    ulp_threshold: float | None = None,
    jobs: int | None = 1,
    cache: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> tuple[Explanation, ...]:
    """Why a formulation fails, down to the op (see docs/explain.md): one ``Explanation`` per
    (case, input), each with the chain of ops that lost the value, a one-line ``cause`` and the
    catalogue's fixes.

    formulation: one built-in or installed name, target (run in a sandbox process) or callable.
    dtypes: default float32. labels: default 0 and 1. domain: default the formulation's own.
    quantity: "loss" or "grad"; default both.
    at: explain this input (rounded to each dtype); without it, every failing case of a sweep is
        explained at its worst input and at the failing inputs nearest its stable range.
    layout: "batch" (the point repeated, in torch's vectorized loop) or "alone" (a one-element
        tensor).
    config: a TOML file or a dict of the same keys, as ``audit``'s: ``formulation`` may name one of
        its ``formulations`` tables (a built-in with other parameters, a user's function with its
        reference), which is the one explained; the arguments win over its other settings.
    The other arguments are those of ``audit``. A formulation that does not run in torch (JAX,
    TensorFlow, Keras) is a UsageError: the trace is torch's.
    """
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.explanation.interface import Layout
    from bce_audit.explanation.run import explain_settings
    from bce_audit.formulations.selection import resolve as formulations_of
    from bce_audit.vocabulary import Domain, Quantity

    if isinstance(formulation, str) or callable(formulation):
        given: Formulations = formulation
    else:
        raise arguments.fail("formulation", "one formulation: a name, a target or a callable", formulation)
    arguments.number(at, "at")
    arguments.text(layout, "layout", optional=False)
    arguments.text(quantity, "quantity")
    shape = Layout.parse(layout, "layout")
    quantities = tuple(Quantity) if quantity is None else (Quantity.parse(quantity, "quantity"),)
    request = _request(
        given,
        dtypes=dtypes if dtypes is not None else "float32",
        domain=domain if domain != "both" else None,
        labels=labels,
        range=None,
        points=points,
        sampling=None,
        seed=seed,
        ulp_threshold=ulp_threshold,
        jobs=jobs,
        cache=cache,
        cache_dir=cache_dir,
        timeout=timeout,
    )
    table, source = _config(config)
    with Sandbox() as sandbox:
        settings, options = resolve(request, table, source, sandbox)
        sandbox.timeout = options.timeout
        if config is not None:  # the config's other formulations are not explained
            settings = _only(settings, _name_of(formulation, settings))
        (resolved,) = formulations_of(settings.selection, settings.functions)
        if domain is None:
            settings = dataclasses.replace(settings, domains=(resolved.native_domain,))
        elif domain == "both":
            settings = dataclasses.replace(settings, domains=tuple(Domain))
        return explain_settings(settings, options, sandbox, quantities, None if at is None else float(at), shape)


def _name_of(formulation: str | Callable[..., Any], settings: Settings) -> str:
    """The name the settings give the one formulation a caller named (a name, a target, a callable)."""
    from bce_audit.formulations.interface import Origin
    from bce_audit.formulations.user import formulation_of_callable, spec_from_impl

    if callable(formulation):
        return formulation_of_callable(formulation).name
    if ":" in formulation:
        target = spec_from_impl(formulation).target
        named = (s.name for s in settings.user_formulations if s.origin is Origin.IMPL and s.target == target)
        return next((n for n in named if n is not None), formulation)
    return formulation


def _only(settings: Settings, name: str) -> Settings:
    """The settings narrowed to the formulation ``name``."""
    user = tuple(s for s in settings.user_formulations if s.name == name)
    functions = tuple(f for f in settings.functions if f.name == name)
    return dataclasses.replace(settings, formulations=(name,), user_formulations=user, functions=functions)
