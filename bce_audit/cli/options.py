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
"""


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
        type=click.Path(path_type=Path, dir_okay=False),
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

sweep_options = _apply(SWEEP_OPTIONS)


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
