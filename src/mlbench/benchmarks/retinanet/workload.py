"""The RetinaNet training workload: Adam, linear warm-up (MLPerf reference), focal loss, COCO box mAP.

The learning rate follows the MLPerf reference's warm-up: during the first ``warmup_epochs`` the factor
grows linearly from ``warmup_factor`` to 1, then stays at the base rate. Evaluation is distributed: each
rank runs its shard, detections are gathered to every rank and mAP is computed once with pycocotools.

Data: OpenImages-MLPerf from ``--data-dir`` (reference; ``mlbench data prepare retinanet`` builds it), or the
generated shapes set in the cache (mini, tiny), both read by :mod:`mlbench.detection.coco_data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.detection import coco_data, synthetic
from mlbench.detection.workload import DetectionWorkload, score_once
from mlbench.errors import DataError
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import OptimArgs, StepContext, StepSchedule


class WarmupConstant(StepSchedule):
    """``lr = base * (factor * (1 - a) + a)`` with ``a = step / warmup_steps`` during warm-up, then ``base``."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, factor: float):
        super().__init__(optimizer)
        self.base_lr = base_lr
        self.warmup_steps, self.factor = warmup_steps, factor
        self._apply()

    def lr_at(self, step: int) -> float:
        if step >= self.warmup_steps:
            return self.base_lr
        alpha = step / self.warmup_steps
        return self.base_lr * (self.factor * (1 - alpha) + alpha)


class RetinaNetWorkload(DetectionWorkload):
    """Batches are ``(images, targets)`` (lists, as torchvision's detection models take them); metric ``mAP``.

    Training runs through :class:`mlbench.benchmarks.retinanet.trainer.DetectorTrainer` (batched matching and
    loss, folded frozen batch norm, fused Adam on CUDA; the same loss values) unless
    ``MLBENCH_RETINANET_LEVERS=off``; ``speed_record`` says what was used (result.json ``speed``)."""

    def __init__(self, bench):
        super().__init__(bench)
        from mlbench.benchmarks.retinanet import trainer

        self.levers = trainer.levers_enabled()  # benchmarks may set it after construction
        self.speed: dict[str, Any] = {}
        self._trainer = None

    def wrap_model(self, model: torch.nn.Module, device: torch.device, distributed: bool) -> torch.nn.Module:
        from mlbench.benchmarks.retinanet import trainer

        if not self.levers:
            return super().wrap_model(model, device, distributed)
        self._trainer = trainer.DetectorTrainer(model)
        self.speed.update(self._trainer.record())
        if device.type == "cuda":  # every input has the fixed size: let cuDNN time its algorithms once
            torch.backends.cudnn.benchmark = True
            self.speed["cudnn_benchmark"] = True
        return super().wrap_model(self._trainer, device, distributed)

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """With the levers: backbone+head and the loss are compiled (static shapes), not the per-image resize."""
        if self._trainer is None:
            return super().compile_model(model)
        self._trainer.compile_parts()
        self.speed.update(self._trainer.record())
        return model

    def speed_record(self) -> dict[str, Any]:
        from mlbench.benchmarks.retinanet import trainer

        off = "off" if trainer.levers_enabled() else f"off ({trainer.LEVERS_ENV}=off)"
        return {"levers": "on" if self.levers else off, **self.speed}

    def to_device(self, batch, ctx: StepContext):
        if self._trainer is not None:  # the trainer skips torchvision's per-image check on the device
            from mlbench.benchmarks.retinanet import trainer

            trainer.check_boxes(batch[1])
        return super().to_device(batch, ctx)

    def build_model(self) -> torch.nn.Module:
        from mlbench.benchmarks.retinanet.model import build_model

        return build_model(self.bench)

    def build_data(self, spec: DataSpec) -> DataBundle:
        return build_data(self.bench, spec)

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        base_lr = args.base_lr if args.base_lr is not None else hp["lr"]
        params = [p for p in model.parameters() if p.requires_grad]
        from mlbench.benchmarks.retinanet import trainer

        opt, kind = trainer.adam(params, base_lr, hp["weight_decay"], fast=self.levers)
        self.speed["adam"] = kind
        warmup = int(round(hp["warmup_epochs"] * args.steps_per_epoch))
        sched = WarmupConstant(opt, base_lr, warmup, hp["warmup_factor"])
        args.extra.update(base_lr=base_lr, warmup_steps=warmup)
        return opt, sched

    def mllog_hparams(self, args: OptimArgs, optimizer) -> dict[str, Any]:
        hp = self.bench.hparams
        return {
            "opt_name": "adam",
            "opt_base_learning_rate": args.extra["base_lr"],
            "opt_weight_decay": hp["weight_decay"],
            "opt_learning_rate_warmup_epochs": hp["warmup_epochs"],
            "opt_learning_rate_warmup_factor": hp["warmup_factor"],
        }

    @torch.no_grad()
    def evaluate(self, model, batches, ctx: StepContext) -> tuple[dict[str, float], int]:
        from mlbench.detection import coco_map

        # Each rank runs its shard of the validation set; detections meet on rank 0 for one mAP.
        index = batches.loader.dataset.index
        local, seen = self.detections(model, batches, ctx,
                                      lambda outputs, ids: coco_map.to_coco_results(outputs, ids, index.label_to_cat))

        def score(dets: list, ids: list[int]) -> dict[str, float]:
            return {"mAP": coco_map.box_map(index.raw, dets, image_ids=ids)["mAP"] if ids else 0.0}

        return score_once(local, seen, score, ctx)

    def synthetic_batch(self, batch_size: int, ctx: StepContext):
        bench = self.bench
        size = bench.hparams["image_size"]
        g = torch.Generator().manual_seed(0)
        images = [torch.rand(3, size, size, generator=g) for _ in range(batch_size)]
        box = torch.tensor([[size * 0.25, size * 0.25, size * 0.6, size * 0.7]])
        targets = [{"boxes": box.clone(), "labels": torch.tensor([i % bench.num_classes]), "image_id": i}
                   for i in range(batch_size)]
        return self.to_device((images, targets), ctx)


