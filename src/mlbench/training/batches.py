"""Batches for training and evaluation, sharded across data-parallel ranks.

Training shards have equal length on every rank (the tail that does not divide is dropped each epoch,
reshuffled every epoch), so that every rank takes the same number of steps. Evaluation shards are
disjoint and cover the whole set exactly once; the evaluated count is reduced and checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class Batches(Protocol):
    """One epoch's batches for this rank. A loader may also offer ``iter_from(k)``: the epoch's batches from
    the k-th on, without reading the ones before (a run resumed mid-epoch; see ``harness.train_epoch``)."""

    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class DataSpec:
    """What the harness asks of a benchmark's data module."""

    batch_size: int  # per process
    eval_batch_size: int
    rank: int = 0
    world_size: int = 1
    workers: int | None = None
    seed: int = 0
    data_dir: str | None = None
    pin_memory: bool = False


@dataclass
class DataBundle:
    train: Batches
    eval: Batches
    train_samples: int  # the whole training set (all ranks)
    eval_samples: int  # the whole evaluation set (all ranks)


def shard_indices(n: int, rank: int, world: int, shuffle: bool, seed: int, epoch: int,
                  equal: bool) -> torch.Tensor:
    """This rank's sample indices for one epoch."""
    if shuffle:
        g = torch.Generator()
        g.manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    if equal:
        order = order[: (n // world) * world]
    return order[rank::world]


class TensorBatches:
    """Batches sliced from tensors in memory (no worker processes, no per-sample Python).

    ``load`` is called on first use, so that building the bundle does not touch the data before
    ``run_start``. ``transform`` maps a uint8 batch to model inputs (normalisation, augmentation).
    """

    def __init__(self, load: Callable[[], tuple[torch.Tensor, torch.Tensor]], size: int, batch_size: int,
                 *, train: bool, rank: int = 0, world_size: int = 1, seed: int = 0,
                 transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None):
        self._load = load
        self._data: tuple[torch.Tensor, torch.Tensor] | None = None
        self.size = size
        self.batch_size = batch_size
        self.train = train
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        return shard_indices(self.size, self.rank, self.world_size, self.train, self.seed, self.epoch,
                             equal=self.train)

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._data is None:
            self._data = self._load()
        x, y = self._data
        idx = self._indices()
        g = torch.Generator()
        g.manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank)
        for b in range(len(self)):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            xb = x[sel]
            if self.transform is not None:
                xb = self.transform(xb, g if self.train else None)
            yield xb, y[sel]


class ShardSampler(Sampler[int]):
    """A DistributedSampler without padding: equal shards for training, exact cover for evaluation."""

    def __init__(self, n: int, rank: int, world: int, *, train: bool, seed: int):
        self.n, self.rank, self.world, self.train, self.seed = n, rank, world, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(shard_indices(self.n, self.rank, self.world, self.train, self.seed, self.epoch,
                                  equal=self.train).tolist())

    def __len__(self) -> int:
        return (self.n // self.world) if self.train else len(range(self.rank, self.n, self.world))


class LoaderBatches:
    """Batches from a map-style dataset through torch's DataLoader and worker processes."""

    def __init__(self, dataset: Dataset, batch_size: int, *, train: bool, spec: DataSpec,
                 collate_fn: Callable | None = None):
        self.sampler = ShardSampler(len(dataset), spec.rank, spec.world_size, train=train, seed=spec.seed)
        workers = spec.workers if spec.workers is not None else default_workers()
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
            drop_last=train, pin_memory=spec.pin_memory, collate_fn=collate_fn,
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)


def default_workers() -> int:
    import os

    return max(1, min(8, (os.cpu_count() or 2) - 1))
