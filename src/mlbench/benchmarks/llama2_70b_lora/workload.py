"""Llama 2 70B LoRA fine-tuning as a :class:`~mlbench.training.workload.Workload`.

The base model comes from a Hugging Face directory: ``--model-dir`` at the reference size (Llama 2 70B, its
config.json and safetensors; read with safe loaders only, never remote code), the llama31_8b mini model at mini
(trained and cached first when missing: :mod:`mlbench.llm.pretrained`), a tiny random Llama made here at tiny.
It is built on the meta device, given LoRA adapters through ``peft`` (every base weight frozen), sharded with
FSDP2 block by block on several processes, then filled: each rank reads only its slices of the base weights.
The frozen base is stored in bf16 where the definition says so (the reference), the adapters in fp32.

Loss: next-token cross-entropy over the labels (-100 not scored), averaged over the tokens of a batch, as
transformers' causal LM computes it. Evaluation loss: the mean over evaluation rows of each row's mean loss,
what the reference's Trainer reports with one row per device batch. Optimizer: AdamW (0.9, 0.999, 1e-8, weight
decay 1e-4) on the adapters, gradients clipped at norm 0.3, cosine decay to 0 over max_steps without warm-up;
learning rate of the reference convergence point of the global batch (nearest for others).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from mlbench.benchmarks.llama2_70b_lora import data as lora_data
from mlbench.benchmarks.llama2_70b_lora import lora
from mlbench.data.folders import build_once
from mlbench.errors import ConfigError, DataError
from mlbench.llm import llama, tokenizer
from mlbench.llm.recipe import ClippedAdamW, CosineWithWarmup, decay_groups
from mlbench.llm.sharded import ShardedWorkload
from mlbench.llm.windows import EvalWindows, TrainWindows
from mlbench.training import distributed, sharding
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import OptimArgs, StepContext

_LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings", "rope_theta", "rope_scaling", "rms_norm_eps",
                 "tie_word_embeddings", "bos_token_id", "eos_token_id", "head_dim", "attention_bias", "mlp_bias",
                 "rope_parameters")


class PackedRows:
    """Packed rows in memory as a sample source for :mod:`mlbench.llm.windows`' batch iterators."""

    def __init__(self, packed: lora_data.Packed):
        self.x = torch.from_numpy(packed.input_ids)
        self.y = torch.from_numpy(packed.labels)

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"input_ids": self.x[idx].long(), "labels": self.y[idx].long()}

    def describe(self) -> str:
        return f"packed rows of {self.x.shape[1]} tokens"


