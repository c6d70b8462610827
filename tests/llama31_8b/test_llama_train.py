"""llama31_8b trained end to end (tiny: two processes sharded with FSDP2, a sharded checkpoint resumed in one
process), and the reference's MLPerf keys through the official 6.1.0 closed-division checker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlbench import registry
from mlbench.config import TrainConfig
from mlbench.training import harness, runner
from mlbench.training.mlperf_log import C, MLPerfLog
from mlbench.training.recipe import OptimArgs
from support import mlbench


def _log(path: Path) -> list[dict]:
    return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in path.read_text().splitlines() if ":::MLLOG" in line]


@pytest.mark.slow
def test_tiny_trains_sharded_on_two_processes_and_resumes_its_checkpoint_in_one(tmp_path):
    env = {"OMP_NUM_THREADS": "1"}
    proc = mlbench("train", "llama31_8b", "--size", "tiny", "--nproc", "2", "--precision", "bf16", "--seed", "1",
                   "--device", "cpu", "--output-dir", str(tmp_path / "runs"), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tokens/s:" in proc.stdout  # the progress line
    run = next((tmp_path / "runs").glob("*/result.json")).parent  # beside it: results.db
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "success" and result["runs"][0]["compliance"]["passed"]
    assert result["speed"]["sharding"] == "fsdp2 per block"
    m = result["metrics"]
    assert m["throughput/tokens_per_s"] == pytest.approx(m["throughput/samples_per_s"] * 32)
    assert m["memory/host_peak_rss_mb"] > 0 and m["model/train_gflops_per_sample"] > 0
    log = _log(run / "run_1" / "mlperf_log.txt")
    evals = [e for e in log if e["key"] == "eval_accuracy"]
    assert evals and all("samples_count" in e["metadata"] for e in evals)
    assert {e["key"]: e["value"] for e in log}["lowest_numerical_precision_in_comm"] == "bfloat16"
    ckpt = run / "run_1" / "checkpoint"
    assert (ckpt / "progress.json").is_file() and len(list(ckpt.glob("*.distcp"))) == 2

    # the two ranks' shards, read back by one process (resharded), continue where the run stopped
    proc = mlbench("train", "llama31_8b", "--size", "tiny", "--seed", "1", "--device", "cpu", "--resume", str(ckpt),
                   "--output-dir", str(tmp_path / "again"), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    again = json.loads(next((tmp_path / "again").glob("*/result.json")).read_text())
    first = json.loads((ckpt / "progress.json").read_text())["extra"]["samples"]
    assert again["runs"][0]["resumed_from"] == str(ckpt) and again["runs"][0]["evals"][0]["samples"] > first


def test_the_reference_keys_pass_the_closed_6_1_0_checker(tmp_path):
    """What a reference run logs before run_start (the workload's hyper-parameters at global batch 32 on 8
    processes, the disclosures), then one evaluation below 3.3: the official closed checker accepts it."""
    bench = registry.get("llama31_8b", "reference").definition
    wl = registry.get("llama31_8b", "reference").workload()
    wl.precision = "bf16"
    stand_in = torch.nn.Linear(4, 4)  # the optimizer's recipe does not depend on the model's size
    args = OptimArgs(global_batch_size=32, steps_per_epoch=1, epochs=1, world_size=8)
    wl.build_optimizer(stand_in, args)
    cfg = TrainConfig(benchmark="llama31_8b", size="reference", precision="bf16")
    path = tmp_path / "mlperf_log.txt"
    mll = MLPerfLog(path)
    for key, value in (("submission_org", "mlbench"), ("submission_platform", "8xH100"),
                       ("submission_division", "closed"), ("submission_status", "onprem"),
                       ("submission_benchmark", bench.mlperf_name), ("cache_clear", True)):
        mll.event(key, value)
    mll.start(C.INIT_START)
    mll.event(C.SEED, 1)
    mll.event(C.GLOBAL_BATCH_SIZE, 32)
    mll.event(C.GRADIENT_ACCUMULATION_STEPS, 1)
    for key, value in {**harness.disclosures(bench, cfg, wl, 4, torch.device("cpu")),
                       **wl.mllog_hparams(args, None)}.items():
        mll.event(key, value)
    mll.event(C.TRAIN_SAMPLES, 2_600_000)
    mll.event(C.EVAL_SAMPLES, bench.hparams["eval_samples"])
    mll.end(C.INIT_STOP)
    mll.start(C.RUN_START)
    mll.start(C.BLOCK_START, samples_count=0)
    mll.start(C.EVAL_START, samples_count=12_288)
    mll.event(C.EVAL_ACCURACY, 3.29, samples_count=12_288)
    mll.end(C.EVAL_STOP, samples_count=12_288)
    mll.end(C.BLOCK_STOP, samples_count=12_288)
    mll.end(C.RUN_STOP, status="success")
    mll.close()
    check = runner.check_log(path, bench.ruleset)
    assert check["passed"], check["output"]
