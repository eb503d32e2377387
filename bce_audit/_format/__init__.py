"""Interchangeable renderers of one SweepResult, and of one check Verdict (cf. pip-audit's _format/).

Each file-format renderer returns a string; the terminal renderer returns rich renderables.
"""

from bce_audit._format.csv_format import DetailsCsvFormat, SummaryCsvFormat
from bce_audit._format.github import GithubFormat
from bce_audit._format.interface import Format, VerdictFormat
from bce_audit._format.json_format import JsonFormat
from bce_audit._format.junit import JUnitFormat
from bce_audit._format.markdown import MarkdownFormat
from bce_audit._format.verdict_text import VerdictTextFormat

__all__ = [
    "Format",
    "VerdictFormat",
    "SummaryCsvFormat",
    "DetailsCsvFormat",
    "JsonFormat",
    "VerdictTextFormat",
    "GithubFormat",
    "MarkdownFormat",
    "JUnitFormat",
]
