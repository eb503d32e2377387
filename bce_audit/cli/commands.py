"""The commands: `bce-audit list`, `sweep` and `check`. Wiring only: flags become a
``settings.Request``, which ``settings.resolve`` turns into settings (as the Python API does);
``api.run`` runs the sweep; the renderers in ``report`` write what it found.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bce_audit.cli.app import main
from bce_audit.cli.options import (
    CHECK_EXAMPLES,
    EXPLAIN_EXAMPLES,
    LIST_EXAMPLES,
    SWEEP_EXAMPLES,
    check_options,
    directory_options,
    explain_options,
    list_options,
    sweep_options,
)
from bce_audit.errors import ExitCode
from bce_audit.files import Output, OutputDir
from bce_audit.settings import Request, RunOptions, Settings

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.gate.plan import CheckPlan
    from bce_audit.sweep.result import AuditResult
    from bce_audit.sweep.run import Progress as ProgressCallback

# the outputs of a sweep and of a check, by the key their flag and config key share
SWEEP_OUTPUTS = ("csv", "details", "json", "failures")
CHECK_REPORTS = ("junit", "markdown")


def _request(flags: dict[str, Any]) -> Request:
    return Request(
        formulations=flags["formulation"],
        impl=flags["impl"],
        dtypes=flags["dtype"],
        domain=flags["domain"],
        labels=flags["label"],
        range=flags["range_"],
        points=flags["points"],
        sampling=flags["sampling"],
        seed=flags["seed"],
        ulp_threshold=flags["ulp_threshold"],
        jobs=flags["jobs"],
        cache=False if flags["no_cache"] else None,
        cache_dir=flags["cache_dir"],
        timeout=flags["timeout"],
        parameters=flags["param"],
        modes=flags["mode"],
        device=flags["device"],
    )


@main.command("list", epilog=LIST_EXAMPLES)
@list_options
def list_command(impl: tuple[str, ...], config_path: Path | None, timeout: float | None) -> None:
    """Show the formulations: built-in, installed (entry points), and your own (--impl, config).

    Each is audited against its reference: the exact value of plain, unweighted BCE at the
    label given (bce), or of the member of the BCE family it declares, and its derivative by the
    input.
    """
    from bce_audit.cli.console import report_width, stdout
    from bce_audit.config import load_config
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.formulations.selection import catalogue
    from bce_audit.report.layout import Column, table, wrap
    from bce_audit.report.terminal import REFERENCE_COLUMN
    from bce_audit.settings import timeout_option

    config, source = load_config(config_path)
    with Sandbox(timeout_option(timeout, config)) as box:
        rows: list[list[Any]] = [
            [row.name, row.domain, row.engine, row.source, row.reference, row.definition]
            for row in catalogue(impl, config.get("formulations"), source, box)
        ]
    out = stdout()
    width = report_width()
    keys = [Column("name"), Column("native domain"), Column("engine"), Column("source"), Column("reference")]
    for line in table(keys, [Column("definition")], rows, width):
        out.print(line)
    out.print()
    for text in wrap(REFERENCE_COLUMN, width):
        out.print(text, markup=False)


@dataclasses.dataclass(frozen=True)
class _Invocation:
    """A sweep command line resolved: the config, the settings, the run options, the outputs."""

    config: dict[str, Any]
    config_source: str | None
    settings: Settings
    options: RunOptions
    outputs: dict[str, Output]  # "csv" | "details" | "json" | "failures" -> Output, each checked writable
    reports: dict[str, Output]  # check's "junit" | "markdown" -> Output, each checked writable
    directories: dict[str, OutputDir]  # sweep's "repro" | "plot" -> OutputDir, each checked writable
    verbose: bool
    sandbox: Sandbox  # where the user's targets run
    causes: bool  # trace the failure map's causes: --failures or --json, without --no-causes


def _prepare(flags: dict[str, Any], sandbox: Sandbox, reports: tuple[str, ...] = ()) -> _Invocation:
    """Settings and outputs from the config and the flags (flags win), all checked before any
    work: every output the command names (the exports, ``reports``, the directories) goes
    through one ``files.check_outputs``."""
    from bce_audit.config import load_config
    from bce_audit.files import check_outputs
    from bce_audit.settings import resolve, timeout_option

    config, source = load_config(flags["config_path"])
    sandbox.timeout = timeout_option(flags["timeout"], config)
    if _may_run_user_code(flags, config):
        # the sandbox's fork server imports torch while this process does the same
        sandbox.prestart()
        import bce_audit.engines._torch_warmup  # noqa: F401
    settings, options = resolve(_request(flags), config, source, sandbox)
    asked = flags["jobs"] if flags["jobs"] is not None else config.get("jobs")
    if isinstance(asked, int) and asked > options.jobs:
        from bce_audit.cli.console import stderr

        stderr().print(
            f"note: -j {asked} is more than the {options.jobs} cores here; using {options.jobs}", markup=False
        )
    outputs = _outputs(flags, config, source, SWEEP_OUTPUTS)
    report_outputs = _outputs(flags, config, source, reports)
    directories = _directories(flags)
    every: list[Output | OutputDir] = [*outputs.values(), *report_outputs.values(), *directories.values()]
    check_outputs(every, _inputs(flags, source, settings))  # writable, none another or an input
    if "plot" in directories:
        from bce_audit.report.plot import require_matplotlib

        require_matplotlib()
    verbose = flags["verbose"] if flags["verbose"] is not None else bool(config.get("verbose", False))
    causes = ("failures" in outputs or "json" in outputs) and not flags["no_causes"]
    return _Invocation(
        config, source, settings, options, outputs, report_outputs, directories, verbose, sandbox, causes
    )


def _may_run_user_code(flags: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether the selection names anything but built-ins (--impl, config tables, entry points)."""
    from bce_audit.formulations.builtins import BUILTINS

    items = list(flags["formulation"]) or list(config.get("formulations") or [])
    return bool(flags["impl"]) or any(not isinstance(i, str) or i not in BUILTINS for i in items)


