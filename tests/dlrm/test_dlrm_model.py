"""The plain-PyTorch DLRM-DCNv2 (shapes, TorchRec names), the row-wise Adagrad (= torch's Adagrad), and table-wise
sharding on two gloo processes (= one process on the global batch; its collective timers)."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp
from dlrm_support import plain_step, random_batch

from mlbench.benchmarks.dlrm import model as M
from mlbench.benchmarks.dlrm import sharding
from mlbench.benchmarks.dlrm.definition import REFERENCE, TINY
from mlbench.benchmarks.dlrm.optim import RowWiseAdagrad

HP = TINY.hparams


def test_model_shapes_and_torchrec_names():
    net = M.DLRMTrain(HP, seed=1)
    b = random_batch(5)
    assert net(b["dense"], b["sparse"]).shape == (5,)
    names = set(dict(net.named_parameters()))
    assert "model.sparse_arch.embedding_bag_collection.embedding_bags.t_cat_0.weight" in names
    assert "model.dense_arch.model._mlp.0._linear.weight" in names
    assert {"model.inter_arch.crossnet.V_kernels.0", "model.inter_arch.crossnet.W_kernels.0",
            "model.inter_arch.crossnet.bias.0"} <= names
    assert "model.over_arch.model.1.weight" in names
    # the reference's shape, on the meta device (no memory): 27 x 128 interaction input, rank-512 kernels
    cross = M.LowRankCrossNet(27 * 128, REFERENCE.hparams["dcn_layers"], REFERENCE.hparams["dcn_low_rank"])
    assert cross.V_kernels[0].shape == (512, 3456) and cross.W_kernels[0].shape == (3456, 512)


def test_sharded_model_holds_only_its_tables():
    owned = sharding.owned_tables(HP["table_rows"], 1, 2)
    net = M.DLRMTrain(HP, owned=owned, seed=1)
    full = M.DLRMTrain(HP, seed=1)
    ebc = net.model.sparse_arch.embedding_bag_collection
    assert [t for t in range(26) if isinstance(ebc.table(t), torch.nn.EmbeddingBag)] == owned
    for t in owned:  # the same table on any number of processes
        assert torch.equal(ebc.table(t).weight, full.model.sparse_arch.embedding_bag_collection.table(t).weight)
    plan = sharding.plan(REFERENCE.hparams["table_rows"], 8)
    assert sorted(set(plan)) == list(range(8))  # every process gets tables at the reference's sizes


def test_row_wise_adagrad_equals_torch_adagrad():
    torch.manual_seed(0)
    a = torch.nn.EmbeddingBag(20, 4, mode="sum", sparse=True)
    b = torch.nn.EmbeddingBag(20, 4, mode="sum", sparse=True)
    b.load_state_dict(a.state_dict())
    oa = RowWiseAdagrad(a.parameters(), lr=0.3, eps=1e-8)
    ob = torch.optim.Adagrad(b.parameters(), lr=0.3, eps=1e-8)
    for step in range(4):
        ids = torch.randint(0, 20, (6, 3), generator=torch.Generator().manual_seed(step))
        ids[0, :] = 5  # duplicates within and across bags
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (m(ids) ** 2).sum().backward()
            o.step()
        assert torch.allclose(a.weight, b.weight, atol=1e-6)


def _worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(123)  # dense part: DDP broadcasts rank 0's anyway
    net = M.DLRMTrain(HP, owned=sharding.owned_tables(HP["table_rows"], rank, world), seed=7)
    model = sharding.ShardedDLRM(net, torch.device("cpu"))
    dense_opt = torch.optim.Adagrad(M.dense_parameters(net), lr=0.1, eps=1e-8)
    sparse_opt = RowWiseAdagrad(M.sparse_parameters(net), lr=0.1)
    timer = sharding.CollectiveTimer()
    for step in range(3):
        model.timer = timer if step == 1 else None  # timing one step changes nothing in the result
        b = random_batch(16, step)
        lo, hi = rank * 8, (rank + 1) * 8
        logits = model(b["dense"][lo:hi], [s[lo:hi] for s in b["sparse"]])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, b["labels"][lo:hi])
        loss.backward()
        dense_opt.step()
        sparse_opt.step()
        dense_opt.zero_grad()
        sparse_opt.zero_grad()
    with torch.no_grad():  # evaluation with unequal local batches (5 and 0 rows) stays in step
        n = 5 if rank == 0 else 0
        b = random_batch(5, 99)
        ev = model(b["dense"][:n], [s[:n] for s in b["sparse"]])
    torch.save({"state": net.state_dict(), "eval": ev, "calls": dict(timer.calls),
                "seconds": dict(timer.seconds)}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def test_two_process_table_wise_sharding_equals_one_process(tmp_path):
    out = str(tmp_path / "state")
    mp.start_processes(_worker, args=(2, f"file://{tmp_path / 'rdzv'}", out), nprocs=2, join=True,
                       start_method="fork")
    torch.manual_seed(123)
    net = M.DLRMTrain(HP, seed=7)
    dense_opt = torch.optim.Adagrad(M.dense_parameters(net), lr=0.1, eps=1e-8)
    sparse_opt = RowWiseAdagrad(M.sparse_parameters(net), lr=0.1)
    for step in range(3):
        b = random_batch(16, step)
        plain_step(net, dense_opt, sparse_opt, b)
    ref = net.state_dict()
    parts = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    seen = set()
    for part in parts:
        for k, v in part["state"].items():
            # Adagrad's first step moves a row by lr * sign(g): a gradient within rounding of 0 may differ
            assert torch.allclose(v, ref[k], atol=2e-3), k
            seen.add(k)
    assert seen == set(ref)  # every table on some rank, the dense part on both
    with torch.no_grad():
        b = random_batch(5, 99)
        assert torch.allclose(parts[0]["eval"], net(b["dense"], b["sparse"]), atol=1e-5)
    assert parts[1]["eval"].shape == (0,)
    for part in parts:  # the timed step: one of each collective, each timed once
        assert part["calls"] == {"ids_all_gather": 1, "all_to_all_forward": 1, "all_to_all_backward": 1}
        assert all(s > 0 for s in part["seconds"].values())

