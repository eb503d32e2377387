"""Formulations: the built-ins, the user's own (targets, config tables, entry points, the
decorator), and which of them a sweep audits."""

from bce_audit.formulations.builtins import BUILTINS, get_formulation
from bce_audit.formulations.interface import Formulation

__all__ = ["BUILTINS", "Formulation", "get_formulation"]
