"""The verdict as GitHub-flavoured Markdown: the job summary ($GITHUB_STEP_SUMMARY) and `--markdown`.

Kept under MAX_BYTES, so that it fits a pull-request comment (GitHub allows 65,536 characters)
and stays far below the 1 MiB a step summary may hold; rows past the limit are left out with
a note saying how many (the full verdict is in the log and the JUnit report).
"""

from __future__ import annotations

import math

from bce_audit._format.interface import VerdictFormat
from bce_audit._format.terminal import fmt_value
from bce_audit._format.verdict_text import (
    check_text,
    comparison_text,
    delta_text,
    rule_heading,
)
from bce_audit.gate import Change, Direction, Verdict

MAX_BYTES = 60_000


def cell(text: str) -> str:
    """Text safe inside a table cell: no line breaks, no column separators, no HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


class _Budget:
    """Lines up to a size in UTF-8 bytes; what does not fit is counted, not written."""

    def __init__(self, max_bytes: int):
        self.left = max_bytes - 400  # room for the notes about what was left out
        self.lines: list[str] = []
        self.dropped = 0

    def add(self, line: str, required: bool = False) -> bool:
        size = len(line.encode("utf-8")) + 1
        if not required and (self.dropped or size > self.left):
            self.dropped += 1
            return False
        self.lines.append(line)
        self.left -= size
        return True

    def table(self, title: str, intro: str | None, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        """A section: heading, an optional paragraph, and the table."""
        if not rows:
            return
        if self.dropped:  # an earlier table was cut: nothing more fits
            self.dropped += len(rows)
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
            self.add(f"| ... {len(rows) - shown} more rows not shown |" + " |" * (len(header) - 1), required=True)
        self.add("", required=True)


class MarkdownFormat(VerdictFormat):
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes

    def render(self, verdict: Verdict) -> str:
        out = _Budget(self.max_bytes)
        state = "passed" if verdict.passed else "failed"
        out.add(f"## bce-audit check {state}", required=True)
        out.add("", required=True)
        out.add(f"**{cell(verdict.summary())}**", required=True)
        out.add("", required=True)
        for w in verdict.warnings:
            out.add(f"> **warning:** {cell(w)}", required=True)
            out.add("", required=True)

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

        rows = [("ok" if r.passed else "**FAIL**", rule_heading(r)) for r in verdict.rules]
        out.table("Threshold rules", None, ("result", "rule"), rows)

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
        if out.dropped:
            out.add(
                f"_{out.dropped} more rows left out to keep this summary under {self.max_bytes // 1000} kB; "
                "the full verdict is in the job log._",
                required=True,
            )
        return "\n".join(out.lines).rstrip("\n") + "\n"


def _worst(item) -> str:
    return "" if math.isnan(item.worst_input) else fmt_value(item.worst_input)
