"""The image-classification workload (ResNet family): SGD with momentum, label smoothing,
linear warm-up then polynomial decay (the MLPerf ResNet reference schedule), top-1 accuracy.

A benchmark subclasses :class:`ClassificationWorkload` and supplies ``build_model`` and ``build_data``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from mlbench.finite import HINT, NonFinite
from mlbench.training import distributed
from mlbench.training.recipe import OptimArgs, StepContext, StepSchedule
from mlbench.training.workload import Workload


class WarmupPoly(StepSchedule):
    """Linear warm-up from 0 to ``base_lr`` over ``warmup_steps``, then polynomial decay to ``end_lr``."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, end_lr: float,
                 warmup_steps: int, decay_steps: int, power: float):
        super().__init__(optimizer)
        self.base_lr, self.end_lr, self.power = base_lr, end_lr, power
        self.warmup_steps, self.decay_steps = warmup_steps, max(1, decay_steps)
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        t = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return (self.base_lr - self.end_lr) * (1 - t) ** self.power + self.end_lr


def reference_lr(hp: dict[str, Any], global_batch: int) -> float:
    """The base learning rate scaled linearly with the batch, on MLPerf's 0.001 grid."""
    lr = hp["lr_per_256"] * global_batch / 256
    return max(0.001, round(lr / 0.001) * 0.001)


class ClassificationWorkload(Workload):
    """Batches are ``(images, labels)``; the metric is top-1 accuracy (``top1``)."""

    label_smoothing = 0.1

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        base_lr = args.base_lr if args.base_lr is not None else reference_lr(hp, args.global_batch_size)
        decay, no_decay = [], []
        for p in model.parameters():
            if not p.requires_grad:
                continue
            # MLPerf's ResNet recipe exempts batch-norm and bias parameters from weight decay.
            (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": hp["weight_decay"]},
                  {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.SGD(groups, lr=base_lr, momentum=hp["momentum"], nesterov=False)
        warmup = int(round(hp["warmup_epochs"] * args.steps_per_epoch))
        decay_steps = args.epochs * args.steps_per_epoch - warmup
        sched = WarmupPoly(opt, base_lr, hp["end_lr"], warmup, decay_steps, hp["poly_power"])
        args.extra.update(base_lr=base_lr, warmup_steps=warmup, decay_steps=decay_steps)
        return opt, sched

    def mllog_hparams(self, args: OptimArgs, optimizer) -> dict[str, Any]:
        hp = self.bench.hparams
        return {
            "opt_name": "sgd",
            "sgd_opt_base_learning_rate": args.extra["base_lr"],
            "sgd_opt_end_learning_rate": hp["end_lr"],
            "sgd_opt_learning_rate_decay_poly_power": hp["poly_power"],
            "sgd_opt_learning_rate_decay_steps": args.extra["decay_steps"],
            "sgd_opt_weight_decay": hp["weight_decay"],
            "sgd_opt_momentum": hp["momentum"],
            # Batch-norm statistics span one process's micro-batch.
            "model_bn_span": args.global_batch_size // (args.grad_accum * args.world_size),
            "opt_learning_rate_warmup_epochs": hp["warmup_epochs"],
        }

    def to_device(self, batch, ctx: StepContext):
        x, y = batch
        x = x.to(ctx.device, non_blocking=True)
        if ctx.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(ctx.device, non_blocking=True)

    def loss(self, model, batch, ctx: StepContext):
        x, y = batch
        with ctx.amp():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model, batches, ctx: StepContext) -> tuple[dict[str, float], int]:
        model.eval()  # batch-norm running statistics, as inference uses them (the harness restores train())
        correct = torch.zeros((), dtype=torch.int64, device=ctx.device)
        nonfinite = torch.zeros((), dtype=torch.int64, device=ctx.device)  # samples whose logits hold NaN/inf
        count = 0
        for batch in batches:
            x, y = self.to_device(batch, ctx)
            with ctx.amp():
                logits = model(x)
            correct += (logits.argmax(1) == y).sum()
            nonfinite += (~torch.isfinite(logits)).any(1).sum()
            count += y.numel()
        total_correct, total, bad = distributed.all_reduce_sum(
            [float(correct.item()), float(count), float(nonfinite.item())], ctx.device)
        if bad:
            raise NonFinite(f"the model's logits are NaN or infinite for {int(bad)} of {int(total)} evaluation "
                            "images: they are not scored, and the run has no result", HINT)
        return {"top1": total_correct / total if total else 0.0}, int(total)

    def synthetic_batch(self, batch_size: int, ctx: StepContext):
        bench = self.bench
        x = torch.randn(batch_size, *bench.input_shape)
        y = torch.randint(0, bench.num_classes, (batch_size,))
        return self.to_device((x, y), ctx)
