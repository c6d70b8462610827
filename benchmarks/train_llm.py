"""Language-model training harness overhead: mlbench's training epoch against a plain PyTorch loop, side by side.

Both loops train the same model (fresh copies of one initial state: the llama31_8b pre-training model, or the
llama2_70b_lora base with its adapters) with the workload's optimizer and schedule (AdamW, clipping, cosine) on
the same batches (read once from the size's token files, then held in memory), alternating A/B in one process;
the ratio harness/plain of tokens/s is reported per trial and as the median. The plain loop is what a user writes
by hand: forward, next-token cross-entropy, backward, step.

    OMP_NUM_THREADS=2 python benchmarks/train_llm.py --benchmark llama31_8b --size mini --steps 8 --trials 5
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


def plain_loop(model, opt, sched, batches) -> int:
    model.train()
    n = 0
    for b in batches:
        logits = model(input_ids=b["input_ids"]).logits
        if "weight" in b:  # LoRA rows: the next token of each position, -100 not scored
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), b["labels"][:, 1:].flatten(), ignore_index=-100)
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), b["labels"].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        n += len(b["input_ids"])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", choices=("llama31_8b", "llama2_70b_lora"), default="llama31_8b")
    ap.add_argument("--size", choices=("mini", "tiny"), default="mini")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=8, help="steps per trial")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()

    handle = registry.get(args.benchmark, args.size)
    bench = handle.definition
    bs = args.batch_size or bench.batch_size
    workload = handle.workload()
    ctx = StepContext(device=torch.device("cpu"))
    data = workload.build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=0))
    batches = side_by_side.Held.first(data.train, args.steps)
    if args.benchmark == "llama2_70b_lora":  # the rows carry no weight key in training: mark them for plain_loop
        for b in batches.batches:
            b["weight"] = torch.ones(len(b["input_ids"]))
    torch.manual_seed(0)
    base = workload.place_model(workload.build_model(), ctx.device, False)
    cfg = TrainConfig(benchmark=args.benchmark, size=args.size, log_every=20)
    tokens = bench.hparams["seq_len"]
    side_by_side.compare(f"{args.benchmark} {args.size} (cpu, fp32, batch {bs} x {tokens} tokens, {args.steps} "
                         f"steps/trial, {args.trials} trials; samples/s x {tokens} = tokens/s)",
                         base, plain_loop, workload, batches, cfg, ctx, bs, args.steps, args.trials)


if __name__ == "__main__":
    main()
