"""Interchangeable renderers of one SweepResult (cf. pip-audit's _format/).

Each file-format renderer returns a string; the terminal renderer returns rich renderables.
"""

from bce_audit._format.csv_format import DetailsCsvFormat, SummaryCsvFormat
from bce_audit._format.interface import Format
from bce_audit._format.json_format import JsonFormat

__all__ = ["Format", "SummaryCsvFormat", "DetailsCsvFormat", "JsonFormat"]
