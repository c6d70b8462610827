"""RetinaNet training throughput: mlbench's harness against a plain torchvision detection loop, side by side.

Both loops train fresh copies of one initial model with the same batches, batch size, precision, optimizer
(Adam with the recipe's warm-up) and data, alternating A/B in one process so that machine noise hits both;
the ratio of their throughputs (mlbench / plain, images/s) is reported per trial and as the median.
mlbench's side runs the real harness epoch (``mlbench.training.harness.train_epoch``: progress line,
loss read-back, scheduler, data-wait timing); the plain side is the loop of torchvision's detection
reference (``loss_dict = model(images, targets); sum(...).backward(); step``).

    python benchmarks/train_retinanet.py --case mini                 # generated shapes, the mini model
    python benchmarks/train_retinanet.py --case tiny --steps 8
    python benchmarks/train_retinanet.py --case reference --device cuda --precision bf16 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import statistics

import side_by_side
import torch

from mlbench import registry
from mlbench.config import TrainConfig
from mlbench.training import precision
from mlbench.training.batches import DataSpec
from mlbench.training.recipe import StepContext


def plain_loop(model, opt, sched, batches, device, prec: str) -> int:
    """The baseline: torchvision's detection training step, written by hand."""
    model.train()
    n = 0
    for images, targets in batches:
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        with precision.autocast(device, prec):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        n += len(images)
    precision.synchronize(device)
    return n


def load_batches(handle, bench, args, bs: int, steps: int, ctx: StepContext) -> side_by_side.Held:
    """Real decoded batches (mini/tiny: the generated set; reference: synthetic 800x800 images), in memory,
    so that both loops time the model step and not the JPEG decoder."""
    if args.case == "reference":
        return side_by_side.Held([handle.workload().synthetic_batch(bs, StepContext(device=torch.device("cpu")))]
                       * steps)
    data = handle.workload().build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=0))
    out = []
    for b in data.train:
        out.append(b)
        if len(out) == steps:
            break
    return side_by_side.Held(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("tiny", "mini", "reference"), default="mini")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the size's batch (reference: 2)")
    ap.add_argument("--steps", type=int, default=16, help="steps per trial")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("MLBENCH_RETINANET_BACKBONE", "random")  # throughput only: no download

    handle = registry.get("retinanet", args.case)
    bench = handle.definition
    device = precision.resolve_device(args.device)
    bs = args.batch_size or (2 if args.case == "reference" else bench.batch_size)
    recipe = handle.workload()
    ctx = StepContext(device=device, autocast=lambda: precision.autocast(device, args.precision))
    batches = load_batches(handle, bench, args, bs, args.steps, ctx)
    base = handle.workload().build_model().to(device)
    cfg = TrainConfig(benchmark="retinanet", size=args.case, precision=args.precision, log_every=20)
    fresh = side_by_side.fresh_copies(base, recipe, bs, args.steps)

    warm = side_by_side.Held(batches.batches[:2])
    plain = lambda m, o, s, data: plain_loop(m, o, s, data, device, args.precision)  # noqa: E731
    ratios, h_tp, p_tp = [], [], []
    for trial in side_by_side.trials(fresh, plain, recipe, batches, warm, cfg, ctx, args.trials):
        tp_plain, tp_h = trial.plain_per_s, trial.harness_per_s
        ratios.append(trial.ratio)
        h_tp.append(tp_h)
        p_tp.append(tp_plain)
        print(f"trial: plain {tp_plain:7.2f} images/s  mlbench {tp_h:7.2f} images/s  ratio {ratios[-1]:.3f}",
              flush=True)
    print(f"\nRetinaNet {args.case} ({args.device}, {args.precision}, batch {bs}, {args.steps} steps/trial, "
          f"{args.trials} trials)")
    print(f"median throughput: plain {statistics.median(p_tp):.2f}  mlbench {statistics.median(h_tp):.2f} images/s")
    print(f"median ratio mlbench/plain: {statistics.median(ratios):.3f}   (goal >= 0.95)")


if __name__ == "__main__":
    main()
