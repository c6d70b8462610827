"""Exact ROC AUC: the Mann-Whitney statistic with average ranks for ties (what torchmetrics' and scikit-learn's
AUROC compute), in numpy, and its reduction across ranks (scores gathered to one rank, ranked once there, the value broadcast)."""

from __future__ import annotations

import numpy as np
import torch

from mlbench.finite import require_finite


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative) + 0.5 P(tie). nan without both classes;
    :class:`~mlbench.finite.NonFinite` when a score is NaN or infinite."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    require_finite(s, "click scores")  # NaN sorts like a score: the clicked rows' NaNs scored an AUC of 1.0
    y = np.asarray(labels).ravel() > 0.5
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts, dtype=np.float64)
    avg_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def gather_to_root(values: torch.Tensor, root: int = 0) -> torch.Tensor | None:
    """1-D tensors of different lengths from every rank, concatenated in rank order on ``root`` alone (None on
    the other ranks); itself when not distributed. Only ``root`` ever holds the whole set: at the reference
    size that is ~89M scores and labels (~700 MB as float32), which an all-gather put on every rank."""
    import torch.distributed as dist

    values = values.detach().reshape(-1).cpu()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    world, rank = dist.get_world_size(), dist.get_rank()
    # NCCL moves device tensors only; gloo, CPU tensors
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    n = torch.tensor([len(values)], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)  # world integers: every rank pads to the longest share
    counts = [int(c.item()) for c in sizes]
    padded = torch.zeros(max(counts), dtype=values.dtype, device=dev)
    padded[:len(values)] = values.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world)] if rank == root else None
    dist.gather(padded, parts, dst=root)
    if rank != root:
        return None
    return torch.cat([p[:c].cpu() for p, c in zip(parts, counts)])


def broadcast_floats(values: list[float], root: int = 0) -> list[float]:
    """``root``'s values on every rank (float64); themselves when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.broadcast(t, src=root)
    return t.cpu().tolist()
