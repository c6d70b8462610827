"""Mask R-CNN training throughput: mlbench's harness against a plain torchvision detection loop, side by side.

Both loops train fresh copies of one initial model with the same in-memory batches (images, boxes, labels,
masks), batch size, precision and optimizer (SGD with the recipe's warm-up and step decay), alternating A/B in one
process so that machine noise hits both; the ratio of their throughputs (mlbench / plain, images/s) is reported
per trial and as the median. mlbench's side runs the real harness epoch
(``mlbench.training.harness.train_epoch``: progress line, loss read-back, scheduler, data-wait timing); the plain
side is torchvision's detection reference loop (``loss_dict = model(images, targets); sum(...).backward(); step``).

    python benchmarks/train_maskrcnn.py --case mini                 # generated shapes with masks, the mini model
    python benchmarks/train_maskrcnn.py --case tiny --steps 8
    python benchmarks/train_maskrcnn.py --case reference --device cuda --precision bf16 --batch-size 4
"""

from __future__ import annotations

import argparse
import os

import side_by_side
import torch
from train_retinanet import plain_loop

from mlbench import registry
from mlbench.config import TrainConfig
from mlbench.training import precision
from mlbench.training.batches import DataSpec
from mlbench.training.recipe import StepContext


def load_batches(handle, args, bs: int, steps: int) -> side_by_side.Held:
    """Real decoded batches (mini/tiny: the generated set with masks; reference: synthetic 800x800 images), in
    memory, so that both loops time the model step and not JPEG and mask decoding."""
    if args.case == "reference":
        return side_by_side.Held([handle.workload().synthetic_batch(bs, StepContext(device=torch.device("cpu")))]
                                 * steps)
    data = handle.workload().build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=0))
    held: list = []
    while len(held) < steps:  # more steps than one epoch holds: go round again
        held.extend(side_by_side.Held.first(data.train, steps - len(held)).batches)
    return side_by_side.Held(held)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("tiny", "mini", "reference"), default="mini")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the size's batch")
    ap.add_argument("--steps", type=int, default=12, help="steps per trial")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("MLBENCH_MASKRCNN_BACKBONE", "random")  # throughput only: no download

    handle = registry.get("maskrcnn", args.case)
    bench = handle.definition
    device = precision.resolve_device(args.device)
    bs = args.batch_size or bench.batch_size
    recipe = handle.workload()
    ctx = StepContext(device=device, autocast=lambda: precision.autocast(device, args.precision))
    batches = load_batches(handle, args, bs, args.steps)
    base = handle.workload().build_model().to(device)
    cfg = TrainConfig(benchmark="maskrcnn", size=args.case, precision=args.precision, log_every=20)
    plain = lambda m, o, s, data: plain_loop(m, o, s, data, device, args.precision)  # noqa: E731
    side_by_side.compare(
        f"Mask R-CNN {args.case} ({args.device}, {args.precision}, batch {bs}, {args.steps} steps/trial, "
        f"{args.trials} trials; samples are images)", base, plain, recipe, batches, cfg, ctx, bs, args.steps,
        args.trials)

if __name__ == "__main__":
    main()
