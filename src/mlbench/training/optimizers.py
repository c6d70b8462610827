"""LAMB as the MLPerf BERT reference runs it, and the reference's learning-rate schedule.

LAMB (You et al.; NVIDIA's FusedLAMB / the reference's TF ``LAMBOptimizer``): the gradients of all parameters
are first clipped together to a global norm of ``max_grad_norm`` (1.0); then per tensor, Adam moments with
bias correction, the update ``m_hat / (sqrt(v_hat) + eps) + weight_decay * w`` (decoupled weight decay), and
the trust ratio ``||w|| / ||update||`` (1 where either norm is 0) scaling the learning rate. As in the
reference, bias and LayerNorm parameters get no weight decay and no trust ratio (the reference excludes them
from both, ``exclude_from_layer_adaptation`` defaulting to ``exclude_from_weight_decay``).

The schedule is the reference's ``LinearWarmupPolyDecayScheduler``: at optimizer step ``k`` (1-based),
``lr = base * (k - start_warmup_step) / warmup_steps`` while ``k - start_warmup_step < warmup_steps``, else
``base * (1 - min(k / training_steps, 1)) ** 1.0``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mlbench.training.recipe import StepSchedule

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "gamma", "beta")


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups as the reference forms them: weight decay (and trust ratio) except bias and LayerNorm."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if any(name.endswith(s) for s in NO_DECAY) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "adapt": True},
            {"params": no_decay, "weight_decay": 0.0, "adapt": False}]


class Lamb(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, max_grad_norm: float | None = 1.0):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, adapt=True)
        super().__init__(params, defaults)
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        clip = None
        if self.max_grad_norm is not None and self.max_grad_norm > 0:
            norms = torch._foreach_norm(grads)
            total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
            # The reference divides by max(norm / max_norm, 1): gradients shrink only above the bound.
            clip = self.max_grad_norm / torch.clamp(total, min=self.max_grad_norm)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            b1, b2 = group["betas"]
            g_list = [p.grad.float() for p in params]
            if clip is not None:
                g_list = torch._foreach_mul(g_list, clip)
            ms, vs = [], []
            for p in params:
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    st["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                st["step"] += 1
                ms.append(st["exp_avg"])
                vs.append(st["exp_avg_sq"])
            step = self.state[params[0]]["step"]
            torch._foreach_lerp_(ms, g_list, 1 - b1)  # m = b1 m + (1 - b1) g
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, g_list, g_list, value=1 - b2)
            c1, c2 = 1 - b1 ** step, 1 - b2 ** step
            denom = torch._foreach_sqrt(torch._foreach_div(vs, c2))
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(torch._foreach_div(ms, c1), denom)
            wd = group["weight_decay"]
            if wd != 0:
                torch._foreach_add_(updates, [p.float() for p in params], alpha=wd)
            if group.get("adapt", True) and wd != 0:
                w_norms = torch._foreach_norm([p.float() for p in params])
                u_norms = torch._foreach_norm(updates)
                ratios = [torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
                          for w, u in zip(w_norms, u_norms)]
                torch._foreach_mul_(updates, ratios)
            for p, u in zip(params, updates):
                p.add_(u.to(p.dtype), alpha=-group["lr"])
        return loss


class ReferenceSchedule(StepSchedule):
    """Linear warm-up then polynomial (power 1) decay to 0, as the MLPerf BERT reference steps it."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, training_steps: int,
                 start_warmup_step: int = 0, power: float = 1.0, end_lr: float = 0.0):
        super().__init__(optimizer)
        self.base_lr, self.warmup_steps = base_lr, warmup_steps
        self.training_steps, self.start_warmup_step = max(1, training_steps), start_warmup_step
        self.power, self.end_lr = power, end_lr
        self._apply()

    def lr_at(self, step: int) -> float:
        k = step + 1  # the update about to be made, counted from 1 as the reference does
        mod = k - self.start_warmup_step
        if mod < self.warmup_steps:
            return self.base_lr * max(0, mod) / self.warmup_steps
        progress = min(k / self.training_steps, 1.0)
        return (self.base_lr - self.end_lr) * (1 - progress) ** self.power + self.end_lr
