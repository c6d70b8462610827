"""What a benchmark's ``train`` module provides to the harness.

A recipe owns what differs between benchmarks: the optimizer and learning-rate schedule, the loss, the
evaluation metric and the MLPerf hyper-parameter keys it must log. The harness owns the rest (timing,
logging, data-parallelism, precision, checkpoints, stopping).
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from mlbench.definition import Benchmark


@dataclass
class StepContext:
    """What a recipe needs to move batches and run the model."""

    device: torch.device
    channels_last: bool = False
    autocast: Any = None  # a callable returning the autocast context
    rank: int = 0
    world_size: int = 1

    def amp(self) -> AbstractContextManager:
        import contextlib

        return self.autocast() if self.autocast is not None else contextlib.nullcontext()


@dataclass
class OptimArgs:
    """The batch and schedule facts the optimizer depends on."""

    global_batch_size: int
    steps_per_epoch: int  # optimizer steps per epoch
    epochs: int  # the epoch budget the schedule decays over
    base_lr: float | None = None  # an override; None means the recipe's rule
    grad_accum: int = 1
    world_size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class StepSchedule(abc.ABC):
    """A learning-rate schedule stepped once per optimizer step; subclasses define ``lr_at(step)``.

    Its state is the step count alone, so a checkpoint restores it exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.step_num = 0

    @abc.abstractmethod
    def lr_at(self, step: int) -> float:
        """The learning rate after ``step`` optimizer steps."""

    def _apply(self) -> None:
        lr = self.lr_at(self.step_num)
        # every optimizer of a workload's ``Optimizers`` (training.workload) follows the schedule
        for opt in getattr(self.optimizer, "members", [self.optimizer]):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self) -> None:
        self.step_num += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step_num": self.step_num}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_num = int(state["step_num"])
        self._apply()


class ConstantSchedule(StepSchedule):
    """A constant learning rate (no warm-up, no decay)."""

    def __init__(self, optimizer, lr: float):
        super().__init__(optimizer)
        self.lr = lr
        self._apply()

    def lr_at(self, step: int) -> float:
        return self.lr


class Recipe(Protocol):
    def build_optimizer(self, model: torch.nn.Module, bench: Benchmark, args: OptimArgs
                        ) -> tuple[torch.optim.Optimizer, Any]:
        """The optimizer and a per-step scheduler (``scheduler.step()`` after each optimizer step)."""

    def mllog_hparams(self, bench: Benchmark, args: OptimArgs, optimizer: torch.optim.Optimizer
                      ) -> dict[str, Any]:
        """The MLPerf keys (beyond global_batch_size, gradient_accumulation_steps) to log at init."""

    def to_device(self, batch: Any, ctx: StepContext) -> Any: ...

    def loss(self, model: torch.nn.Module, batch: Any, ctx: StepContext
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to back-propagate and its named parts (for the progress line)."""

    def evaluate(self, model: torch.nn.Module, batches: Any, ctx: StepContext) -> tuple[float, int]:
        """(quality metric over the whole evaluation set, samples evaluated by all ranks)."""

    def synthetic_batch(self, bench: Benchmark, batch_size: int, ctx: StepContext) -> Any:
        """A batch of the right shape for warm-up before ``run_start`` (touches no data)."""
