"""Checkpoints: model, optimizer, scheduler and progress, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mlbench.errors import DataError


def save(path: Path, *, model: torch.nn.Module, optimizer, scheduler, epoch: int, extra: dict | None = None) -> None:
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "extra": extra or {},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint


def load(path: str | Path, *, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore a checkpoint; returns its ``epoch`` (epochs completed) and ``extra``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"checkpoint not found: {p}", "pass the checkpoint.pt of an earlier run to --resume")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, EOFError, ValueError) as exc:
        raise DataError(f"checkpoint {p} does not fit this benchmark and size: {exc}",
                        "resume with a checkpoint written by the same benchmark, size and options") from exc
    return {"epoch": int(state["epoch"]), "extra": state.get("extra", {})}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, under any DistributedDataParallel and torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model
