"""One MLPerf training run: init, the timed run from ``run_start`` to ``run_stop``, and its outcome.

Timing follows the MLPerf training rules: model build, compilation and warm-up happen between
``init_start`` and ``init_stop``; the clock starts at ``run_start`` before any data is read; evaluation
time counts; ``run_stop`` carries ``status`` success when the target is reached and aborted otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench import signals
from mlbench.config import TrainConfig
from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.finite import NonFinite, nonfinite_metrics
from mlbench.registry import BenchmarkHandle
from mlbench.results.energy import EnergyMeter
from mlbench.training import checkpoint, distributed, precision
from mlbench.training.batches import DataSpec
from mlbench.training.metric_logger import MetricLogger
from mlbench.training.mlperf_log import C, MLPerfLog, clear_page_cache
from mlbench.training.recipe import OptimArgs, StepContext
from mlbench.training.workload import NO_TARGET, NONFINITE_INPUT, Workload, members


@dataclass
class RunOutcome:
    """What one run did; written into result.json by the caller."""

    seed: int
    status: str = "aborted"  # success | aborted
    reason: str = ""  # why it stopped, in words
    epochs: int = 0  # epochs completed
    samples: int = 0  # training samples processed (all ranks)
    quality: float | None = None  # last evaluated quality
    reached_target: bool = False
    time_to_train_s: float | None = None  # run_start -> run_stop
    init_s: float = 0.0
    train_s: float = 0.0  # time in training steps (data waits included, evaluation excluded)
    eval_s: float = 0.0
    data_wait_s: float = 0.0
    evals: list[dict[str, Any]] = field(default_factory=list)  # {epoch, samples, quality, metrics, elapsed_s}
    resumed_from: str | None = None
    eval_count_mismatch: bool = False
    base_lr: float | None = None
    params_in_sync: bool | None = None  # data-parallel runs: replicas identical at run_stop (checked)
    energy: dict[str, Any] = field(default_factory=dict)  # run_start..run_stop, informative (results.energy)
    # counted after run_stop (untimed): training FLOPs per sample, the hardware peak (MFU's denominator) and the
    # measured kernel peak at the run's precision/device
    flops_per_sample: float | None = None
    flops_method: str = ("forward+backward on one synthetic batch after run_stop (torch FlopCounterMode, "
                         "multiply-add = 2)")
    peak: dict[str, Any] | None = None
    kernel_peak: dict[str, Any] | None = None
    world_size: int = 1
    precision: str = ""
    speed: dict[str, Any] = field(default_factory=dict)  # the workload's own speed choices (Workload.speed_record)
    tokens_per_sample: int = 0  # language models: throughput in tokens/s too
    memory: dict[str, Any] = field(default_factory=dict)  # peak memory of this process at run_stop (peak_memory)

    @property
    def throughput(self) -> float | None:
        return self.samples / self.train_s if self.train_s > 0 else None

    def metrics(self) -> dict[str, Any]:
        """Flat metrics with units in the keys."""
        return {
            "time_to_train/minutes": None if self.time_to_train_s is None else self.time_to_train_s / 60,
            "time_to_train/s": self.time_to_train_s,
            "init/s": self.init_s,
            "train/s": self.train_s,
            "eval/s": self.eval_s,
            "throughput/samples_per_s": self.throughput,
            "throughput/tokens_per_s": self.throughput * self.tokens_per_sample
            if self.throughput and self.tokens_per_sample else None,
            "data/wait_share": self.data_wait_s / self.train_s if self.train_s > 0 else None,
            "epochs": self.epochs,
            "samples": self.samples,
            "dist/params_in_sync": self.params_in_sync,
            **self.memory,
            **self.energy,
            **self.compute_metrics(),
        }

    def compute_metrics(self) -> dict[str, Any]:
        """Achieved TFLOP/s (model FLOPs per sample x throughput), MFU (over the hardware peak x devices) and the
        fraction of the measured kernel peak; fractions above 1 are kept (and flagged in ``compute_record``)."""
        return self._figures()[0]

    def _figures(self) -> tuple[dict[str, Any], list[str]]:
        from mlbench.efficiency import mfu

        m: dict[str, Any] = {}
        thr = self.throughput
        if not self.flops_per_sample:
            return m, []
        m["model/train_gflops_per_sample"] = self.flops_per_sample / 1e9
        if not thr:
            return m, []
        figures, flags = mfu.figures(self.flops_per_sample * thr, self.peak, self.kernel_peak, self.precision,
                                     devices=self.world_size)
        return {**m, **figures}, flags

    def compute_record(self) -> dict[str, Any]:
        """How the efficiency figures were made, for result.json: the FLOP count, both peaks, MFU and flags."""
        metrics, flags = self._figures()
        return {"flops_per_sample": self.flops_per_sample, "flops_counted": self.flops_method,
                "mfu": metrics.get("compute/mfu"), "peak": self.peak, "kernel_peak": self.kernel_peak,
                "kernel_peak_fraction": metrics.get("compute/kernel_peak_fraction"), "flags": flags,
                "devices": self.world_size, "precision": self.precision}


_NonFinite = NonFinite  # a non-finite loss, predictions or metric: the run ends aborted (no traceback)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_run(handle: BenchmarkHandle, cfg: TrainConfig, run_dir: Path, out: RunOutcome,
              say: Callable[[str], None], dist: distributed.DistInfo, device: torch.device) -> RunOutcome:
    """One run, from ``init_start`` to ``run_stop``, filling ``out`` as it goes.

    A non-finite loss ends the run as aborted. Any other error (Ctrl-C, bad data, a crash) is logged as
    ``run_stop`` aborted with the reason in ``out``, then re-raised, so the caller can record what was made.
    """
    bench: Benchmark = handle.definition
    seed = out.seed
    mll = MLPerfLog(run_dir / "mlperf_log.txt", enabled=dist.is_main)
    ctx = StepContext(device=device, channels_last=cfg.channels_last,
                      autocast=(lambda: precision.autocast(device, cfg.precision)),
                      rank=dist.rank, world_size=dist.world_size)
    run_started = False
    meter = None  # energy during the timed part (RAPL/NVML where readable)
    try:
        division = bench.division if cfg.lr is None and not cfg.hparams else "open"
        mll.event(C.SUBMISSION_ORG, cfg.submission_org)
        mll.event(C.SUBMISSION_PLATFORM, cfg.submission_platform or _platform(device, dist))
        mll.event(C.SUBMISSION_DIVISION, division)
        mll.event(C.SUBMISSION_STATUS, cfg.submission_status)
        mll.event(C.SUBMISSION_BENCHMARK, bench.mlperf_name)
        cleared, how = clear_page_cache() if dist.local_rank == 0 else (False, "")
        mll.event(C.CACHE_CLEAR, cleared, how=how)
        say(f"cache_clear: {how}")

        t_init = time.perf_counter()
        mll.start(C.INIT_START)
        seed_everything(seed + dist.rank)
        mll.event(C.SEED, seed)

        wl: Workload = handle.workload()
        wl.precision = cfg.precision
        wl.model_dir = cfg.model_dir
        local_bs = cfg.batch_size or bench.batch_size
        global_bs = local_bs * dist.world_size * cfg.grad_accum
        spec = DataSpec(batch_size=local_bs, eval_batch_size=max(local_bs, bench.batch_size),
                        rank=dist.rank, world_size=dist.world_size, workers=cfg.workers, seed=seed,
                        data_dir=cfg.data_dir, pin_memory=device.type == "cuda")
        wl.check_data(spec)  # missing or malformed data fails before a large model is built
        model = wl.place_model(wl.build_model(), device, dist.enabled)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        data = wl.build_data(spec)  # indexes the data; reads no samples yet
        _check_sizes(data, local_bs, dist.world_size)
        budget = Budget.of(bench, cfg, len(data.train), local_bs * dist.world_size,
                           skip_evals=wl.evaluations_skipped(global_bs))
        steps_per_epoch = max(1, len(data.train) // cfg.grad_accum)
        oargs = OptimArgs(global_batch_size=global_bs, steps_per_epoch=steps_per_epoch, epochs=budget.epochs,
                          base_lr=cfg.lr, grad_accum=cfg.grad_accum, world_size=dist.world_size)
        optimizer, scheduler = wl.build_optimizer(model, oargs)
        out.base_lr = oargs.extra.get("base_lr")
        start_epoch = skip_batches = 0
        if cfg.resume:
            if checkpoint.is_distributed(cfg.resume):  # a folder of shards (FSDP2), read by every rank
                state = checkpoint.load_distributed(cfg.resume, model=model, optimizer=optimizer, scheduler=scheduler)
            else:
                resume = checkpoint.rank_path(cfg.resume, dist.rank) if wl.sharded_checkpoint else cfg.resume
                state = checkpoint.load(resume, model=model, optimizer=optimizer, scheduler=scheduler)
            start_epoch, out.resumed_from = state["epoch"], str(cfg.resume)
            out.samples = int(state.get("extra", {}).get("samples", 0))
            # a checkpoint written mid-epoch (sample cadence) continues with the next batch of that epoch
            skip_batches = int(state.get("extra", {}).get("epoch_batches", 0))
            say(f"resumed from {cfg.resume} after epoch {start_epoch} (not valid for time to train)")
        train_model = wl.wrap_model(model, device, dist.enabled)
        if cfg.compile:
            train_model = wl.compile_model(train_model)
        out.speed = wl.speed_record()
        out.tokens_per_sample = wl.tokens_per_sample
        scaler = precision.grad_scaler(device, cfg.precision)
        if cfg.compile or device.type == "cuda":
            _warm_up(train_model, model, optimizer, wl, local_bs, ctx, restore=wl.warm_up_restores_weights,
                     eval_batch_size=spec.eval_batch_size)

        mll.event(C.GLOBAL_BATCH_SIZE, global_bs)
        mll.event(C.GRADIENT_ACCUMULATION_STEPS, cfg.grad_accum)
        for key, value in disclosures(bench, cfg, wl, local_bs, device).items():
            mll.event(key, value)
        for key, value in wl.mllog_hparams(oargs, optimizer).items():
            mll.event(key, value)
        mll.event(C.TRAIN_SAMPLES, data.train_samples)
        mll.event(C.EVAL_SAMPLES, data.eval_samples)
        distributed.barrier()
        precision.synchronize(device)
        out.init_s = time.perf_counter() - t_init
        mll.end(C.INIT_STOP)

        # ---- the timed run ----
        mll.start(C.RUN_START)
        run_started = True
        t0 = time.perf_counter()
        meter = EnergyMeter(enabled=dist.is_main).start()
        ckpt = checkpoint.rank_path(run_dir / "checkpoint.pt", dist.rank)  # rank 0's, or a sharded rank's own
        save = checkpoint.save_distributed if wl.distributed_checkpoint else checkpoint.save
        if wl.distributed_checkpoint:
            ckpt = run_dir / "checkpoint"  # one folder, every rank's shards
        loop = _Loop(wl, bench, cfg, budget, mll, say, out, dist, ctx, run_dir, t0, data,
                     lambda: save(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, epoch=out.epochs,
                                  extra={"seed": seed, "samples": out.samples, "epoch_batches": loop.epoch_batches}))
        loop.run(train_model, optimizer, scheduler, scaler, start_epoch, skip_batches)
        precision.synchronize(device)
        out.time_to_train_s = time.perf_counter() - t0
        out.energy = meter.stop(samples=out.samples)
        mll.end(C.RUN_STOP, status=out.status)
        out.memory = peak_memory(device)
        replicated = wl.replicated(model)
        if dist.enabled and replicated is not None:  # DDP keeps the replicas identical; check it, untimed
            out.params_in_sync = distributed.params_in_sync(replicated)
            if not out.params_in_sync:
                say("WARNING: the ranks' parameters differ at run_stop: data parallelism is broken")
        _efficiency(out, wl, model, local_bs, ctx, device, cfg, dist)  # after run_stop: untimed
    except _NonFinite as exc:
        out.reason = exc.message + (f"; fix: {exc.hint}" if exc.hint else "")
        _stop_aborted(mll, run_started, out)
    except KeyboardInterrupt:
        out.reason = "interrupted (Ctrl-C) before the target was reached"
        _stop_aborted(mll, run_started, out)
        raise
    except Exception as exc:
        out.reason = f"failed: {exc}"
        _stop_aborted(mll, run_started, out)
        raise
    finally:
        if meter is not None:  # an aborted run: stop the sampling thread, keep what was measured
            out.energy = meter.stop(samples=out.samples)
        mll.close()
    return out


def _check_sizes(data: Any, batch_size: int, world_size: int) -> None:
    """An empty training or evaluation set fails here, before the run: it would otherwise run its whole epoch
    budget of empty epochs (or divide by zero evaluations) and record a result of nothing."""
    if len(data.train) == 0:
        raise DataError(f"the training data gives no batch: {data.train_samples} sample(s) for a global batch of "
                        f"{batch_size * world_size}", "check that the training files hold rows (empty or truncated "
                        "files?), or lower --batch-size")
    if not data.eval_samples:
        raise DataError("the evaluation set holds no sample", "check that the evaluation files hold rows (empty or "
                        "truncated files?)")


@dataclass(frozen=True)
class Budget:
    """How long a run may train and when it evaluates: by epochs, or by training samples (BERT)."""

    epochs: int  # epoch budget (the schedule decays over it); with ``max_samples`` an upper bound
    eval_every_epochs: int
    eval_every_samples: int  # 0: evaluate by epochs
    max_samples: int  # 0: no sample budget
    first_eval: int = 0  # sample cadence: no evaluation before this many samples (evaluations the rules skip)

    @classmethod
    def of(cls, bench: Benchmark, cfg: TrainConfig, batches_per_epoch: int, samples_per_batch: int,
           skip_evals: int = 0) -> Budget:
        if not bench.eval_every_samples:
            return cls(cfg.epochs or bench.max_epochs, bench.eval_every_epochs, 0, 0)
        per_epoch = max(1, batches_per_epoch * samples_per_batch)
        # --epochs bounds a sample-budget run too; otherwise enough passes over the data for the budget.
        epochs = cfg.epochs or max(1, -(-bench.max_samples // per_epoch))
        return cls(epochs, 1, bench.eval_every_samples, bench.max_samples,
                   first_eval=(skip_evals + 1) * bench.eval_every_samples if skip_evals else 0)

    @property
    def by_samples(self) -> bool:
        return self.eval_every_samples > 0


class _Loop:
    """The timed part: epochs of steps, evaluations at the benchmark's cadence, the stop decision."""

    def __init__(self, wl: Workload, bench: Benchmark, cfg: TrainConfig, budget: Budget, mll: MLPerfLog,
                 say: Callable[[str], None], out: RunOutcome, dist: distributed.DistInfo, ctx: StepContext,
                 run_dir: Path, t0: float, data: Any, save: Callable[[], None]):
        self.wl, self.bench, self.cfg, self.budget, self.mll = wl, bench, cfg, budget, mll
        self.say, self.out, self.dist, self.ctx, self.t0, self.data = say, out, dist, ctx, t0, data
        self.save = save
        self.next_eval = 0
        self.block_from = 0  # samples at the start of the open block (sample cadence)
        self.epoch_batches = 0  # batches done in the unfinished epoch (a checkpoint resumes after them)
        self.model: Any = None

    def run(self, model, optimizer, scheduler, scaler, start_epoch: int, skip_batches: int = 0) -> None:
        self.model = model
        b, out, mll = self.budget, self.out, self.mll
        if b.by_samples:
            self.next_eval = max((out.samples // b.eval_every_samples + 1) * b.eval_every_samples, b.first_eval)
            self.block_from = out.samples
            mll.start(C.BLOCK_START, samples_count=out.samples)
        for epoch in range(start_epoch, b.epochs):
            if not b.by_samples:
                if (epoch - start_epoch) % b.eval_every_epochs == 0:
                    mll.start(C.BLOCK_START, first_epoch_num=epoch + 1,
                              epoch_count=min(b.eval_every_epochs, b.epochs - epoch))
                mll.start(C.EPOCH_START, epoch_num=epoch + 1)
            skip = skip_batches if epoch == start_epoch else 0
            self.epoch_batches = skip
            stopped = train_epoch(model, optimizer, scheduler, scaler, self.wl, self.data.train, epoch,
                                  self.cfg, self.ctx, self.say, out, self.dist,
                                  after_step=self._after_step if b.by_samples else None, skip=skip)
            if stopped:
                return
            out.epochs = epoch + 1
            self.epoch_batches = 0
            if b.by_samples:
                continue
            mll.end(C.EPOCH_STOP, epoch_num=epoch + 1)
            last = epoch + 1 == b.epochs
            if (epoch + 1 - start_epoch) % b.eval_every_epochs == 0 or last:
                first = epoch + 2 - min(b.eval_every_epochs, epoch + 1 - start_epoch)
                if self._evaluate(epoch + 1, f"epoch {epoch + 1}", block_stop={"first_epoch_num": first}):
                    return
        if b.by_samples and out.samples > self.block_from:  # the data ran out before the sample budget
            if self._evaluate(out.samples, f"{out.samples} samples", block_stop={"samples_count": out.samples}):
                return
        self._budget_spent()

    def _after_step(self, epoch_batches: int) -> bool:
        """Sample cadence: evaluate when due; True stops the run (target reached or budget spent)."""
        out, b = self.out, self.budget
        self.epoch_batches = epoch_batches
        if out.samples < self.next_eval and (not b.max_samples or out.samples < b.max_samples):
            return False
        if self._evaluate(out.samples, f"{out.samples} samples", block_stop={"samples_count": out.samples}):
            return True
        if b.max_samples and out.samples >= b.max_samples:
            self._budget_spent()
            return True
        while self.next_eval <= out.samples:
            self.next_eval += b.eval_every_samples
        self.block_from = out.samples
        self.mll.start(C.BLOCK_START, samples_count=out.samples)
        return False

    def _evaluate(self, at: float, where: str, block_stop: dict[str, int]) -> bool:
        """One evaluation at ``at`` (epoch number, or samples seen); True when the target is reached."""
        out, mll, wl = self.out, self.mll, self.wl
        t_eval = time.perf_counter()
        if self.budget.by_samples:  # the form the benchmark's rules and RCPs read (samples, or epochs)
            at = self.wl.logged_epoch_num(at, self.data.train_samples)
        progress = {self.bench.log_progress_in: at}  # epoch_num, or samples_count (the LLM rulesets)
        mll.start(C.EVAL_START, **progress)
        metrics, count = wl.evaluate(self.model, self.data.eval, self.ctx)
        self.model.train()
        bad = nonfinite_metrics(metrics)
        if bad:  # never logged or compared with the target: a NaN is not a quality
            raise NonFinite(f"the evaluation at {where} gave {', '.join(f'{k} = {v}' for k, v in bad.items())}: the "
                            "model's predictions or the evaluation data hold NaN or infinite values, so nothing is "
                            "scored", "check the evaluation data for NaN or infinite values; if it is clean, the "
                            "training diverged: train with fp32 or a lower learning rate")
        out.eval_s += time.perf_counter() - t_eval
        if count != self.data.eval_samples:
            out.eval_count_mismatch = True
            self.say(f"WARNING: evaluated {count} samples but the evaluation set has {self.data.eval_samples}")
        quality = wl.quality(metrics)
        out.quality = quality
        out.evals.append({"epoch": out.epochs if self.budget.by_samples else at, "samples": out.samples,
                          "quality": quality, "metrics": {k: float(v) for k, v in metrics.items()},
                          "elapsed_s": time.perf_counter() - self.t0})
        mll.event(C.EVAL_ACCURACY, wl.logged_accuracy(metrics), **progress)
        mll.end(C.EVAL_STOP, **progress)
        mll.end(C.BLOCK_STOP, **block_stop)
        others = "".join(f", {k} = {v:.4f}" for k, v in metrics.items() if k != wl.target_metric)
        self.say(f"eval {where}: {wl.target_metric} = {quality:.4f} (target {wl.target_text()}){others}")
        if self.cfg.checkpoint and (self.dist.is_main or self.wl.sharded_checkpoint or self.wl.distributed_checkpoint):
            self.save()
        if wl.has_reached_target(metrics):
            out.status, out.reached_target = "success", True
            out.reason = f"reached the target {wl.target_text()} at {where}"
            return True
        return False

    def _budget_spent(self) -> None:
        b, wl = self.budget, self.wl
        best = wl.best([e["quality"] for e in self.out.evals])
        spent = (f"the sample budget ({b.max_samples} samples)" if b.max_samples and self.out.samples >= b.max_samples
                 else f"the epoch budget ({b.epochs} epochs)")
        self.out.reason = f"{spent} ran out before the target {wl.target_text()} was reached (best {best:.4f})"


def peak_memory(device: torch.device) -> dict[str, Any]:
    """This process's peak memory so far: the accelerator's allocations on CUDA, the resident set on the host."""
    import resource

    m: dict[str, Any] = {"memory/host_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        m["memory/device_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return m


def _ruleset(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in version.split("."))
    except ValueError:
        return (0,)


#: ``--precision`` as the 6.1.0 rules name numeric precisions (lowest_numerical_precision_in_*)
_PRECISION_NAMES = {"fp32": "fp32", "bf16": "bfloat16", "fp16": "fp16"}


def disclosures(bench: Benchmark, cfg: TrainConfig, wl: Workload, local_bs: int, device: torch.device
                ) -> dict[str, Any]:
    """The precision, parallelism and run-configuration keys the rulesets from 6.1.0 on require in every log:
    the lowest precision of the linear layers and attention (``--precision``; fp32 matmuls on a GPU that lets
    them run in TF32 are tf32), of the communication (``Workload.communication_precision``: fp32 gradients,
    bf16 parameter gathers when sharded), and the parallelism (data-parallel only: tensor, pipeline, context and expert
    parallelism 1)."""
    if _ruleset(bench.ruleset) < (6, 1, 0):
        return {}
    compute = _PRECISION_NAMES[cfg.precision]
    if compute == "fp32" and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        compute = "tf32"
    return {"lowest_numerical_precision_in_linear": compute, "lowest_numerical_precision_in_attn": compute,
            "lowest_numerical_precision_in_comm": wl.communication_precision(), "tensor_parallelism": 1, "pipeline_parallelism": 1,
            "context_parallelism": 1, "expert_parallelism": 1, "micro_batch_size": local_bs,
            "config_filename": "config.json"}


def _stop_aborted(mll: MLPerfLog, run_started: bool, out: RunOutcome) -> None:
    out.status = "aborted"
    if run_started:
        mll.end(C.RUN_STOP, status=C.ABORTED)


def _platform(device: torch.device, dist: distributed.DistInfo) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{dist.world_size}x{name.replace(' ', '_')}"
    import platform

    return f"{dist.world_size}x{platform.machine()}_cpu"


def train_epoch(model, optimizer, scheduler, scaler, wl: Workload, batches, epoch: int, cfg: TrainConfig,
                 ctx: StepContext, say, out: RunOutcome, dist: distributed.DistInfo,
                 after_step: Callable[[int], bool] | None = None, skip: int = 0) -> bool:
    """One pass over ``batches``. ``after_step(batches done in this epoch)`` (sample cadence) runs after each
    optimizer step and may evaluate; its time is not training time. Returns True when ``after_step`` stopped
    the run. ``skip``: the first batches of the epoch were trained before a checkpoint (resume); the run
    continues with the batches an uninterrupted run would see: from ``batches.iter_from(skip)`` when the
    loader has it (a stream that can start anywhere, e.g. DLRM's days), else read and passed over."""
    model.train()
    batches.set_epoch(epoch)
    logger = MetricLogger(print_fn=say, bar=None if dist.is_main else False)
    pending: list[torch.Tensor] = []  # per-step [loss, *parts], read at print steps only
    part_names: list[str] = []
    lrs: list[float] = []

    def flush(step: int) -> None:
        if not pending:
            return
        values = torch.stack(pending).float().cpu()
        pending.clear()
        flags, values = values[:, -1], values[:, :-1]  # the last column: Workload.input_problem of the batch
        if not torch.isfinite(values).all():
            first = int((~torch.isfinite(values)).any(1).nonzero()[0])
            at = (step if step >= 0 else i) - (len(values) - 1 - first)
            raise _NonFinite(*_nonfinite_loss(epoch, at, int(flags[first]), int(flags[:first + 1].max())))
        logger.extend(lr=lrs, loss=values[:, 0].tolist(),
                      **{n: values[:, i + 1].tolist() for i, n in enumerate(part_names)})
        lrs.clear()

    logger.on_print = flush
    accum = cfg.grad_accum
    t_start = time.perf_counter()
    t_prev = t_start
    paused = 0.0  # time spent in after_step (evaluation), not training
    stopped = False
    if skip:
        source = batches.iter_from(skip) if hasattr(batches, "iter_from") else itertools.islice(iter(batches), skip, None)
    else:
        source = batches
    total = max(0, len(batches) - skip)
    for i, batch in enumerate(logger.log_every(source, cfg.log_every, f"Epoch: [{epoch}]", total=total),
                              start=skip):
        signals.check()  # a stop whose exception a finalizer swallowed still ends the run here
        now = time.perf_counter()
        out.data_wait_s += now - t_prev
        n = wl.count_samples(batch)
        if logger.rate is None and wl.tokens_per_sample:
            logger.rate = ("tokens/s", n * dist.world_size * wl.tokens_per_sample)
        batch = wl.to_device(batch, ctx)
        sync = (i + 1) % accum == 0
        with (model.no_sync() if (not sync and hasattr(model, "no_sync")) else contextlib.nullcontext()):
            loss, parts = wl.loss(model, batch, ctx)
            scaled = loss / accum
            (scaler.scale(scaled) if scaler else scaled).backward()
        if sync:
            if scaler:
                for opt in members(optimizer):
                    scaler.step(opt)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        if not part_names and parts:
            part_names.extend(parts)
        problem = wl.input_problem(batch)
        pending.append(torch.stack([loss.detach().float(), *(p.detach().float() for p in parts.values()),
                                    problem if problem is not None else loss.new_zeros((), dtype=torch.float32)]))
        lrs.append(optimizer.param_groups[0]["lr"])
        out.samples += n * dist.world_size
        if sync and after_step is not None:
            t_pause = time.perf_counter()
            flush(i)  # the loss is checked before an evaluation trusts the model
            stopped = after_step(i + 1)
            paused += time.perf_counter() - t_pause
            if stopped:
                break
        t_prev = time.perf_counter()
    flush(-1)
    out.train_s += time.perf_counter() - t_start - paused
    return stopped


def _nonfinite_loss(epoch: int, step: int, here: int, window: int) -> tuple[str, str]:
    """(message, fix) for a loss that became non-finite at ``step``: the data when the step's batch (``here``),
    or one before it since the last check (``window``), had a problem (:meth:`Workload.input_problem`), else the
    optimisation."""
    where = f"the loss became non-finite (nan or inf) at epoch {epoch}, step {step}"
    problem = here or window
    which = "the batch of that step" if here else "a batch before it"
    if problem & NONFINITE_INPUT:
        return (f"{where}; {which} holds NaN or infinite input values: the data is the likely cause, not the "
                "learning rate", "find and fix the non-finite values in the training data (or drop those rows), "
                "then run again")
    if problem & NO_TARGET:
        return (f"{where}; {which} has nothing to learn (every label is padding, so the loss is 0/0): the data is "
                "the likely cause, not the learning rate", "drop the samples without a target from the training "
                "data (or regenerate it), then run again")
    return (f"{where}; its inputs were finite and held targets, so the optimisation diverged",
            "lower the learning rate (--lr) or train with fp32")


def training_flops_per_sample(wl: Workload, model: torch.nn.Module, batch_size: int, ctx: StepContext
                              ) -> float | None:
    """Forward+backward FLOPs of one training sample (multiply-add = 2), by torch's FLOP counter on one
    synthetic batch. Call it outside the timed part: it runs a step's worth of work (gradients are cleared)."""
    from mlbench.efficiency import flops

    batch = wl.synthetic_batch(max(1, min(batch_size, 4)), ctx)
    n = wl.count_samples(batch)
    model.train()

    def step() -> None:
        loss, _ = wl.loss(model, batch, ctx)
        loss.backward()

    total = flops.count(step)
    model.zero_grad(set_to_none=True)
    return total / n if total and n else None


COUNTER_BASIS = ("forward+backward on one synthetic batch after run_stop, once per model (torch FlopCounterMode, "
                 "multiply-add = 2)")
_MODEL_FLOPS: dict[tuple, tuple[float | None, str]] = {}  # counted once per model in a process (several runs)


def model_flops(wl: Workload, model: torch.nn.Module, batch_size: int, ctx: StepContext) -> tuple[float | None, str]:
    """(training FLOPs per sample, how they were made): the workload's own figure, else torch's counter; counted
    once per benchmark and size in a process, whatever the number of runs."""
    key = (wl.bench.name, wl.bench.size, type(wl).__name__)
    if key not in _MODEL_FLOPS:
        own = wl.flops_per_sample()  # the model's own formula, when it has one
        _MODEL_FLOPS[key] = ((own, f"the model's formula ({type(wl).__name__}.flops_per_sample), multiply-add = 2")
                             if own is not None else (training_flops_per_sample(wl, model, batch_size, ctx),
                                                      COUNTER_BASIS))
    return _MODEL_FLOPS[key]


def _efficiency(out: RunOutcome, wl: Workload, model: torch.nn.Module, batch_size: int, ctx: StepContext,
                device: torch.device, cfg, dist: distributed.DistInfo) -> None:
    """Model FLOPs per sample, the hardware peak (datasheet, theoretical or --peak-tflops) and the measured
    kernel peak at the run's precision, after ``run_stop`` (untimed). Neither peak depends on the run."""
    from mlbench.efficiency import kernels, mfu

    out.world_size, out.precision = dist.world_size, cfg.precision
    if wl.flops_per_sample() is None and dist.enabled and (wl.sharded_checkpoint or wl.distributed_checkpoint):
        return  # model-parallel (sharded) models run collectives in their forward: not counted on one rank
    out.flops_per_sample, out.flops_method = model_flops(wl, model, batch_size, ctx)
    if not (out.flops_per_sample and out.throughput and dist.is_main):
        return
    dev = str(device) if device.type == "cuda" else "cpu"
    threads = 1 if device.type == "cuda" else torch.get_num_threads()
    try:
        out.peak = mfu.hardware_peak(dev, cfg.precision, threads=threads, user_tflops=cfg.peak_tflops,
                                     convolutional=mfu.is_convolutional(model))
    except Exception as exc:  # noqa: BLE001 - the efficiency figures are informative only
        out.peak = {"kind": "unknown", "flops_per_s": None, "precision": cfg.precision,
                    "why": f"{type(exc).__name__}: {exc}"}
    try:
        out.kernel_peak = kernels.kernel_peak("cuda" if device.type == "cuda" else "cpu", cfg.precision, threads)
        # a kernel peak below what the run did per device: measured once more (a busy machine holds it down)
        out.kernel_peak = kernels.confirm(out.kernel_peak, out.flops_per_sample * out.throughput / dist.world_size)
    except Exception as exc:  # noqa: BLE001 - the calibration is informative only
        out.kernel_peak = {"error": f"{type(exc).__name__}: {exc}", "precision": cfg.precision}


def _warm_up(train_model, model, optimizer, wl: Workload, batch_size: int,
             ctx: StepContext, steps: int = 3, restore: bool = True, eval_batch_size: int | None = None) -> None:
    """Compile and autotune on synthetic data, then restore the initial weights and optimizer state. Without
    ``restore`` (a model too large to copy: sharded tables) the optimizer never steps, so that nothing needs
    restoring: the forward and backward passes (what compiles) still run before ``run_start``. With
    ``eval_batch_size``, the evaluation runs too, on synthetic batches of that size and half of it (a second
    shape: torch.compile's dynamic graph, which a last, smaller batch would otherwise build inside the run)."""
    if restore:
        saved_model = copy.deepcopy(model.state_dict())
        saved_opt = copy.deepcopy(optimizer.state_dict())
    lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    batch = wl.synthetic_batch(batch_size, ctx)
    train_model.train()
    for _ in range(steps):
        loss, _ = wl.loss(train_model, batch, ctx)
        loss.backward()
        if restore:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if eval_batch_size:
        sizes = [eval_batch_size] + ([eval_batch_size // 2] if eval_batch_size // 2 >= 2 else [])
        wl.warm_up_evaluation(train_model, [wl.synthetic_batch(n, ctx) for n in sizes], ctx)
        train_model.train()
    if restore:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
    for g, lr in zip(optimizer.param_groups, lrs):
        g["lr"] = lr
    if not math.isfinite(float(loss.detach())):
        raise _NonFinite("warm-up on synthetic data produced a non-finite loss")
