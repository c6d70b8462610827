"""DLRM-DCNv2 scaling on this machine's CPU (gloo): 2 processes with table-wise sharded embeddings against 1.

Strong scaling: the same global batch (the size's batch, 512 for mini) is one process's batch, or split in two
halves, one per process. The 2-process model is the one ``mlbench train dlrm --nproc 2`` trains
(``sharding.ShardedDLRM``: each table on one process, the ids all-gathered, the pooled rows exchanged by an
all-to-all, the dense part data-parallel under DDP); the 1-process model is the plain one. Both train with the
workload's optimizers (row-wise Adagrad on the tables, Adagrad on the dense part) on the same batches, read from
the size's day files before timing (data loading is excluded). Every process runs 1 intra-op thread.
``--engine torchrec`` measures the TorchRec engine instead (tables sharded by TorchRec, FBGEMM's fused
Adagrad; its collectives are not timed).

Each trial starts fresh processes for 1, then for 2 processes (interleaved, so that both see the same machine),
warms up, then times ``--steps`` steps. Reported per configuration: samples/s (median and range over trials),
the speed-up and scaling efficiency (2-process samples/s over twice the 1-process samples/s, per trial pair),
and, in the 2-process step, the share of wall time spent in each collective, measured by timers around the
collectives inside the step (``ShardedDLRM.timer``): the id all-gather (with the batch-size all-reduce before
it) and the all-to-all of pooled rows forward and backward. A collective's time includes waiting for the other
process to reach it. DDP's dense-gradient all-reduce overlaps the backward; its exposed part is the step time
with synchronisation minus the same steps under ``no_sync()``. "cores used" is CPU time over wall time.

What this measures on a small machine: 2 processes on 2 cores that other work may share; the all-to-all goes
through gloo over loopback TCP. It is the cost of the sharded path on one host, not a multi-node figure.

    OMP_NUM_THREADS=1 python benchmarks/scaling_dlrm.py --size mini --steps 40 --trials 5 [--engine torchrec]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.multiprocessing as mp

KINDS = ("ids_all_gather", "all_to_all_forward", "all_to_all_backward")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, size: str, batches: list[dict], warmup: int, engine: str,
            queue) -> None:
    import torch.distributed as dist
    import torch.nn.functional as F  # noqa: N812

    from mlbench import registry
    from mlbench.benchmarks.dlrm import model as M
    from mlbench.benchmarks.dlrm import sharding, torchrec_engine
    from mlbench.training.recipe import OptimArgs

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    handle = registry.get("dlrm", size)
    hp = handle.definition.hparams
    wl = handle.workload()
    torch.manual_seed(0)  # the dense part (DDP broadcasts rank 0's); tables from their own seed
    owned = sharding.owned_tables(hp["table_rows"], rank, world) if world > 1 else None
    net = M.DLRMTrain(hp, owned=owned, seed=1, engine=engine)
    if engine == "torchrec" and world > 1:
        torchrec_engine.shard_tables(net.model.sparse_arch, hp["lr"], 1e-8, torch.device("cpu"))
        model = torchrec_engine.TorchRecDLRM(net, torch.device("cpu"))
    else:
        model = sharding.ShardedDLRM(net, torch.device("cpu")) if world > 1 else net
    global_bs = len(batches[0]["labels"])
    opt, _ = wl.build_optimizer(net, OptimArgs(global_batch_size=global_bs, steps_per_epoch=len(batches), epochs=1))
    local = global_bs // world
    mine = [{"dense": b["dense"][rank * local:(rank + 1) * local],
             "sparse": [s[rank * local:(rank + 1) * local].contiguous() for s in b["sparse"]],
             "labels": b["labels"][rank * local:(rank + 1) * local]} for b in batches]

    def run(part: list[dict], sync: bool = True) -> tuple[float, float]:
        if world > 1:
            dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in part:
            with contextlib.nullcontext() if sync or world == 1 else model.no_sync():
                logits = model(b["dense"], b["sparse"])
                F.binary_cross_entropy_with_logits(logits, b["labels"]).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, time.process_time() - c0

    run(mine[:warmup])
    timed = mine[warmup:]
    timer = sharding.CollectiveTimer()
    if world > 1 and engine == "plain":
        model.timer = timer  # TorchRec's collectives are not timed (their shares read 0)
    wall, cpu = run(timed)
    out = {"step_s": wall / len(timed), "cores_used": cpu / wall}
    if world > 1:
        model.timer = None
        wall_ns, _ = run(timed, sync=False)
        shares = [timer.seconds[k] / wall for k in KINDS]
        t = torch.tensor([out["step_s"], wall_ns / len(timed)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the slowest process sets the pace
        out["step_s"], out["step_no_sync_s"] = t.tolist()
        s = torch.tensor([*shares, out["cores_used"]], dtype=torch.float64)
        dist.all_reduce(s)  # shares: the mean over the processes; cores: their sum
        out.update({f"share/{k}": v / world for k, v in zip(KINDS, s.tolist())})
        out["cores_used"] = s[-1].item()
        out["calls_per_step"] = {k: timer.calls[k] / len(timed) for k in KINDS}
    out["samples_per_s"] = global_bs / out["step_s"]
    if rank == 0:
        queue.put(out)
    if world > 1:
        dist.barrier()  # both done before either tears gloo down
        dist.destroy_process_group()


def measure(world: int, size: str, batches: list[dict], warmup: int, engine: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, size, batches, warmup, engine, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    out = queue.get(timeout=900)  # the figures, reduced over the processes before rank 0 sent them
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:  # after the figures: a crash in teardown, said but not fatal
            print(f"  (worker {p.pid} exited with {p.exitcode} after the measurement)", flush=True)
    return out


def held_batches(size: str, batch: int, n: int) -> list[dict]:
    """The first ``n`` global batches of the size's training days (generated into the cache when missing)."""
    from mlbench import registry
    from mlbench.training.batches import DataSpec

    wl = registry.get("dlrm", size).workload()
    data = wl.build_data(DataSpec(batch_size=batch, eval_batch_size=batch))
    held = []
    for b in data.train:
        if len(held) == n:
            break
        held.append({"dense": b["dense"].clone(), "sparse": [s.clone() for s in b["sparse"]],
                     "labels": b["labels"].clone()})
    if len(held) < n:
        raise SystemExit(f"the {size} training days hold only {len(held)} batches of {batch}; ask fewer --steps")
    return held


