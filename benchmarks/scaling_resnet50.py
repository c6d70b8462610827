"""Data-parallel scaling of ResNet-50 mini on this machine's CPU (gloo): 2 processes against 1.

What is timed: a fixed number of training steps (forward, backward, SGD step) on one synthetic batch per
process (so data loading is excluded), after warm-up steps, each size in fresh processes started side by side
in the same invocation:

- ``1p x 1t``: one process, one intra-op thread (the per-core baseline);
- ``1p x Nt``: one process using all N cores through intra-op threads (the same hardware as 2 processes);
- ``2p x 1t``: two processes with DistributedDataParallel over gloo, one thread each (weak scaling: the
  per-process batch stays the same, so the global batch doubles).

In the 2-process run the same steps are also timed under ``no_sync()`` (no gradient all-reduce): the
difference is the communication time left exposed after DDP's overlap with backward. A bare all-reduce of a
gradient-sized buffer gives the communication volume's own cost. "cores used" is CPU time over wall time
during the timed steps: below the cores asked for, the processes were starved (other load on the machine).

    python benchmarks/scaling_resnet50.py [--steps 30] [--warmup 5] [--batch-size 128] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, threads: int, args: argparse.Namespace, queue) -> None:
    import torch.distributed as dist

    from mlbench import registry

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    handle = registry.get("resnet50", args.size)
    bench = handle.definition
    model = handle.workload().build_model()
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, *bench.input_shape)
    y = torch.randint(0, bench.num_classes, (args.batch_size,))

    cpu = {}

    def steps(n: int, sync: bool = True) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            with contextlib.nullcontext() if sync or world == 1 else net.no_sync():
                loss = torch.nn.functional.cross_entropy(net(x), y)
                loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        wall = time.perf_counter() - t0
        cpu["share"] = (time.process_time() - c0) / wall  # cores this process really had (contention shows)
        return wall / n

    steps(args.warmup)
    if world > 1:
        dist.barrier()
    out = {"step_s": steps(args.steps)}
    out["cpu_cores_used"] = cpu["share"]
    if world > 1:
        steps(2, sync=False)
        dist.barrier()
        out["step_no_sync_s"] = steps(args.steps, sync=False)
        flat = torch.zeros(sum(p.numel() for p in model.parameters()))
        for _ in range(2):
            dist.all_reduce(flat)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(10):
            dist.all_reduce(flat)
        out["allreduce_s"] = (time.perf_counter() - t0) / 10
        out["grad_mb"] = flat.numel() * 4 / 1e6
        # The slowest rank sets the pace.
        t = torch.tensor([out["step_s"], out["step_no_sync_s"], out["allreduce_s"]], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        out["step_s"], out["step_no_sync_s"], out["allreduce_s"] = t.tolist()
        used = torch.tensor([out["cpu_cores_used"]], dtype=torch.float64)
        dist.all_reduce(used)  # cores used by both processes together
        out["cpu_cores_used"] = used.item()
        dist.destroy_process_group()
    if rank == 0:
        queue.put(out)


def measure(world: int, threads: int, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, threads, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    out = queue.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"worker {p.pid} exited with {p.exitcode}")
    out["samples_per_s"] = world * args.batch_size / out["step_s"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="mini", choices=("mini", "tiny"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128, help="per process (default: 128, mini's batch)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    one = measure(1, 1, args)
    one_all = measure(1, cores, args)
    two = measure(2, 1, args)
    eff_core = two["samples_per_s"] / (2 * one["samples_per_s"])
    eff_same_hw = two["samples_per_s"] / one_all["samples_per_s"]
    exposed = max(0.0, two["step_s"] - two["step_no_sync_s"])
    # Throughput per CPU-second actually received: what dedicated cores would give, when others share them.
    # (Time a rank spends blocked waiting for the all-reduce uses no CPU, so this flatters slow communication.)
    eff_cpu = (two["samples_per_s"] / two["cpu_cores_used"]) / (one["samples_per_s"] / one["cpu_cores_used"])
    figures = {
        "benchmark": f"resnet50 {args.size}", "cores": cores, "load_average_1m_at_start": load,
        "batch_per_process": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "1p_1t/samples_per_s": one["samples_per_s"], "1p_1t/step_s": one["step_s"],
        f"1p_{cores}t/samples_per_s": one_all["samples_per_s"],
        "2p_1t/samples_per_s": two["samples_per_s"], "2p_1t/step_s": two["step_s"],
        "2p_1t/step_no_sync_s": two["step_no_sync_s"], "2p/allreduce_s": two["allreduce_s"],
        "2p/gradient_mb": two["grad_mb"],
        "1p_1t/cpu_cores_used": one["cpu_cores_used"], f"1p_{cores}t/cpu_cores_used": one_all["cpu_cores_used"],
        "2p_1t/cpu_cores_used": two["cpu_cores_used"],
        "scaling_efficiency/vs_1p_1t": eff_core, f"scaling_efficiency/vs_1p_{cores}t": eff_same_hw,
        "scaling_efficiency/cpu_normalized": eff_cpu,
        "comm/exposed_share_of_step": exposed / two["step_s"],
        "comm/allreduce_share_of_step": two["allreduce_s"] / two["step_s"],
    }
    print(f"ResNet-50 {args.size}, CPU, gloo; {args.steps} steps after {args.warmup} warm-up, batch "
          f"{args.batch_size} per process, synthetic data; {cores} cores, load average {load:.1f} at start")
    print(f"  1 process x 1 thread     : {one['samples_per_s']:8.1f} samples/s ({one['step_s'] * 1e3:.0f} ms/step; "
          f"{one['cpu_cores_used']:.2f} cores used)")
    print(f"  1 process x {cores} threads    : {one_all['samples_per_s']:8.1f} samples/s "
          f"({one_all['cpu_cores_used']:.2f} cores used)")
    print(f"  2 processes x 1 thread   : {two['samples_per_s']:8.1f} samples/s ({two['step_s'] * 1e3:.0f} ms/step, "
          f"{two['step_no_sync_s'] * 1e3:.0f} ms without gradient all-reduce; {two['cpu_cores_used']:.2f} cores used)")
    print(f"  scaling efficiency       : {eff_core:.0%} vs 1 process x 1 thread; {eff_same_hw:.2f}x the "
          f"throughput of 1 process x {cores} threads")
    print(f"  per CPU-second received  : 2 processes do {eff_cpu:.0%} of the work of 1 process per CPU-second "
          "(the efficiency dedicated cores would give)")
    print(f"  communication            : {exposed / two['step_s']:.0%} of the step exposed; a bare all-reduce of "
          f"the {two['grad_mb']:.1f} MB of gradients takes {two['allreduce_s'] * 1e3:.1f} ms "
          f"({two['allreduce_s'] / two['step_s']:.0%} of a step)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
