"""Every test gets its own truth cache directory: no test reads or writes the user's cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_truth_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BCE_AUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("truth-cache")))
