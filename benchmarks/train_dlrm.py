"""DLRM-DCNv2 training harness overhead: mlbench's training epoch against a plain PyTorch loop, side by side.

Both loops train the same DLRM (fresh copies of one initial state) with the same Adagrad pair and the same
batches (read from the size's day files, memory-mapped, then held in memory so that both sides get identical
input), alternating A/B in one process; the ratio harness/plain of throughputs is reported per trial and as
the median (see side_by_side.py).

    OMP_NUM_THREADS=1 python benchmarks/train_dlrm.py --size mini --steps 60 --trials 5
"""

from __future__ import annotations

import argparse

import side_by_side
import torch
import torch.nn.functional as F  # noqa: N812

from mlbench import registry
from mlbench.config import TrainConfig
from mlbench.training.batches import DataSpec
from mlbench.training.recipe import StepContext


def plain_loop(model, opt, sched, batches, ctx: StepContext, prec: str) -> int:
    """The loop a user writes by hand: forward, BCE, backward, both optimizers, schedule."""
    model.train()
    n = 0
    for b in batches:
        logits = model(b["dense"], b["sparse"])
        loss = F.binary_cross_entropy_with_logits(logits, b["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        n += len(b["labels"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("mini", "tiny"), default="mini")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=60, help="steps per trial")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()

    handle = registry.get("dlrm", args.size)
    bench = handle.definition
    bs = args.batch_size or bench.batch_size
    recipe = handle.workload()
    ctx = StepContext(device=torch.device("cpu"))
    data = recipe.build_data(DataSpec(batch_size=bs, eval_batch_size=bs))
    batches = side_by_side.Held.first(data.train, args.steps)
    base = recipe.build_model()
    cfg = TrainConfig(benchmark="dlrm", size=args.size, log_every=20)
    plain = lambda m, o, s, d: plain_loop(m, o, s, d, ctx, "fp32")  # noqa: E731
    side_by_side.compare(
        f"DLRM-DCNv2 {args.size} (cpu, fp32, batch {bs}, {args.steps} steps/trial, {args.trials} trials)",
        base, plain, recipe, batches, cfg, ctx, bs, args.steps, args.trials)


if __name__ == "__main__":
    main()
