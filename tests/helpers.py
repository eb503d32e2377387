"""Shared helpers for the CLI tests: a runner with plain, wide output and an exit-code check."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

# the repository's root
ROOT = Path(__file__).resolve().parent.parent

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "CI": "1", "BCE_AUDIT_DEBUG": None}

# the cheapest sweep that still exercises the whole pipeline
TINY = ["-f", "naive", "-d", "float16", "--domain", "logits", "--points", "50"]

# the built-in formulations, in `bce-audit list` order, with their native domains
NATIVE_DOMAIN = {
    "naive": "probabilities",
    "clipped": "probabilities",
    "softplus-threshold": "logits",
    "max-abs": "logits",
    "torch-bce": "probabilities",
    "torch-bce-with-logits": "logits",
    "torch-logsigmoid": "logits",
}
# the BCE family's other members among the built-ins (not in the default set): their references
FAMILY_BUILTINS = {
    "torchvision-focal": "focal(gamma=2.0, alpha=0.25, form=torchvision)",
    "logspace-focal": "focal(gamma=2.0, alpha=0.25, form=torchvision)",
    "label-smoothed-bce": "label-smoothed-bce(smoothing=0.1, convention=keras)",
}
# the status count columns of the summary CSV (every status but error)
STATUSES = ("ok", "inaccurate", "inf", "nan", "zero")


def runner() -> CliRunner:
    return CliRunner(env=ENV)


def assert_exit(result, code: int) -> None:
    """Assert the exit code, showing everything the command printed when it is wrong."""
    if result.exit_code != code:
        exc = ""
        if result.exc_info is not None and not isinstance(result.exception, SystemExit):
            import traceback

            exc = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(
            f"exit code {result.exit_code}, expected {code}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n{exc}"
        )


def assert_usage_error(result, *culprits: str) -> str:
    """Exit 2, exactly one line on stderr starting with 'bce-audit: error:', naming the culprits."""
    assert_exit(result, 2)
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("bce-audit: error:"), line
    for culprit in culprits:
        assert culprit in line, f"{culprit!r} not named in {line!r}"
    assert result.stdout == "", f"nothing expected on stdout, got:\n{result.stdout}"
    return line


def read_csv(text: str) -> tuple[list[str], list[dict]]:
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    return header, [dict(zip(header, r, strict=True)) for r in body]


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The rows of a plain-text table printed by bce-audit (a header line starting with
    ``first_header``, a rule of ─, then rows), cut at the header's column starts; a row whose
    first cell is empty continues the row above it (a cell of several lines)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header) and set(lines[i + 1]) == {"─"})
    header = lines[start]
    starts = [0] + [m.end() for m in __import__("re").finditer(r"\s{2,}", header)]
    rows: list[list[str]] = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None], strict=True)]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return rows