def data_root(bench: Benchmark, data_dir: str | None) -> Path:
    """Where the set lives: ``--data-dir``, else (mini/tiny) the generated set in the cache."""
    if data_dir:
        return Path(data_dir)
    if bench.is_reference:
        raise DataError("RetinaNet reference needs OpenImages-MLPerf",
                        "build it with `mlbench data prepare retinanet --root DIR` and pass --data-dir DIR")
    return synthetic.ensure(download.cache_dir(f"retinanet-{bench.size}"), bench.hparams,
                           phantom=bench.hparams.get("phantom", False))


def load_split(bench: Benchmark, root: Path, split: str, flip: bool = False) -> coco_data.CocoDetection:
    labels, images = coco_data.split_paths(root, split, bench.hparams["labels_file"])
    index = coco_data.CocoIndex(labels, images, prepare=f"mlbench data prepare {bench.name}")
    # A --classes demo subset declares fewer categories than the model has outputs: that is fine.
    if len(index.label_to_cat) > bench.num_classes:
        raise DataError(f"{labels} declares {len(index.label_to_cat)} categories but {bench.name} "
                        f"{bench.size} has {bench.num_classes} classes",
                        "use the annotation json prepared for this size")
    return coco_data.CocoDetection(index, flip=flip)


def build_data(bench: Benchmark, spec: DataSpec) -> DataBundle:
    root = data_root(bench, spec.data_dir)
    train = load_split(bench, root, coco_data.SPLITS["train"], flip=True)
    val = load_split(bench, root, coco_data.SPLITS["eval"])
    return coco_data.bundle(train, val, spec)


WORKLOAD = RetinaNetWorkload
