"""The optimizer and schedule of the language-model references: AdamW with the gradients clipped by their global
norm before each step, no weight decay on 1-D parameters (norm weights, as Megatron and Hugging Face exclude
them), and a cosine learning rate after a linear warm-up.

Clipping lives in the optimizer's ``step`` (after a gradient scaler has unscaled), so the harness steps it like
any optimizer; on sharded (FSDP2) parameters the norm is the global one across ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from mlbench.training.recipe import StepSchedule


def decay_groups(params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Parameter groups: weight decay on matrices, none on 1-D parameters; frozen parameters left out."""
    decay, flat = [], []
    for _, p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else flat).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if flat:
        groups.append({"params": flat, "weight_decay": 0.0})
    return groups


class ClippedAdamW(torch.optim.AdamW):
    """AdamW whose ``step`` first clips the gradients' global norm to ``max_grad_norm`` (0: no clipping);
    ``last_grad_norm`` holds the norm before clipping (a tensor, read only when logged)."""

    def __init__(self, params, *, max_grad_norm: float, **kwargs):
        super().__init__(params, **kwargs)
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, closure=None):
        if self.max_grad_norm > 0:
            grads = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            if grads:
                self.last_grad_norm = torch.nn.utils.clip_grad_norm_(grads, self.max_grad_norm)
        return super().step(closure)


class CosineWithWarmup(StepSchedule):
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then a cosine to ``end_lr`` at ``total_steps`` (held
    there after). Step ``s`` of the warm-up uses ``base_lr x (s + 1) / warmup_steps``, so no step trains at 0."""

    def __init__(self, optimizer, *, base_lr: float, warmup_steps: int, total_steps: int, end_lr: float):
        super().__init__(optimizer)
        self.base_lr, self.warmup_steps, self.end_lr = base_lr, warmup_steps, end_lr
        self.total_steps = max(total_steps, warmup_steps + 1)
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        frac = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.end_lr + (self.base_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
