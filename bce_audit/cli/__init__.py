"""Command-line interface: parses and wires, no numerics here.

torch and mpmath are imported only inside commands, so `bce-audit --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from bce_audit import __version__
from bce_audit.errors import BceAuditError, ExitCode, Terminated, UsageError

SWEEP_EXAMPLES = """
\b
Examples:
  bce-audit sweep                               # every built-in formulation, dtype, domain; y in {0, 1}
  bce-audit sweep -f naive -f max-abs -d float16 --verbose
  bce-audit sweep --domain logits --range -30:30 -y 0.1 -y 0.9
  bce-audit sweep -d float16 -d bfloat16 --sampling exhaustive --csv report.csv
  bce-audit sweep --config sample_configs/quick.toml --details points.csv --json report.json
  bce-audit sweep --impl my_losses.py:bce@logits -f torch-bce-with-logits -d float32
  bce-audit sweep --config sample_configs/custom-formulation.toml   # your functions, parameters
"""


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> None:
    from bce_audit.cli.console import stderr

    stderr().print(f"bce-audit: error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(int(code))


def _on_sigterm(signum, frame):
    raise Terminated()


class _Group(click.Group):
    """Turns user mistakes into one line and exit 2, and bugs into exit 3, never a traceback.

    SIGTERM becomes an exception in the main thread, like Ctrl-C, so child processes are ended
    and temporary files removed on the way out (exit 143).
    """

    def main(self, *args, **kwargs):
        import signal
        import threading

        from bce_audit.cli.console import ensure_standard_descriptors

        ensure_standard_descriptors()
        kwargs.setdefault("standalone_mode", True)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().main(*args, **kwargs)
        except BceAuditError as exc:
            _fail(str(exc), exc.exit_code)
        except Terminated:
            _fail("terminated", ExitCode.TERMINATED)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad flag value or command: one line, not click's three
            if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                raise
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            _fail(f"{exc.format_message()} (see '{where} --help')")
        except (BceAuditError, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", ExitCode.INTERRUPTED)
        except Terminated:
            _fail("terminated", ExitCode.TERMINATED)
        except Exception as exc:  # a bug in bce-audit: say so, in one line, with exit 3
            if os.environ.get("BCE_AUDIT_DEBUG"):
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (set BCE_AUDIT_DEBUG=1 for a traceback)",
                ExitCode.INTERNAL,
            )


MAIN_EXAMPLES = """
\b
Examples:
  bce-audit sweep                            # every built-in, dtype and domain: the scoreboard
  bce-audit sweep -f max-abs -d float16 -v   # one formulation, one dtype, with per-case figures
  bce-audit sweep --impl my_losses.py:bce@logits -f torch-bce-with-logits   # yours beside a built-in
  bce-audit list                             # the formulations: built-in, installed, your own
  bce-audit check --config ci.toml           # gate CI on thresholds and a baseline
  bce-audit COMMAND --help                   # a command's options, with examples

\b
Every figure is measured against the exact value of plain, unweighted BCE at the label
given (no pos_weight, weight, label smoothing or focal term), and its derivative.

