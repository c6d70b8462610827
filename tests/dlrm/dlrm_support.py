"""Tiny DLRM day files in the reference's format, written by the tests (a uniquely named helper module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

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


def random_batch(n: int, seed: int = 0) -> dict:
    """A random TINY-shaped batch: dense [n, 13], one id matrix per table, 0/1 labels."""
    hp = TINY.hparams
    g = torch.Generator().manual_seed(seed)
    return {"dense": torch.rand(n, 13, generator=g),
            "sparse": [torch.randint(0, r, (n, h), generator=g) for r, h in zip(hp["table_rows"], hp["multi_hot"])],
            "labels": torch.randint(0, 2, (n,), generator=g).float()}


def plain_step(net, dense_opt, sparse_opt, b: dict) -> float:
    """One step of the plain engine's recipe (BCE on logits, dense and sparse optimizers); the loss."""
    loss = F.binary_cross_entropy_with_logits(net(b["dense"], b["sparse"]), b["labels"])
    loss.backward()
    for opt in (dense_opt, sparse_opt):
        opt.step()
        opt.zero_grad()
    return float(loss.detach())
