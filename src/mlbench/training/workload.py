"""The benchmark-side contract of ``mlbench train``: one :class:`Workload` per benchmark.

A workload owns everything that differs between benchmarks (in the spirit of AlgoPerf's ``Workload``): the
model and how it is wrapped for data-parallel training, the data (map-style or streaming, sharded by rank),
the loss, the optimizer(s) and schedule, the evaluation and its named metrics, when the target is reached and
the form ``eval_accuracy`` takes in the MLPerf log. The harness (:mod:`mlbench.training.harness`) owns the
rest: timing, the MLPerf log, precision, checkpoints, the evaluation cadence and stopping.

A benchmark's ``workload.py`` defines one subclass and ``WORKLOAD = ThatClass``; the registry builds it with
the size's :class:`~mlbench.definition.Benchmark`. Facts (target, cadence, budget, batch) live in the
definition and are read from ``self.bench``, never copied.

Batches may be anything the workload's own ``loss``/``evaluate`` understand: a tuple of tensors, or a dict
of named tensors. ``count_samples`` says how many samples a batch holds (for throughput and cadence).
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from mlbench.definition import Benchmark
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import OptimArgs, StepContext

NONFINITE_INPUT = 1  # Workload.input_problem: a floating-point input holds NaN or infinity
NO_TARGET = 2  # Workload.input_problem: the batch has no target to learn (every label is padding)


def _tensors(batch: Any):
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for v in batch.values():
            yield from _tensors(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _tensors(v)


class Workload(abc.ABC):
    """One benchmark at one size, as the training harness sees it."""

    #: False when the warm-up before ``run_start`` (``--compile``, or a GPU) must not deep-copy the model to restore
    #: it afterwards (sharded embeddings too large to copy): it then runs forward and backward passes only, and
    #: the optimizer never steps, so that the weights and the optimizer's state are those the run starts from.
    warm_up_restores_weights: bool = True

    #: True when each rank holds state the others do not (model-parallel tables): every rank then writes its
    #: own checkpoint (rank 0 ``checkpoint.pt``, rank r ``checkpoint.rank<r>.pt``) and resumes from its own.
    sharded_checkpoint: bool = False

    #: True when the model is sharded across ranks (FSDP2): every rank then writes its shards of the model and the
    #: optimizer into one checkpoint folder through torch.distributed.checkpoint, and resumes from that folder.
    distributed_checkpoint: bool = False

    #: Tokens in one sample, for language models (throughput in tokens/s and FLOPs per token); 0 otherwise.
    tokens_per_sample: int = 0

    def __init__(self, bench: Benchmark):
        self.bench = bench
        self.precision = "fp32"  # the run's --precision, set by the harness before build_model
        self.model_dir: str | None = None  # the run's --model-dir (pretrained weights), set by the harness

    # ------------------------------------------------------------------ target
    @property
    def target_metric(self) -> str:
        """The key of ``evaluate``'s metrics that is compared with the target."""
        return self.bench.metric

    def quality(self, metrics: dict[str, float]) -> float:
        """The one number compared with the target (and reported as the run's quality)."""
        return float(metrics[self.target_metric])

    def has_reached_target(self, metrics: dict[str, float]) -> bool:
        q, t = self.quality(metrics), self.bench.target
        return q >= t if self.bench.higher_is_better else q <= t

    def target_text(self) -> str:
        """``top1 >= 0.759`` or ``wer <= 0.058``: the target in words, for messages and reasons."""
        return f"{self.target_metric} {'>=' if self.bench.higher_is_better else '<='} {self.bench.target}"

    def best(self, qualities: list[float]) -> float:
        """The best of several evaluated qualities (nan when there are none)."""
        if not qualities:
            return float("nan")
        return max(qualities) if self.bench.higher_is_better else min(qualities)

    def logged_accuracy(self, metrics: dict[str, float]) -> Any:
        """The value of ``eval_accuracy`` in the MLPerf log (one float for most rulesets; a dict for some)."""
        return self.quality(metrics)

    def logged_epoch_num(self, samples: int, train_samples: int) -> float:
        """``epoch_num`` of an evaluation in a sample-cadence run: the samples seen (BERT's rules and RCPs),
        or, overridden, the fraction of an epoch (``samples / train_samples``, DLRM's)."""
        return samples

    # ------------------------------------------------------------------ model
    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module:
        """The model with freshly initialised (or phase-1 checkpoint) weights, on the CPU."""

    def place_model(self, model: torch.nn.Module, device: torch.device, distributed: bool) -> torch.nn.Module:
        """The model of ``build_model`` on ``device``, before the optimizer is built. Override to shard it
        (FSDP2, :mod:`mlbench.training.sharding`) or to give a model built on the meta device its storage."""
        return model.to(device)

    def wrap_model(self, model: torch.nn.Module, device: torch.device, distributed: bool) -> torch.nn.Module:
        """The module the training loop calls; data-parallel by default. Override to shard (embeddings)."""
        if not distributed:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``--compile``: the module the training loop calls, compiled (all of it by default; a workload may
        compile only the parts with static shapes)."""
        return torch.compile(model)

    def speed_record(self) -> dict[str, Any]:
        """The speed choices this workload made on its own (fused optimizer, batched loss, ...), recorded in
        result.json as ``speed`` beside the flags of the config; called after ``wrap_model``/``compile_model``."""
        return {}

    def replicated(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """The part of the model every rank holds identically (checked at ``run_stop``); all of it by default,
        the dense part when tables are sharded, None when every parameter is sharded (nothing to compare)."""
        return model

    def evaluations_skipped(self, global_batch_size: int) -> int:
        """Evaluations the rules skip at the start of a sample-cadence run (a fine-tuning
        rule such as floor(0.125 x global batch + 2)): the first one comes after that many intervals more. Default none."""
        return 0

    def communication_precision(self) -> str:
        """The lowest precision its collectives carry, as the MLPerf rules name them: fp32 (gradients reduced in
        fp32) unless the workload shards its parameters and gathers them in a lower precision."""
        return "fp32"

    def flops_per_sample(self) -> float | None:
        """Model FLOPs of one training sample (forward + backward) from the model's own formula, e.g. a
        transformer's 6N + attention; None lets the harness count them with torch's FLOP counter."""
        return None

    # ------------------------------------------------------------------ data
    @abc.abstractmethod
    def build_data(self, spec: DataSpec) -> DataBundle:
        """Training and evaluation batches for this rank. Indexes the data; reads no samples yet.

        ``DataBundle.train`` may be map-style or a stream; ``len()`` is its number of batches per epoch
        (per rank). Evaluation shards are disjoint across ranks and cover the whole set once.
        """

    def check_data(self, spec: DataSpec) -> None:
        """Fail early (DataError naming the file and the fix) when the data is missing or malformed, before
        the model is built; for benchmarks whose model takes long to build (DLRM's tables). Default: nothing."""
        return None

    def count_samples(self, batch: Any) -> int:
        """Samples in one (local) batch: the length of its first tensor (tuple or dict)."""
        if isinstance(batch, dict):
            first = next(iter(batch.values()))
        elif isinstance(batch, (tuple, list)):
            first = batch[0]
        else:
            first = batch
        return len(first)

    def input_problem(self, batch: Any) -> torch.Tensor | None:
        """Why this (device) batch could make the loss non-finite without the optimisation being at fault, as a
        device scalar read only when the loss turns out non-finite: 0 nothing, :data:`NONFINITE_INPUT` a
        floating-point input holds NaN or infinity, :data:`NO_TARGET` nothing to learn (every label is
        padding). Default: a float32 sum of every floating-point tensor of the batch (lists, tuples and dicts
        walked), non-finite when a value is (NaN and infinity survive a sum; one read of the batch, on the device,
        no synchronisation); a workload with padded labels adds :data:`NO_TARGET`. None: nothing to check."""
        sums = [t.sum(dtype=torch.float32) for t in _tensors(batch) if t.is_floating_point()]
        if not sums:
            return None
        return (~torch.isfinite(torch.stack(sums)).all()).to(torch.float32) * NONFINITE_INPUT

    @abc.abstractmethod
    def to_device(self, batch: Any, ctx: StepContext) -> Any:
        """The batch on ``ctx.device`` in the model's layout."""

    @abc.abstractmethod
    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> Any:
        """A batch of the right shape for warm-up before ``run_start`` (touches no data)."""

    # ------------------------------------------------------------------ optimisation
    @abc.abstractmethod
    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs) -> tuple[Any, Any]:
        """(optimizer, per-step scheduler). Several optimizers: return an :class:`Optimizers`."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, ctx: StepContext
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to back-propagate and its named parts (for the progress line)."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, batches: Any, ctx: StepContext) -> tuple[dict[str, float], int]:
        """(named metrics over the whole evaluation set, all ranks; samples evaluated by all ranks)."""

    def warm_up_evaluation(self, model: torch.nn.Module, batches: list[Any], ctx: StepContext) -> None:
        """Before ``run_start`` (``--compile``, or a GPU): run what ``evaluate`` runs on ``batches`` (synthetic),
        so that what evaluation builds on first use (torch.compile's graphs without gradients, cuDNN's choices
        for its shapes) is built untimed. Default: ``evaluate`` on them, metrics discarded; a workload whose
        evaluation cannot score synthetic data runs its model the same way without scoring."""
        self.evaluate(model, batches, ctx)

    @abc.abstractmethod
    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        """The MLPerf keys (beyond global_batch_size, gradient_accumulation_steps) to log at init."""


class Optimizers:
    """Several optimizers stepped as one (a sparse one for embeddings, a dense one for the rest).

    The harness calls ``step``/``zero_grad``/``state_dict``; a gradient scaler steps each in ``members``.
    ``param_groups`` are the first optimizer's (the learning rate the progress line shows).
    """

    def __init__(self, *members: torch.optim.Optimizer):
        if not members:
            raise ValueError("Optimizers needs at least one optimizer")
        self.members = list(members)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.members[0].param_groups

    def step(self) -> None:
        for opt in self.members:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.members:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"members": [opt.state_dict() for opt in self.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, s in zip(self.members, state["members"], strict=True):
            opt.load_state_dict(s)


def members(optimizer: Any) -> list[torch.optim.Optimizer]:
    """The plain optimizers behind ``optimizer`` (itself, or an :class:`Optimizers`' members)."""
    return list(optimizer.members) if isinstance(optimizer, Optimizers) else [optimizer]
