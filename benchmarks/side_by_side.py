"""The A/B loop shared by the training-overhead scripts: mlbench's harness epoch against a plain loop.

Each trial trains fresh copies of one initial model (``fresh()``) first with the plain loop, then with the
real harness code (``mlbench.training.harness.train_epoch``) on the same batches, so that both see the same
machine; the caller prints the per-trial figures and the medians.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mlbench.training import distributed, precision
from mlbench.training.harness import RunOutcome, train_epoch
from mlbench.training.recipe import OptimArgs


@dataclass
class Trial:
    plain_per_s: float
    harness_per_s: float
    outcome: RunOutcome  # the harness side's counters (samples, data wait, train time)
    # samples per second of this process's CPU time (all its threads): on a shared machine the work each loop
    # costs, whatever share of the cores it was given (with one thread it is the time it ran)
    plain_per_cpu_s: float = 0.0
    harness_per_cpu_s: float = 0.0

    @property
    def ratio(self) -> float:
        return self.harness_per_s / self.plain_per_s

    @property
    def cpu_ratio(self) -> float:
        return self.harness_per_cpu_s / self.plain_per_cpu_s if self.plain_per_cpu_s else float("nan")


def trials(fresh: Callable, plain: Callable, recipe, batches, warm_batches, cfg, ctx, n: int) -> Iterator[Trial]:
    """Warm up both paths once on ``warm_batches``, then yield ``n`` side-by-side trials on ``batches``.

    ``plain(model, optimizer, scheduler, batches) -> samples`` is the hand-written baseline loop.
    """
    quiet = lambda msg: None  # noqa: E731 - the harness prints its progress line into the void here
    dinfo = distributed.DistInfo()

    def harness(m, o, s, data, out: RunOutcome) -> None:
        train_epoch(m, o, s, None, recipe, data, 0, cfg, ctx, quiet, out, dinfo)
        precision.synchronize(ctx.device)

    plain(*fresh(), warm_batches)
    harness(*fresh(), warm_batches, RunOutcome(seed=0))
    for k in range(n):
        rates: dict[str, tuple[float, float]] = {}
        out = RunOutcome(seed=0)
        for side in (("plain", "harness") if k % 2 == 0 else ("harness", "plain")):  # each goes first in turn
            m, o, s = fresh()
            t, c = time.perf_counter(), time.process_time()
            if side == "plain":
                samples = plain(m, o, s, batches)
            else:
                harness(m, o, s, batches, out)
                samples = out.samples
            rates[side] = (samples / (time.perf_counter() - t), samples / max(1e-9, time.process_time() - c))
        yield Trial(rates["plain"][0], rates["harness"][0], out, rates["plain"][1], rates["harness"][1])


def fresh_copies(base, workload, batch_size: int, steps: int) -> Callable:
    """``fresh()`` for :func:`trials`: a deep copy of ``base`` with the workload's optimizer and schedule for one
    epoch of ``steps`` steps at ``batch_size``."""
    def fresh():
        model = copy.deepcopy(base)
        opt, sched = workload.build_optimizer(model, OptimArgs(global_batch_size=batch_size, steps_per_epoch=steps,
                                                               epochs=1))
        return model, opt, sched

    return fresh


class Held:
    """Batches read once and replayed, so that both loops see the same tensors (Batches interface)."""

    def __init__(self, batches: list):
        self.batches = batches

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    @classmethod
    def first(cls, batches, n: int) -> Held:
        held = []
        for b in batches:
            if len(held) >= n:
                break
            held.append(b)
        return cls(held)


class Streamed:
    """The first ``n`` batches of live ``batches``, made as they are read (the rest of the epoch is not made)."""

    def __init__(self, batches, n: int):
        self.batches, self.n = batches, n

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return min(self.n, len(self.batches))

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.n)


def run_and_report(title: str, fresh: Callable, plain: Callable, workload, batches, warm, cfg, ctx, n: int) -> None:
    """Run ``n`` trials, print each and the medians (throughput of both loops and their ratio)."""
    import statistics

    ratios, harness_tp, plain_tp, cpu_ratios = [], [], [], []
    for trial in trials(fresh, plain, workload, batches, warm, cfg, ctx, n):
        ratios.append(trial.ratio)
        cpu_ratios.append(trial.cpu_ratio)
        harness_tp.append(trial.harness_per_s)
        plain_tp.append(trial.plain_per_s)
        print(f"trial: plain {trial.plain_per_s:8.1f} samples/s  mlbench {trial.harness_per_s:8.1f} samples/s  "
              f"ratio {trial.ratio:.3f}  (per CPU second: {trial.plain_per_cpu_s:.1f} / {trial.harness_per_cpu_s:.1f}, "
              f"ratio {trial.cpu_ratio:.3f})", flush=True)
    print(f"\n{title}")
    print(f"median throughput: plain {statistics.median(plain_tp):.1f}  mlbench {statistics.median(harness_tp):.1f} "
          f"samples/s")
    print(f"median ratio mlbench/plain: {statistics.median(ratios):.3f}   (goal >= 0.95)")
    print(f"median ratio per CPU second: {statistics.median(cpu_ratios):.3f}   (the work each loop cost; on a shared "
          "machine steadier than wall time when both run one thread)")


def compare(title: str, base, plain: Callable, workload, batches: Held, cfg, ctx, batch_size: int, steps: int,
            n: int) -> None:
    """The usual A/B: :func:`fresh_copies` of ``base``, both loops warmed up on the first two held batches, then
    :func:`run_and_report` of ``n`` trials."""
    run_and_report(title, fresh_copies(base, workload, batch_size, steps), plain, workload, batches,
                   Held(batches.batches[:2]), cfg, ctx, n)
