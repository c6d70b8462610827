"""The dummy workload: dict batches ``{"x", "y"}``, a stream sharded by rank, MSE (lower is better), two
optimizers (the bias has its own), cadence in samples. See ``definition.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from mlbench.training import distributed
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import ConstantSchedule, OptimArgs, StepContext
from mlbench.training.workload import Optimizers, Workload


class Stream:
    """Generated samples read in order of shard, as a streaming loader would: rank r takes every
    world-th batch-sized chunk; every rank yields the same number of batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, rank: int, world: int,
                 shuffle: bool, seed: int):
        self.x, self.y, self.bs = x, y, batch_size
        self.rank, self.world, self.shuffle, self.seed = rank, world, shuffle, seed
        self.epoch = 0
        chunks = len(x) // batch_size
        self.per_rank = chunks // world if shuffle else -(-chunks // world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
            starts = range(self.rank * self.bs, self.per_rank * self.world * self.bs, self.world * self.bs)
        else:  # evaluation: disjoint chunks covering the set once (the last one may be short)
            order = torch.arange(n)
            starts = range(self.rank * self.bs, n, self.world * self.bs)
        for s in starts:
            idx = order[s:s + self.bs]
            yield {"x": self.x[idx], "y": self.y[idx]}


class Regression(torch.nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(features))
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class DummyWorkload(Workload):
    def _data(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.bench.hparams
        g = torch.Generator().manual_seed(seed)
        w = torch.linspace(-1.0, 1.0, hp["features"])
        x = torch.randn(n, hp["features"], generator=g)
        return x, x @ w + 0.5 + hp["noise"] * torch.randn(n, generator=g)

    def build_model(self) -> torch.nn.Module:
        return Regression(self.bench.hparams["features"])

    def build_data(self, spec: DataSpec) -> DataBundle:
        hp = self.bench.hparams
        tx, ty = self._data(hp["train_samples"], 1)
        ex, ey = self._data(hp["eval_samples"], 2)
        train = Stream(tx, ty, spec.batch_size, spec.rank, spec.world_size, True, spec.seed)
        ev = Stream(ex, ey, spec.eval_batch_size, spec.rank, spec.world_size, False, 0)
        return DataBundle(train=train, eval=ev, train_samples=len(tx), eval_samples=len(ex))

    def to_device(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        return {k: v.to(ctx.device) for k, v in batch.items()}

    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        x, y = self._data(batch_size, 3)
        return self.to_device({"x": x, "y": y}, ctx)

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        lr = args.base_lr if args.base_lr is not None else self.bench.hparams["lr"]
        net = model.module if hasattr(model, "module") else model
        opt = Optimizers(torch.optim.SGD([net.weight], lr=lr), torch.optim.SGD([net.bias], lr=lr))
        args.extra.update(base_lr=lr)
        return opt, ConstantSchedule(opt, lr)

    def loss(self, model, batch, ctx: StepContext):
        err = model(batch["x"]) - batch["y"]
        mse = (err * err).mean()
        return mse, {"mse": mse}

    @torch.no_grad()
    def evaluate(self, model, batches, ctx: StepContext) -> tuple[dict[str, float], int]:
        model.eval()
        sq, count = 0.0, 0
        for batch in batches:
            batch = self.to_device(batch, ctx)
            err = model(batch["x"]) - batch["y"]
            sq += float((err * err).sum())
            count += len(err)
        sq, count = distributed.all_reduce_sum([sq, float(count)], ctx.device)
        return {"mse": sq / count if count else float("inf"), "rmse": (sq / count) ** 0.5 if count else 0.0}, int(count)

    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        return {"opt_base_learning_rate": args.extra["base_lr"]}


WORKLOAD = DummyWorkload
