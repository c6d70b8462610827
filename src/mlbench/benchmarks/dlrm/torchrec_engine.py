"""The TorchRec engine of DLRM training (optional): the embeddings as TorchRec's ``EmbeddingBagCollection``.

Chosen by ``MLBENCH_DLRM_ENGINE``: ``plain`` (the default: plain PyTorch, ``model.py`` + ``sharding.py``),
``torchrec``, or ``auto`` (torchrec when it imports). Install with ``pip install 'mlbench[recsys]'`` (torchrec
and its FBGEMM); on a machine without CUDA, ``pip install fbgemm-gpu-cpu`` and ``pip install --no-deps torchrec``
instead (torchrec itself asks for the CUDA build of FBGEMM).

- One process: TorchRec's unsharded collection (one ``nn.EmbeddingBag`` per table, sparse gradients) under the
  same optimizers as the plain engine (row-wise exact Adagrad on the tables, Adagrad on the dense part).
- Several processes: the collection is built on the meta device and sharded table-wise by
  ``torchrec.distributed.shard`` with the plain engine's placement (``sharding.plan``), so that rank r holds the
  same tables under either engine; lookups and the pooled rows travel by TorchRec's all-to-alls and the tables
  are updated in the backward by FBGEMM's fused EXACT_ADAGRAD (as the reference trains); the dense part is
  data-parallel (DDP), as in the plain engine.

Either way the parameter names are the plain engine's (``model.sparse_arch.embedding_bag_collection.
embedding_bags.t_cat_{t}.weight``) and the tables start from the same seeded values, so checkpoints and
``--weights`` interchange between the engines; a sharded table is saved as the plain tensor of its one shard.
The optimizer state of the fused tables is saved as plain tensors too (TorchRec's own keys), and resumes
under the same engine and world size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from mlbench.errors import ConfigError

ENGINE_ENV = "MLBENCH_DLRM_ENGINE"
ENGINES = ("plain", "torchrec", "auto")
INSTALL_HINT = ("pip install 'mlbench[recsys]' (CPU only: pip install fbgemm-gpu-cpu; pip install --no-deps "
                "torchrec), or leave MLBENCH_DLRM_ENGINE unset for the plain engine")


def available() -> bool:
    """TorchRec (and FBGEMM) import."""
    try:
        import fbgemm_gpu  # noqa: F401
        import torchrec  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken fbgemm install raises many types
        return False
    return True


def engine() -> str:
    """The engine ``MLBENCH_DLRM_ENGINE`` asks for: plain or torchrec (ConfigError when unknown or absent)."""
    choice = os.environ.get(ENGINE_ENV, "plain").strip().lower() or "plain"
    if choice not in ENGINES:
        raise ConfigError(f"invalid value for {ENGINE_ENV}: {choice!r}", f"allowed: {', '.join(ENGINES)}")
    if choice == "auto":
        return "torchrec" if available() else "plain"
    if choice == "torchrec" and not available():
        raise ConfigError(f"{ENGINE_ENV}=torchrec but torchrec (with fbgemm_gpu) does not import", INSTALL_HINT)
    return choice


def keyed_jagged(sparse: Sequence[torch.Tensor], keys: Sequence[str]):
    """Fixed-width multi-hot ids ([B, h_t] per field) as TorchRec's KeyedJaggedTensor."""
    from torchrec import KeyedJaggedTensor

    b = len(sparse[0])
    values = torch.cat([s.reshape(-1) for s in sparse])
    lengths = torch.cat([torch.full((b,), s.shape[1], dtype=torch.int32, device=s.device) for s in sparse])
    return KeyedJaggedTensor(keys=list(keys), values=values, lengths=lengths)


