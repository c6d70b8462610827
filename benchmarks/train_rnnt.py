"""RNN-T training harness overhead: mlbench's training epoch against a plain PyTorch loop, side by side; the
phases of a plain step (the loss's share); the data share of a harness step with and without worker processes.

1. Side by side: both loops train fresh copies of one RNN-T with the same LAMB (+ EMA), schedule and batches
   (read once from the size's manifests, then held in memory so that both get identical input), alternating
   A/B in one process; per trial the throughput ratio harness/plain by wall clock and by process CPU time
   (steadier on a shared machine), then the medians and ranges.
2. Phases: the plain loop again with a clock between forward (encoder + prediction network), joint, RNN-T
   loss, the loss's backward (to the logits), the network's backward and the optimizer step; the median share
   of each over the steps.
3. Data: harness epochs on the live batches (WAVs read and featurised on first use, then cached, as in a run),
   with ``--workers 0`` (in this process, the old path) and with worker processes; the share of the epoch's
   step time spent waiting for data, on the first epoch (cold: reads the WAVs) and on a later one (every
   feature cached beforehand, untimed, as after a whole epoch).

    OMP_NUM_THREADS=1 python benchmarks/train_rnnt.py --size mini --steps 20 --trials 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import side_by_side
import torch

from mlbench import registry
from mlbench.benchmarks.rnnt.loss import rnnt_loss
from mlbench.config import TrainConfig
from mlbench.training import distributed
from mlbench.training.batches import DataSpec, default_workers
from mlbench.training.harness import RunOutcome, train_epoch
from mlbench.training.recipe import StepContext

PHASES = ("forward", "joint", "loss", "loss_bwd", "backward", "optimizer")


def plain_loop(model, opt, sched, batches, phases: dict[str, list[float]] | None = None) -> int:
    """The loop a user writes by hand: encoder + prediction network, joint, RNN-T loss (plus the auxiliary CTC
    loss where the model has a CTC head, as mini does), backward, LAMB step, schedule. With ``phases``, each
    phase's seconds are appended there (one entry per step), and the backward pass is split in two: the loss's
    (to the joint's and CTC head's logits, ``loss_bwd``) and the network's (``backward``)."""
    model.train()
    n = 0
    clock = time.perf_counter
    for b in batches:
        t0 = clock()
        f, f_lens = model.encode(b["feats"], b["feat_lens"])
        g, _ = model.predict(b["tokens"])
        t1 = clock()
        logits = model.joint(f, g)
        t2 = clock()
        heads = [logits]
        loss = rnnt_loss(logits, b["tokens"], f_lens, b["token_lens"], blank=model.blank)
        if model.ctc_head is not None:
            heads.append(model.ctc_head(f))
            ctc = torch.nn.functional.ctc_loss(heads[1].log_softmax(-1).transpose(0, 1), b["tokens"], f_lens,
                                               b["token_lens"], blank=model.blank, reduction="none",
                                               zero_infinity=True).mean()
            loss = loss + model.ctc_weight * ctc
        t3 = clock()
        if phases is None:
            loss.backward()
            t3b = t3
        else:
            grads = torch.autograd.grad(loss, heads)
            t3b = clock()
            torch.autograd.backward(heads, grads)
        t4 = clock()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        t5 = clock()
        if phases is not None:
            for name, a, z in zip(PHASES, (t0, t1, t2, t3, t3b, t4), (t1, t2, t3, t3b, t4, t5), strict=True):
                phases[name].append(z - a)
        n += len(b["token_lens"])
    return n


def side_by_side_trials(fresh, workload, batches, cfg, ctx, n: int) -> None:
    quiet = lambda msg: None  # noqa: E731
    dinfo = distributed.DistInfo()

    def harness(m, o, s, data) -> int:
        out = RunOutcome(seed=0)
        train_epoch(m, o, s, None, workload, data, 0, cfg, ctx, quiet, out, dinfo)
        return out.samples

    warm = side_by_side.Held(batches.batches[:2])
    plain_loop(*fresh(), warm)
    harness(*fresh(), warm)
    wall, cpu = [], []
    for _ in range(n):
        rates = {}
        for name, loop in (("plain", plain_loop), ("mlbench", harness)):
            m, o, s = fresh()
            t, c = time.perf_counter(), time.process_time()
            samples = loop(m, o, s, batches)
            rates[name] = (samples / (time.perf_counter() - t), samples / (time.process_time() - c))
        wall.append(rates["mlbench"][0] / rates["plain"][0])
        cpu.append(rates["mlbench"][1] / rates["plain"][1])
        print(f"trial: plain {rates['plain'][0]:7.1f} samples/s  mlbench {rates['mlbench'][0]:7.1f} samples/s  "
              f"ratio {wall[-1]:.3f} (wall)  {cpu[-1]:.3f} (cpu time)", flush=True)
    print(f"median ratio mlbench/plain: {statistics.median(wall):.3f} wall (range {min(wall):.3f}-{max(wall):.3f}), "
          f"{statistics.median(cpu):.3f} cpu time (range {min(cpu):.3f}-{max(cpu):.3f})   (goal >= 0.95)")