def _median_range(xs: list[float], fmt: str) -> str:
    return f"{format(statistics.median(xs), fmt)} (range {format(min(xs), fmt)}-{format(max(xs), fmt)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="mini", choices=("mini", "tiny"))
    ap.add_argument("--batch-size", type=int, default=None, help="global batch (default: the size's, even)")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per trial")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--engine", choices=("plain", "torchrec"), default="plain",
                    help="the tables' engine (torchrec: no collective timers; needs torchrec installed)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    from mlbench import registry
    from mlbench.benchmarks.dlrm import torchrec_engine

    if args.engine == "torchrec" and not torchrec_engine.available():
        raise SystemExit(f"--engine torchrec: torchrec does not import ({torchrec_engine.INSTALL_HINT})")

    bench = registry.get("dlrm", args.size).definition
    batch = args.batch_size or bench.batch_size
    if batch % 2:
        raise SystemExit("--batch-size must be even (split between 2 processes)")
    batches = held_batches(args.size, batch, args.warmup + args.steps)
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    ones, twos = [], []
    for trial in range(args.trials):
        one = measure(1, args.size, batches, args.warmup, args.engine)
        two = measure(2, args.size, batches, args.warmup, args.engine)
        ones.append(one)
        twos.append(two)
        comm = sum(two[f"share/{k}"] for k in KINDS)
        print(f"trial {trial + 1}: 1 process {one['samples_per_s']:8.0f} samples/s ({one['cores_used']:.2f} cores)  "
              f"2 processes {two['samples_per_s']:8.0f} samples/s ({two['cores_used']:.2f} cores)  "
              f"efficiency {two['samples_per_s'] / (2 * one['samples_per_s']):.2f}  collectives {comm:.0%} of the "
              "step", flush=True)
    eff = [t["samples_per_s"] / (2 * o["samples_per_s"]) for o, t in zip(ones, twos)]
    speed = [t["samples_per_s"] / o["samples_per_s"] for o, t in zip(ones, twos)]
    # per CPU-second received: what dedicated cores would give when other work shares them
    eff_cpu = [(t["samples_per_s"] / t["cores_used"]) / (o["samples_per_s"] / o["cores_used"])
               for o, t in zip(ones, twos)]
    shares = {k: [t[f"share/{k}"] for t in twos] for k in KINDS}
    total = [sum(t[f"share/{k}"] for k in KINDS) for t in twos]
    exposed = [max(0.0, t["step_s"] - t["step_no_sync_s"]) / t["step_s"] for t in twos]
    print(f"\nDLRM-DCNv2 {args.size}, {args.engine} engine, CPU, gloo, 1 thread per process; global batch {batch} ({batch // 2} per "
          f"process on 2); {args.steps} steps after {args.warmup} warm-up, {args.trials} trials; {cores} cores, load "
          f"average {load:.1f} at start")
    print(f"  1 process       : {_median_range([o['samples_per_s'] for o in ones], '.0f')} samples/s")
    print(f"  2 processes     : {_median_range([t['samples_per_s'] for t in twos], '.0f')} samples/s")
    print(f"  speed-up        : {_median_range(speed, '.2f')}x; scaling efficiency {_median_range(eff, '.2f')}")
    print(f"  per CPU-second  : efficiency {_median_range(eff_cpu, '.2f')} (2 processes' work per CPU-second they "
          "received against 1 process's)")
    if args.engine == "plain":
        print("  2-process step  : " + "; ".join(f"{k.replace('_', ' ')} {_median_range(v, '.1%')}"
                                                 for k, v in shares.items()))
        print(f"                    collectives in the step {_median_range(total, '.1%')}; DDP dense all-reduce "
              f"exposed {_median_range(exposed, '.1%')}")
    else:
        print(f"  2-process step  : TorchRec's collectives not timed; DDP dense all-reduce exposed "
              f"{_median_range(exposed, '.1%')}")
    print(f"  (2 processes on {cores} cores shared with other work: waits for the other process count in a "
          "collective's time)")
    if args.json:
        figures = {"benchmark": f"dlrm {args.size}", "engine": args.engine, "cores": cores, "load_average_1m_at_start": load,
                   "global_batch": batch, "steps": args.steps, "warmup": args.warmup, "trials": args.trials,
                   "one_process": ones, "two_processes": twos, "scaling_efficiency": eff, "speedup": speed,
                   "scaling_efficiency_cpu_normalized": eff_cpu, "collectives_share": total,
                   "ddp_allreduce_exposed_share": exposed}
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
