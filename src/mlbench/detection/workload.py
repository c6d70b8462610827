"""What torchvision's detection models train and evaluate alike: (images, targets) list batches, the summed loss
parts, and an evaluation that runs each rank's shard into COCO result records scored once."""

from __future__ import annotations

from typing import Any

import torch

from mlbench.training.checkpoint import unwrap
from mlbench.training.recipe import StepContext
from mlbench.training.workload import Workload


class DetectionWorkload(Workload):
    """What torchvision's detection models train and evaluate alike (RetinaNet, Mask R-CNN): batches are
    ``(images, targets)`` lists, the loss is the sum of the parts the model returns in training mode, and
    evaluation runs each rank's shard into COCO result records that :func:`score_once` scores once."""

    def to_device(self, batch, ctx: StepContext):
        images, targets = batch
        dev = ctx.device
        images = [im.to(dev, non_blocking=True) for im in images]
        targets = [{k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
                   for t in targets]
        return images, targets

    def loss(self, model, batch, ctx: StepContext):
        images, targets = batch
        with ctx.amp():
            parts = model(images, targets)  # RetinaNet: classification, bbox_regression; Mask R-CNN: loss_*
        parts = {k: v.float() for k, v in parts.items()}
        return sum(parts.values()), parts

    @torch.no_grad()
    def warm_up_evaluation(self, model, batches, ctx: StepContext) -> None:
        """The detector in eval mode on synthetic batches, as ``evaluate`` runs it, with nothing scored (the COCO
        ground truth knows no synthetic image)."""
        self.detections(model, batches, ctx, lambda outputs, ids: [])

    def detections(self, model, batches, ctx: StepContext, records) -> tuple[list[dict[str, Any]], list[int]]:
        """This rank's evaluation shard through the model in eval mode: the COCO result records that
        ``records(outputs, image_ids)`` makes of each batch, and the image ids seen."""
        net = unwrap(model)
        net = getattr(net, "detector", net)  # a training wrapper (RetinaNet's DetectorTrainer): its detector
        net.eval()
        local: list[dict[str, Any]] = []
        seen: list[int] = []
        for batch in batches:
            images, targets = self.to_device(batch, ctx)
            with ctx.amp():
                outputs = net(images)
            ids = [int(t["image_id"]) for t in targets]
            local.extend(records(outputs, ids))
            seen.extend(ids)
        return local, seen


def score_once(detections: list, image_ids: list[int], scorer, ctx: StepContext) -> tuple[dict[str, float], int]:
    """``scorer(detections, ids)`` over every rank's detections, once on rank 0, shared: (metrics, images)."""
    if ctx.world_size == 1:
        return scorer(detections, image_ids), len(image_ids)
    import torch.distributed as tdist

    parts: list | None = [None] * ctx.world_size if ctx.rank == 0 else None
    tdist.gather_object((detections, image_ids), parts, dst=0)
    result: list = [None]
    if ctx.rank == 0:
        ids = [i for _, got in parts for i in got]
        result = [(scorer([d for dets, _ in parts for d in dets], ids), len(ids))]
    tdist.broadcast_object_list(result, src=0)
    return result[0]
