"""What the language-model workloads share about being sharded with FSDP2: once ``place_model`` has sharded the
model (``self.sharded``), no DDP goes on top, no rank holds a full replica to compare, the checkpoint is one
folder of every rank's shards, and the collectives carry the gathers' precision."""

from __future__ import annotations

import torch

from mlbench.training import sharding
from mlbench.training.workload import Workload


class ShardedWorkload(Workload):
    """A workload that shards its model in ``place_model`` on several processes (setting ``self.sharded``)."""

    sharded: bool = False

    def wrap_model(self, model: torch.nn.Module, device: torch.device, distributed_run: bool) -> torch.nn.Module:
        return model  # sharded (or single-process) in place_model: no DDP on top

    def replicated(self, model: torch.nn.Module) -> torch.nn.Module | None:
        return None if self.sharded else model

    @property
    def distributed_checkpoint(self) -> bool:  # type: ignore[override]
        return self.sharded

    def communication_precision(self) -> str:
        return sharding.communication_precision(self.precision) if self.sharded else "fp32"
