"""BERT training harness overhead: mlbench's training epoch against a plain PyTorch masked-LM loop, side by side.

Both loops train the same BERT (fresh copies of one initial state) with the same LAMB optimizer, schedule and
batches (read from the size's HDF5 shards, then held in memory so that both sides get identical input),
alternating A/B in one process; the ratio harness/plain of throughputs is reported per trial and as the median.
The plain loop is what a user writes by hand: forward, masked-LM + next-sentence cross-entropy, backward, step.

    OMP_NUM_THREADS=2 python benchmarks/train_bert.py --size mini --steps 20 --trials 5
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


def plain_loop(model, opt, sched, batches, ctx: StepContext) -> int:
    model.train()
    n = 0
    for b in batches:
        mlm_logits, nsp_logits = model(b)
        mlm = F.cross_entropy(mlm_logits.flatten(0, 1), b["masked_lm_ids"].flatten(), ignore_index=0)
        loss = mlm + F.cross_entropy(nsp_logits, b["next_sentence_labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        n += len(b["input_ids"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("mini", "tiny"), default="mini")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20, help="steps per trial")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()

    handle = registry.get("bert", args.size)
    bench = handle.definition
    bs = args.batch_size or bench.batch_size
    workload = handle.workload()
    ctx = StepContext(device=torch.device("cpu"))
    data = workload.build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=0))
    batches = side_by_side.Held.first(data.train, args.steps)
    torch.manual_seed(0)
    base = workload.build_model()
    cfg = TrainConfig(benchmark="bert", size=args.size, log_every=20)
    plain = lambda m, o, s, d: plain_loop(m, o, s, d, ctx)  # noqa: E731
    side_by_side.compare(f"BERT {args.size} (cpu, fp32, batch {bs}, {args.steps} steps/trial, {args.trials} trials)",
                         base, plain, workload, batches, cfg, ctx, bs, args.steps, args.trials)


if __name__ == "__main__":
    main()
