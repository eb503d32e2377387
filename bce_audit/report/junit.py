"""The verdict as JUnit XML: one testcase per threshold rule and one per case against the baseline.

A baseline case that is missing (allowed) or that still raises is `skipped`: nothing was compared.

CI systems (GitLab, Jenkins, GitHub test reporters) show the failures with their messages.
Built with xml.etree, so every name and message is escaped; characters XML cannot hold at all
(control characters in an error message) become U+FFFD.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from bce_audit.gate.interface import Change, Direction, Verdict
from bce_audit.report.interface import VerdictFormat
from bce_audit.report.verdict_text import comparison_text, lost_text, rule_failure_text, rule_heading

_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _suite(parent: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(parent, "testsuite", name=_x(name))


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=_x(name))


def _fail(testcase: ET.Element, kind: str, message: str, details: str) -> None:
    failure = ET.SubElement(testcase, "failure", type=kind, message=_x(message))
    failure.text = _x(details)


def _error(testcase: ET.Element, message: str) -> None:
    """A case that could not be evaluated: JUnit's `error` (the test could not run), not a failure."""
    error = ET.SubElement(testcase, "error", type="not-evaluated", message=_x(message))
    error.text = _x(message)


def _count(suite: ET.Element) -> tuple[int, int, int, int]:
    cases = suite.findall("testcase")
    failures = sum(tc.find("failure") is not None for tc in cases)
    errors = sum(tc.find("error") is not None and tc.find("failure") is None for tc in cases)
    skipped = sum(tc.find("skipped") is not None for tc in cases)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    return len(cases), failures, errors, skipped


class JUnitFormat(VerdictFormat):
    def render(self, verdict: Verdict) -> str:
        root = ET.Element("testsuites", name="bce-audit check")
        suites = []
        if verdict.rules:
            suite = _suite(root, f"thresholds ({verdict.config})")
            for outcome in verdict.rules:
                tc = _case(suite, "bce-audit.thresholds", outcome.rule.title)
                if outcome.failures:
                    lines = [rule_failure_text(f) for f in outcome.failures]
                    _fail(tc, "threshold", rule_heading(outcome), "\n".join(lines))
                elif outcome.lost:
                    _error(tc, "; ".join(lost_text(c.key, c.lost) for c in outcome.lost))
            suites.append(suite)
        if verdict.baseline is not None:
            suite = _suite(root, f"baseline ({verdict.baseline})")
            for c in verdict.comparisons:
                tc = _case(suite, "bce-audit.baseline", str(c.key))
                if c.change is Change.REGRESSED:
                    text = comparison_text(c, Direction.WORSE)
                    details = f"{text}\ntolerance {verdict.tolerance}; the stable range may not shrink"
                    _fail(tc, "regression", text, details)
                elif c.change is Change.MISSING:
                    text = comparison_text(c)
                    _fail(tc, "missing", text, text)
                elif c.change in (Change.MISSING_ALLOWED, Change.STILL_RAISES):  # nothing was compared
                    ET.SubElement(tc, "skipped", message=_x(comparison_text(c)))
                elif c.change is Change.LOST:
                    _error(tc, lost_text(c.key, c.lost))
                elif c.change in (Change.IMPROVED, Change.NEW):
                    ET.SubElement(tc, "system-out").text = _x(f"{c.change}: {comparison_text(c, Direction.BETTER)}")
            suites.append(suite)
        if verdict.lost and verdict.baseline is None and not verdict.rules:
            suite = _suite(root, "not evaluated")
            for key, why in verdict.lost:
                _error(_case(suite, "bce-audit.cases", str(key)), lost_text(key, why))
            suites.append(suite)
        totals = [_count(s) for s in suites]
        root.set("tests", str(sum(t[0] for t in totals)))
        root.set("failures", str(sum(t[1] for t in totals)))
        root.set("errors", str(sum(t[2] for t in totals)))
        root.set("skipped", str(sum(t[3] for t in totals)))
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
