"""Evaluation on 2 gloo processes: scores gather to rank 0 alone, whose exact AUC (broadcast to both ranks)
equals one process's on the same validation rows."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from dlrm_support import write_days

from mlbench.benchmarks.dlrm import auc as auc_mod
from mlbench.benchmarks.dlrm import data as dlrm_data
from mlbench.benchmarks.dlrm import model as M
from mlbench.benchmarks.dlrm import sharding
from mlbench.benchmarks.dlrm.definition import TINY
from mlbench.benchmarks.dlrm.workload import DLRMWorkload
from mlbench.training.batches import DataSpec
from mlbench.training.recipe import StepContext

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _evaluate(data: str, rank: int, world: int) -> tuple[dict, int]:
    torch.manual_seed(11)  # the dense part (rank 0's is broadcast by DDP anyway)
    owned = sharding.owned_tables(TINY.hparams["table_rows"], rank, world) if world > 1 else None
    net = M.DLRMTrain(TINY.hparams, owned=owned, seed=11)
    model = sharding.ShardedDLRM(net, torch.device("cpu")) if world > 1 else net
    # batch 100: 2,048 validation rows make 21 chunks, so rank 0 evaluates 11 and rank 1 10 (unequal shares)
    bundle = dlrm_data.build(TINY, DataSpec(batch_size=100, eval_batch_size=100, rank=rank, world_size=world,
                                            data_dir=data), lambda m: None)
    ctx = StepContext(device=torch.device("cpu"), rank=rank, world_size=world)
    return DLRMWorkload(TINY).evaluate(model, bundle.eval, ctx)


def _worker(rank: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    metrics, n = _evaluate(data, rank, WORLD)
    local = torch.arange(rank * 3, dtype=torch.float32)  # 0 values on rank 0, 3 on rank 1
    got = auc_mod.gather_to_root(local)
    Path(f"{out}.{rank}").write_text(json.dumps({"metrics": metrics, "n": n,
                                                 "gathered": None if got is None else got.tolist()}))
    torch.distributed.destroy_process_group()


def test_two_process_evaluation_gathers_to_rank_0_and_equals_one_process(tmp_path):
    data = write_days(tmp_path / "days", rows_per_day=4096)
    out = str(tmp_path / "eval")
    mp.start_processes(_worker, args=(_free_port(), str(data), out), nprocs=WORLD, join=True,
                       start_method="fork")
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]
    single, n = _evaluate(str(data), 0, 1)
    assert n == 2048 and 0.0 < single["auc"] < 1.0
    for r in ranks:  # both ranks hold rank 0's values
        assert r["n"] == n
        assert r["metrics"]["auc"] == single["auc"]
        assert abs(r["metrics"]["logloss"] - single["logloss"]) < 1e-12
        assert r["metrics"]["click_rate"] == single["click_rate"]
    assert ranks[0]["gathered"] == [0.0, 1.0, 2.0] and ranks[1]["gathered"] is None  # rank 1 holds no set
