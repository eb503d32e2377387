"""Properties of the renderers that a golden file cannot show: escaping rules, size limits, widths,
and files that parse back to exactly what was rendered. All on synthetic data."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest
import synthetic
from synthetic import NAN, key

from bce_audit.gate.interface import CaseComparison, Change, Direction, FigureDelta, Tolerance, Verdict
from bce_audit.report.csv_format import SummaryCsvFormat
from bce_audit.report.github import MAX_ERRORS, GithubFormat, escape_data, escape_property, workflow_command
from bce_audit.report.json_format import JsonFormat
from bce_audit.report.junit import JUnitFormat
from bce_audit.report.markdown import (
    MAX_BYTES,
    MIN_STEP_SUMMARY_BYTES,
    STEP_SUMMARY_BYTES,
    MarkdownFormat,
    cell,
    step_summary_text,
)
from bce_audit.report.terminal import report
from bce_audit.report.verdict_text import VerdictTextFormat, render_update

VERDICTS = [
    synthetic.failing_verdict,
    synthetic.multiline_verdict,
    synthetic.passing_verdict,
    synthetic.incomplete_verdict,
    synthetic.lost_only_verdict,
]


def _regressions(n: int) -> Verdict:
    """n cases that each regressed (one count up by one), with names that need escaping."""
    comparisons = tuple(
        CaseComparison(
            key(f"formulation-{i}|<x>", "logits", "float32", 0.0, "grad"),
            Change.REGRESSED,
            (FigureDelta("zero", i, i + 1, 0, Direction.WORSE),),
            worst_input=float(i),
        )
        for i in range(n)
    )
    return Verdict(rules=(), comparisons=comparisons, cases_checked=n, baseline="b.json", tolerance=Tolerance())


# --------------------------------------------------------------------------- GitHub


def test_github_escaping():
    assert escape_data("100% of x\r\ny: a, b") == "100%25 of x%0D%0Ay: a, b"
    assert escape_property("100% of x\r\ny: a, b") == "100%25 of x%0D%0Ay%3A a%2C b"
    assert escape_data("%0A") == "%250A"  # escaped once, not interpreted
    line = workflow_command("error", "a: b,\nc", title="t: 1, 2", file="dir,x/f.toml")
    assert line == "::error title=t%3A 1%2C 2,file=dir%2Cx/f.toml::a: b,%0Ac"
    assert workflow_command("notice", "ok", file=None) == "::notice::ok"


def test_every_github_command_is_one_line():
    for make in VERDICTS:
        for line in GithubFormat().render(make()).splitlines():
            assert line.startswith(("::error ", "::warning ", "::notice ")), line


def test_github_annotations_are_capped():
    lines = GithubFormat().render(_regressions(500)).splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == MAX_ERRORS + 2  # the cap, the "more" line, the summary
    assert errors[-2] == "::error title=bce-audit::... and 450 more failures (see the log)"
    assert errors[-1].startswith("::error title=bce-audit::check FAILED: 0 rules, 500 cases checked, 500 failed")
    assert len(GithubFormat().render(_regressions(MAX_ERRORS)).splitlines()) == MAX_ERRORS + 1  # no "more" line


# --------------------------------------------------------------------------- Markdown


def test_a_markdown_cell_holds_no_line_break_column_separator_or_html():
    assert cell("a | b <i>&amp;</i>\r\nc") == "a \\| b &lt;i&gt;&amp;amp;&lt;/i&gt; c"


def test_markdown_stays_small_with_many_cases():
    text = MarkdownFormat().render(_regressions(2_000))
    size = len(text.encode("utf-8"))
    assert size <= MAX_BYTES < 65_536 < STEP_SUMMARY_BYTES
    assert "check FAILED: 0 rules, 2000 cases checked, 2000 failed" in text
    m = re.search(r"\| \.\.\. (\d+) more rows not shown \|", text)
    assert m, text[-500:]
    shown = text.count("| baseline | formulation-")
    assert shown + int(m.group(1)) == 2_000 and shown > 100
    assert "formulation-0\\|&lt;x&gt; logits" in text  # cells escaped
    assert text.endswith(
        f"_{m.group(1)} more rows left out ({m.group(1)} of Failures) to keep this summary under 60 kB; "
        "the full verdict is in the job log._\n"
    )
    small = MarkdownFormat().render(_regressions(3))
    assert "more rows" not in small and small.count("| baseline | formulation-") == 3


def test_markdown_left_out_counts_agree_across_tables():
    improved = tuple(
        CaseComparison(
            key(f"better-{i}", "logits", "float32", 0.0, "grad"),
            Change.IMPROVED,
            (FigureDelta("zero", i + 1, i, 0, Direction.BETTER),),
        )
        for i in range(40)
    )
    verdict = _regressions(300)
    verdict = Verdict(
        rules=(),
        comparisons=verdict.comparisons + improved,
        cases_checked=340,
        baseline="b.json",
        tolerance=Tolerance(),
    )
    text = MarkdownFormat(max_bytes=5000).render(verdict)
    assert len(text.encode("utf-8")) <= 5000
    shown = text.count("| baseline | formulation-")
    m = re.search(r"\| \.\.\. (\d+) more rows not shown \|", text)
    assert m and shown + int(m.group(1)) == 300
    assert f"_{int(m.group(1)) + 40} more rows left out ({m.group(1)} of Failures, 40 of Against the baseline)" in text
    assert "### Against the baseline" not in text  # a table after a cut one is left out whole


def test_an_incomplete_verdict_in_markdown():
    # (its heading is a known issue: see test_known_issues; the rest is checked here)
    text = MarkdownFormat().render(synthetic.incomplete_verdict())
    assert "**check INCOMPLETE: 2 rules, 3 cases checked, 0 failed, 0 improved, 0 new, 2 not evaluated**" in text
    assert (
        "| **not evaluated** | thresholds[0] formulation=_my.bce+v2-rc (2 of 2 cases not evaluated): max_ulp &lt;= 1 |"
        in text
    )
    assert "| **not evaluated** | thresholds[1] every case (2 of 3 cases not evaluated): max_ulp &lt;= 1 |" in text
    assert "| _my.bce+v2-rc logits float32 y=0 grad | did not finish within 60 s (--timeout) |" in text
    assert "### Failures" not in text and "### Against the baseline" not in text  # nothing failed, moved, or is new


def test_the_step_summary_fits_what_the_file_already_holds():
    verdict = _regressions(300)
    whole = MarkdownFormat().render(verdict)
    assert len(whole.encode("utf-8")) < MAX_BYTES and "more rows" not in whole
    room = len(whole.encode("utf-8")) // 2
    existing = STEP_SUMMARY_BYTES - 1 - room
    cut = step_summary_text(verdict, existing)
    assert cut.startswith("## bce-audit check failed\n") and len(cut.encode("utf-8")) <= room
    assert re.search(r"\| \.\.\. \d+ more rows not shown \|", cut)
    # room for less than a summary: one line instead; no room at all: nothing
    note = step_summary_text(verdict, STEP_SUMMARY_BYTES - MIN_STEP_SUMMARY_BYTES + 10)
    assert note == (
        "bce-audit: check FAILED: 0 rules, 300 cases checked, 300 failed, 0 improved, 0 new "
        "(no room left in the step summary; the verdict is in the job log)\n"
    )
    assert step_summary_text(verdict, STEP_SUMMARY_BYTES - 20) == ""
    assert step_summary_text(verdict, 0) == whole


# --------------------------------------------------------------------------- JUnit


@pytest.mark.parametrize("make", VERDICTS, ids=lambda m: m.__name__)
def test_junit_is_xml_whose_totals_add_up(make):
    root = ET.fromstring(JUnitFormat().render(make()).encode("utf-8"))
    cases = root.findall(".//testcase")
    assert root.get("tests") == str(len(cases))
    assert root.get("failures") == str(sum(c.find("failure") is not None for c in cases))
    assert root.get("errors") == str(sum(c.find("error") is not None for c in cases))
    assert root.get("skipped") == str(sum(c.find("skipped") is not None for c in cases))
    for suite in root.findall("testsuite"):
        assert suite.get("tests") == str(len(suite.findall("testcase")))


def test_junit_keeps_messages_apart_from_characters_xml_cannot_hold():
    root = ET.fromstring(JUnitFormat().render(synthetic.multiline_verdict()).encode("utf-8"))
    rule = root.find(".//testcase[@classname='bce-audit.thresholds']")
    assert rule.get("name") == f'thresholds[0] "{synthetic.NASTY_LINES[:-1]}\ufffd": max_ulp <= 4'
    failure = rule.find("failure")
    assert failure.text.endswith('ValueError: bad | <input> at 100% & "x" \ufffd')


# --------------------------------------------------------------------------- plain text


@pytest.mark.parametrize("width", [40, 80, 120])
@pytest.mark.parametrize("verbose", [False, True])
def test_the_terminal_report_fits_its_width(width, verbose):
    for make in (synthetic.awkward_result, synthetic.nonfinite_result):
        lines = [line.plain for line in report(make(), width, verbose)]
        assert max(len(line) for line in lines) <= width


@pytest.mark.parametrize("width", [40, 80])
def test_the_verdict_and_the_update_fit_their_width(width):
    texts = [VerdictTextFormat(width).render(make()) for make in VERDICTS]
    texts += [render_update(u, width) for u in synthetic.updates().values()]
    for text in texts:
        assert max(len(line) for line in text.splitlines()) <= width


def test_without_a_width_each_item_of_the_verdict_is_one_line():
    v = synthetic.failing_verdict()
    lines = VerdictTextFormat(None).render(v).splitlines()
    rules = 1 + len(v.rules) + sum(len(r.failures) for r in v.rules)
    baseline = 1 + len(v.regressed) + len(v.missing) + len(v.improved) + len(v.new) + len(v.still_raising) + 1
    assert len(lines) == rules + baseline + 1 + len(v.lost) + 1 == 27
    assert all(line.startswith(("thresholds from ", "baseline ", "not evaluated ", "check ", "  ")) for line in lines)


def test_a_verdict_ends_with_its_summary():
    for make in VERDICTS:
        v = make()
        assert VerdictTextFormat(80).render(v).replace("\n  ", " ").splitlines()[-1] == v.summary()


# --------------------------------------------------------------------------- files that parse back


def test_the_summary_csv_parses_back_to_the_exact_figures():
    result = synthetic.awkward_result()
    rows = list(csv.DictReader(io.StringIO(SummaryCsvFormat().render(result))))
    assert len(rows) == len(result.cases)
    for row, case in zip(rows, result.cases, strict=True):
        assert (row["formulation"], float(row["label"])) == (case.formulation, case.label)
        if case.figures is None:
            assert row["points"] == "0" and set(list(row.values())[6:]) == {""}
            continue
        for name in ("max_ulp", "p99_ulp", "mean_bits", "worst_input", "stable_lo", "stable_hi"):
            value = getattr(case.figures, name)
            assert (row[name] == "") if math.isnan(value) else repr(float(row[name])) == repr(value), name


def test_the_json_report_is_strict_json_and_exact():
    def refuse(name):
        raise AssertionError(name)

    result = synthetic.awkward_result()
    doc = json.loads(JsonFormat().render(result), parse_constant=refuse)
    assert doc["elapsed_s"] == 12.346 and doc["provenance"] == synthetic.PROVENANCE
    grad = doc["cases"][1]
    assert repr(grad["worst_input"]) == "-0.0" and grad["stable_lo"] == "nan"
    assert doc["cases"][3]["max_ulp"] == synthetic.F64_MAX and doc["cases"][2]["label"] == synthetic.LABEL
    assert [c.get("lost") for c in doc["cases"][-2:]] == [synthetic.LOST] * 2
    assert doc["cases"][6]["error"] == synthetic.NASTY and "counts" not in doc["cases"][6]


def test_an_undefined_figure_is_never_a_number_in_any_report():
    figs = dict(max_ulp=NAN, p99_ulp=NAN, mean_ulp=NAN, max_rel_err=NAN, worst_input=NAN, stable_lo=NAN, stable_hi=NAN)
    result = synthetic.result([synthetic.case(figs=synthetic.figures(**figs))])
    (row,) = csv.DictReader(io.StringIO(SummaryCsvFormat().render(result)))
    assert [row[k] for k in ("max_ulp", "worst_input", "stable_lo")] == ["", "", ""]
    (doc,) = json.loads(JsonFormat().render(result))["cases"]
    assert [doc[k] for k in ("max_ulp", "worst_input", "stable_lo")] == ["nan", "nan", "nan"]


def test_got_and_want_never_read_the_same_for_different_values():
    """A non-finite input's line gives its output and the truth apart: neighbouring floats of
    every magnitude get texts that differ (0.0999999 and 0.1, not 0.1 and 0.1), equal values the
    same short text, and the two zeros their signs."""
    import numpy as np

    from bce_audit.report.numbers import apart, short

    rng = np.random.default_rng(5)
    for x in [0.1, 1.0, 3.0, 1e-300, 5e-324, 1e308, *rng.uniform(-1e6, 1e6, 50).tolist()]:
        for other in (np.nextafter(x, np.inf), np.nextafter(x, -np.inf)):
            a, b = apart(x, float(other))
            assert a != b, (x, other)
        assert apart(x, x) == (short(x), short(x))
    assert apart(-0.0, 0.0) == ("-0", "0")
    # the line itself, from a real run: pos_weight 3 at z = +inf and y = 0.9 in float32 is 16 ULPs off
    from helpers import runner

    from bce_audit.cli import main

    out = (
        runner()
        .invoke(
            main,
            ["sweep", "-f", "torch-bce-with-logits", "--param", "pos_weight=3", "-d", "float32", "--domain", "logits"]
            + ["-y", "0.9", "--points", "50"],
        )
        .stdout
    )
    (line,) = [t for t in out.splitlines() if "grad: inf ->" in t]
    got, want = line.split("(got ")[1].rstrip(")").split(", want ")
    assert got != want
