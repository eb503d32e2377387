"""Every report: interchangeable renderers of one AuditResult and of one check Verdict.

Each file-format renderer returns a string; the terminal renderer returns lines of rich Text.
The renderers are imported on first use, so that ``numbers`` and ``layout`` can be imported
from anywhere without pulling every renderer (and what they import) along.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - what __getattr__ imports, for the type checker
    from bce_audit.report.csv_format import DetailsCsvFormat as DetailsCsvFormat
    from bce_audit.report.csv_format import SummaryCsvFormat as SummaryCsvFormat
    from bce_audit.report.github import GithubFormat as GithubFormat
    from bce_audit.report.interface import Format as Format
    from bce_audit.report.interface import VerdictFormat as VerdictFormat
    from bce_audit.report.json_format import JsonFormat as JsonFormat
    from bce_audit.report.junit import JUnitFormat as JUnitFormat
    from bce_audit.report.markdown import MarkdownFormat as MarkdownFormat
    from bce_audit.report.verdict_text import VerdictTextFormat as VerdictTextFormat

_RENDERERS = {
    "SummaryCsvFormat": "csv_format",
    "DetailsCsvFormat": "csv_format",
    "JsonFormat": "json_format",
    "VerdictTextFormat": "verdict_text",
    "GithubFormat": "github",
    "MarkdownFormat": "markdown",
    "JUnitFormat": "junit",
    "Format": "interface",
    "VerdictFormat": "interface",
}

__all__ = list(_RENDERERS)


def __getattr__(name: str) -> Any:
    module = _RENDERERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
