"""Renderer behaviour that looked wrong when the golden files were written, each fixed since and
kept here: escape sequences and line breaks from user text, rounding that reversed a move, "1
cases", the heading of an incomplete check, and three significant digits below 1e5."""

from __future__ import annotations

import re

import pytest
import synthetic
from synthetic import LOSS_0, case, key, record, result

from bce_audit.gate.interface import BaselineUpdate, CaseComparison, Change, Direction, FigureDelta
from bce_audit.report.github import GithubFormat
from bce_audit.report.markdown import MarkdownFormat
from bce_audit.report.numbers import short
from bce_audit.report.terminal import report
from bce_audit.report.verdict_text import VerdictTextFormat, delta_text, render_update

ESCAPE = "ValueError: \x1b[2J\x1b]0;pwned\x07 cleared"  # what a user's exception message may hold


def test_an_escape_sequence_in_an_error_message_is_not_written_to_the_terminal():
    raised = result([case(error=ESCAPE)])
    lines = [line.plain for line in report(raised, None, True)]
    verdict = synthetic.verdict({LOSS_0: record(error=ESCAPE)}, [{"nan": 0}])
    assert not any("\x1b" in line for line in lines)
    assert "\x1b" not in VerdictTextFormat(None).render(verdict)


def test_without_a_width_every_item_of_the_verdict_is_one_line():
    lines = VerdictTextFormat(None).render(synthetic.multiline_verdict()).splitlines()
    assert all(line.startswith(("thresholds from ", "baseline ", "check ", "  ")) for line in lines), lines
    assert not any("\r" in line for line in lines)


def test_without_a_width_every_line_of_an_update_report_is_an_item():
    k = key(quantity="grad")
    comparison = CaseComparison(k, Change.STILL_RAISES, errors=(synthetic.NASTY_LINES, synthetic.NASTY))
    text = render_update(BaselineUpdate("b.json", 1, 1, None, (), (comparison,)))
    assert all(line.startswith(("baseline ", "  ", "0 worse")) for line in text.splitlines()), text


def test_a_worse_figure_never_reads_as_a_better_one():
    delta = FigureDelta("max_ulp", 8388606.5, 8388608.0, 1.0, Direction.WORSE)
    text = delta_text(delta, "float32")
    old, new = re.fullmatch(r"max_ulp (\S+) -> (\S+) \(allowed \+1\)", text).groups()
    assert float(old) < float(new), text


def test_one_case_is_one_case():
    k, n = key(), key("new")
    verdict = synthetic.verdict({k: record(max_ulp=0.5), n: record()}, (), {k: record()})
    texts = {
        "terminal": "\n".join(line.plain for line in report(result([case(error="E: x")]), None, False)),
        "created": render_update(BaselineUpdate("b.json", 1, None, None, (), ())),
        "updated": render_update(BaselineUpdate("b.json", 1, 1, None, (), ())),
        "github": GithubFormat().render(verdict),
    }
    # today: "max-abs (1 cases): E: x", "1 cases, 0 points, ...", "created, 1 cases", "updated, 1 cases (it had 1)",
    # "1 cases improved and 1 cases are new"
    assert {name: re.findall(r"\b1 cases\b", text) for name, text in texts.items()} == {name: [] for name in texts}
    assert "  max-abs (1 case): E: x" in texts["terminal"].splitlines()


def test_the_markdown_heading_of_an_incomplete_check():
    text = MarkdownFormat().render(synthetic.incomplete_verdict())
    assert (
        text.splitlines()[2]
        == "**check INCOMPLETE: 2 rules, 3 cases checked, 0 failed, 0 improved, 0 new, 2 not evaluated**"
    )
    assert text.splitlines()[0] != "## bce-audit check failed"


@pytest.mark.parametrize("x", [1024.0, 16611.1, 45678.0])
def test_short_keeps_three_significant_digits_below_1e5(x: float):
    assert abs(float(short(x)) - x) <= 0.005 * x
