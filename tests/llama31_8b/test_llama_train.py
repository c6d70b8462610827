"""llama31_8b trained end to end (tiny: two processes sharded with FSDP2, a sharded checkpoint resumed in one
process), and the reference's MLPerf keys through the official 6.1.0 closed-division checker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import check_closed_llm_log, mlbench


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
    check = check_closed_llm_log(tmp_path / "mlperf_log.txt", "llama31_8b", global_batch=32, local_batch=4,
                                 train_samples=2_600_000, eval_samples=1024, eval_at=12_288, quality=3.29)
    assert check["passed"], check["output"]
