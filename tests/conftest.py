"""Shared fixtures: tiny datasets in the real formats, and an environment that never drops the page cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import make_imagenet_tree


@pytest.fixture(autouse=True)
def _no_cache_drop(monkeypatch, tmp_path):
    # Tests must not drop the machine's page cache; the harness logs that it skipped it.
    monkeypatch.setenv("MLBENCH_SKIP_CACHE_CLEAR", "1")
    monkeypatch.setenv("MLBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def imagenet_tree(tmp_path) -> Path:
    return make_imagenet_tree(tmp_path / "imagenet")


@pytest.fixture
def fashion_dir(tmp_path) -> Path:
    """Four IDX files in the Fashion-MNIST naming (small: 64 train / 32 test images)."""
    from mlbench.data import idx

    d = tmp_path / "fmnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        idx.write(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        idx.write(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,), dtype=np.uint8))
    return d