def _inputs(flags: dict[str, Any], source: str | None, settings: Settings) -> list[Output]:
    """The files the run reads, named as the user gave them: the config and the source file of
    each user's target (no output may overwrite one)."""
    from bce_audit.formulations.user import source_file

    inputs = []
    if source is not None:
        inputs.append(Output("--config" if flags["config_path"] is not None else "config", Path(source)))
    for spec in settings.user_formulations:
        file = source_file(spec)
        if file is not None:
            inputs.append(Output(spec.where or spec.target, file))
    return inputs


def _outputs(
    flags: dict[str, Any], config: dict[str, Any], source: str | None, keys: tuple[str, ...]
) -> dict[str, Output]:
    """key -> Output for each output that --KEY or the config's KEY names (checked by
    ``_prepare`` before the sweep: never fail after minutes of work)."""
    outputs = {}
    for key in keys:
        value, name = flags[f"{key}_path"], f"--{key}"
        if value is None:
            value, name = config.get(key), f"{key} (from {source})"
        if value is not None:
            outputs[key] = Output.parse(name, value)
    return outputs


def _report_console(outputs: dict[str, Output]) -> Console:
    """Where the human report goes: stdout, unless a file output was sent there with `-`."""
    from bce_audit.cli.console import stderr, stdout

    return stderr() if any(o.is_stdout for o in outputs.values()) else stdout()


@main.command("sweep", epilog=SWEEP_EXAMPLES)
@sweep_options
@directory_options
def sweep_command(**flags: Any) -> None:
    """Audit the formulations and print the scoreboard (and per-case figures with -v).

    Every figure is measured against the exact value, and its derivative by the input, of the
    loss each formulation implements: plain, unweighted BCE at the label given, unless it declares
    another member of the BCE family (bce-audit list shows each one's reference).
    """
    from bce_audit.engines.sandbox import Sandbox

    with Sandbox() as sandbox:
        inv = _prepare(flags, sandbox)
        directories = inv.directories
        result = _run_with_progress(
            inv,
            keep_details="details" in inv.outputs or bool(directories),
            full_map=_shows_map(inv) or bool(directories),
        )
        files = _directory_files(result, directories, sandbox)
    _report(result, _report_console(inv.outputs), inv.verbose)
    exports = _exports(result, inv.outputs)
    _check_members(files, [o for o, _ in exports], _inputs(flags, inv.config_source, inv.settings))
    _write_outputs(exports + files)
    if "repro" in directories and not any(o.path and o.path.suffix == ".py" for o, _ in files):
        from bce_audit.cli.console import stderr

        stderr().print(f"{directories['repro']}: no failing case, so no file", markup=False)


def _directories(flags: dict[str, Any]) -> dict[str, OutputDir]:
    """ "repro" | "plot" -> the directory --repro or --plot names (checked by ``_prepare`` before
    the sweep: a directory or creatable, neither an input nor another output)."""
    found = {}
    for key in ("repro", "plot"):
        value = flags.get(f"{key}_dir")
        if value is not None:
            found[key] = OutputDir.parse(f"--{key}", value)
    return found


def _directory_files(
    result: AuditResult, directories: dict[str, OutputDir], sandbox: Sandbox
) -> list[tuple[Output, str | bytes]]:
    """(output, contents) of every file --repro and --plot write (user code runs in ``sandbox``)."""
    from bce_audit.api import plot_outputs, repro_outputs

    files: list[tuple[Output, str | bytes]] = []
    if "repro" in directories:
        files += repro_outputs(result, directories["repro"], sandbox)
    if "plot" in directories:
        files += plot_outputs(result, directories["plot"])
    return files


