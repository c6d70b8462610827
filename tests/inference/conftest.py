"""Inference test fixtures: one cache per session holding the tiny model (trained once, in seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def infer_cache(tmp_path_factory) -> Path:
    """A cache with the tiny ResNet trained once (by the same code path `mlbench infer` uses)."""
    import os

    from mlbench import registry
    from mlbench.inference.models import trained_checkpoint
    from mlbench.inference.task import TaskOptions

    cache = tmp_path_factory.mktemp("infer-cache")
    old = {k: os.environ.get(k) for k in ("MLBENCH_CACHE", "MLBENCH_SKIP_CACHE_CLEAR")}
    os.environ.update(MLBENCH_CACHE=str(cache), MLBENCH_SKIP_CACHE_CLEAR="1")
    try:
        trained_checkpoint(registry.get("resnet50", "tiny").definition, TaskOptions(say=lambda m: None))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return cache


@pytest.fixture(autouse=True)
def _shared_cache(infer_cache, monkeypatch):
    monkeypatch.setenv("MLBENCH_CACHE", str(infer_cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def infer(tmp_path, capsys):
    """Run `mlbench infer ARGS` in this process; returns (exit code, result.json or None, output)."""
    from mlbench.cli import main

    seen: set[Path] = set()

    def run(*args: str) -> tuple[int, dict | None, str]:
        out = tmp_path / "runs"
        code = main(["infer", "resnet50", "--output-dir", str(out), *args])
        text = capsys.readouterr()
        found = [f for f in sorted(out.glob("*/result.json")) if f not in seen] if out.is_dir() else []
        seen.update(found)
        result = json.loads(found[-1].read_text()) if found else None
        return code, result, text.out + text.err

    return run

