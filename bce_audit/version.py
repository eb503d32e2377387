"""bce-audit's version, declared once (the package metadata and every report read it here)."""

__version__ = "0.1.0"
