"""Training harness overhead: mlbench's training epoch against a plain PyTorch loop, side by side.

Both loops train the same model (fresh copies of one initial state), with the same batch, precision,
optimizer and data, alternating A/B in one process; the ratio of their throughputs (harness / plain)
is reported per trial and as the median. mlbench's side runs the real harness code
(``mlbench.training.harness.train_epoch``: progress line, loss read-back, scheduler, data-wait timing).

    python benchmarks/train_overhead.py --case mini            # ResNet-50 mini on Fashion-MNIST batches
    python benchmarks/train_overhead.py --case reference       # ResNet-50 v1.5 on synthetic 224x224 inputs
    python benchmarks/train_overhead.py --case reference --device cuda --precision bf16 --batch-size 256
"""

from __future__ import annotations

import argparse
import copy
import statistics

import side_by_side
import torch
import torch.nn.functional as F  # noqa: N812

from mlbench import registry
from mlbench.config import TrainConfig
from mlbench.training import precision
from mlbench.training.batches import DataSpec
from mlbench.training.recipe import OptimArgs, StepContext


class Repeat:
    """The same batch ``n`` times (synthetic inputs), with the Batches interface."""

    def __init__(self, batch, n: int):
        self.batch, self.n = batch, n

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter([self.batch] * self.n)


def plain_loop(model, opt, sched, batches, ctx: StepContext, prec: str) -> int:
    """The baseline: the loop a user would write by hand."""
    model.train()
    n = 0
    for x, y in batches:
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        if ctx.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(ctx.device, prec):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        n += len(y)
    precision.synchronize(ctx.device)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("mini", "reference"), default="mini")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps per trial")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST folder for --case mini (default: standard places)")
    args = ap.parse_args()

    handle = registry.get("resnet50", args.case)
    bench = handle.definition
    device = precision.resolve_device(args.device)
    bs = args.batch_size or (128 if args.case == "mini" else 8)
    steps = args.steps or (60 if args.case == "mini" else 4)
    recipe = handle.workload()
    ctx = StepContext(device=device, channels_last=args.channels_last,
                      autocast=lambda: precision.autocast(device, args.precision))
    if args.case == "mini":
        data = handle.workload().build_data(DataSpec(batch_size=bs, eval_batch_size=bs,
                                                                      data_dir=args.data_dir))
        batches = side_by_side.Streamed(data.train, steps)
    else:
        batches = Repeat((torch.randn(bs, *bench.input_shape), torch.randint(0, 1000, (bs,))), steps)
    base = handle.workload().build_model().to(device)
    if args.channels_last:
        base = base.to(memory_format=torch.channels_last)
    cfg = TrainConfig(benchmark="resnet50", size=args.case, precision=args.precision, log_every=20)

    def fresh():
        model = copy.deepcopy(base)
        opt, sched = recipe.build_optimizer(model, OptimArgs(global_batch_size=bs, steps_per_epoch=steps,
                                                                     epochs=bench.max_epochs))
        return model, opt, sched

    warm = side_by_side.Streamed(batches, 2) if args.case == "mini" else Repeat(batches.batch, 2)
    plain = lambda m, o, s, data: plain_loop(m, o, s, data, ctx, args.precision)  # noqa: E731
    ratios, harness_tp, plain_tp, data_share = [], [], [], []
    for trial in side_by_side.trials(fresh, plain, recipe, batches, warm, cfg, ctx, args.trials):
        tp_plain, tp_h, out = trial.plain_per_s, trial.harness_per_s, trial.outcome
        ratios.append(trial.ratio)
        harness_tp.append(tp_h)
        plain_tp.append(tp_plain)
        data_share.append(out.data_wait_s / out.train_s)
        print(f"trial: plain {tp_plain:8.1f} samples/s  mlbench {tp_h:8.1f} samples/s  ratio {ratios[-1]:.3f}  "
              f"data share {data_share[-1]:.3f}", flush=True)
    print(f"\nResNet-50 {args.case} ({args.device}, {args.precision}, batch {bs}, {steps} steps/trial, "
          f"{args.trials} trials)")
    print(f"median throughput: plain {statistics.median(plain_tp):.1f}  mlbench {statistics.median(harness_tp):.1f} "
          f"samples/s")
    print(f"median ratio mlbench/plain: {statistics.median(ratios):.3f}   (goal >= 0.95)")
    print(f"median data-loading share of step time (mlbench): {statistics.median(data_share):.3f}")


if __name__ == "__main__":
    main()
