"""A Llama of about 1B parameters (random weights, built from a config) trained on the GPU with mlbench's
llama31_8b workload: FSDP2 sharding (``--nproc`` > 1) or a single process, bf16 mixed precision, activation
checkpointing, optional ``--compile``; tokens/s and model FLOPs utilisation against the GPU's datasheet peak.

What is timed: ``--steps`` training steps (forward, next-token loss, backward, clipped AdamW step) on synthetic
token batches after ``--warmup`` steps, the workload's own loss, optimizer and placement (``place_model``), as
``mlbench train llama31_8b`` runs them. MFU = tokens/s x the model's training FLOPs per token (6N + attention,
the workload's ``flops_per_sample``) / (the datasheet's dense bf16 peak x GPUs).

    python benchmarks/gpu_llm.py [--nproc 1] [--seq-len 4096] [--batch-size 2] [--steps 20] [--compile]
    python benchmarks/gpu_llm.py --dry-run      # a tiny model on the CPU: checks the script in seconds
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import torch
import torch.multiprocessing as mp

# About 1.2B parameters: Llama 3.2 1B's shape (16 layers, hidden 2,048, 8 KV heads) with Llama 3.1's vocabulary.
LLAMA_1B = {"vocab_size": 128_256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131_072,
            "rope_theta": 500_000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
TINY = {**LLAMA_1B, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}


def _peak(name: str, given: float | None) -> float | None:
    """The dense bf16 datasheet peak (TFLOP/s) of the GPU torch names (``mlbench.efficiency.datasheet``), or the
    one given."""
    from mlbench.efficiency import datasheet

    if given:
        return given
    acc = datasheet.identify(name)
    return acc.tflops("bf16") if acc else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, queue) -> None:
    import torch.distributed as dist

    from mlbench import registry
    from mlbench.training.recipe import OptimArgs, StepContext

    device = torch.device("cpu") if args.dry_run else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("gloo" if args.dry_run else "nccl", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world)
    spec = TINY if args.dry_run else LLAMA_1B
    seq = min(args.seq_len, spec["max_position_embeddings"])
    bench = registry.get("llama31_8b", "reference").definition.derive(
        hparams={"model": spec, "seq_len": seq, "activation_checkpointing": not args.no_checkpointing})
    wl = registry.get("llama31_8b", "reference").module("workload").WORKLOAD(bench)
    wl.precision = args.precision
    ctx = StepContext(device=device, autocast=lambda: torch.autocast(device.type, dtype=torch.bfloat16,
                                                                      enabled=args.precision == "bf16"))
    torch.manual_seed(0)
    model = wl.place_model(wl.build_model(), device, world > 1)
    if args.compile:
        model = wl.compile_model(model)
    opt, sched = wl.build_optimizer(model, OptimArgs(global_batch_size=args.batch_size * world, steps_per_epoch=100,
                                                     epochs=1))
    batch = wl.synthetic_batch(args.batch_size, ctx)

    def steps(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            loss, _ = wl.loss(model, batch, ctx)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    steps(args.warmup)
    wall = steps(args.steps)
    if rank == 0:
        tokens = args.steps * args.batch_size * world * seq
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        flops = wl.flops_per_sample() / seq
        tps = tokens / wall
        peak = _peak(name, args.peak_tflops)
        queue.put({"device": name, "gpus": world, "parameters": sum(p.numel() for p in model.parameters()) *
                   (world if world > 1 else 1), "seq_len": seq, "batch_per_gpu": args.batch_size,
                   "precision": args.precision, "compile": args.compile, "tokens_per_s": tps,
                   "model_tflops_per_token": flops / 1e12, "achieved_tflops": tps * flops / 1e12,
                   "peak_tflops_per_gpu": peak, "mfu": tps * flops / (peak * 1e12 * world) if peak else None,
                   "max_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None})
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=1, help="GPUs (processes); > 1 shards the model with FSDP2")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=2, help="sequences per GPU per step")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-checkpointing", action="store_true", help="keep every activation (more memory, faster)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense peak, when not in the table")
    ap.add_argument("--dry-run", action="store_true", help="a tiny model on the CPU (checks the script)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.dry_run:
        args.steps, args.warmup, args.seq_len, args.batch_size = min(args.steps, 2), 1, 64, 2
    elif not torch.cuda.is_available():
        raise SystemExit("no GPU here: run with --dry-run to check the script on a CPU")
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, args.nproc, port, args, queue)) for r in range(args.nproc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit("a process failed")
    r = queue.get()
    mfu = "n/a (no datasheet peak known: give --peak-tflops)" if r["mfu"] is None else f"{r['mfu']:.3f}"
    print(f"{r['device']} x{r['gpus']}: {r['parameters'] / 1e9:.2f}B-parameter Llama, seq {r['seq_len']}, batch "
          f"{r['batch_per_gpu']}/GPU, {r['precision']}{', compiled' if r['compile'] else ''}: "
          f"{r['tokens_per_s']:.0f} tokens/s, {r['achieved_tflops']:.1f} TFLOP/s, MFU {mfu}"
          + (f", max memory {r['max_memory_gb']:.1f} GiB" if r["max_memory_gb"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
