"""Fixtures for the results tests (the run-directory builders live in results_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty results directory."""
    path = tmp_path / "runs"
    path.mkdir()
    return path
