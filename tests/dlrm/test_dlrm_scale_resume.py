"""Resume from a sharded checkpoint: 2 gloo processes, tiny DLRM through the real harness (``train_run``).

Run A trains without interruption; every checkpoint it writes is copied aside. Run B resumes from A's
checkpoint written mid-epoch (after 8 of an epoch's 16 steps) on the same world size. B's next losses equal
A's, and B ends with every shard (each rank's tables, the dense part) and every optimizer state bitwise equal
to A's. Under both engines (plain PyTorch; TorchRec with its fused optimizer state, when installed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from dlrm_support import write_days

from mlbench.benchmarks.dlrm import torchrec_engine

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, data: str, run_dir: str, resume: str | None, out: str, engine: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), MLBENCH_DLRM_ENGINE=engine)
    torch.set_num_threads(1)
    from mlbench import registry
    from mlbench.benchmarks.dlrm.workload import DLRMWorkload
    from mlbench.config import TrainConfig
    from mlbench.training import checkpoint, distributed, harness

    losses: list[float] = []
    loss = DLRMWorkload.loss

    def recorded(self, model, batch, ctx):
        value, parts = loss(self, model, batch, ctx)
        losses.append(float(value.detach()))
        return value, parts

    DLRMWorkload.loss = recorded
    DLRMWorkload.has_reached_target = lambda self, metrics: False  # train the whole budget: 4 checkpoints
    save = checkpoint.save

    def kept(path, **kw):  # every checkpoint also copied to at<samples>/, under its rank's own name
        save(path, **kw)
        aside = Path(path).parent / f"at{kw['extra']['samples']}"
        aside.mkdir(exist_ok=True)
        shutil.copy(path, aside / Path(path).name)

    checkpoint.save = kept
    device = torch.device("cpu")
    info = distributed.init(device, 60)
    cfg = TrainConfig(benchmark="dlrm", size="tiny", data_dir=data, seed=3, device="cpu", resume=resume,
                      log_every=1000)
    outcome = harness.RunOutcome(seed=3)
    try:
        harness.train_run(registry.get("dlrm", "tiny"), cfg, Path(run_dir), outcome, lambda m: None, info,
                          device)
    finally:
        distributed.shutdown()
    Path(f"{out}.{rank}").write_text(json.dumps({
        "losses": losses, "samples": outcome.samples, "evals": [e["quality"] for e in outcome.evals],
        "resumed_from": outcome.resumed_from}))


def _run(tmp: Path, name: str, data: Path, engine: str, resume: Path | None = None) -> tuple[Path, list[dict]]:
    run_dir = tmp / name
    run_dir.mkdir()
    out = str(tmp / f"{name}.json")
    mp.start_processes(_worker, args=(_free_port(), str(data), str(run_dir), str(resume) if resume else None, out,
                                      engine), nprocs=WORLD, join=True, start_method="fork")
    return run_dir, [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["plain", pytest.param("torchrec", marks=pytest.mark.skipif(
    not torchrec_engine.available(), reason="torchrec (with fbgemm_gpu) not installed"))])
def test_two_process_resume_mid_epoch_restores_every_shard_exactly(tmp_path, engine):
    # 2 training days of 4,096 rows: 16 steps of 2 x 256 per epoch, an evaluation (and checkpoint) every
    # 4,096 samples = 8 steps, the 16,384-sample budget = 2 epochs, 32 steps
    data = write_days(tmp_path / "days", rows_per_day=4096)
    a_dir, a = _run(tmp_path, "a", data, engine)
    assert all(len(r["losses"]) == 32 and r["samples"] == 16384 for r in a)
    assert sorted(p.name for p in a_dir.glob("at*")) == ["at12288", "at16384", "at4096", "at8192"]
    parts = [_state(a_dir / "at4096" / n) for n in ("checkpoint.pt", "checkpoint.rank1.pt")]
    assert all(p["extra"]["epoch_batches"] == 8 and p["epoch"] == 0 for p in parts)
    tables = [{k for k in p["model"] if ".embedding_bags." in k} for p in parts]
    assert tables[0] and tables[1] and not tables[0] & tables[1]  # each rank's checkpoint holds its own shard
    assert len(tables[0] | tables[1]) == 26

    b_dir, b = _run(tmp_path, "b", data, engine, resume=a_dir / "at4096" / "checkpoint.pt")
    for r in range(WORLD):
        assert b[r]["resumed_from"]
        assert b[r]["losses"] == a[r]["losses"][8:], f"rank {r}: the losses after the resume differ"
        assert b[r]["evals"] == a[r]["evals"][1:]
    for name in ("checkpoint.pt", "checkpoint.rank1.pt"):
        final_a, final_b = _state(a_dir / name), _state(b_dir / name)
        _assert_equal(final_a["model"], final_b["model"], f"{name} model")
        _assert_equal(final_a["optimizer"], final_b["optimizer"], f"{name} optimizer")
        assert final_a["extra"]["samples"] == final_b["extra"]["samples"] == 16384
