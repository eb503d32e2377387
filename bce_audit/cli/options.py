"""The options of every command, declared once; each command applies them with a decorator.

The help texts name the defaults that ``settings`` applies; nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bce_audit.errors import exit_codes_text
from bce_audit.processes import DEFAULT_TIMEOUT, MAX_TIMEOUT

F = TypeVar("F", bound=Callable[..., Any])

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
  bce-audit sweep -f torch-bce -d float32 --repro repro/ --plot plots/   # bug-report files, figures
  bce-audit sweep -f torchvision-focal -f logspace-focal --param gamma=0,0.5,2 --domain logits
"""


class _GivenPath(click.Path):
    """click.Path as a ``Path``, refusing an empty or blank value: ``Path("")`` is the current
    directory, so ``--cache-dir ""`` would quietly put the cache there and ``--config ""`` name it."""

    def __init__(self, **kwargs: Any):
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("empty path; name a directory" if not self.file_okay else "empty path; name a file", param, ctx)
        return super().convert(value, param, ctx)


def _apply(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


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
    f"(default {DEFAULT_TIMEOUT:g}, at most {MAX_TIMEOUT:g}). One that hangs is killed and its cases are "
    "reported as not evaluated.",
)


LIST_EXAMPLES = """
\b
Examples:
  bce-audit list
  bce-audit list --impl my_losses.py:bce@logits --impl mypkg.losses:focal
  bce-audit list --config sample_configs/custom-formulation.toml
"""


LIST_OPTIONS = [
    click.option(
        "--impl",
        "impl",
        multiple=True,
        metavar="TARGET",
        help="Also list your own loss: MODULE:FUNCTION or path/to/file.py:FUNCTION, suffixed @logits or "
        "@probabilities unless decorated with bce_audit.formulation (repeatable). It is loaded as a sweep "
        "would load it: a target that cannot be is an error.",
    ),
    click.option(
        "--config",
        "config_path",
        type=_GivenPath(dir_okay=False),
        default=None,
        help="Also list the [[formulations]] of this TOML file. Default: [tool.bce-audit] in ./pyproject.toml.",
    ),
    _TIMEOUT_OPTION,
]
list_options = _apply(LIST_OPTIONS)


