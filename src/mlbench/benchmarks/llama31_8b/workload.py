"""Llama 3.1 8B pre-training as a :class:`~mlbench.training.workload.Workload`: next-token cross-entropy over
every position, AdamW with clipping and a cosine schedule after a linear warm-up, evaluation log perplexity.

Data (see :mod:`.data`): ``--data-dir`` with the reference's C4 files, or the mini/tiny files built into the
cache. Samples are ``seq_len + 1`` consecutive tokens of the documents back to back (:mod:`mlbench.llm.windows`).

Model: transformers' ``LlamaForCausalLM`` of the definition's config, built on the meta device and placed by
``place_model``: on one process it is given storage on the device and initialised (Megatron's init, std 0.02);
on several it is first sharded with FSDP2, block by block (:mod:`mlbench.training.sharding`), so that no rank
ever holds the whole 8B model. Activation checkpointing per block where the definition asks (the reference).
bf16 runs compute in bf16 with fp32 master weights and fp32 gradient reduction.

Recipe by global batch (the reference convergence points' learning rate and warm-up samples; other batches
interpolate): ``opt_learning_rate_warmup_steps = ceil(warm-up samples / global batch)``, cosine decay to
``0.1 x lr`` at max_steps (1,200,000, the closed rules' value), AdamW (0.9, 0.95, 1e-5, weight decay 0.1 on
matrices), gradients clipped at norm 1.0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from mlbench.benchmarks.llama31_8b import data as lldata
from mlbench.data.indexed_tokens import IndexedTokens
from mlbench.errors import ConfigError, DataError
from mlbench.llm import llama, windows
from mlbench.llm.recipe import ClippedAdamW, CosineWithWarmup, decay_groups
from mlbench.llm.sharded import ShardedWorkload
from mlbench.training import distributed, sharding
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import OptimArgs, StepContext


def recipe_for(recipes: dict[int, tuple[float, int]], global_batch: int) -> tuple[float, int, str]:
    """(learning rate, warm-up samples, how they were found) for a global batch: the convergence point's own, or
    linear between the two nearest (the end points beyond them)."""
    sizes = sorted(recipes)
    if global_batch in recipes:
        lr, warm = recipes[global_batch]
        return lr, warm, f"the reference convergence point of global batch {global_batch}"
    lo = max((s for s in sizes if s < global_batch), default=sizes[0])
    hi = min((s for s in sizes if s > global_batch), default=sizes[-1])
    if lo == hi:
        lr, warm = recipes[lo]
        return lr, warm, f"the nearest reference convergence point (global batch {lo}): no RCP for {global_batch}"
    f = (global_batch - lo) / (hi - lo)
    lr = recipes[lo][0] + f * (recipes[hi][0] - recipes[lo][0])
    warm = round(recipes[lo][1] + f * (recipes[hi][1] - recipes[lo][1]))
    return lr, warm, f"interpolated between the reference convergence points of global batch {lo} and {hi}"


class LlamaPretrainWorkload(ShardedWorkload):
    def __init__(self, bench):
        super().__init__(bench)
        hp = bench.hparams
        self.spec: dict[str, Any] = hp["model"]
        self.seq_len: int = hp["seq_len"]
        self.vocab_size: int = self.spec["vocab_size"]
        self.root: Path | None = None  # the data folder (mini/tiny: the cache, with the tokenizer)
        if not 1 <= self.seq_len <= self.spec["max_position_embeddings"]:
            raise ConfigError(f"sequence length {self.seq_len} is over the model's context "
                              f"({self.spec['max_position_embeddings']} positions)",
                              f"give a sequence length from 1 to {self.spec['max_position_embeddings']}")

    @property
    def tokens_per_sample(self) -> int:
        return self.seq_len

    # ------------------------------------------------------------------ model
    def build_model(self) -> torch.nn.Module:
        return llama.build(self.spec, init_std=self.bench.hparams["init_std"], meta=True)

    def place_model(self, model: torch.nn.Module, device: torch.device, distributed_run: bool) -> torch.nn.Module:
        if self.bench.hparams.get("activation_checkpointing"):
            llama.checkpoint_activations(model)
        if distributed_run:
            sharding.fully_shard_blocks(model, model.model.layers, self.precision)
            self.sharded = True
        llama.materialize(model, device, self.bench.hparams["init_std"])
        return model

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        for layer in model.model.layers:  # per block: the shapes repeat, FSDP2's hooks stay outside the graphs
            layer.compile()
        return model

    def flops_per_sample(self) -> float:
        return llama.training_flops_per_token(self.spec, self.seq_len) * self.seq_len

    def speed_record(self) -> dict[str, Any]:
        return {"sharding": "fsdp2 per block" if self.sharded else "none",
                "activation_checkpointing": bool(self.bench.hparams.get("activation_checkpointing")),
                "attention": "sdpa"}

    def export_hf(self, checkpoint_path: Path, dest: Path, data_dir: str | None = None) -> Path:
        """The model of a checkpoint (``checkpoint.pt``, or a sharded checkpoint folder) as a Hugging Face
        directory at ``dest``, with the tokenizer the data was made with (mini/tiny: built here)."""
        from mlbench.llm import tokenizer
        from mlbench.training import checkpoint

        model = llama.build(self.spec, init_std=self.bench.hparams["init_std"])
        if checkpoint.is_distributed(checkpoint_path):
            import torch.distributed.checkpoint as dcp

            state = {"model": model.state_dict()}
            dcp.load(state, storage_reader=checkpoint._SafeReader(str(checkpoint_path)))
            model.load_state_dict(state["model"])
        else:
            state = checkpoint.read(checkpoint_path, what="checkpoint")
            model.load_state_dict(state["model"])
        root = Path(data_dir) if data_dir else (None if self.bench.is_reference else lldata.ensure_data(self.bench))
        files = tokenizer.Encoder(root / lldata.TOKENIZER).files() if root and (root / lldata.TOKENIZER).is_dir() \
            else []
        return llama.save_hf_dir(model, dest, files)

    # ------------------------------------------------------------------ data
    def _prefixes(self, spec: DataSpec) -> tuple[list[Path], Path]:
        hp = self.bench.hparams
        if spec.data_dir:
            return lldata.reference_prefixes(self.bench, Path(spec.data_dir))
        if self.bench.is_reference:
            raise DataError("llama31_8b reference needs the preprocessed C4 files", lldata._reference_fix())
        self.root = lldata.ensure_data(self.bench)
        return [self.root / n for n in hp["train_files"]], self.root / hp["eval_file"]

    def _open(self, spec: DataSpec) -> tuple[windows.Windows, windows.Windows]:
        train_p, eval_p = self._prefixes(spec)
        train = [IndexedTokens(p, what="training data") for p in train_p]
        ev = IndexedTokens(eval_p, what="evaluation data")
        for f in (*train, ev):
            f.check_vocab(self.vocab_size)
        return (windows.Windows(train, self.seq_len, vocab_size=self.vocab_size),
                windows.Windows([ev], self.seq_len, vocab_size=self.vocab_size))

    def check_data(self, spec: DataSpec) -> None:
        """Missing, truncated or mismatched files, ids outside the vocabulary and too little data fail here,
        before the model is built."""
        train, ev = self._open(spec)
        self._bundle(spec, train, ev)

    def build_data(self, spec: DataSpec) -> DataBundle:
        return self._bundle(spec, *self._open(spec))

    def _bundle(self, spec: DataSpec, train: windows.Windows, ev: windows.Windows) -> DataBundle:
        n_eval = self.bench.hparams["eval_samples"]
        return DataBundle(
            train=windows.TrainWindows(train, spec.batch_size, rank=spec.rank, world_size=spec.world_size,
                                       seed=spec.seed),
            eval=windows.EvalWindows(ev, n_eval, spec.eval_batch_size, rank=spec.rank, world_size=spec.world_size),
            train_samples=len(train), eval_samples=n_eval)

    def count_samples(self, batch: Any) -> int:
        return len(batch["input_ids"])

    def to_device(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        return {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}

    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, self.vocab_size, (batch_size, self.seq_len + 1), generator=g)
        return self.to_device({"input_ids": ids[:, :-1].contiguous(), "labels": ids[:, 1:].contiguous()}, ctx)

    # ------------------------------------------------------------------ optimisation
    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        lr, warm_samples, how = recipe_for(hp["rcp_recipes"], args.global_batch_size)
        if args.base_lr is not None:
            lr, how = args.base_lr, "--lr (open division)"
        warmup = max(1, math.ceil(warm_samples / args.global_batch_size))
        opt = ClippedAdamW(decay_groups(model.named_parameters(), hp.get("weight_decay", 0.1)), lr=lr,
                           betas=(hp.get("adam_beta1", 0.9), hp.get("adam_beta2", 0.95)), eps=hp.get("adam_eps", 1e-5),
                           max_grad_norm=hp.get("grad_clip", 1.0))
        end_lr = lr * hp.get("end_lr_factor", 0.1)
        sched = CosineWithWarmup(opt, base_lr=lr, warmup_steps=warmup, total_steps=hp["max_steps"], end_lr=end_lr)
        args.extra.update(base_lr=lr, warmup_steps=warmup, end_lr=end_lr, recipe=how)
        return opt, sched

    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        hp, x = self.bench.hparams, args.extra
        return {
            "max_sequence_length": self.seq_len,
            "opt_name": "adamw",
            "opt_base_learning_rate": x["base_lr"],
            "opt_end_learning_rate": x["end_lr"],
            "opt_learning_rate_warmup_steps": x["warmup_steps"],
            "opt_learning_rate_decay_steps": hp["max_steps"] - x["warmup_steps"],
            "opt_learning_rate_decay_schedule": "cosine with linear warmup",
            "opt_adamw_beta_1": hp.get("adam_beta1", 0.9),
            "opt_adamw_beta_2": hp.get("adam_beta2", 0.95),
            "opt_adamw_epsilon": hp.get("adam_eps", 1e-5),
            "opt_adamw_weight_decay": hp.get("weight_decay", 0.1),
            "opt_gradient_clip_norm": hp.get("grad_clip", 1.0),
            "max_steps": hp["max_steps"],
        }

    # ------------------------------------------------------------------ loss and evaluation
    def _logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        with ctx.amp():
            return model(input_ids=batch["input_ids"]).logits

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self._logits(model, batch, ctx)
        return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten()), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any, ctx: StepContext) -> tuple[dict[str, float], int]:
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        tokens = samples = 0
        for batch in batches:  # rows of weight 0 pad a short share (EvalWindows): run, not scored
            batch = self.to_device(batch, ctx)
            logits = self._logits(model, batch, ctx)
            per_row = F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), reduction="none")
            w = batch["weight"].double()
            total += (per_row.view(len(w), -1).double().sum(1) * w).sum()
            tokens += int(w.sum().item()) * batch["labels"].shape[1]
            samples += int(w.sum().item())
        s, t, n = distributed.all_reduce_sum([float(total), float(tokens), float(samples)], ctx.device)
        return {"log_perplexity": s / t if t else float("nan")}, int(n)


WORKLOAD = LlamaPretrainWorkload
