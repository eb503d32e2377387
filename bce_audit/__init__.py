"""bce-audit: measure where binary-cross-entropy implementations lose accuracy."""

__version__ = "0.1.0"
