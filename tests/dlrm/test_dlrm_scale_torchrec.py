"""The TorchRec engine (skipped without torchrec): the same names, values, outputs and losses as the plain
engine from the same weights, on one process and table-wise sharded on two gloo processes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F  # noqa: N812
from dlrm_support import plain_step, random_batch

from mlbench.benchmarks.dlrm import model as M
from mlbench.benchmarks.dlrm import sharding, torchrec_engine
from mlbench.benchmarks.dlrm.definition import TINY
from mlbench.benchmarks.dlrm.optim import RowWiseAdagrad
from mlbench.errors import ConfigError

pytestmark = pytest.mark.skipif(not torchrec_engine.available(), reason="torchrec (with fbgemm_gpu) not installed")

HP = TINY.hparams


def _plain_steps(net, steps: int, lr: float = 0.1) -> list[float]:
    dense_opt = torch.optim.Adagrad(M.dense_parameters(net), lr=lr, eps=1e-8)
    sparse_opt = RowWiseAdagrad(M.sparse_parameters(net), lr=lr)
    losses = []
    for step in range(steps):
        b = random_batch(16, step)
        losses.append(plain_step(net, dense_opt, sparse_opt, b))
    return losses


def test_engine_choice(monkeypatch):
    monkeypatch.delenv(torchrec_engine.ENGINE_ENV, raising=False)
    assert torchrec_engine.engine() == "plain"
    monkeypatch.setenv(torchrec_engine.ENGINE_ENV, "auto")
    assert torchrec_engine.engine() == "torchrec"
    monkeypatch.setenv(torchrec_engine.ENGINE_ENV, "fbgemm")
    with pytest.raises(ConfigError, match="MLBENCH_DLRM_ENGINE"):
        torchrec_engine.engine()


def test_one_process_engines_agree_from_the_same_weights():
    torch.manual_seed(123)
    plain = M.DLRMTrain(HP, seed=7)
    torch.manual_seed(123)
    rec = M.DLRMTrain(HP, seed=7, engine="torchrec")
    a, b = plain.state_dict(), rec.state_dict()
    assert list(a) == list(b)  # the same names, in the same order
    assert all(torch.equal(a[k], b[k]) for k in a)  # and the same initial values
    rec.load_state_dict(a)  # plain weights load into the torchrec engine (and back)
    plain.load_state_dict(rec.state_dict())
    batch = random_batch(9, 5)
    with torch.no_grad():
        assert torch.equal(plain(batch["dense"], batch["sparse"]), rec(batch["dense"], batch["sparse"]))
    assert _plain_steps(plain, 3) == _plain_steps(rec, 3)  # the same losses, the same sparse Adagrad updates
    a, b = plain.state_dict(), rec.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(123)
    net = M.DLRMTrain(HP, owned=sharding.owned_tables(HP["table_rows"], rank, world), seed=7, engine="torchrec")
    torchrec_engine.shard_tables(net.model.sparse_arch, lr=0.1, eps=1e-8, device=torch.device("cpu"))
    initial = {k: v.clone() for k, v in net.state_dict().items()}  # state_dict() shares the live dense tensors
    # the plain engine's rank file (its tables, the dense part) loads into the torchrec engine, and back
    plain = M.DLRMTrain(HP, owned=sharding.owned_tables(HP["table_rows"], rank, world), seed=7)
    other = {k: v + 1 for k, v in plain.state_dict().items()}
    net.load_state_dict(other)
    interchange = all(torch.equal(v, other[k]) for k, v in net.state_dict().items())
    plain.load_state_dict(net.state_dict())
    interchange &= list(plain.state_dict()) == list(net.state_dict())
    net.load_state_dict(initial)
    model = torchrec_engine.TorchRecDLRM(net, torch.device("cpu"))
    dense_opt = torch.optim.Adagrad(M.dense_parameters(net), lr=0.1, eps=1e-8)
    fused = torchrec_engine.FusedTableOptimizer(net.model.sparse_arch.embedding_bag_collection, lr=0.1)
    losses = []
    for step in range(3):
        b = random_batch(16, step)
        lo, hi = rank * 8, (rank + 1) * 8
        logits = model(b["dense"][lo:hi], [s[lo:hi] for s in b["sparse"]])
        loss = F.binary_cross_entropy_with_logits(logits, b["labels"][lo:hi])
        loss.backward()
        dense_opt.step()
        fused.step()
        dense_opt.zero_grad()
        losses.append(float(loss.detach()))
    with torch.no_grad():  # evaluation with unequal local batches (5 and 0 rows) stays in step
        n = 5 if rank == 0 else 0
        b = random_batch(5, 99)
        ev = model(b["dense"][:n], [s[:n] for s in b["sparse"]])
    state, opt_state = {k: v.clone() for k, v in net.state_dict().items()}, fused.state_dict()
    # a checkpoint round trip: the initial weights back in, then the trained ones and their optimizer state
    net.load_state_dict(initial)
    restored_initial = all(torch.equal(v, initial[k]) for k, v in net.state_dict().items())
    net.load_state_dict(state)
    fused.load_state_dict(opt_state)
    restored = all(torch.equal(v, state[k]) for k, v in net.state_dict().items()) and all(
        torch.equal(v, opt_state["fused_state"][k]) for k, v in fused.state_dict()["fused_state"].items())
    torch.save({"state": state, "eval": ev, "losses": losses, "restored": restored and restored_initial and interchange,
                "opt_keys": sorted(opt_state["fused_state"])}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrec_sharding_equals_one_plain_process(tmp_path):
    out = str(tmp_path / "state")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method="fork")
    torch.manual_seed(123)
    net = M.DLRMTrain(HP, seed=7)
    ref_losses = []
    dense_opt = torch.optim.Adagrad(M.dense_parameters(net), lr=0.1, eps=1e-8)
    sparse_opt = RowWiseAdagrad(M.sparse_parameters(net), lr=0.1)
    for step in range(3):
        b = random_batch(16, step)
        halves = []
        for lo, hi in ((0, 8), (8, 16)):  # each rank's loss, as the ranks see it
            with torch.no_grad():
                halves.append(float(F.binary_cross_entropy_with_logits(
                    net(b["dense"][lo:hi], [s[lo:hi] for s in b["sparse"]]), b["labels"][lo:hi])))
        ref_losses.append(halves)
        plain_step(net, dense_opt, sparse_opt, b)
    ref = net.state_dict()
    parts = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    seen = set()
    for r, part in enumerate(parts):
        assert part["restored"], f"rank {r}: a state dict round trip (or the plain engine's) did not restore exactly"
        assert part["opt_keys"]  # the fused optimizer state is saved (plain tensors)
        for step, loss in enumerate(part["losses"]):
            assert abs(loss - ref_losses[step][r]) < 1e-4, (r, step)
        for k, v in part["state"].items():
            # Adagrad's first step moves a row by lr * sign(g): a gradient within rounding of 0 may differ
            assert torch.allclose(v, ref[k], atol=2e-3), k
            seen.add(k)
    assert seen == set(ref)  # every table on the rank the plain engine puts it, the dense part on both
    for r, part in enumerate(parts):
        mine = {k for k in part["state"] if ".embedding_bags." in k}
        assert mine == {f"model.sparse_arch.embedding_bag_collection.embedding_bags.t_cat_{t}.weight"
                        for t in sharding.owned_tables(HP["table_rows"], r, 2)}
    with torch.no_grad():
        b = random_batch(5, 99)
        assert torch.allclose(parts[0]["eval"], net(b["dense"], b["sparse"]), atol=1e-5)
    assert parts[1]["eval"].shape == (0,)
