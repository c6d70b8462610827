"""The A/B loop shared by the training-overhead scripts: mlbench's harness epoch against a plain loop.

Each trial trains fresh copies of one initial model (``fresh()``) first with the plain loop, then with the
real harness code (``mlbench.training.harness.train_epoch``) on the same batches, so that both see the same
machine; the caller prints the per-trial figures and the medians.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mlbench.training import distributed, precision
from mlbench.training.harness import RunOutcome, train_epoch


@dataclass
class Trial:
    plain_per_s: float
    harness_per_s: float
    outcome: RunOutcome  # the harness side's counters (samples, data wait, train time)

    @property
    def ratio(self) -> float:
        return self.harness_per_s / self.plain_per_s


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
    for _ in range(n):
        m, o, s = fresh()
        t = time.perf_counter()
        samples = plain(m, o, s, batches)
        plain_rate = samples / (time.perf_counter() - t)
        m, o, s = fresh()
        out = RunOutcome(seed=0)
        t = time.perf_counter()
        harness(m, o, s, batches, out)
        yield Trial(plain_rate, out.samples / (time.perf_counter() - t), out)
