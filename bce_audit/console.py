"""The one place that owns the rich Consoles: reports on stdout, progress and errors on stderr.

NO_COLOR and non-terminal output give plain text (rich honours both); COLUMNS pins the width.
Consoles are made per call so that they follow the current sys.stdout / sys.stderr (click's
CliRunner swaps them in tests).
"""

from __future__ import annotations


def stdout():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)
