"""Tiny DLRM day files in the reference's format, written by the tests (a uniquely named helper module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlbench.benchmarks.dlrm import synthetic
from mlbench.benchmarks.dlrm.definition import TINY


def write_days(root: Path, rows_per_day: int = 64, days: tuple[int, ...] = (0, 1, 2), seed: int = 5) -> Path:
    """Planted tiny days (TINY's table and multi-hot sizes) in ``root``; returns ``root``."""
    hp = TINY.hparams
    root.mkdir(parents=True, exist_ok=True)
    truth = synthetic._truth(tuple(hp["table_rows"]), seed)
    for d in days:
        dense, sparse, labels, _ = synthetic.generate_day(rows_per_day, tuple(hp["table_rows"]),
                                                          tuple(hp["multi_hot"]), truth, seed + d)
        synthetic.write_day(root, d, dense, sparse, labels)
    return root


def rewrite_sparse(root: Path, day: int, change) -> None:
    """Load day ``day``'s 26 members, let ``change(list)`` edit them, write the npz back (uncompressed)."""
    path = root / f"day_{day}_sparse_multi_hot.npz"
    with np.load(path) as z:
        members = [z[f"{k}.npy" if f"{k}.npy" in z.files else str(k)].copy() for k in range(26)]
    change(members)
    np.savez(path, **{str(k): a for k, a in enumerate(members)})
