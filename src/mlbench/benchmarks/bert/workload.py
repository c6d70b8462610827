"""BERT pre-training as a :class:`~mlbench.training.workload.Workload`: masked LM + next sentence, LAMB.

Data (``--data-dir DIR``), as the MLPerf reference lays it out::

    DIR/hdf5/training-4320/hdf5_4320_shards_varlength/*.hdf5   # or hdf5_4320_shards_uncompressed/, or hdf5/training/
    DIR/hdf5/eval_varlength/*.hdf5                              # or hdf5/eval/: the 10,000 evaluation samples
    DIR/phase1/model.ckpt-28252.pt                              # the phase-1 checkpoint (reference size)

mini and tiny build their data into the cache when ``--data-dir`` is not given (see :mod:`.pretrain_data`);
given, it is read with the same layout.

The reference size starts from the MLPerf phase-1 checkpoint, converted from TF by the reference's
``convert_tf_checkpoint.py``. It is found, in this order, at ``hparams['init_checkpoint']``, at
``$MLBENCH_BERT_INIT_CHECKPOINT``, or at ``DIR/phase1/model.ckpt-28252.pt``; the reference size refuses to
start without it. mini and tiny start from random weights (``init_checkpoint`` may name a checkpoint there
too). Because ``build_model`` runs before the data folder is known, a checkpoint found in ``DIR`` is loaded
by ``build_data`` into the model built just before (both before ``init_stop``, before the warm-up copy).

Loss: masked-LM cross-entropy over the masked positions (``masked_lm_ids`` 0 is padding, ignored) plus the
next-sentence cross-entropy. Evaluation: masked-LM accuracy (correct / masked tokens) and loss over the whole
evaluation set, summed over ranks.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from mlbench.benchmarks.bert import pretrain_data, shards
from mlbench.benchmarks.bert.model import build_pretraining_model, load_phase1_checkpoint
from mlbench.errors import DataError
from mlbench.finite import HINT, NonFinite
from mlbench.training import distributed
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.optimizers import Lamb, ReferenceSchedule, parameter_groups
from mlbench.training.recipe import OptimArgs, StepContext
from mlbench.training.workload import NO_TARGET, Workload

INIT_CHECKPOINT_ENV = "MLBENCH_BERT_INIT_CHECKPOINT"


class BertWorkload(Workload):
    def __init__(self, bench):
        super().__init__(bench)
        self._model: torch.nn.Module | None = None
        self.init_checkpoint: str | None = None  # the checkpoint loaded, if any

    # ------------------------------------------------------------------ model
    def _explicit_checkpoint(self) -> str | None:
        return self.bench.hparams.get("init_checkpoint") or os.environ.get(INIT_CHECKPOINT_ENV) or None

    def build_model(self) -> torch.nn.Module:
        model = build_pretraining_model(self.bench)
        path = self._explicit_checkpoint()
        if path:
            load_phase1_checkpoint(model, path)
            self.init_checkpoint = str(path)
        self._model = model
        return model

    # ------------------------------------------------------------------ data
    def _folders(self, spec: DataSpec) -> tuple[Path, Path]:
        if spec.data_dir:
            root = Path(spec.data_dir)
            train_dir, eval_dir = pretrain_data.find_reference_dirs(root)
            if train_dir is None or eval_dir is None:
                raise DataError(
                    f"no BERT {'training shards' if train_dir is None else 'evaluation set'} under {root}",
                    "lay the data out as the MLPerf reference does: hdf5/training-4320/hdf5_4320_shards_varlength/ "
                    "(or _uncompressed, or hdf5/training/) and hdf5/eval_varlength/ (or hdf5/eval/); "
                    "`mlbench data prepare bert --size reference --root DIR` checks a folder")
        elif self.bench.is_reference:
            raise DataError("BERT reference needs the MLPerf pre-training shards",
                            "pass --data-dir DIR holding hdf5/training-4320/hdf5_4320_shards_varlength/, "
                            "hdf5/eval_varlength/ and phase1/model.ckpt-28252.pt (MLPerf Training BERT data)")
        else:
            root = pretrain_data.ensure_data(self.bench)
            train_dir, eval_dir = root / "hdf5" / "training", root / "hdf5" / "eval"
        self._load_checkpoint_from(root)
        return train_dir, eval_dir

    def _load_checkpoint_from(self, root: Path) -> None:
        if self.init_checkpoint is not None:
            return
        path = root / pretrain_data.PHASE1_CHECKPOINT
        if path.is_file() and self._model is not None:
            load_phase1_checkpoint(self._model, path)
            self.init_checkpoint = str(path)
        elif self.bench.is_reference:
            raise DataError(f"BERT reference starts from the MLPerf phase-1 checkpoint, not found at {path}",
                            f"put model.ckpt-28252.pt there (converted by the reference's convert_tf_checkpoint.py),"
                            f" or name it with ${INIT_CHECKPOINT_ENV}")

    def build_data(self, spec: DataSpec) -> DataBundle:
        hp = self.bench.hparams
        seq_len, max_pred = hp["seq_len"], hp["max_predictions"]
        train_dir, eval_dir = self._folders(spec)
        vocab = hp["model"]["vocab_size"]
        train_info = shards.open_folder(train_dir, seq_len, max_pred, "training", vocab)
        eval_info = shards.open_folder(eval_dir, seq_len, max_pred, "evaluation", vocab)
        eval_total = sum(i.samples for i in eval_info)
        limit = hp.get("eval_samples") if eval_total > hp.get("eval_samples", eval_total) else None
        train = shards.ShardStream(train_info, spec.batch_size, seq_len=seq_len, max_predictions=max_pred,
                                   rank=spec.rank, world_size=spec.world_size, seed=spec.seed,
                                   prefetch=spec.workers != 0)
        ev = shards.EvalSet(eval_info, spec.eval_batch_size, seq_len=seq_len, max_predictions=max_pred,
                            rank=spec.rank, world_size=spec.world_size, limit=limit)
        return DataBundle(train=train, eval=ev, train_samples=sum(i.samples for i in train_info),
                          eval_samples=ev.total)

    def input_problem(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """NO_TARGET when no token of the batch is masked (every masked_lm_id is padding: the MLM loss is 0/0)."""
        return (batch["masked_lm_ids"] == 0).all().to(torch.float32) * NO_TARGET

    def count_samples(self, batch: Any) -> int:
        return len(batch["input_ids"])

    def to_device(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        return {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}

    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> dict[str, torch.Tensor]:
        hp = self.bench.hparams
        seq, preds, vocab = hp["seq_len"], hp["max_predictions"], hp["model"]["vocab_size"]
        g = torch.Generator().manual_seed(0)
        batch = {
            "input_ids": torch.randint(5, vocab, (batch_size, seq), generator=g),
            "token_type_ids": (torch.arange(seq) >= seq // 2).long().expand(batch_size, seq).clone(),
            "attention_mask": torch.ones(batch_size, seq, dtype=torch.long),
            "masked_lm_positions": torch.randint(1, seq, (batch_size, preds), generator=g).sort(1).values,
            "masked_lm_ids": torch.randint(5, vocab, (batch_size, preds), generator=g),
            "next_sentence_labels": torch.randint(0, 2, (batch_size,), generator=g),
        }
        return self.to_device(batch, ctx)

    # ------------------------------------------------------------------ optimisation
    def training_steps(self, args: OptimArgs) -> int:
        """The steps the schedule decays over: the sample budget in global batches (the RCP's steps at its batch)."""
        if self.bench.max_samples:
            return max(1, math.ceil(self.bench.max_samples / args.global_batch_size))
        return int(self.bench.hparams["training_steps"])

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        hp = self.bench.hparams
        base_lr = args.base_lr if args.base_lr is not None else hp["lr"]
        opt = Lamb(parameter_groups(model, hp["weight_decay"]), lr=base_lr,
                   betas=(hp["lamb_beta_1"], hp["lamb_beta_2"]), eps=hp["lamb_epsilon"],
                   weight_decay=hp["weight_decay"], max_grad_norm=hp.get("grad_clip", 1.0))
        steps = self.training_steps(args)
        sched = ReferenceSchedule(opt, base_lr, hp["warmup_steps"], steps, hp.get("start_warmup_step", 0))
        args.extra.update(base_lr=base_lr, training_steps=steps)
        return opt, sched

    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        hp = self.bench.hparams
        return {
            "opt_base_learning_rate": args.extra.get("base_lr", hp["lr"]),
            "opt_lamb_epsilon": hp["lamb_epsilon"],
            "opt_learning_rate_training_steps": args.extra.get("training_steps", self.training_steps(args)),
            "opt_learning_rate_warmup_steps": hp["warmup_steps"],
            "num_warmup_steps": hp["warmup_steps"],
            "start_warmup_step": hp.get("start_warmup_step", 0),
            "opt_lamb_beta_1": hp["lamb_beta_1"],
            "opt_lamb_beta_2": hp["lamb_beta_2"],
            "opt_lamb_weight_decay_rate": hp["weight_decay"],
        }

    # ------------------------------------------------------------------ loss and evaluation
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with ctx.amp():
            mlm_logits, nsp_logits = model(batch)
        labels = batch["masked_lm_ids"]
        mlm = F.cross_entropy(mlm_logits.float().flatten(0, 1), labels.flatten(), ignore_index=0)
        nsp = F.cross_entropy(nsp_logits.float(), batch["next_sentence_labels"])
        return mlm + nsp, {"mlm": mlm.detach(), "nsp": nsp.detach()}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any, ctx: StepContext) -> tuple[dict[str, float], int]:
        model.eval()  # no dropout (the harness restores train())
        correct = torch.zeros((), dtype=torch.float64, device=ctx.device)
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
        nonfinite = torch.zeros((), dtype=torch.float64, device=ctx.device)  # masked tokens with NaN/inf logits
        samples = 0
        for batch in batches:
            batch = self.to_device(batch, ctx)
            with ctx.amp():
                mlm_logits, _ = model(batch)
            labels = batch["masked_lm_ids"].flatten()
            logits = mlm_logits.float().flatten(0, 1)
            valid = labels != 0
            correct += ((logits.argmax(-1) == labels) & valid).sum()
            nonfinite += (~torch.isfinite(logits.sum(-1)) & valid).sum()  # a row's sum is NaN/inf when one is
            total += valid.sum()
            loss_sum += F.cross_entropy(logits, labels, ignore_index=0, reduction="sum").double()
            samples += len(batch["input_ids"])
        c, t, ls, n, bad = distributed.all_reduce_sum(
            [float(correct), float(total), float(loss_sum), float(samples), float(nonfinite)], ctx.device)
        if bad:
            raise NonFinite(f"the model's logits are NaN or infinite for {int(bad)} of {int(t)} masked tokens of "
                            "the evaluation set: they are not scored, and the run has no result", HINT)
        if not t:
            raise DataError(f"the evaluation set ({int(n)} samples) has no masked token to score: every "
                            "masked_lm_id is padding", "use the MLPerf evaluation shards (or regenerate the data)")
        return {"mlm_accuracy": c / t, "mlm_loss": ls / t}, int(n)


WORKLOAD = BertWorkload
