"""The Mask R-CNN training workload: SGD with warm-up and step decay (MLPerf reference), box and mask mAP.

Optimizer as maskrcnn-benchmark's ``make_optimizer``, which the MLPerf reference uses: SGD, momentum 0.9;
weights get the base rate and weight decay 1e-4, biases twice the rate and no weight decay
(``BIAS_LR_FACTOR 2``, ``WEIGHT_DECAY_BIAS 0``). The rate is linear in the global batch (0.02 per 16 images),
warms up linearly from 1/3 and drops by 10x at two points; warm-up and decay points are stated in images in the
definition and become optimizer steps at the run's global batch.

The quality is the mask mAP (``segm_mAP``); the target is reached when the box mAP (``bbox_mAP``) reaches its
target too. ``eval_accuracy`` is logged as ``{"BBOX": box, "SEGM": mask}``, the form ``closed_maskrcnn.yaml``
checks. Evaluation is distributed as RetinaNet's: each rank runs its shard, the detections (RLE masks included)
meet on rank 0, pycocotools scores ``bbox`` and ``segm`` once and every rank gets the numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from mlbench.detection.workload import DetectionWorkload, score_once
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import OptimArgs, StepContext, StepSchedule


class WarmupMultiStep(StepSchedule):
    """maskrcnn-benchmark's WarmupMultiStepLR (linear): ``base * warm(step) * decay ** (milestones passed)``,
    ``warm`` rising from ``factor`` to 1 over ``warmup_steps``; each group keeps its ``lr_factor``."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, factor: float,
                 milestones: list[int], decay: float):
        super().__init__(optimizer)
        self.base_lr, self.warmup_steps, self.factor = base_lr, warmup_steps, factor
        self.milestones, self.decay = sorted(milestones), decay
        self._apply()

    def lr_at(self, step: int) -> float:
        warm = 1.0
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            warm = self.factor * (1 - alpha) + alpha
        return self.base_lr * warm * self.decay ** sum(step >= m for m in self.milestones)

    def _apply(self) -> None:
        lr = self.lr_at(self.step_num)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)


class MaskRCNNWorkload(DetectionWorkload):
    """Batches are ``(images, targets)`` lists as torchvision's detection models take them."""

    # ------------------------------------------------------------------ target
    @property
    def box_target(self) -> float:
        return float(self.bench.hparams["box_target"])

    def has_reached_target(self, metrics: dict[str, float]) -> bool:
        return metrics["bbox_mAP"] >= self.box_target and metrics["segm_mAP"] >= self.bench.target

    def target_text(self) -> str:
        return f"bbox_mAP >= {self.box_target} and segm_mAP >= {self.bench.target}"

    def logged_accuracy(self, metrics: dict[str, float]) -> dict[str, float]:
        return {"BBOX": float(metrics["bbox_mAP"]), "SEGM": float(metrics["segm_mAP"])}

    # ------------------------------------------------------------------ model and data
    def build_model(self) -> torch.nn.Module:
        from mlbench.benchmarks.maskrcnn.model import build_model

        return build_model(self.bench)

    def build_data(self, spec: DataSpec) -> DataBundle:
        from mlbench.benchmarks.maskrcnn.data import build_data

        return build_data(self.bench, spec)

    def synthetic_batch(self, batch_size: int, ctx: StepContext):
        size = self.bench.input_shape[-1]
        g = torch.Generator().manual_seed(0)
        images = [torch.rand(3, size, size, generator=g) for _ in range(batch_size)]
        a, b = int(size * 0.25), int(size * 0.65)
        mask = torch.zeros(1, size, size, dtype=torch.uint8)
        mask[:, a:b, a:b] = 1
        box = torch.tensor([[float(a), float(a), float(b), float(b)]])
        targets = [{"boxes": box.clone(), "labels": torch.tensor([1 + i % (self.bench.num_classes - 1)]),
                    "masks": mask.clone(), "image_id": i} for i in range(batch_size)]
        return self.to_device((images, targets), ctx)

    # ------------------------------------------------------------------ optimisation
    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        gbs = args.global_batch_size
        base_lr = args.base_lr if args.base_lr is not None else hp["lr"] * gbs / hp["lr_reference_batch"]
        weights, biases = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (biases if name.endswith(".bias") else weights).append(p)
        opt = torch.optim.SGD([{"params": weights, "weight_decay": hp["weight_decay"], "lr_factor": 1.0},
                               {"params": biases, "weight_decay": 0.0, "lr_factor": 2.0}],
                              lr=base_lr, momentum=hp["momentum"])
        warmup = max(1, round(hp["warmup_images"] / gbs))
        milestones = [max(1, round(n / gbs)) for n in hp["decay_images"]]
        sched = WarmupMultiStep(opt, base_lr, warmup, hp["warmup_factor"], milestones, hp["decay_factor"])
        args.extra.update(base_lr=base_lr, warmup_steps=warmup, decay_steps=milestones)
        return opt, sched

    def mllog_hparams(self, args: OptimArgs, optimizer) -> dict[str, Any]:
        hp = self.bench.hparams
        size = hp.get("image_size")
        return {
            "opt_name": "sgd",
            "opt_base_learning_rate": args.extra["base_lr"],
            "opt_weight_decay": hp["weight_decay"],
            "opt_learning_rate_warmup_steps": args.extra["warmup_steps"],
            "opt_learning_rate_warmup_factor": hp["warmup_factor"],
            "opt_learning_rate_decay_factor": hp["decay_factor"],
            "opt_learning_rate_decay_steps": args.extra["decay_steps"],
            "num_image_candidates": hp["num_image_candidates"],
            "min_image_size": hp.get("min_image_size", size),
            "max_image_size": hp.get("max_image_size", size),
        }

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model, batches, ctx: StepContext) -> tuple[dict[str, float], int]:
        from mlbench.benchmarks.maskrcnn import mask_map

        index = batches.loader.dataset.index
        threshold = self.bench.hparams["mask_threshold"]
        local, seen = self.detections(
            model, batches, ctx,
            lambda outputs, ids: mask_map.to_coco_results(outputs, ids, index.label_to_cat, threshold))
        return score_once(local, seen, lambda d, i: mask_map.score(index.raw, d, i), ctx)


WORKLOAD = MaskRCNNWorkload