def _check_members(files: list[tuple[Output, str | bytes]], outputs: list[Output], inputs: list[Output]) -> None:
    """No file named in a directory may be another output or an input (a user's loss file kept
    there), nor replace a file there that bce-audit did not write."""
    from bce_audit.files import check_distinct, check_ours_to_replace

    check_distinct([*outputs, *(o for o, _ in files)], inputs)
    check_ours_to_replace([o for o, _ in files])


@main.command("check", epilog=CHECK_EXAMPLES)
@sweep_options
@check_options
def check_command(**flags: Any) -> None:
    """Gate CI on precision: run the sweep and hold it to the thresholds and the baseline.

    The thresholds are the [[thresholds]] tables of the config; the baseline is a JSON file of
    every case's figures, written by --update-baseline and never replaced without it. The
    check passes (exit 0) only when every planned case was evaluated and judged.
    """
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.gate.plan import plan_check

    with Sandbox() as sandbox:
        inv = _prepare(flags, sandbox, CHECK_REPORTS)
        reports = inv.reports
        plan = plan_check(
            inv.config,
            inv.config_source,
            inv.settings,
            baseline_flag=flags["baseline_path"],
            update=flags["update_baseline"],
            tolerance_flags=flags["tolerance"],
            allow_missing_flag=flags["allow_missing"],
            paths=list(inv.outputs.values()) + list(reports.values()),
            inputs=_inputs(flags, inv.config_source, inv.settings),
        )
        result = _run_with_progress(inv, keep_details="details" in inv.outputs, full_map=_shows_map(inv))
    console = _report_console({**inv.outputs, **reports})
    if inv.verbose:
        _report(result, console, verbose=True)
    fmt = flags["format_"] or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    code = _gate(plan, result, inv.outputs, reports, fmt, console)
    if code:
        sys.exit(int(code))


@main.command("explain", epilog=EXPLAIN_EXAMPLES)
@explain_options
def explain_command(**flags: Any) -> None:
    """Explain why a formulation fails, down to the aten op, and print the fix.

    Its forward and backward passes run under a dispatch-level trace; every op is compared with
    its exact result on its actual inputs (mpmath, rounded once), and the chain from the first
    op that lost the value to the output is printed, with the catalogue's rewrites.
    """
    from bce_audit.api import explain
    from bce_audit.cli.console import stdout
    from bce_audit.errors import UsageError
    from bce_audit.report.explanation import render_explanation, render_ops

    name, impl = flags["formulation"], flags["impl"]
    if (name is None) == (impl is None):
        raise UsageError("give one formulation to explain: a name (bce-audit list) or --impl TARGET")
    explanations = explain(
        name if impl is None else impl,
        dtypes=flags["dtype"] or None,
        labels=flags["label"] or None,
        domain=flags["domain"],
        quantity=flags["quantity"],
        at=flags["at"],
        layout=flags["layout"],
        points=flags["points"],
        seed=flags["seed"],
        ulp_threshold=flags["ulp_threshold"],
        timeout=flags["timeout"],
        jobs=None,
        config=flags["config_path"],
    )
    out = stdout()
    if not explanations:
        out.print(f"{name or impl}: no failing input in the sweep of these cases: nothing to explain", markup=False)
        return
    for i, e in enumerate(explanations):
        if i:
            out.print()
        for line in render_explanation(e):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        if flags["all_ops"]:
            out.print("  every op (* the chain):", markup=False)
            for line in render_ops(e):
                out.print(line, markup=False, highlight=False, soft_wrap=True)


