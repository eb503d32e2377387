"""Every renderer on synthetic results and verdicts (tests/synthetic.py), compared with golden files.

Each golden file in tests/report/golden/ is the exact text one renderer makes of one data set; no
sweep runs. When a renderer changes on purpose, rewrite the files and review the diff:

    BCE_AUDIT_UPDATE_GOLDEN=1 pytest tests/report

(then `git diff tests/report/golden`: every changed line must be an intended change). A file that
no test makes any more fails `test_no_stale_golden_files`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import synthetic

from bce_audit.report.csv_format import DetailsCsvFormat, SummaryCsvFormat
from bce_audit.report.failures_csv import FailuresCsvFormat
from bce_audit.report.github import GithubFormat
from bce_audit.report.json_format import JsonFormat
from bce_audit.report.junit import JUnitFormat
from bce_audit.report.markdown import MarkdownFormat
from bce_audit.report.terminal import report
from bce_audit.report.verdict_text import VerdictTextFormat, render_update

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BCE_AUDIT_UPDATE_GOLDEN") == "1"

RESULTS = {
    "awkward": synthetic.awkward_result,
    "nonfinite": synthetic.nonfinite_result,
    "variants": synthetic.variants_result,
}
VERDICTS = {
    "failing": synthetic.failing_verdict,
    "multiline": synthetic.multiline_verdict,
    "passing": synthetic.passing_verdict,
    "incomplete": synthetic.incomplete_verdict,
}


def _terminal(name: str, width: int | None, verbose: bool) -> Callable[[], str]:
    def render() -> str:
        return "".join(line.plain + "\n" for line in report(RESULTS[name](), width, verbose))

    return render


def _renders() -> dict[str, Callable[[], str]]:
    """golden file name -> what makes its text."""
    out: dict[str, Callable[[], str]] = {}
    for width in (None, 120, 80, 40):
        out[f"terminal-awkward-verbose-w{width}"] = _terminal("awkward", width, True)
    out["terminal-awkward-wNone"] = _terminal("awkward", None, False)
    out["terminal-nonfinite-wNone"] = _terminal("nonfinite", None, False)
    out["terminal-nonfinite-verbose-w80"] = _terminal("nonfinite", 80, True)
    out["terminal-variants-verbose-wNone"] = _terminal("variants", None, True)
    for name, make in RESULTS.items():
        out[f"summary-csv-{name}"] = lambda make=make: SummaryCsvFormat().render(make())
        out[f"json-{name}"] = lambda make=make: JsonFormat().render(make())
    out["failures-csv-variants"] = lambda: FailuresCsvFormat().render(synthetic.variants_result())
    out["failures-csv-awkward"] = lambda: FailuresCsvFormat().render(synthetic.awkward_result())
    out["details-csv-awkward"] = lambda: DetailsCsvFormat().render(synthetic.awkward_result())
    out["details-csv-variants"] = lambda: DetailsCsvFormat().render(synthetic.variants_result())
    for name, make in VERDICTS.items():
        # the multiline verdict at no width is left out: see test_known_issues
        for width in (None, 80) if name != "multiline" else (80,):
            out[f"verdict-{name}-w{width}"] = lambda make=make, width=width: VerdictTextFormat(width).render(make())
        out[f"github-{name}"] = lambda make=make: GithubFormat().render(make())
        if name != "incomplete":  # its heading is a known issue: see test_known_issues and test_renderers
            out[f"markdown-{name}"] = lambda make=make: MarkdownFormat().render(make())
        out[f"junit-{name}"] = lambda make=make: JUnitFormat().render(make())
    out["junit-lost-only"] = lambda: JUnitFormat().render(synthetic.lost_only_verdict())
    # a budget that holds the headline and the rules, and cuts the failures
    out["markdown-failing-1500-bytes"] = lambda: MarkdownFormat(max_bytes=1500).render(synthetic.failing_verdict())
    for name in ("created", "updated", "unreadable", "settings"):
        out[f"update-{name}-wNone"] = lambda name=name: render_update(synthetic.updates()[name])
    out["update-updated-w40"] = lambda: render_update(synthetic.updates()["updated"], 40)
    return out


RENDERS = _renders()


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_golden(name: str) -> None:
    text = RENDERS[name]()
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        return
    assert path.exists(), f"no golden file {path}: run BCE_AUDIT_UPDATE_GOLDEN=1 pytest tests/report"
    assert text == path.read_bytes().decode("utf-8")


def test_no_stale_golden_files() -> None:
    stale = sorted(p.name for p in GOLDEN.glob("*.txt") if p.stem not in RENDERS)
    if UPDATE:
        for name in stale:
            (GOLDEN / name).unlink()
        return
    assert stale == []


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_exit_codes_of_the_verdicts(name: str) -> None:
    """The data sets are what their names say: the goldens of a failing verdict are a failure's."""
    expected = {"failing": 1, "multiline": 1, "passing": 0, "incomplete": 4}[name]
    assert int(VERDICTS[name]().exit_code) == expected
