"""GitHub Actions workflow commands (`::error title=...::message`) for the verdict.

GitHub reads these lines from the step's output and shows them as annotations. Data and
property values are escaped as the runner expects (actions/toolkit, command.ts): in data `%`,
CR and LF; in properties also `:` and `,`.
"""

from __future__ import annotations

from bce_audit.gate.interface import Direction, Verdict
from bce_audit.report.interface import VerdictFormat
from bce_audit.report.layout import printable
from bce_audit.report.numbers import count
from bce_audit.report.verdict_text import comparison_text, lost_text, rule_failure_text

# GitHub shows at most 10 error annotations per step and 50 per job: more only add noise.
MAX_ERRORS = 50


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(kind: str, message: str, **properties: str | None) -> str:
    """One workflow command line: ``::kind prop=value,...::message``; control characters other
    than line breaks (which are encoded) are written as visible escapes, never sent to the log."""
    props = ",".join(
        f"{k}={escape_property(printable(v, keep_breaks=True))}" for k, v in properties.items() if v is not None
    )
    return f"::{kind}{' ' + props if props else ''}::{escape_data(printable(message, keep_breaks=True))}"


class GithubFormat(VerdictFormat):
    """An error per failing case (rule or baseline), a warning per warning, a notice for gains."""

    def render(self, verdict: Verdict) -> str:
        errors = []
        for outcome in verdict.failed_rules:
            rule = outcome.rule
            title = f"bce-audit threshold {rule.id}" + (f" {rule.name}" if rule.name else "")
            for failure in outcome.failures:
                message = f"{rule_failure_text(failure)} [{rule.bounds_text}]"
                errors.append(workflow_command("error", message, file=verdict.config, title=title))
        for c in verdict.regressed:
            errors.append(
                workflow_command(
                    "error",
                    comparison_text(c, Direction.WORSE),
                    file=verdict.baseline,
                    title="bce-audit baseline regression",
                )
            )
        for c in verdict.missing:
            if c.failed:
                errors.append(
                    workflow_command(
                        "error", comparison_text(c), file=verdict.baseline, title="bce-audit baseline case missing"
                    )
                )
        for key, why in verdict.lost:
            errors.append(workflow_command("error", lost_text(key, why), title="bce-audit case not evaluated"))
        lines = errors[:MAX_ERRORS]
        if len(errors) > MAX_ERRORS:
            more = len(errors) - MAX_ERRORS
            lines.append(workflow_command("error", f"... and {more} more failures (see the log)", title="bce-audit"))
        lines += [workflow_command("warning", w, title="bce-audit") for w in verdict.warnings]
        gains = []
        if verdict.improved:
            gains.append(f"{count(len(verdict.improved), 'case')} improved")
        if verdict.new:
            n = len(verdict.new)
            gains.append(f"{count(n, 'case')} {'is' if n == 1 else 'are'} new")
        if gains:
            message = " and ".join(gains) + ": `bce-audit check --update-baseline` records them in the baseline"
            lines.append(workflow_command("notice", message, file=verdict.baseline, title="bce-audit baseline"))
        lines.append(workflow_command("notice" if verdict.passed else "error", verdict.summary(), title="bce-audit"))
        return "\n".join(lines) + "\n"
