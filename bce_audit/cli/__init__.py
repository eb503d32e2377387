"""The command line: `bce-audit sweep`, `check` and `list` (``commands``), their options
(``options``), the group that maps every error to one line and an exit code (``app``), and the
output streams (``console``). Wiring only: the work is done by ``settings``, ``api`` and below.
"""

from bce_audit.cli.commands import main

__all__ = ["main"]
