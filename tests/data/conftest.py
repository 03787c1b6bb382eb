"""What several data tests use: a synthetic-data cache of the test's own."""

from __future__ import annotations

import pytest


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """``GNNDDM_CACHE`` is a folder of this test's own (``tmp_path/cache``), not the session's shared one;
    modules that need it for every test say ``pytestmark = pytest.mark.usefixtures("own_cache")``."""
    monkeypatch.setenv("GNNDDM_CACHE", str(tmp_path / "cache"))