class LoraWorkload(ShardedWorkload):
    def __init__(self, bench):
        super().__init__(bench)
        hp = bench.hparams
        self.seq_len: int = hp["seq_len"]
        self.model_dir: str | None = None  # --model-dir, set by the harness
        self.base_dir: Path | None = None
        self.spec: dict[str, Any] | None = None
        rank = hp["lora_rank"]
        if not (isinstance(rank, int) and rank >= 1):
            raise ConfigError(f"invalid LoRA rank {rank!r}: the rank is a whole number of at least 1 (16 in the "
                              "reference)", "give a LoRA rank of 1 or more")
        for key in ("lora_alpha", "lora_dropout"):
            v = hp[key]
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"invalid {key} {v!r}: it must be a finite number >= 0", "use the reference's value")

    @property
    def tokens_per_sample(self) -> int:
        return self.seq_len

    # ------------------------------------------------------------------ the base model
    def _base(self) -> Path:
        """The base model's directory: --model-dir, the mini base (trained when missing) or the tiny one."""
        if self.base_dir is not None:
            return self.base_dir
        hp = self.bench.hparams
        if self.model_dir:
            self.base_dir = Path(self.model_dir)
        elif self.bench.is_reference:
            raise DataError("llama2_70b_lora reference fine-tunes Llama 2 70B: no base model given",
                            "pass --model-dir DIR with the Llama 2 70B weights as a Hugging Face directory "
                            "(config.json and safetensors)")
        elif hp.get("base_model"):
            from mlbench.llm import pretrained

            name, size = hp["base_model"]
            self.base_dir = pretrained.trained_hf_dir(name, size, say=print)
        else:
            self.base_dir = self._tiny_base()
        names = llama.tensor_names(self.base_dir)  # no (safe) weights, or a truncated file, fails here
        if any(n.endswith("qkv_proj.weight") for n in names):
            raise DataError(f"{self.base_dir} holds fused q/k/v projections (qkv_proj: the reference's "
                            "trust_remote_code checkpoint); mlbench reads the standard Llama layout",
                            "pass the Hugging Face Llama 2 70B directory (meta-llama/Llama-2-70b-hf: q_proj, k_proj, "
                            "v_proj and o_proj per layer, as safetensors)")
        return self.base_dir

    def _tiny_base(self) -> Path:
        """The tiny base: a tokenizer trained on generated word runs and a tiny Llama pre-trained on them for a few
        hundred steps (seconds), saved as a model directory once. (A random base cannot be fine-tuned: its
        frozen output layer gives near-uniform predictions whatever the adapters do.)"""
        from mlbench.data import download

        spec = self.bench.hparams["tiny_model"]

        def make(out: Path) -> None:
            texts = lora_data.tiny_pretraining_text()
            tokenizer.train(texts, spec["vocab_size"], out / "tok")
            enc = tokenizer.Encoder(out / "tok")
            ids = torch.tensor([t for doc in enc.documents(texts) for t in doc])
            with torch.random.fork_rng():
                torch.manual_seed(1234)
                model = llama.build(spec, init_std=0.02)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
                n = 32
                for _ in range(300):
                    starts = torch.randint(0, len(ids) - n - 1, (16,))
                    rows = torch.stack([ids[s:s + n + 1] for s in starts.tolist()])
                    logits = model(input_ids=rows[:, :-1]).logits
                    F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten()).backward()
                    opt.step()
                    opt.zero_grad()
            llama.save_hf_dir(model, out / "model", enc.files())
            (out / "done").write_text("1\n")

        root = build_once(download.cache_dir("llama2_70b_lora", "tiny-base-v2"), make, marker="done")
        return root / "model"

    def _spec(self) -> dict[str, Any]:
        if self.spec is None:
            cfg = llama.read_config(self._base())
            spec = {k: cfg[k] for k in _LLAMA_FIELDS if k in cfg}
            spec["max_position_embeddings"] = max(spec.get("max_position_embeddings", 0),
                                                  self.bench.hparams["context"])
            self.spec = spec
        return self.spec

    def build_model(self) -> torch.nn.Module:
        hp = self.bench.hparams
        model = llama.build(self._spec(), init_std=0.02, meta=True)
        if hp.get("base_dtype") == "bf16":
            for p in model.parameters():
                p.data = p.data.to(torch.bfloat16)
        return lora.apply(model, rank=hp["lora_rank"], alpha=hp["lora_alpha"], dropout=hp["lora_dropout"],
                          targets=tuple(hp["lora_targets"]))

    def place_model(self, model: torch.nn.Module, device: torch.device, distributed_run: bool) -> torch.nn.Module:
        inner = lora.inner(model)
        if self.bench.hparams.get("activation_checkpointing"):
            llama.checkpoint_activations(inner)
        if distributed_run:
            sharding.fully_shard_blocks(model, lora.decoder_layers(model), self.precision)
            self.sharded = True
        llama.materialize(inner, device, None)
        lora.load_base(model, self._base(), sharded=self.sharded)
        lora.init_adapters(model)
        return model

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        for layer in lora.decoder_layers(model):
            layer.compile()
        return model

    def flops_per_sample(self) -> float:
        """The fine-tuning's model FLOPs: the base's forward (2N per token) and the backward through its
        activations (2N; no weight gradients for the frozen base), attention as in pre-training; the adapters'
        own FLOPs (under 0.1% at rank 16) are left out."""
        spec, n = self._spec(), self.seq_len
        full = llama.training_flops_per_token(spec, n)  # 6N + attention: forward, input and weight gradients
        counts = llama.parameter_count(spec)
        return (full - 2 * (counts["total"] - counts["embedding"])) * n

    def speed_record(self) -> dict[str, Any]:
        trainable = sum(p.numel() for p in self._trainable) if hasattr(self, "_trainable") else None
        return {"sharding": "fsdp2 per block" if self.sharded else "none", "trainable_parameters": trainable,
                "activation_checkpointing": bool(self.bench.hparams.get("activation_checkpointing")),
                "base_dtype": self.bench.hparams.get("base_dtype", "fp32")}

    # ------------------------------------------------------------------ data
    def _files(self, spec: DataSpec) -> tuple[Path, Path]:
        if spec.data_dir:
            return lora_data.find_files(Path(spec.data_dir))
        if self.bench.is_reference:
            raise DataError("llama2_70b_lora reference needs the GovReport files", lora_data._FIX)
        root = lora_data.ensure_data(self.bench, self._base())
        return root / lora_data.TRAIN_FILE, root / lora_data.EVAL_FILE

    def _open(self, spec: DataSpec) -> tuple[PackedRows, PackedRows]:
        train_f, eval_f = self._files(spec)
        model_spec = self._spec()
        kw = {"seq_len": self.seq_len, "vocab_size": model_spec["vocab_size"],
              "context": model_spec["max_position_embeddings"]}
        return (PackedRows(lora_data.read_packed(train_f, what="training data", **kw)),
                PackedRows(lora_data.read_packed(eval_f, what="evaluation data", **kw)))

    def check_data(self, spec: DataSpec) -> None:
        self._open(spec)

    def build_data(self, spec: DataSpec) -> DataBundle:
        train, ev = self._open(spec)
        return DataBundle(
            train=TrainWindows(train, spec.batch_size, rank=spec.rank, world_size=spec.world_size, seed=spec.seed),
            eval=EvalWindows(ev, len(ev), spec.eval_batch_size, rank=spec.rank, world_size=spec.world_size),
            train_samples=len(train), eval_samples=len(ev))

    def count_samples(self, batch: Any) -> int:
        return len(batch["input_ids"])

    def to_device(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        return {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}

    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, self._spec()["vocab_size"], (batch_size, self.seq_len), generator=g)
        return self.to_device({"input_ids": ids, "labels": ids.clone(), "weight": torch.ones(batch_size)}, ctx)

    # ------------------------------------------------------------------ optimisation
    def evaluations_skipped(self, global_batch_size: int) -> int:
        """The rules skip the first floor(0.125 x global batch + 2) evaluations (none at mini and tiny)."""
        return int(0.125 * global_batch_size + 2) if self.bench.hparams.get("skip_evaluations") else 0

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        table = hp["rcp_lr"]
        gbs = args.global_batch_size
        nearest = min(table, key=lambda b: (abs(b - gbs), b))
        lr = args.base_lr if args.base_lr is not None else table[nearest]
        self._trainable = [p for p in model.parameters() if p.requires_grad]
        opt = ClippedAdamW(decay_groups(model.named_parameters(), hp["weight_decay"]), lr=lr,
                           betas=(hp["adam_beta1"], hp["adam_beta2"]), eps=hp["adam_eps"],
                           max_grad_norm=hp["grad_clip"])
        warmup = math.ceil(hp.get("warmup_ratio", 0.0) * hp["max_steps"])
        sched = CosineWithWarmup(opt, base_lr=lr, warmup_steps=warmup, total_steps=hp["max_steps"], end_lr=0.0)
        args.extra.update(base_lr=lr, recipe=f"the reference convergence point of global batch {nearest}")
        return opt, sched

    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        hp = self.bench.hparams
        return {
            "opt_base_learning_rate": args.extra["base_lr"],
            "opt_learning_rate_training_steps": hp["max_steps"],
            "opt_learning_rate_warmup_factor": hp.get("warmup_ratio", 0.0),
            "opt_gradient_clip_norm": hp["grad_clip"],
            "opt_adamw_weight_decay": hp["weight_decay"],
            "lora_rank": hp["lora_rank"],
            "lora_alpha": hp["lora_alpha"],
        }

    # ------------------------------------------------------------------ loss and evaluation
    def _token_losses(self, model, batch, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token losses, scored mask), both (rows, seq_len - 1): position t predicts label t + 1."""
        with ctx.amp():
            logits = model(input_ids=batch["input_ids"]).logits
        labels = batch["labels"][:, 1:]
        losses = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels.flatten(),
                                 ignore_index=lora_data.IGNORE, reduction="none").view_as(labels)
        return losses, labels != lora_data.IGNORE

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, scored = self._token_losses(model, batch, ctx)
        return losses.sum() / scored.sum().clamp(min=1), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any, ctx: StepContext) -> tuple[dict[str, float], int]:
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        rows = evaluated = 0
        for batch in batches:  # rows of weight 0 pad a short share: run, not scored
            batch = self.to_device(batch, ctx)
            losses, scored = self._token_losses(model, batch, ctx)
            n = scored.sum(1)
            real = batch["weight"] > 0
            use = real & (n > 0)  # a row with nothing to score has no loss (left out of the mean)
            per_row = losses.sum(1) / n.clamp(min=1)
            total += per_row[use].double().sum()
            rows += int(use.sum())
            evaluated += int(real.sum())
        s, r, e = distributed.all_reduce_sum([float(total), float(rows), float(evaluated)], ctx.device)
        return {"eval_loss": s / r if r else float("nan")}, int(e)


WORKLOAD = LoraWorkload
