"""DLRM-DCNv2 in plain PyTorch, with TorchRec's module layout and parameter names.

    dense [B,13] -> dense_arch (MLP, ReLU after every layer) -> [B, D]
    sparse ids   -> sparse_arch (one EmbeddingBag per field, sum pooling) -> [B, 26, D]
    concat [B, 27*D] -> inter_arch (DCNv2 low-rank cross net: x_{l+1} = x0 * (W_l (V_l x_l) + b_l) + x_l)
                     -> over_arch (MLP with ReLU, then a final linear layer) -> logit [B]

Parameter names follow ``torchrec.models.dlrm.DLRM_DCN`` inside ``DLRMTrain`` (``model.sparse_arch.
embedding_bag_collection.embedding_bags.t_cat_0.weight``, ``model.dense_arch.model._mlp.0._linear.weight``,
``model.inter_arch.crossnet.V_kernels.0`` ...), so a state dict moves between this model and TorchRec's.
Initialisation follows TorchRec too: tables uniform(+-sqrt(1/rows)), cross kernels Xavier-normal, biases zero,
linear layers PyTorch's default.

A table that another process owns (table-wise sharding, see ``sharding.py``) is an :class:`Absent`
placeholder: no parameters, no memory; only the owner holds and trains it. ``engine="torchrec"`` builds the
sparse arch on TorchRec's EmbeddingBagCollection instead (``torchrec_engine.py``), with the same names and values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mlbench.benchmarks.dlrm.sharding import table_init


class Perceptron(nn.Module):
    def __init__(self, n_in: int, n_out: int, activation: bool = True):
        super().__init__()
        self._linear = nn.Linear(n_in, n_out)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._linear(x)
        return torch.relu(y) if self.activation else y


class MLP(nn.Module):
    def __init__(self, n_in: int, sizes: Sequence[int]):
        super().__init__()
        layers, prev = [], n_in
        for n in sizes:
            layers.append(Perceptron(prev, n))
            prev = n
        self._mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(x)


class DenseArch(nn.Module):
    def __init__(self, n_in: int, sizes: Sequence[int]):
        super().__init__()
        self.model = MLP(n_in, sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Absent(nn.Module):
    """A table held by another process."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim = rows, dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        raise RuntimeError("this table is held by another process")


class EmbeddingBagCollection(nn.Module):
    def __init__(self, rows: Sequence[int], dim: int, owned: Sequence[int] | None = None, seed: int = 0):
        super().__init__()
        owned_set = set(range(len(rows))) if owned is None else set(owned)
        bags = {}
        for t, n in enumerate(rows):
            if t not in owned_set:
                bags[f"t_cat_{t}"] = Absent(n, dim)
                continue
            bags[f"t_cat_{t}"] = nn.EmbeddingBag(n, dim, mode="sum", sparse=True, _weight=table_init(n, dim, seed, t))
        self.embedding_bags = nn.ModuleDict(bags)
        self.owned = sorted(owned_set)

    def table(self, t: int) -> nn.Module:
        return self.embedding_bags[f"t_cat_{t}"]

    def pooled(self, sparse: Sequence[torch.Tensor], tables: Sequence[int]) -> torch.Tensor:
        """[B, len(tables), D]: each table's sum over its field's multi-hot ids ([B, h_t] each)."""
        return torch.stack([self.table(t)(sparse[t]) for t in tables], dim=1)


class SparseArch(nn.Module):
    def __init__(self, rows: Sequence[int], dim: int, owned: Sequence[int] | None = None, seed: int = 0):
        super().__init__()
        self.embedding_bag_collection = EmbeddingBagCollection(rows, dim, owned, seed)

    def forward(self, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        ebc = self.embedding_bag_collection
        return ebc.pooled(sparse, range(len(ebc.embedding_bags)))


class LowRankCrossNet(nn.Module):
    def __init__(self, n_in: int, layers: int, rank: int):
        super().__init__()
        self.num_layers = layers
        self.W_kernels = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(n_in, rank))) for _ in range(layers)])
        self.V_kernels = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, n_in))) for _ in range(layers)])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(n_in)) for _ in range(layers)])

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for i in range(self.num_layers):
            xv = x @ self.V_kernels[i].t()  # [B, r]
            x = x0 * (xv @ self.W_kernels[i].t() + self.bias[i]) + x
        return x


class InteractionDCNArch(nn.Module):
    def __init__(self, n_in: int, layers: int, rank: int):
        super().__init__()
        self.crossnet = LowRankCrossNet(n_in, layers, rank)

    def forward(self, dense: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.crossnet(torch.cat([dense, pooled.flatten(1)], dim=1))


class OverArch(nn.Module):
    def __init__(self, n_in: int, sizes: Sequence[int]):
        super().__init__()
        self.model = nn.Sequential(MLP(n_in, sizes[:-1]), nn.Linear(sizes[-2] if len(sizes) > 1 else n_in,
                                                                      sizes[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DLRM_DCN(nn.Module):  # noqa: N801 - TorchRec's name
    def __init__(self, hp: dict, owned: Sequence[int] | None = None, seed: int = 0, engine: str = "plain"):
        super().__init__()
        rows, dim = list(hp["table_rows"]), int(hp["embedding_dim"])
        if hp["bottom_mlp"][-1] != dim:
            raise ValueError("the bottom MLP must end in the embedding dimension")
        n_inter = dim * (len(rows) + 1)
        if engine == "torchrec":  # TorchRec's collection; sharded ones start on the meta device (torchrec_engine)
            from mlbench.benchmarks.dlrm.torchrec_engine import TorchRecSparseArch

            self.sparse_arch = TorchRecSparseArch(rows, dim, seed, meta=owned is not None)
        else:
            self.sparse_arch = SparseArch(rows, dim, owned, seed)
        self.dense_arch = DenseArch(int(hp.get("dense_features", 13)), hp["bottom_mlp"])
        self.inter_arch = InteractionDCNArch(n_inter, int(hp["dcn_layers"]), int(hp["dcn_low_rank"]))
        self.over_arch = OverArch(n_inter, hp["top_mlp"])

    def dense_forward(self, dense: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The data-parallel part: dense features and pooled embeddings [B, 26, D] -> logits [B]."""
        x = self.inter_arch(self.dense_arch(dense), pooled)
        return self.over_arch(x).squeeze(-1)

    def forward(self, dense: torch.Tensor, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.dense_forward(dense, self.sparse_arch(sparse))


class DLRMTrain(nn.Module):
    """TorchRec's training wrapper layout (``model.`` prefix); the loss lives in the workload."""

    def __init__(self, hp: dict, owned: Sequence[int] | None = None, seed: int = 0, engine: str = "plain"):
        super().__init__()
        self.model = DLRM_DCN(hp, owned, seed, engine)

    def forward(self, dense: torch.Tensor, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.model(dense, sparse)


def fused_tables(net: DLRMTrain) -> bool:
    """True when the tables are TorchRec-sharded with an optimizer fused into their backward."""
    return hasattr(net.model.sparse_arch.embedding_bag_collection, "fused_optimizer")


def sparse_parameters(net: DLRMTrain) -> list[nn.Parameter]:
    """The tables' parameters for a separate optimizer (none when a fused optimizer updates them)."""
    return [] if fused_tables(net) else list(net.model.sparse_arch.parameters())


def dense_parameters(net: DLRMTrain) -> list[nn.Parameter]:
    m = net.model
    return [p for part in (m.dense_arch, m.inter_arch, m.over_arch) for p in part.parameters()]