def _gate(
    plan: CheckPlan,
    result: AuditResult,
    exports: dict[str, Output],
    reports: dict[str, Output],
    fmt: str,
    console: Console,
) -> ExitCode:
    """Judge the result (or update the baseline), print the verdict, write every output together."""
    from bce_audit.cli.console import report_width, stderr
    from bce_audit.gate.plan import judge, render_update_file
    from bce_audit.report.github import GithubFormat
    from bce_audit.report.junit import JUnitFormat
    from bce_audit.report.markdown import MarkdownFormat, step_summary_text
    from bce_audit.report.verdict_text import VerdictTextFormat, render_update

    err = stderr()
    width = report_width(console.file)
    if plan.update:
        text, update = render_update_file(plan, result)
        _write_outputs(_exports(result, exports) + [(plan.baseline_output, text)])
        console.print(render_update(update, width), end="", markup=False)
        return ExitCode.OK
    verdict = judge(plan, result)
    console.print(VerdictTextFormat(width).render(verdict), end="", markup=False)
    if fmt == "github":
        console.print(GithubFormat().render(verdict), end="", markup=False)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            try:
                existing = os.path.getsize(summary)  # the file must stay under 1 MiB
            except OSError:
                existing = 0
            try:
                with open(summary, "a", encoding="utf-8") as f:  # the runner's file: append, never replace
                    f.write(step_summary_text(verdict, existing))
            except OSError as exc:
                err.print(f"bce-audit: warning: cannot append to GITHUB_STEP_SUMMARY {summary}: {exc}", markup=False)
    else:
        for warning in verdict.warnings:
            err.print(f"bce-audit: warning: {warning}", markup=False)
    writers = {"junit": JUnitFormat(), "markdown": MarkdownFormat()}
    files = _exports(result, exports) + [(out, writers[key].render(verdict)) for key, out in reports.items()]
    _write_outputs(files)
    return verdict.exit_code


def _shows_map(inv: _Invocation) -> bool:
    """Whether an output holds the failure map (so every edge of it is refined); the terminal and
    the summary show stable ranges only, exact with just their own ends refined."""
    return any(name in inv.outputs for name in ("failures", "json"))


def _run_with_progress(inv: _Invocation, keep_details: bool, full_map: bool = True) -> AuditResult:
    from bce_audit.api import run
    from bce_audit.cli.console import stderr
    from bce_audit.sweep.run import effective_sampling

    settings = inv.settings
    err = stderr()
    for dtype in settings.dtypes:
        if effective_sampling(settings, dtype) is not settings.sampling:
            note = f"note: {dtype} has too many values to enumerate; sampling its bit patterns instead"
            err.print(note, markup=False)

    def warn(message: str) -> None:
        err.print(f"bce-audit: warning: {message}", markup=False, highlight=False)

    # the failure map's causes are traced only for the outputs that hold them (docs/reports.md)
    causes = inv.causes
    if not (err.is_terminal and not os.environ.get("CI")):
        result = run(settings, inv.options, inv.sandbox, keep_details, warn, full_map=full_map)
        return _with_causes(result, inv.sandbox) if causes else result
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        truth = bar.add_task("exact truth", total=None)
        cases = bar.add_task("formulations", total=None)
        result = run(
            settings,
            inv.options,
            inv.sandbox,
            keep_details,
            warn,
            progress=lambda n, total: bar.update(truth, advance=n, total=total),
            case_progress=lambda n, total: bar.update(cases, advance=n, total=total),
            full_map=full_map,
        )
        if not causes:
            return result
        traced = bar.add_task("causes (failing intervals)", total=None)
        return _with_causes(result, inv.sandbox, lambda n, total: bar.update(traced, advance=n, total=total))


def _with_causes(result: AuditResult, sandbox: Sandbox, progress: ProgressCallback | None = None) -> AuditResult:
    from bce_audit.explanation.failures import explain_failures

    return explain_failures(result, sandbox, progress)


def _report(result: AuditResult, console: Console, verbose: bool) -> None:
    from bce_audit.cli.console import report_width
    from bce_audit.report.terminal import report

    for line in report(result, report_width(console.file), verbose):
        console.print(line)


def _exports(result: AuditResult, outputs: dict[str, Output]) -> list[tuple[Output, str]]:
    """(output, text) for each sweep export asked for."""
    from bce_audit.report.csv_format import DetailsCsvFormat, SummaryCsvFormat
    from bce_audit.report.failures_csv import FailuresCsvFormat
    from bce_audit.report.json_format import JsonFormat

    writers = {
        "csv": SummaryCsvFormat(),
        "details": DetailsCsvFormat(),
        "json": JsonFormat(),
        "failures": FailuresCsvFormat(),
    }
    return [(out, writers[key].render(result)) for key, out in outputs.items()]


def _write_outputs(files: list[tuple[Output, str]] | list[tuple[Output, str | bytes]]) -> None:
    """Write every output of the run together (all replaced, or an error saying which were); a
    directory's files are announced as one line per directory."""
    from bce_audit.cli.console import stderr
    from bce_audit.files import write_outputs
    from bce_audit.report.numbers import count

    err = stderr()
    in_directories: dict[Path, int] = {}

    def announce(out: Output) -> None:
        if out.member and out.path is not None:
            in_directories[out.path.parent] = in_directories.get(out.path.parent, 0) + 1
        elif out.path is not None:
            err.print(f"wrote {out.path}", markup=False)

    write_outputs(files, announce=announce)
    for directory, n in in_directories.items():
        err.print(f"wrote {count(n, 'file')} in {directory}", markup=False)


__all__ = ["click", "main"]
