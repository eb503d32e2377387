"""Shared fixtures: every test gets its own truth cache directory (no test reads or writes the
user's cache), and `sweep_calls` refuses run_sweep for tests of what must be refused before it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_truth_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BCE_AUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("truth-cache")))


@pytest.fixture
def sweep_calls(monkeypatch):
    """Records (and refuses) every call of run_sweep: a refusal must come before it."""
    import bce_audit.sweep.run

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("run_sweep called before the refusal")

    monkeypatch.setattr(bce_audit.sweep.run, "run_sweep", refuse)
    return calls
