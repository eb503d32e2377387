"""The verdict as GitHub-flavoured Markdown: the job summary ($GITHUB_STEP_SUMMARY) and `--markdown`.

Kept under MAX_BYTES, so that it fits a pull-request comment (GitHub allows 65,536 characters)
and stays below the 1 MiB a step summary may hold (step_summary_text counts what the file
already holds); rows past the limit are left out with a note saying how many per table (the
full verdict is in the log and the JUnit report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bce_audit.gate.interface import CaseComparison, Change, Direction, RuleCaseResult, Verdict
from bce_audit.report import numbers
from bce_audit.report.interface import VerdictFormat
from bce_audit.report.layout import printable
from bce_audit.report.verdict_text import (
    check_text,
    comparison_text,
    delta_text,
    rule_heading,
)
from bce_audit.vocabulary import DType

MAX_BYTES = 60_000
STEP_SUMMARY_BYTES = 2**20  # GitHub refuses a step summary of 1 MiB or more
MIN_STEP_SUMMARY_BYTES = 2_000  # less room than this: a one-line note instead of a summary without rows


def cell(text: str) -> str:
    """Text safe inside a table cell: no line breaks, no column separators, no HTML, no control
    characters (written as visible escapes)."""
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


class _Budget:
    """Lines up to a size in UTF-8 bytes; rows that do not fit are counted per table, not written."""

    def __init__(self, max_bytes: int):
        self.left = max_bytes - 400  # room for the notes about what was left out
        self.lines: list[str] = []
        self.full = False  # a row did not fit: no later row is written either (no gaps)
        self.left_out: dict[str, int] = {}  # table title -> rows not written

    def add(self, line: str, required: bool = False) -> bool:
        size = len(line.encode("utf-8")) + 1
        if not required and (self.full or size > self.left):
            self.full = True
            return False
        self.lines.append(line)
        self.left -= size
        return True

    def table(self, title: str, intro: str | None, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
        """A section: heading, an optional paragraph, and the table."""
        if not rows:
            return
        if self.full:  # an earlier table was cut: nothing more fits
            self.left_out[title] = len(rows)
            return
        self.add(f"### {title}", required=True)
        self.add("", required=True)
        if intro:
            self.add(intro, required=True)
            self.add("", required=True)
        self.add(_row(*header), required=True)
        self.add("|" + "---|" * len(header), required=True)
        shown = sum(self.add(_row(*r)) for r in rows)
        if shown < len(rows):
            self.left_out[title] = len(rows) - shown
            self.add(f"| ... {len(rows) - shown} more rows not shown |" + " |" * (len(header) - 1), required=True)
        self.add("", required=True)

    def note(self, max_bytes: int) -> None:
        """What was left out, with the same count per table as the table's own last row."""
        if not self.left_out:
            return
        total = sum(self.left_out.values())
        where = ", ".join(f"{n} of {title}" for title, n in self.left_out.items())
        self.add(
            f"_{total} more rows left out ({where}) to keep this summary under {_size(max_bytes)}; "
            "the full verdict is in the job log._",
            required=True,
        )


def _size(n: int) -> str:
    return f"{n // 1000} kB" if n >= 10_000 else f"{n} bytes"


class MarkdownFormat(VerdictFormat):
    """The summary, kept under ``max_bytes`` (default MAX_BYTES). What must survive a cut comes
    first: the headline and warnings, then the threshold rules (one row each), then the failing
    cases, then the improved, new and allowed-missing ones."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes

    def render(self, verdict: Verdict) -> str:
        out = _Budget(self.max_bytes)
        state = "passed" if verdict.passed else "failed" if verdict.failed else "incomplete"
        out.add(f"## bce-audit check {state}", required=True)
        out.add("", required=True)
        out.add(f"**{cell(verdict.summary())}**", required=True)
        out.add("", required=True)
        for w in verdict.warnings:
            out.add(f"> **warning:** {cell(w)}", required=True)
            out.add("", required=True)

        rows = [
            ("**FAIL**" if r.failures else "**not evaluated**" if r.lost else "ok", rule_heading(r))
            for r in verdict.rules
        ]
        out.table("Threshold rules", None, ("result", "rule"), rows)

        failures = []
        for outcome in verdict.failed_rules:
            rule = outcome.rule
            for f in outcome.failures:
                what = (
                    f"the formulation raised: {f.error}"
                    if f.error is not None
                    else "; ".join(check_text(c, f.key.dtype) for c in f.failed_checks)
                )
                failures.append((rule.id + (f" {rule.name}" if rule.name else ""), str(f.key), what, _worst(f)))
        for c in verdict.regressed:
            moves = "; ".join(delta_text(d, c.key.dtype) for d in c.deltas if d.direction is Direction.WORSE)
            failures.append(("baseline", str(c.key), moves, _worst(c)))
        for c in verdict.missing:
            if c.failed:
                failures.append(("baseline", str(c.key), "in the baseline but not in this run", ""))
        out.table("Failures", None, ("check", "case", "what", "worst input"), failures)
        lost = [(str(key), why) for key, why in verdict.lost]
        intro = "These cases could not be evaluated, so the check cannot pass (exit 4 when nothing failed)."
        out.table("Not evaluated", intro, ("case", "why"), lost)

        if verdict.baseline is not None:
            rows = []
            for c in verdict.comparisons:
                if c.change is Change.IMPROVED:
                    rows.append(("improved", comparison_text(c, Direction.BETTER)))
                elif c.change is Change.NEW:
                    rows.append(("new", comparison_text(c)))
                elif c.change is Change.STILL_RAISES:
                    rows.append(("still raises", comparison_text(c)))
                elif c.change is Change.MISSING_ALLOWED:
                    rows.append(("missing (allowed)", comparison_text(c)))
            intro = (
                f"Baseline `{cell(verdict.baseline)}`, tolerance {cell(str(verdict.tolerance))}; "
                "the stable range may not shrink."
            )
            out.table("Against the baseline", intro, ("change", "case"), rows)
        out.note(self.max_bytes)
        return "\n".join(out.lines).rstrip("\n") + "\n"


def _worst(item: RuleCaseResult | CaseComparison) -> str:
    if math.isnan(item.worst_input):
        return ""
    return numbers.value(item.worst_input, DType(item.key.dtype).format.largest_finite)


def step_summary_text(verdict: Verdict, existing: int) -> str:
    """What to append to a $GITHUB_STEP_SUMMARY that already holds ``existing`` bytes, so that the
    file stays under GitHub's 1 MiB: the summary (cut smaller if need be), or, when not even that
    fits, a one-line note; "" when not even the note fits."""
    room = STEP_SUMMARY_BYTES - 1 - existing
    if room >= MIN_STEP_SUMMARY_BYTES:
        text = MarkdownFormat(min(MAX_BYTES, room)).render(verdict)
        if len(text.encode("utf-8")) <= room:
            return text
    note = f"bce-audit: {cell(verdict.summary())} (no room left in the step summary; the verdict is in the job log)\n"
    return note if len(note.encode("utf-8")) <= room else ""
