"""bce-audit: measure where binary-cross-entropy implementations lose accuracy.

The public API is exactly what this module exports (docs/api.md): ``audit`` and ``check`` run in
this process on built-in names, targets or plain Python callables; ``explain`` says why a
formulation fails, down to the op; ``formulation`` marks a loss function for an audit;
``write_repro`` and ``write_plots`` write a result's bug-report files and figures. Importing it
loads neither torch nor mpmath.
"""

from bce_audit.api import CheckResult, audit, check, explain, write_plots, write_repro
from bce_audit.errors import BceAuditError, ExitCode, IncompleteRun, UsageError
from bce_audit.explanation.interface import Explanation
from bce_audit.figures import FIGURES, CaseFigures
from bce_audit.formulations.user import formulation
from bce_audit.gate.interface import Verdict
from bce_audit.sweep.result import AuditResult, CaseKey, CaseResult, FailureInterval
from bce_audit.version import __version__
from bce_audit.vocabulary import Domain, DType, Quantity, Status

__all__ = [
    "FIGURES",
    "AuditResult",
    "BceAuditError",
    "CaseFigures",
    "CaseKey",
    "CaseResult",
    "CheckResult",
    "DType",
    "Domain",
    "ExitCode",
    "Explanation",
    "FailureInterval",
    "IncompleteRun",
    "Quantity",
    "Status",
    "UsageError",
    "Verdict",
    "__version__",
    "audit",
    "check",
    "explain",
    "formulation",
    "write_plots",
    "write_repro",
]