# The options shared by `sweep` and every command that runs a sweep: what to audit, where the
# settings come from, and what to export. Each command applies them with @sweep_options.
SWEEP_OPTIONS = [
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
        "--param",
        "param",
        multiple=True,
        metavar="NAME=V1,V2,...",
        help="Sweep a parameter as a case dimension: every selected formulation that takes it runs once per "
        "value, measured against its reference at that value (repeatable; e.g. -f torchvision-focal "
        "--param gamma=0,0.5,2). Values take the type of the parameter's own (number, true/false, "
        "string); 'none' is None for your own function (--param alpha=none,0.25); a list-valued "
        "parameter cannot be swept.",
    ),
    click.option(
        "--mode",
        "mode",
        multiple=True,
        metavar="MODE[,MODE...]",
        help="How the torch engine runs each formulation, a case dimension: eager (default), vmap "
        "(torch.func.vmap of the one-element loss, torch.func.grad inside), autocast (forward under "
        "torch.autocast to bfloat16) or compile (torch.compile, inductor; seconds per graph) "
        "(repeatable or a comma list; e.g. --mode eager,vmap,autocast).",
    ),
    click.option(
        "--device",
        type=click.Choice(["cpu", "cuda", "mps"]),
        default=None,
        help="Where the torch engine's tensors live (default cpu); results come back to the CPU in float64. "
        "Exit 2 when torch has no such device (e.g. --device cuda).",
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
        help=(
            "bits: uniform over bit patterns plus a dense band and the inputs where the truth crosses a "
            "threshold (default); exhaustive: every value of 16-bit dtypes and of float32 (streamed: about "
            "30 CPU-minutes per formulation and label for --range -20:20, an hour for all 4.3e9 values; "
            "no --details); float64 falls back to bits. Example: -d float32 --sampling exhaustive --range 80:110"
        ),
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
        type=_GivenPath(dir_okay=False),
        default=None,
        help="TOML file with the same settings; flags win. Default: [tool.bce-audit] in ./pyproject.toml.",
    ),
    click.option(
        "--csv",
        "csv_path",
        type=click.Path(),
        default=None,
        help="Write the summary CSV (one row per case) here; - for standard output.",
    ),
    click.option(
        "--details",
        "details_path",
        type=click.Path(),
        default=None,
        help="Write the per-point CSV here; - for standard output.",
    ),
    click.option(
        "--failures",
        "failures_path",
        type=click.Path(),
        default=None,
        help="Write the failure map CSV here (one row per failing interval of each case, its edges "
        "exact or sampled); - for standard output. Example: --failures failures.csv",
    ),
    click.option(
        "--json",
        "json_path",
        type=click.Path(),
        default=None,
        help="Write the JSON report (summary, settings, provenance) here; - for standard output.",
    ),
    click.option(
        "--no-causes",
        is_flag=True,
        default=False,
        help="Leave the failure map's cause column empty in --failures and --json: no failing interval "
        "is traced (tracing them adds 6 to 10 ms per interval, 15 to 25 s on the default sweep). "
        "Example: --failures map.csv --no-causes",
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
        type=_GivenPath(file_okay=False),
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

sweep_options = _apply(SWEEP_OPTIONS)


# The options of `sweep` alone: directories of files about the failing cases, for people to read
# and to attach to bug reports (docs/repro-and-plots.md).
DIRECTORY_OPTIONS = [
    click.option(
        "--repro",
        "repro_dir",
        type=click.Path(),
        default=None,
        metavar="DIR",
        help="Write a standalone pytest file per failing case into DIR (created if missing): its worst "
        "input and the first input of each failing status, as exact hex floats, with the expected value "
        "and the formulation's code; each test fails while the bug is there. E.g. --repro repro/, then "
        "pytest repro/.",
    ),
    click.option(
        "--plot",
        "plot_dir",
        type=click.Path(),
        default=None,
        metavar="DIR",
        help="Write one figure per formulation and quantity into DIR (created if missing), as PNG and SVG: "
        "the ULP error against the input in every dtype, the status bands, the stable range. Needs "
        "matplotlib: pip install 'bce-audit[plot]'. E.g. --plot plots/.",
    ),
]

directory_options = _apply(DIRECTORY_OPTIONS)


CHECK_EXAMPLES = f"""
\b
Examples:
  bce-audit check --config sample_configs/ci-gate.toml      # thresholds and baseline from the config
  bce-audit check --config ci.toml --update-baseline         # record this run as the baseline
  bce-audit check -f max-abs -d float32 --baseline b.json --tolerance max_ulp:+2 --allow-missing
  bce-audit check --config ci.toml --format github --junit bce-audit.xml --markdown summary.md

Exit codes: {exit_codes_text()}
"""

# The options of `check` besides the sweep options.
CHECK_OPTIONS = [
    click.option(
        "--baseline",
        "baseline_path",
        type=click.Path(),
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
        type=click.Path(),
        default=None,
        help="Write a JUnit XML report here; - for standard output.",
    ),
    click.option(
        "--markdown",
        "markdown_path",
        type=click.Path(),
        default=None,
        help="Write the Markdown summary here (for a pull-request comment); - for standard output.",
    ),
]

check_options = _apply(CHECK_OPTIONS)


EXPLAIN_EXAMPLES = """
\b
Examples:
  bce-audit explain naive -y 0 --quantity loss              # float32 on its own domain: why it fails
  bce-audit explain softplus-threshold --quantity grad --at 89
  bce-audit explain clipped -d float16 --domain probabilities -y 0
  bce-audit explain max-abs --quantity grad --at 0 --all-ops
  bce-audit explain --impl my_losses.py:bce@logits -d bfloat16
  bce-audit explain pw2 --config family.toml -y 1 --quantity grad --at 30  # a table of the config
"""

EXPLAIN_OPTIONS = [
    click.argument("formulation", required=False),
    click.option(
        "--impl",
        "impl",
        default=None,
        metavar="TARGET",
        help="Explain your own loss instead of a named one: MODULE:FUNCTION or path/to/file.py:FUNCTION, "
        "suffixed @logits or @probabilities unless decorated with bce_audit.formulation. It runs in a "
        "child process, e.g. --impl my_losses.py:bce@logits.",
    ),
    click.option(
        "-d", "--dtype", multiple=True, help="float16, bfloat16, float32 or float64 (repeatable; default float32)."
    ),
    click.option("-y", "--label", multiple=True, help="Target label in [0, 1] (repeatable; default 0 and 1)."),
    click.option(
        "--domain",
        type=click.Choice(["logits", "probabilities", "both"]),
        default=None,
        help="Input domain (default: the formulation's own), e.g. --domain logits.",
    ),
    click.option(
        "--quantity",
        type=click.Choice(["loss", "grad"]),
        default=None,
        help="Explain the loss or its gradient (default both), e.g. --quantity grad.",
    ),
    click.option(
        "--at",
        "at",
        type=float,
        default=None,
        metavar="X",
        help="Explain this input (rounded to the dtype), e.g. --at 16.64. Default: sweep the case and explain "
        "its worst input and the failing inputs nearest its stable range.",
    ),
    click.option(
        "--layout",
        type=click.Choice(["batch", "alone"]),
        default="batch",
        help="batch: the point repeated in a tensor, in torch's vectorized loop as in a sweep (default); "
        "alone: a one-element tensor (the scalar path).",
    ),
    click.option(
        "--config",
        "config_path",
        type=_GivenPath(dir_okay=False),
        default=None,
        help="A TOML file as sweep's: FORMULATION may name one of its [[formulations]] tables (a built-in with "
        "other parameters, your function with its reference), e.g. --config family.toml. Flags win over its "
        "other settings. Default: none (explain reads no pyproject.toml).",
    ),
    click.option("--all-ops", is_flag=True, default=False, help="Also print every traced op, judged."),
    click.option(
        "--points",
        type=int,
        default=None,
        help="Sampled inputs of the sweep that finds the failing inputs (default 1000), e.g. --points 5000.",
    ),
    click.option("--seed", type=int, default=None, help="Random seed of that sweep (default 0)."),
    click.option(
        "--ulp-threshold",
        type=float,
        default=None,
        help="ULP error above which a point or an op's departure counts (default 4), e.g. --ulp-threshold 8.",
    ),
    _TIMEOUT_OPTION,
]

explain_options = _apply(EXPLAIN_OPTIONS)
