"""Every report: interchangeable renderers of one AuditResult and of one check Verdict.

Each file-format renderer returns a string; the terminal renderer returns lines of rich Text.
The renderers are imported on first use, so that ``numbers`` and ``layout`` can be imported
from anywhere without pulling every renderer (and what they import) along.
"""

import importlib

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


def __getattr__(name: str):
    module = _RENDERERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
