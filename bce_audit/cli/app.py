"""The `bce-audit` command group: one line and an exit code for every error, never a traceback.

SIGTERM becomes an exception in the main thread, like Ctrl-C, so child processes are ended and
temporary files removed on the way out (exit 143); a second signal does not interrupt that.
torch and mpmath are imported only inside commands, so `bce-audit --help` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, NoReturn

import click

from bce_audit.errors import BceAuditError, ExitCode, Terminated, exit_code_of, exit_codes_text
from bce_audit.version import __version__


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """One line on stderr, then exit with ``code`` (even when stderr cannot be written)."""
    from bce_audit.cli.console import stderr
    from bce_audit.report.layout import printable

    stderr().print(f"bce-audit: error: {printable(message)}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(int(code))


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _on_stop_signal(signum: int, frame: object) -> NoReturn:
    """The first Ctrl-C or SIGTERM ends the run as an exception (children ended, temporary files
    removed, one line, 130 or 143); those that follow are ignored, so that an impatient user
    cannot cut that cleanup short into tracebacks and leftovers (SIGKILL still can)."""
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


class Group(click.Group):
    """Turns user mistakes into one line and exit 2, bugs into exit 3, interrupts into 130 and
    143, and every other ``BceAuditError`` into its own exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from bce_audit.cli.console import ensure_standard_descriptors

        ensure_standard_descriptors()
        kwargs.setdefault("standalone_mode", True)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for s in _STOP_SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # `nohup`, a background job: stays ignored
                    previous[s] = signal.signal(s, _on_stop_signal)
        try:
            return super().main(*args, **kwargs)
        except BceAuditError as exc:
            fail(str(exc), exc.exit_code)
        except Terminated:
            fail("terminated", ExitCode.TERMINATED)
        finally:
            for s, handler in previous.items():
                if signal.getsignal(s) is _on_stop_signal:  # after a stop signal, stay deaf to the next
                    signal.signal(s, handler)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad flag value or command: one line, not click's three
            if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                raise
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(f"{exc.format_message()} (see '{where} --help')")
        except (BceAuditError, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except (KeyboardInterrupt, Terminated) as exc:
            fail("interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated", exit_code_of(exc))
        except Exception as exc:  # a bug in bce-audit: say so, in one line, with exit 3
            if os.environ.get("BCE_AUDIT_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (set BCE_AUDIT_DEBUG=1 for a traceback)",
                ExitCode.INTERNAL,
            )


MAIN_EXAMPLES = f"""
\b
Examples:
  bce-audit sweep                            # every built-in, dtype and domain: the scoreboard
  bce-audit sweep -f max-abs -d float16 -v   # one formulation, one dtype, with per-case figures
  bce-audit sweep --impl my_losses.py:bce@logits -f torch-bce-with-logits   # yours beside a built-in
  bce-audit explain naive --domain logits --at 16.64   # why it fails there, op by op, and the fix
  bce-audit list                             # the formulations: built-in, installed, your own
  bce-audit check --config ci.toml           # gate CI on thresholds and a baseline
  bce-audit COMMAND --help                   # a command's options, with examples

Every figure is measured against the exact value, and its derivative, of the loss the
formulation implements: plain, unweighted BCE at the label given, unless it declares another
member of the BCE family (pos_weight, weight, focal, label smoothing; bce-audit list shows it).

Exit codes: {exit_codes_text()}
"""


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=MAIN_EXAMPLES)
@click.version_option(__version__, prog_name="bce-audit")
def main() -> None:
    """Audit the numerical stability of binary-cross-entropy implementations.

    Every formulation is evaluated in its framework (torch; JAX, TensorFlow and Keras as
    extras) in float16, bfloat16, float32 and float64, on logits and probabilities, and its loss
    and gradient are compared with an exact mpmath ground truth of the loss it implements.
    """