\b
Exit codes: 0 done (check: everything held); 1 check found a regression; 2 a usage or
configuration error; 3 a bug in bce-audit; 4 check could not evaluate every planned case
(a user's function died, hung or ran out of memory); 130 Ctrl-C; 143 SIGTERM.
"""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=MAIN_EXAMPLES)
@click.version_option(__version__, prog_name="bce-audit")
def main() -> None:
    """Audit the numerical stability of binary-cross-entropy implementations.

    Every formulation is evaluated in torch in float16, bfloat16, float32 and float64, on logits
    and probabilities, and its loss and autograd gradient are compared with an exact mpmath
    ground truth: plain BCE at the label given.
    """


_IMPL_OPTION = click.option(
    "--impl",
    "impl",
    multiple=True,
    metavar="TARGET",
    help="Audit your own loss: MODULE:FUNCTION or path/to/file.py:FUNCTION, suffixed @logits or "
    "@probabilities unless decorated with bce_audit.formulation (repeatable). Without -f only these "
    "are audited; add -f NAME to compare with a built-in.",
)


_TIMEOUT_OPTION = click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Time limit for each import and each call of your own functions, which run in a child process "
    "(default 60). One that hangs is killed and its cases are reported as not evaluated.",
)


def _timeout(flag: float | None, config: dict) -> float:
    from bce_audit.engines.sandbox import DEFAULT_TIMEOUT

    value, where = (flag, "--timeout") if flag is not None else (config.get("timeout"), "config timeout")
    if value is None:
        return DEFAULT_TIMEOUT
    if not (value > 0) or value == float("inf"):
        raise UsageError(f"{where} must be a number of seconds > 0, got {value!r}")
    return float(value)


LIST_EXAMPLES = """
\b
Examples:
  bce-audit list
  bce-audit list --impl my_losses.py:bce@logits --impl mypkg.losses:focal
  bce-audit list --config sample_configs/custom-formulation.toml
"""


@main.command("list", epilog=LIST_EXAMPLES)
@click.option(
    "--impl",
    "impl",
    multiple=True,
    metavar="TARGET",
    help="Also list your own loss: MODULE:FUNCTION or path/to/file.py:FUNCTION, suffixed @logits or "
    "@probabilities unless decorated with bce_audit.formulation (repeatable). It is loaded as a sweep "
    "would load it: a target that cannot be is an error.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also list the [[formulations]] of this TOML file. Default: [tool.bce-audit] in ./pyproject.toml.",
)
@_TIMEOUT_OPTION
def list_command(impl, config_path, timeout) -> None:
    """Show the formulations: built-in, installed (entry points), and your own (--impl, config).

    Each is audited against the same reference: the exact value of plain, unweighted BCE at the
    label given, and its derivative by the input.
    """
    from bce_audit.cli.console import report_width, stdout
    from bce_audit.config import load_config
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.formulations.user import catalogue
    from bce_audit.report.layout import Column, table, wrap
    from bce_audit.report.terminal import REFERENCE

    config, source = load_config(config_path)
    with Sandbox(_timeout(timeout, config)) as box:
        rows = [
            [row.name, row.domain, row.source, row.definition]
            for row in catalogue(impl, config.get("formulations"), source, box)
        ]
    out = stdout()
    width = report_width()
    keys = [Column("name"), Column("native domain"), Column("source")]
    for line in table(keys, [Column("definition")], rows, width):
        out.print(line)
    out.print()
    for line in wrap(REFERENCE, width):
        out.print(line, markup=False)


def _resolve(config: dict, config_source: str | None = None, sandbox=None, **flags):
    """Settings from the config table with the command-line flags on top."""
    from bce_audit.formulations.user import select_formulations
    from bce_audit.settings import Settings, parse_range
    from bce_audit.vocabulary import Domain, DType, Sampling

    def pick(flag, key):
        return flag if flag not in (None, ()) else config.get(key)

    # -f names, --impl targets and the config's list (names and tables): loads the user's functions
    kw = select_formulations(
        flags["formulation"], flags.get("impl", ()), config.get("formulations"), config_source, sandbox
    )
    dtypes = pick(flags["dtype"], "dtypes")
    if dtypes:
        kw["dtypes"] = tuple(dict.fromkeys(DType.parse(d, "dtype") for d in dtypes))
    domain = pick(flags["domain"], "domain")
    if domain:
        kw["domains"] = tuple(Domain) if domain == "both" else (Domain.parse(domain, "domain"),)
    labels = pick(flags["label"], "labels")
    if labels:
        values = []
        for y in labels:
            try:
                values.append(float(y))
            except (TypeError, ValueError):
                raise UsageError(f"label {y!r} is not a number") from None
        kw["labels"] = tuple(dict.fromkeys(values))
    rng = pick(flags["range"], "range")
    if rng is not None:
        if isinstance(rng, list):
            if len(rng) != 2:
                raise UsageError(f"range {rng!r} must have two numbers [LO, HI]")
            # numbers already: Settings checks that the interval is not empty or inverted
            kw["logit_range"] = (float(rng[0]), float(rng[1]))
        else:
            kw["logit_range"] = parse_range(rng)
    for key in ("points", "seed", "ulp_threshold"):
        v = pick(flags[key], key)
        if v is not None:
            kw[key] = v
    sampling = pick(flags["sampling"], "sampling")
    if sampling:
        kw["sampling"] = Sampling.parse(sampling, "sampling")
    return Settings(**kw)


# The options shared by `sweep` and every command that runs a sweep: what to audit, where the
# settings come from, and what to export. Each command applies them with @_sweep_options.
_SWEEP_OPTIONS = [
    click.option(
        "-f",
        "--formulation",
        multiple=True,
        help="Formulation to audit: a built-in or an installed one (repeatable; default all built-ins, "
        "none with --impl). See `bce-audit list`.",
    ),
    _IMPL_OPTION,
    click.option(
        "-d", "--dtype", multiple=True, help="float16, bfloat16, float32 or float64 (repeatable; default all)."
    ),
    click.option(
        "--domain",
        type=click.Choice(["logits", "probabilities", "both"]),
        default=None,
        help="Input domain to sweep (default both).",
    ),
    click.option(
        "-y",
        "--label",
        multiple=True,
        help="Target label in [0, 1] (repeatable; default 0 and 1; soft labels allowed).",
    ),
    click.option(
        "--range",
        "range_",
        metavar="LO:HI",
        default=None,
        help="Restrict inputs to [LO, HI] on the logit axis (probabilities: [sigmoid(LO), sigmoid(HI)]).",
    ),
    click.option(
        "--points",
        type=int,
        default=None,
        help="Sampled inputs per (dtype, domain) grid, besides the special inputs (default 1000, at most 10,000,000).",
    ),
    click.option(
        "--sampling",
        type=click.Choice(["bits", "exhaustive"]),
        default=None,
        help="bits: uniform over bit patterns plus a dense band (default); exhaustive: every value of 16-bit dtypes.",
    ),
    click.option(
        "--seed", type=int, default=None, help="Random seed (default 0); results are deterministic for a seed."
    ),
    click.option(
        "--ulp-threshold",
        type=float,
        default=None,
        help="ULP error above which a point is `inaccurate` (default 4).",
    ),
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML file with the same settings; flags win. Default: [tool.bce-audit] in ./pyproject.toml.",
    ),
    click.option(
        "--csv",
        "csv_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Write the summary CSV (one row per case) here; - for standard output.",
    ),
    click.option(
        "--details",
        "details_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Write the per-point CSV here; - for standard output.",
    ),
    click.option(
        "--json",
        "json_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Write the JSON report (summary, settings, provenance) here; - for standard output.",
    ),
    click.option("-v", "--verbose", is_flag=True, default=None, help="Also print the per-case figures."),
    click.option(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="Processes for the exact truth (default: the number of cores). Results are identical for any N.",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Keep computed truth here (default: the user cache directory, or $BCE_AUDIT_CACHE_DIR).",
    ),
    click.option(
        "--no-cache",
        "no_cache",
        is_flag=True,
        default=None,
        help="Neither read nor write the truth cache: compute every exact value afresh.",
    ),
    _TIMEOUT_OPTION,
]


def _sweep_options(fn):
    for option in reversed(_SWEEP_OPTIONS):
        fn = option(fn)
    return fn


@dataclasses.dataclass(frozen=True)
class _Invocation:
    """A sweep command line resolved: the config table, the settings, the checked outputs."""

    config: dict
    config_source: str | None
    settings: object  # bce_audit.settings.Settings
    outputs: dict  # "csv" | "details" | "json" -> _io.Output, each checked writable
    verbose: bool
    jobs: int  # processes for the oracle
    cache_dir: Path | None  # None: no persistent truth cache
    sandbox: object  # bce_audit.engines.sandbox.Sandbox: where the user's functions run


def _prepare(flags: dict, sandbox) -> _Invocation:
    """Settings and outputs from the config and the sweep options (flags win)."""
    from bce_audit.config import load_config
    from bce_audit.files import check_distinct

    config, source = load_config(flags["config_path"])
    sandbox.timeout = _timeout(flags["timeout"], config)
    if _may_run_user_code(flags, config):
        # the sandbox's fork server imports torch while this process does the same
        sandbox.prestart()
        import bce_audit.engines._torch_warmup  # noqa: F401
    settings = _resolve(
        config,
        source,
        sandbox,
        formulation=flags["formulation"],
        impl=flags["impl"],
        dtype=flags["dtype"],
        domain=flags["domain"],
        label=flags["label"],
        range=flags["range_"],
        points=flags["points"],
        sampling=flags["sampling"],
        seed=flags["seed"],
        ulp_threshold=flags["ulp_threshold"],
    )
    outputs = _output_paths(flags, config, source, ("csv", "details", "json"))
    check_distinct(_inputs(flags, source) + list(outputs.values()))  # no output overwrites the config or another
    verbose = flags["verbose"] if flags["verbose"] is not None else bool(config.get("verbose", False))
    jobs, jobs_from = (flags["jobs"], "--jobs") if flags["jobs"] is not None else (config.get("jobs"), "config jobs")
    if jobs is None:
        jobs = _cores()
    elif jobs < 1:
        raise UsageError(f"{jobs_from} must be at least 1, got {jobs}")
    use_cache = not flags["no_cache"] and config.get("cache", True)
    cache_dir = None
    if use_cache:
        from bce_audit.oracle.cache import default_cache_dir

        given, given_from = flags["cache_dir"], "--cache-dir"
        if given is None:
            given, given_from = config.get("cache_dir"), "config cache_dir"
        cache_dir = Path(given) if given is not None else default_cache_dir()
        if given is not None and cache_dir.exists() and not cache_dir.is_dir():
            raise UsageError(f"{given_from} {cache_dir}: not a directory")
    return _Invocation(config, source, settings, outputs, verbose, jobs, cache_dir, sandbox)


def _may_run_user_code(flags: dict, config: dict) -> bool:
    """Whether the selection names anything but built-ins (--impl, config tables, entry points)."""
    from bce_audit.formulations.builtins import BUILTINS

    items = list(flags["formulation"]) or list(config.get("formulations") or [])
    return bool(flags["impl"]) or any(not isinstance(i, str) or i not in BUILTINS for i in items)


def _inputs(flags: dict, source: str | None) -> list:
    """The config file, as an Output-like name and path (no output may overwrite it)."""
    from bce_audit.files import Output

    if source is None:
        return []
    return [Output("--config" if flags["config_path"] is not None else "config", Path(source))]


def _output_paths(flags: dict, config: dict, source: str | None, keys: tuple[str, ...]) -> dict:
    """key -> Output for each output that --KEY or the config's KEY names, each checked writable
    before the sweep: never fail after minutes of work."""
    from bce_audit.files import Output, check_writable

    outputs = {}
    for key in keys:
        value = flags[f"{key}_path"]
        name = f"--{key}"
        if value is None:
            value = config.get(key)
            name = f"{key} (from {source})"
        if value is not None:
            output = Output.parse(name, value)
            check_writable(output)
            outputs[key] = output
    return outputs


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (Linux)
    except AttributeError:
        return os.cpu_count() or 1


def _report_console(outputs: dict):
    """Where the human report goes: stdout, unless a file output was sent there with `-`."""
    from bce_audit.cli.console import stderr, stdout

    return stderr() if any(o.is_stdout for o in outputs.values()) else stdout()


@main.command("sweep", epilog=SWEEP_EXAMPLES)
@_sweep_options
def sweep_command(**flags) -> None:
    """Audit the formulations and print the scoreboard (and per-case figures with -v).

    Every figure is measured against the exact value of plain, unweighted BCE at the label given
    (no pos_weight, weight, label smoothing or focal term), and its derivative by the input.
    """
    from bce_audit.engines.sandbox import Sandbox

    with Sandbox() as sandbox:
        inv = _prepare(flags, sandbox)
        result = _run_with_progress(inv, keep_details="details" in inv.outputs)
    _report(result, _report_console(inv.outputs), inv.verbose)
    _write_outputs(_exports(result, inv.outputs))


CHECK_EXAMPLES = """
\b
Examples:
  bce-audit check --config sample_configs/ci-gate.toml      # thresholds and baseline from the config
  bce-audit check --config ci.toml --update-baseline         # record this run as the baseline
  bce-audit check -f max-abs -d float32 --baseline b.json --tolerance max_ulp:+2 --allow-missing
  bce-audit check --config ci.toml --format github --junit bce-audit.xml --markdown summary.md

\b
Exit codes: 0 every planned case was evaluated and every threshold and the baseline hold;
1 a threshold or the baseline failed; 2 a usage or configuration error (a check with no
thresholds and no baseline is one); 3 a bug; 4 a planned case could not be evaluated (a
user's function died, hung past --timeout or ran out of memory) and nothing failed.
"""

# The options of `check` besides the sweep options.
_CHECK_OPTIONS = [
    click.option(
        "--baseline",
        "baseline_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Baseline file to compare with (default: `baseline` in the config, relative to the config file).",
    ),
    click.option(
        "--update-baseline",
        is_flag=True,
        default=False,
        help="Write this run's figures as the baseline (atomically), print what changed, and exit 0.",
    ),
    click.option(
        "--tolerance",
        multiple=True,
        metavar="FIGURE:+N",
        help="How much worse a figure may get against the baseline (repeatable), e.g. max_ulp:+2. "
        "Defaults: max_ulp +1, p99_ulp +1, mean_bits +0.1, counts +0.",
    ),
    click.option(
        "--allow-missing",
        is_flag=True,
        default=None,
        help="Let baseline cases that this run lacks pass (a baseline with no case of this run is still an error).",
    ),
    click.option(
        "--format",
        "format_",
        type=click.Choice(["text", "github"]),
        default=None,
        help="github adds workflow-command annotations and appends to the job summary; text does neither "
        "(default: github when GITHUB_ACTIONS=true, else text).",
    ),
    click.option(
        "--junit",
        "junit_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Write a JUnit XML report here; - for standard output.",
    ),
    click.option(
        "--markdown",
        "markdown_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Write the Markdown summary here (for a pull-request comment); - for standard output.",
    ),
]


def _check_options(fn):
    for option in reversed(_CHECK_OPTIONS):
        fn = option(fn)
    return fn


@main.command("check", epilog=CHECK_EXAMPLES)
@_sweep_options
@_check_options
def check_command(**flags) -> None:
    """Gate CI on precision: run the sweep and hold it to the thresholds and the baseline.

    The thresholds are the [[thresholds]] tables of the config; the baseline is a JSON file of
    every case's figures, written by --update-baseline and never replaced without it. The
    check passes (exit 0) only when every planned case was evaluated and judged.
    """
    from bce_audit.engines.sandbox import Sandbox
    from bce_audit.gate.plan import plan_check

    with Sandbox() as sandbox:
        inv = _prepare(flags, sandbox)
        reports = _output_paths(flags, inv.config, inv.config_source, ("junit", "markdown"))
        plan = plan_check(
            inv.config,
            inv.config_source,
            inv.settings,
            baseline_flag=flags["baseline_path"],
            update=flags["update_baseline"],
            tolerance_flags=flags["tolerance"],
            allow_missing_flag=flags["allow_missing"],
            paths=_inputs(flags, inv.config_source) + list(inv.outputs.values()) + list(reports.values()),
        )
        result = _run_with_progress(inv, keep_details="details" in inv.outputs)
    outputs = {**inv.outputs, **reports}
    console = _report_console(outputs)
    if inv.verbose:
        _report(result, console, verbose=True)
    fmt = flags["format_"] or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    code = _gate(plan, result, inv.outputs, reports, fmt, console)
    if code:
        sys.exit(int(code))


def _gate(plan, result, exports: dict, reports: dict, fmt: str, console) -> ExitCode:
    """Judge the result (or update the baseline), print the verdict, write every output together."""
    from bce_audit.cli.console import report_width, stderr
    from bce_audit.gate.plan import judge, render_update_file
    from bce_audit.report import GithubFormat, JUnitFormat, MarkdownFormat, VerdictTextFormat
    from bce_audit.report.markdown import step_summary_text
    from bce_audit.report.verdict_text import render_update

    err = stderr()
    width = report_width(console.file)
    if plan.update:
        text, update = render_update_file(plan, result)
        files = _exports(result, exports) + [(plan.baseline_output, text)]
        _write_outputs(files)
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
                warn = f"bce-audit: warning: cannot append to GITHUB_STEP_SUMMARY {summary}: {exc}"
                err.print(warn, markup=False)
    else:
        for warning in verdict.warnings:
            err.print(f"bce-audit: warning: {warning}", markup=False)
    writers = {"junit": JUnitFormat(), "markdown": MarkdownFormat()}
    files = _exports(result, exports) + [(out, writers[key].render(verdict)) for key, out in reports.items()]
    _write_outputs(files)
    return verdict.exit_code


def _run_with_progress(inv: _Invocation, keep_details: bool):
    from bce_audit.audit.sweep import effective_sampling, run_sweep
    from bce_audit.cli.console import stderr
    from bce_audit.oracle.cache import TruthCache

    settings = inv.settings
    err = stderr()
    for dtype in settings.dtypes:
        if effective_sampling(settings, dtype) is not settings.sampling:
            note = f"note: {dtype} has too many values to enumerate; sampling its bit patterns instead"
            err.print(note, markup=False)

    def warn(message: str) -> None:
        err.print(f"bce-audit: warning: {message}", markup=False, highlight=False)

    cache = None if inv.cache_dir is None else TruthCache(inv.cache_dir, warn=warn)
    run = dict(keep_details=keep_details, jobs=inv.jobs, cache=cache, sandbox=inv.sandbox)
    show = err.is_terminal and not os.environ.get("CI")
    if not show:
        return run_sweep(settings, **run)
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
        cases = bar.add_task("formulations in torch", total=None)
        return run_sweep(
            settings,
            progress=lambda n, total: bar.update(truth, advance=n, total=total),
            case_progress=lambda n, total: bar.update(cases, advance=n, total=total),
            **run,
        )


def _report(result, console, verbose: bool) -> None:
    from bce_audit.cli.console import report_width
    from bce_audit.report.terminal import report

    for line in report(result, report_width(console.file), verbose):
        console.print(line)


def _exports(result, outputs: dict) -> list:
    """(output, text) for each sweep export asked for."""
    from bce_audit.report import DetailsCsvFormat, JsonFormat, SummaryCsvFormat

    writers = {"csv": SummaryCsvFormat(), "details": DetailsCsvFormat(), "json": JsonFormat()}
    return [(out, writers[key].render(result)) for key, out in outputs.items()]


def _write_outputs(files: list) -> None:
    """Write every output of the run together (all replaced, or an error saying which were)."""
    from bce_audit.cli.console import stderr
    from bce_audit.files import write_outputs

    err = stderr()

    def announce(out) -> None:
        if out.path is not None:
            err.print(f"wrote {out.path}", markup=False)

    write_outputs(files, announce=announce)


if __name__ == "__main__":  # pragma: no cover
    main()
