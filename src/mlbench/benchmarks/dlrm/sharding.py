"""Table-wise sharded embeddings with a data-parallel dense part, in plain PyTorch (gloo on CPU, NCCL on GPU).

Each embedding table lives on one process (its owner; ``plan`` balances table memory across processes), the
dense part (bottom MLP, cross net, top MLP) is replicated and trained data-parallel (DDP). One step on rank r:

1. all-gather every rank's sparse ids (all ranks' local batches, padded to the largest);
2. each owner pools its tables for the whole global batch;
3. an all-to-all sends each rank the pooled rows of its own samples ([B_r, 26, D] once reassembled);
4. the dense part runs under DDP; backward reverses the all-to-all (gradients go back to the owners, scaled
   by 1/world so that the owners' update equals the single-process one on the global batch), and DDP
   averages the dense gradients.

The result equals one process training on the global batch (tested). The ids exchanged are small (multi-hot
ints); the embeddings themselves never move.

``ShardedDLRM.timer`` (off: None) times the collectives of the step by kind (``ids_all_gather``,
``all_to_all_forward``, ``all_to_all_backward``) for ``benchmarks/scaling_dlrm.py``; a collective's time includes
waiting for the slowest rank to reach it. DDP's gradient all-reduce is not among them (it overlaps backward).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn


def plan(table_rows: Sequence[int], world: int) -> list[int]:
    """Owner rank of every table: the largest tables first, each to the least-loaded rank (by rows)."""
    load = [0] * world
    owner = [0] * len(table_rows)
    for t in sorted(range(len(table_rows)), key=lambda i: (-table_rows[i], i)):
        r = min(range(world), key=lambda q: (load[q], q))
        owner[t] = r
        load[r] += table_rows[t]
    return owner


def table_init(rows: int, dim: int, seed: int, t: int) -> torch.Tensor:
    """Table ``t``'s initial values, uniform(+-sqrt(1/rows)). Its own generator: the same table on any number of
    processes and under either engine, and the global RNG (which initialises the dense part) is not touched,
    so the dense part is the same whoever owns what."""
    bound = (1.0 / rows) ** 0.5
    g = torch.Generator().manual_seed((seed % 2**40) * 1009 + t)
    return torch.rand(rows, dim, generator=g).mul_(2 * bound).sub_(bound)


def owned_tables(table_rows: Sequence[int], rank: int, world: int) -> list[int]:
    return [t for t, r in enumerate(plan(table_rows, world)) if r == rank]


class CollectiveTimer:
    """Wall seconds and calls per kind of collective, summed until :meth:`reset` (CUDA: synchronised)."""

    def __init__(self, device: torch.device | None = None):
        self.cuda = device is not None and device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    @contextlib.contextmanager
    def __call__(self, name: str):
        if self.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - t
            self.calls[name] += 1


_UNTIMED = contextlib.nullcontext()


def _timed(timer: CollectiveTimer | None, name: str):
    return _UNTIMED if timer is None else timer(name)


class _AllToAll(torch.autograd.Function):
    """1-D all-to-all with split sizes; its backward is the reverse all-to-all, scaled."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, send: list[int], recv: list[int], grad_scale: float,
                timer: CollectiveTimer | None = None) -> torch.Tensor:
        ctx.send, ctx.recv, ctx.grad_scale, ctx.timer = send, recv, grad_scale, timer
        out = x.new_empty(sum(recv))
        with _timed(timer, "all_to_all_forward"):
            dist.all_to_all_single(out, x.contiguous(), recv, send)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        back = grad.new_empty(sum(ctx.send))
        with _timed(ctx.timer, "all_to_all_backward"):
            dist.all_to_all_single(back, grad.contiguous(), ctx.send, ctx.recv)
        return back * ctx.grad_scale, None, None, None, None


class _DenseStack(nn.Module):
    """The replicated part, as one module for DDP."""

    def __init__(self, net: nn.Module):
        super().__init__()
        m = net.model
        self.dense_arch, self.inter_arch, self.over_arch = m.dense_arch, m.inter_arch, m.over_arch

    def forward(self, dense: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.over_arch(self.inter_arch(self.dense_arch(dense), pooled)).squeeze(-1)


class ShardedDLRM(nn.Module):
    """The training module on one rank: owned tables local, the rest reached through collectives."""

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        self.net = net
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        ebc = net.model.sparse_arch.embedding_bag_collection
        self.rows = [ebc.table(t).num_embeddings for t in range(len(ebc.embedding_bags))]
        self.dim = ebc.table(0).embedding_dim
        self.owner = plan(self.rows, self.world)
        self.owned = [t for t, r in enumerate(self.owner) if r == self.rank]
        if self.owned != list(ebc.owned):
            raise RuntimeError(f"rank {self.rank} holds tables {ebc.owned} but the plan gives it {self.owned}")
        self.by_rank = [[t for t, r in enumerate(self.owner) if r == q] for q in range(self.world)]
        self.dense = nn.parallel.DistributedDataParallel(
            _DenseStack(net), device_ids=[device.index] if device.type == "cuda" else None)
        self.timer: CollectiveTimer | None = None  # set one to time the collectives (benchmarks only)

    def no_sync(self):
        return self.dense.no_sync()

    def pooled(self, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        """[B, 26, D] pooled embeddings of this rank's samples, from every table's owner."""
        b = len(sparse[0])
        widths = [s.shape[1] for s in sparse]
        ids = torch.cat(list(sparse), dim=1)  # [B, H]
        with _timed(self.timer, "ids_all_gather"):
            m = torch.tensor([b], device=ids.device)
            dist.all_reduce(m, op=dist.ReduceOp.MAX)
            m = int(m.item())
            if b < m:  # pad with id 0 (a valid row of every table); the padded rows are dropped below
                ids = torch.cat([ids, ids.new_zeros(m - b, ids.shape[1])])
            gathered = [torch.empty_like(ids) for _ in range(self.world)]
            dist.all_gather(gathered, ids.contiguous())
        every = torch.cat(gathered)  # [world*M, H]
        starts = [0]
        for w in widths:
            starts.append(starts[-1] + w)
        ebc = self.net.model.sparse_arch.embedding_bag_collection
        d = self.dim
        if self.owned:
            local = torch.stack([ebc.table(t)(every[:, starts[t]:starts[t + 1]]) for t in self.owned], dim=1)
        else:
            local = every.new_zeros((self.world * m, 0, d), dtype=torch.float32).requires_grad_()
        send_buf = local.reshape(self.world, m * len(self.owned) * d).reshape(-1)
        send = [m * len(self.owned) * d] * self.world
        recv = [m * len(self.by_rank[q]) * d for q in range(self.world)]
        got = _AllToAll.apply(send_buf, send, recv, 1.0 / self.world, self.timer)
        parts, at = [None] * len(self.rows), 0
        for q in range(self.world):
            n = len(self.by_rank[q])
            block = got[at:at + m * n * d].reshape(m, n, d)
            at += m * n * d
            for j, t in enumerate(self.by_rank[q]):
                parts[t] = block[:, j]
        return torch.stack(parts, dim=1)[:b]

    def forward(self, dense: torch.Tensor, sparse: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.dense(dense, self.pooled(sparse))


def replicated(net: nn.Module) -> nn.Module:
    """The part every rank holds identically (checked at run_stop)."""
    m = net.model
    return nn.ModuleList([m.dense_arch, m.inter_arch, m.over_arch])


