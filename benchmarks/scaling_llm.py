"""Sharded data parallelism (FSDP2) of the llama31_8b model on this machine's CPU (gloo): 2 processes against 1,
and the memory a process holds against unsharded DDP.

What is timed: a fixed number of training steps (forward, next-token loss, backward, clipped AdamW step) of the
mini (or tiny) model on synthetic batches of the same global batch, after warm-up steps, each configuration in
fresh processes, configurations alternated over the trials:

- ``1p x 1t``: one process, one intra-op thread (the per-core baseline);
- ``1p x 2t``: one process using both cores through intra-op threads (the same hardware as 2 processes);
- ``2p fsdp2``: two processes, one thread each, the model sharded block by block (``Workload.place_model``,
  the harness's own path);
- ``2p ddp``: two processes, one thread each, the model replicated (DistributedDataParallel).

Efficiency is tokens/s of a 2-process run over twice the ``1p x 1t`` tokens/s. Memory per process: the bytes of
parameters, gradients and optimizer state a rank holds after a step (exact: what sharding saves), and the growth
of its resident set during the steps (noisy: allocator caches, libraries).

    python benchmarks/scaling_llm.py [--size mini] [--steps 6] [--warmup 2] [--trials 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import time

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _held_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Bytes of this rank's parameters, gradients and optimizer state (local shards when sharded)."""
    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if hasattr(t, "to_local") else t

    total = 0
    for p in model.parameters():
        total += local(p).numel() * local(p).element_size()
        if p.grad is not None:
            total += local(p.grad).numel() * local(p.grad).element_size()
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                total += local(v).numel() * local(v).element_size()
    return total


def _worker(rank: int, world: int, port: int, threads: int, mode: str, args: argparse.Namespace, queue) -> None:
    import torch.distributed as dist

    from mlbench import registry
    from mlbench.training.recipe import OptimArgs, StepContext

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    handle = registry.get("llama31_8b", args.size)
    bench = handle.definition
    wl = handle.workload()
    ctx = StepContext(device=torch.device("cpu"))
    model = wl.place_model(wl.build_model(), ctx.device, mode == "fsdp2")
    net = torch.nn.parallel.DistributedDataParallel(model) if mode == "ddp" else model
    global_bs = args.batch_size or bench.batch_size
    local_bs = global_bs // world
    opt, sched = wl.build_optimizer(model, OptimArgs(global_batch_size=global_bs, steps_per_epoch=100, epochs=1))
    batch = wl.synthetic_batch(local_bs, ctx)

    def steps(n: int) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            loss, _ = wl.loss(net, batch, ctx)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)  # the gradients stay allocated: counted in the held bytes
            sched.step()
        if world > 1:
            dist.barrier()
        return time.perf_counter() - t0, time.process_time() - c0

    steps(args.warmup)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = steps(args.steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    held = _held_bytes(model, opt)
    if rank == 0:
        tokens = args.steps * global_bs * bench.hparams["seq_len"]
        queue.put({"tokens_per_s": tokens / wall, "cores_used": cpu / wall * world, "held_mb": held / 2**20,
                   "peak_rss_mb": rss / 1024, "rss_growth_mb": (rss - rss0) / 1024})
    if world > 1:
        dist.destroy_process_group()


CONFIGS = {"1p x 1t": (1, 1, "none"), "1p x 2t": (1, 2, "none"), "2p fsdp2": (2, 1, "fsdp2"), "2p ddp": (2, 1, "ddp")}


def run(name: str, args: argparse.Namespace) -> dict:
    world, threads, mode = CONFIGS[name]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, threads, mode, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"{name}: a process failed")
    return queue.get()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("mini", "tiny"), default="mini")
    ap.add_argument("--batch-size", type=int, default=None, help="global batch (default: the size's)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results: dict[str, list[dict]] = {k: [] for k in CONFIGS}
    for t in range(args.trials):
        for name in CONFIGS:
            r = run(name, args)
            results[name].append(r)
            print(f"trial {t + 1} {name:9s} {r['tokens_per_s']:9.0f} tokens/s  cores used {r['cores_used']:.2f}  "
                  f"held {r['held_mb']:7.2f} MB/process  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in results.items()}
    base = med["1p x 1t"]
    print(f"\nllama31_8b {args.size}, CPU (gloo), global batch {args.batch_size or 'default'}, medians of "
          f"{args.trials} trials")
    for k in CONFIGS:
        held = statistics.median(x["held_mb"] for x in results[k])
        eff = f"  efficiency {med[k] / (2 * base):.2f}" if CONFIGS[k][0] == 2 else ""
        print(f"  {k:9s} {med[k]:9.0f} tokens/s ({med[k] / base:.2f}x of 1p x 1t){eff}  held {held:.2f} MB/process")
    fsdp = statistics.median(x["held_mb"] for x in results["2p fsdp2"])
    ddp = statistics.median(x["held_mb"] for x in results["2p ddp"])
    print(f"  parameters + gradients + optimizer state per process: FSDP2 {fsdp:.2f} MB vs DDP {ddp:.2f} MB "
          f"({fsdp / ddp:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"medians_tokens_per_s": med, "trials": results}, f, indent=1)


if __name__ == "__main__":
    main()
