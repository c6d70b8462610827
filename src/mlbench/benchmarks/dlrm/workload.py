"""DLRM-DCNv2 training as a :class:`~mlbench.training.workload.Workload`.

- Model: ``model.DLRMTrain`` (plain PyTorch, TorchRec's names). On several processes the tables are sharded
  table-wise (each process builds only the tables it owns) and the dense part is data-parallel
  (``sharding.ShardedDLRM``); the checkpoint is one file per rank (``sharded_checkpoint``). With
  ``MLBENCH_DLRM_ENGINE=torchrec`` (or ``auto`` and TorchRec installed) the tables are TorchRec's instead
  (``torchrec_engine.py``; sharded by TorchRec on several processes), under the same names; result.json
  records the engine (``speed.dlrm_engine``).
- Loss: binary cross-entropy with logits, mean over the batch.
- Optimizers: Adagrad on the embeddings (sparse gradients) and Adagrad on the dense part, both at the base
  learning rate, lr decay 0, weight decay 0, initial accumulator 0, epsilon 1e-8, no warm-up or decay (the
  closed rules for dlrm_dcnv2).
- Evaluation: exact AUC (ties averaged) over the validation half of the evaluation day: every rank's scores
  and labels are gathered to rank 0 alone, which computes the metrics and broadcasts them; also the log loss
  and the click rate.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from mlbench.benchmarks.dlrm import auc as auc_mod
from mlbench.benchmarks.dlrm import model as dlrm_model
from mlbench.benchmarks.dlrm import sharding, torchrec_engine
from mlbench.benchmarks.dlrm.optim import RowWiseAdagrad
from mlbench.finite import HINT, NonFinite, count_nonfinite
from mlbench.training import distributed
from mlbench.training.batches import DataBundle, DataSpec
from mlbench.training.recipe import ConstantSchedule, OptimArgs, StepContext
from mlbench.training.workload import Optimizers, Workload

ADAGRAD_EPS = 1e-8


class DLRMWorkload(Workload):
    warm_up_restores_weights = False  # sharded tables are not deep-copied: the warm-up never steps instead
    sharded_checkpoint = True  # each rank writes (and resumes from) the tables it holds

    def logged_epoch_num(self, samples: int, train_samples: int) -> float:
        """DLRM's logs and RCPs count evaluations in fractions of the one-epoch budget."""
        return samples / train_samples if train_samples else float(samples)

    def __init__(self, bench):
        super().__init__(bench)
        self.engine = torchrec_engine.engine()  # MLBENCH_DLRM_ENGINE: plain (default), torchrec or auto
        self._compiled = False

    def build_model(self) -> torch.nn.Module:
        info = distributed.env_info()
        hp = self.bench.hparams
        owned = None
        if info.world_size > 1:
            owned = sharding.owned_tables(hp["table_rows"], info.rank, info.world_size)
        # the harness seeded torch with seed + rank; the tables use seed alone, so that a table is the same on
        # any number of processes (the dense part is broadcast from rank 0 by DDP)
        seed = torch.initial_seed() - info.rank
        net = dlrm_model.DLRMTrain(hp, owned=owned, seed=seed, engine=self.engine)
        if self.engine == "torchrec" and info.world_size > 1:  # the process group is up: shard the tables now
            device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" \
                else torch.device("cpu")
            torchrec_engine.shard_tables(net.model.sparse_arch, hp["lr"], hp.get("adagrad_eps", ADAGRAD_EPS), device)
        return net

    def wrap_model(self, model: torch.nn.Module, device: torch.device, distributed_: bool) -> torch.nn.Module:
        if not distributed_:
            return model
        if self.engine == "torchrec":
            return torchrec_engine.TorchRecDLRM(model, device)
        return sharding.ShardedDLRM(model, device)

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``--compile``: the dense part (bottom MLP, cross network, top MLP), in place, in every engine (one
        process, sharded, TorchRec); the tables stay eager: inductor cannot compile the backward of an embedding
        bag with sparse gradients ("Cannot access storage of SparseTensorImpl"), and a lookup has little to fuse."""
        (net,) = [m for m in model.modules() if isinstance(m, dlrm_model.DLRM_DCN)]
        for part in (net.dense_arch, net.inter_arch, net.over_arch):
            part.forward = torch.compile(part.forward)
        self._compiled = True
        return model

    def speed_record(self) -> dict[str, Any]:
        world = distributed.env_info().world_size
        how = ("table-wise sharded (TorchRec, fused exact Adagrad in backward)" if world > 1 else "unsharded")
        return {"dlrm_engine": self.engine, **({"compiled": "dense part (bottom MLP, cross network, top MLP); "
                                                           "tables eager"} if self._compiled else {}),
                "dlrm_tables": how if self.engine == "torchrec" else
                ("table-wise sharded (plain PyTorch all-to-all)" if world > 1 else "one process")}

    def replicated(self, model: torch.nn.Module) -> torch.nn.Module:
        return sharding.replicated(model) if distributed.env_info().world_size > 1 else model

    def check_data(self, spec: DataSpec) -> None:
        """The day files open (headers only, memory-mapped) before tens of millions of table rows are built."""
        from mlbench.benchmarks.dlrm import data, days

        if spec.data_dir or self.bench.is_reference:  # mini/tiny without --data-dir: generated later
            hp = self.bench.hparams
            root = data.data_root(self.bench, spec.data_dir, rank=spec.rank)
            for d in [*hp["train_days"], hp["eval_day"]]:
                days.open_day(root, d, hp["table_rows"], hp["multi_hot"])

    def build_data(self, spec: DataSpec) -> DataBundle:
        from mlbench.benchmarks.dlrm import data

        say = print if spec.rank == 0 else (lambda _m: None)
        return data.build(self.bench, spec, say)

    def count_samples(self, batch: Any) -> int:
        return len(batch["labels"])

    def to_device(self, batch: dict, ctx: StepContext) -> dict:
        if ctx.device.type == "cpu":
            return batch
        return {"dense": batch["dense"].to(ctx.device, non_blocking=True),
                "sparse": [s.to(ctx.device, non_blocking=True) for s in batch["sparse"]],
                "labels": batch["labels"].to(ctx.device, non_blocking=True)}

    def synthetic_batch(self, batch_size: int, ctx: StepContext) -> dict:
        hp = self.bench.hparams
        g = torch.Generator().manual_seed(3)
        return self.to_device({
            "dense": torch.rand(batch_size, 13, generator=g),
            "sparse": [torch.randint(0, n, (batch_size, h), generator=g)
                       for n, h in zip(hp["table_rows"], hp["multi_hot"])],
            "labels": torch.randint(0, 2, (batch_size,), generator=g).float()}, ctx)

    def build_optimizer(self, model: torch.nn.Module, args: OptimArgs):
        lr = args.base_lr if args.base_lr is not None else self.bench.hparams["lr"]
        kw = dict(lr=lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=ADAGRAD_EPS)
        sparse = dlrm_model.sparse_parameters(model)
        dense = dlrm_model.dense_parameters(model)
        members = [torch.optim.Adagrad(dense, **kw)]
        if dlrm_model.fused_tables(model):  # torchrec engine, sharded: FBGEMM updates the tables in backward
            members.append(torchrec_engine.FusedTableOptimizer(model.model.sparse_arch.embedding_bag_collection, lr))
        elif sparse:  # a rank may own no table when there are more ranks than tables
            members.append(RowWiseAdagrad(sparse, lr=lr, eps=ADAGRAD_EPS))  # exact Adagrad, sparse rows
        opt = Optimizers(*members)
        args.extra.update(base_lr=lr)
        return opt, ConstantSchedule(opt, lr)  # the closed rules: no warm-up, no decay

    def loss(self, model, batch, ctx: StepContext):
        with ctx.amp():
            logits = model(batch["dense"], batch["sparse"])
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model, batches, ctx: StepContext) -> tuple[dict[str, float], int]:
        model.eval()
        scores, labels = [], []
        for batch in batches:
            batch = self.to_device(batch, ctx)
            with ctx.amp():
                logits = model(batch["dense"], batch["sparse"])
            scores.append(logits.float().cpu())
            labels.append(batch["labels"].cpu())
        # rank 0 alone gathers every score and label (an all-gather would hold the whole set on every rank),
        # computes the exact metrics and broadcasts them: [auc, logloss, click_rate, count]
        s = auc_mod.gather_to_root(torch.cat(scores) if scores else torch.zeros(0))
        y = auc_mod.gather_to_root(torch.cat(labels).to(torch.uint8) if labels else torch.zeros(0, dtype=torch.uint8))
        values = [float("nan")] * 3 + [0.0, 0.0]
        if s is not None and len(y):
            bad, _ = count_nonfinite(s)  # shared with every rank, so that all of them stop
            yd = y.double()
            values = [float("nan")] * 3 + [float(len(y)), float(bad)] if bad else [
                auc_mod.auc(s.numpy(), y.numpy()), float(F.binary_cross_entropy_with_logits(s.double(), yd)),
                float(yd.mean()), float(len(y)), 0.0]
        del s, y
        auc, logloss, click_rate, n, bad = auc_mod.broadcast_floats(values)
        if bad:
            raise NonFinite(f"{int(bad)} of {int(n)} click scores are NaN or infinite: they are not scored (NaN "
                            "ranks like a score: the AUC would be meaningless), and the run has no result", HINT)
        return {"auc": auc, "logloss": logloss, "click_rate": click_rate}, int(n)

    def mllog_hparams(self, args: OptimArgs, optimizer: Any) -> dict[str, Any]:
        return {
            "opt_name": "adagrad",
            "opt_base_learning_rate": args.extra["base_lr"],
            "opt_adagrad_learning_rate_decay": 0.0,
            "opt_weight_decay": 0.0,
            "opt_adagrad_initial_accumulator_value": 0.0,
            "opt_adagrad_epsilon": ADAGRAD_EPS,
            "opt_learning_rate_warmup_steps": 0,
            "opt_learning_rate_decay_start_step": 0,
            "opt_learning_rate_decay_steps": 0,
        }


WORKLOAD = DLRMWorkload