class TorchRecSparseArch(nn.Module):
    """The sparse arch on TorchRec's EmbeddingBagCollection; forward gives [B, 26, D] like ``model.SparseArch``."""

    def __init__(self, rows: Sequence[int], dim: int, seed: int, meta: bool = False):
        super().__init__()
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig

        from mlbench.benchmarks.dlrm import sharding

        self.keys = [f"cat_{t}" for t in range(len(rows))]
        self.rows, self.dim, self.seed = list(rows), dim, seed
        tables = [EmbeddingBagConfig(name=f"t_cat_{t}", embedding_dim=dim, num_embeddings=n,
                                     feature_names=[self.keys[t]]) for t, n in enumerate(rows)]
        # on the meta device (no memory, no draw from the global RNG, which initialises the dense part next)
        self.embedding_bag_collection = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        if not meta:
            self.embedding_bag_collection.to_empty(device="cpu")
            with torch.no_grad():
                for t, n in enumerate(rows):
                    bag = self.embedding_bag_collection.embedding_bags[f"t_cat_{t}"]
                    bag.weight.copy_(sharding.table_init(n, dim, seed, t))
                    bag.sparse = True  # sparse gradients: the row-wise Adagrad touches the looked-up rows only

    def forward(self, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.embedding_bag_collection(keyed_jagged(sparse, self.keys))
        if hasattr(out, "wait"):  # sharded: an awaitable of the output all-to-all
            out = out.wait()
        d = out.to_dict()  # a sharded collection orders its output by placement: back to field order
        return torch.stack([d[k] for k in self.keys], dim=1)


def _table_wise_plan(rows: Sequence[int], world: int) -> dict:
    from torchrec.distributed.embedding_types import EmbeddingComputeKernel
    from torchrec.distributed.sharding_plan import table_wise

    from mlbench.benchmarks.dlrm import sharding

    fused = EmbeddingComputeKernel.FUSED.value  # FBGEMM's kernel with the optimizer in its backward
    return {f"t_cat_{t}": table_wise(rank=r, compute_kernel=fused) for t, r in enumerate(sharding.plan(rows, world))}


def shard_tables(arch: TorchRecSparseArch, lr: float, eps: float, device: torch.device) -> None:
    """Replace the (meta) collection by its table-wise sharded form, each table on its plain-engine owner, with
    FBGEMM's fused exact Adagrad at ``lr``/``eps``; the owned tables get the plain engine's seeded values."""
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.shard import shard
    from torchrec.distributed.types import ShardingEnv

    from mlbench.benchmarks.dlrm import sharding

    sharder = EmbeddingBagCollectionSharder(fused_params={"optimizer": EmbOptimType.EXACT_ADAGRAD,
                                                          "learning_rate": lr, "eps": eps})
    arch.embedding_bag_collection = shard(arch.embedding_bag_collection,
                                          _table_wise_plan(arch.rows, dist.get_world_size()),
                                          env=ShardingEnv.from_process_group(dist.GroupMember.WORLD),
                                          device=device, sharder=sharder)
    _plain_state(arch.embedding_bag_collection)
    with torch.no_grad():
        for name, local in arch.embedding_bag_collection.mlbench_local_tables.items():
            t = int(name.split("t_cat_", 1)[1].split(".")[0])
            local.copy_(sharding.table_init(arch.rows[t], arch.dim, arch.seed, t).to(local.device))


def _plain_state(sharded: nn.Module) -> None:
    """The sharded collection's state dict in plain tensors: the tables this rank holds, under their plain
    names (``embedding_bags.t_cat_{t}.weight``), so that checkpoint files hold tensors only and the plain
    engine's files load into it. ``mlbench_local_tables``: those names -> the local tensors (table-wise: whole
    tables; views of FBGEMM's fused weights, so writing them writes the tables)."""
    tables = {}
    for k, v in sharded.state_dict().items():
        shards = v.local_shards() if hasattr(v, "local_shards") else []
        if shards:
            tables[k] = shards[0].tensor
    sharded.mlbench_local_tables = tables

    def to_plain(module, state, prefix, local_metadata):
        for k in [k for k in state if k.startswith(prefix)]:
            name = k[len(prefix):]
            if name in tables:
                state[k] = tables[name].detach().clone()
            else:
                del state[k]  # a table another rank holds
        return state

    def load(state, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        with torch.no_grad():
            for name, local in tables.items():
                if prefix + name not in state:
                    missing_keys.append(prefix + name)
                    continue
                value = state[prefix + name]
                if value.shape != local.shape:
                    error_msgs.append(f"size mismatch for {prefix + name}: the file holds {tuple(value.shape)}, "
                                      f"this rank's table {tuple(local.shape)}")
                    continue
                local.copy_(value.to(local.device))
        unexpected_keys.extend(k for k in state if k.startswith(prefix) and k[len(prefix):] not in tables)

    def nothing(*args, **kwargs):
        return None

    sharded._register_state_dict_hook(to_plain)
    # nn.Module.load_state_dict visits every submodule: TorchRec's internal modules (lookups, fused kernels)
    # load nothing themselves; the collection loads the plain tables into its local shards
    for sub in sharded.modules():
        sub._load_from_state_dict = nothing
    sharded._load_from_state_dict = load


class FusedTableOptimizer:
    """The sharded collection's fused optimizer (applied in backward) as an optimizer member: ``step`` and
    ``zero_grad`` do nothing; its state (``sum`` per table row) is saved and loaded as plain local tensors."""

    def __init__(self, sharded: nn.Module, lr: float):
        self.fused = sharded.fused_optimizer
        self.param_groups = self.fused.param_groups
        for g in self.param_groups:
            g["lr"] = lr
        self.fused.step()  # the update happened in backward; step() passes the learning rate on to FBGEMM

    def step(self) -> None:
        self.fused.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def state_dict(self) -> dict:
        state = {}
        for key, per_param in self.fused.state_dict()["state"].items():
            for name, v in per_param.items():
                if hasattr(v, "local_shards"):
                    shards = v.local_shards()
                    if shards:
                        state[f"{key}/{name}"] = shards[0].tensor.detach().clone()
                elif isinstance(v, torch.Tensor):
                    state[f"{key}/{name}"] = v.detach().clone()
        return {"fused_state": state}

    def load_state_dict(self, saved: dict) -> None:
        mine = self.state_dict()["fused_state"]
        got = saved.get("fused_state", {})
        if set(got) != set(mine):
            raise ValueError(f"fused optimizer state holds {sorted(got)[:3]}..., this rank {sorted(mine)[:3]}...")
        current = self.fused.state_dict()["state"]
        with torch.no_grad():
            for key, per_param in current.items():
                for name, v in per_param.items():
                    target = v.local_shards()[0].tensor if hasattr(v, "local_shards") and v.local_shards() else v
                    if isinstance(target, torch.Tensor) and f"{key}/{name}" in got:
                        target.copy_(got[f"{key}/{name}"].to(target.device))


class TorchRecDLRM(nn.Module):
    """The training module on one rank under the torchrec engine: sharded tables, DDP dense part.

    TorchRec's lookups and backward are used as they are: each rank's loss is a mean over its local batch, so
    the owner's gradient is a constant multiple of the global batch's, and exact Adagrad from a zero
    accumulator is invariant to a constant scale of the gradient (but for epsilon); the test finds tables,
    dense part and losses equal to one plain process on the global batch after 3 steps (within Adagrad's
    first-step rounding). Another table optimizer would need the gradient scaled. Local batches of different lengths (the evaluation's last chunks) are padded to the
    longest, so that every rank's lookups have the same batch.
    """

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        from mlbench.benchmarks.dlrm import sharding

        self.net = net
        self.dense = nn.parallel.DistributedDataParallel(
            sharding._DenseStack(net), device_ids=[device.index] if device.type == "cuda" else None)

    def no_sync(self):
        return self.dense.no_sync()

    def forward(self, dense: torch.Tensor, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        b = len(dense)
        m = torch.tensor([b], device=dense.device)
        dist.all_reduce(m, op=dist.ReduceOp.MAX)
        m = int(m.item())
        if b < m:  # id 0 is a row of every table; the padded rows are dropped below
            sparse = [torch.cat([s, s.new_zeros(m - b, s.shape[1])]) for s in sparse]
        return self.dense(dense, self.net.model.sparse_arch(sparse)[:b])