def phase_shares(fresh, batches, repeats: int) -> None:
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    for _ in range(repeats):
        plain_loop(*fresh(), batches, phases)
    steps = [sum(v) for v in zip(*phases.values(), strict=True)]
    print(f"\nplain step phases (median over {len(steps)} steps; step median {1000 * statistics.median(steps):.1f} ms):")
    for p in PHASES:
        shares = [x / s for x, s in zip(phases[p], steps, strict=True)]
        print(f"  {p:9s} {1000 * statistics.median(phases[p]):7.1f} ms  share {statistics.median(shares):.3f} "
              f"(range {min(shares):.3f}-{max(shares):.3f})")


def data_shares(handle, fresh, bs: int, steps: int, workers_list: list[int], cfg, ctx, data_dir: str | None
                ) -> None:
    quiet = lambda msg: None  # noqa: E731
    dinfo = distributed.DistInfo()
    print(f"\ndata wait share of the harness's step time ({steps} steps per epoch, live batches):")
    for workers in workers_list:
        wl = handle.workload()
        data = wl.build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=workers, seed=0, data_dir=data_dir))
        m, o, s = fresh()
        for epoch, label in ((0, "first epoch, reads the WAVs"), (1, "later epoch, cached features")):
            if epoch == 1 and data.train.cache:  # as after a whole first epoch (untimed)
                for i in range(len(data.train.utts)):
                    data.train.mel(i)
            out = RunOutcome(seed=0)
            train_epoch(m, o, s, None, wl, side_by_side.Streamed(data.train, steps), epoch, cfg, ctx, quiet, out, dinfo)
            print(f"  workers {workers}: {label:30s} data wait {out.data_wait_s:6.2f} s of {out.train_s:6.2f} s "
                  f"= {out.data_wait_s / out.train_s:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("mini", "tiny"), default="mini")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20, help="steps per trial")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None, help="worker processes of the data part; default: "
                    "mlbench's automatic count")
    ap.add_argument("--data-dir", default=None, help="the size's data (manifests + WAVs); default: generated in "
                    "the cache")
    ap.add_argument("--skip", choices=("side", "phases", "data"), nargs="*", default=[])
    args = ap.parse_args()

    handle = registry.get("rnnt", args.size)
    bench = handle.definition
    bs = args.batch_size or bench.batch_size
    workload = handle.workload()
    ctx = StepContext(device=torch.device("cpu"))
    torch.manual_seed(0)
    base = workload.build_model()
    fresh = side_by_side.fresh_copies(base, workload, bs, args.steps)
    cfg = TrainConfig(benchmark="rnnt", size=args.size, log_every=20)
    print(f"RNN-T {args.size} (cpu, fp32, batch {bs}, {args.steps} steps/trial, {args.trials} trials, "
          f"{torch.get_num_threads()} threads)")
    if "side" not in args.skip or "phases" not in args.skip:
        data = workload.build_data(DataSpec(batch_size=bs, eval_batch_size=bs, workers=0, data_dir=args.data_dir))
        batches = side_by_side.Held.first(data.train, args.steps)
        if "side" not in args.skip:
            side_by_side_trials(fresh, workload, batches, cfg, ctx, args.trials)
        if "phases" not in args.skip:
            phase_shares(fresh, batches, max(1, args.trials // 2))
    if "data" not in args.skip:
        workers = args.workers if args.workers is not None else default_workers()
        data_shares(handle, fresh, bs, args.steps, sorted({0, workers}), cfg, ctx, args.data_dir)


if __name__ == "__main__":
    main()
