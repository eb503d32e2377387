"""bce-audit: measure where binary-cross-entropy implementations lose accuracy.

``from bce_audit import formulation`` marks your own loss function for an audit (README: "Audit
your own loss"); importing it loads neither torch nor mpmath.
"""

from bce_audit.formulations.user import formulation

__version__ = "0.1.0"
__all__ = ["__version__", "formulation"]
