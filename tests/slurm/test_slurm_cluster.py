"""Two-node data-parallel training through `mlbench slurm submit` on a real local SLURM cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlbench.slurm import multirun

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.serial]


def _mlbench(cluster, *args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "MLBENCH_SKIP_CACHE_CLEAR": "1"}
    return subprocess.run([sys.executable, "-m", "mlbench", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _only_run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.timeout(240)
def test_two_node_training_job(slurm_cluster, tmp_path):
    out = tmp_path / "runs"
    res = _mlbench(slurm_cluster, "slurm", "submit", "resnet50", "--size", "tiny", "--nodes", "2",
                   "--time", "10", "--seed", "5", "--output-dir", str(out), "--wait")
    run_dir = _only_run_dir(out)
    job_out = "\n".join(p.read_text() for p in run_dir.glob("slurm-*.out"))
    assert res.returncode == 0, res.stdout + res.stderr + job_out
    assert "job" in res.stdout and "ended: COMPLETED" in res.stdout

    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "success" and result["world_size"] == 2
    run = result["runs"][0]
    assert run["metrics"]["dist/params_in_sync"] is True  # checked by the harness across both nodes
    assert run["compliance"]["passed"], run["compliance"]["output"]
    # One torchrun per node, each with its own launch file, meeting at one rendezvous.
    assert sorted(p.name for p in run_dir.glob("launch_config.node*.json")) == [
        "launch_config.node0.json", "launch_config.node1.json"]
    assert "2 node(s)" in job_out
    # Only rank 0 wrote the MLPerf log: one file, each event once.
    logs = sorted(run_dir.rglob("mlperf_log*.txt"))
    assert logs == [run_dir / "run_1" / "mlperf_log.txt"]
    keys = [json.loads(line.split(":::MLLOG ", 1)[1])["key"] for line in logs[0].read_text().splitlines()
            if ":::MLLOG" in line]
    assert keys.count("run_start") == 1 and keys.count("run_stop") == 1 and keys.count("init_start") == 1

    status = _mlbench(slurm_cluster, "slurm", "status", "--output-dir", str(out), timeout=60)
    job_id = json.loads((run_dir / "slurm_job.json").read_text())["job_id"]
    assert status.returncode == 0 and job_id in status.stdout and "COMPLETED" in status.stdout
    assert "success" in status.stdout
    logs_cmd = _mlbench(slurm_cluster, "slurm", "logs", job_id, "--output-dir", str(out), "--tail", "5",
                        timeout=60)
    assert logs_cmd.returncode == 0 and f"slurm-{job_id}.out" in logs_cmd.stdout


@pytest.mark.timeout(240)
def test_requeued_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    out = tmp_path / "runs"
    # --lr 0 keeps the run going (it never reaches the target) long enough to requeue it mid-run.
    res = _mlbench(slurm_cluster, "slurm", "submit", "resnet50", "--size", "tiny", "--nodes", "2",
                   "--requeue", "--lr", "0", "--epochs", "6", "--seed", "6", "--output-dir", str(out),
                   timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = _only_run_dir(out)
    job_id = json.loads((run_dir / "slurm_job.json").read_text())["job_id"]
    deadline = time.monotonic() + 90
    while not (run_dir / "run_1" / "checkpoint.pt").is_file():
        assert time.monotonic() < deadline, "no checkpoint within 90 s"
        time.sleep(0.3)
    _requeue_and_wait(slurm_cluster, job_id)
    job_out = (run_dir / f"slurm-{job_id}.out").read_text()
    assert "requeued (restart 1): resuming from" in job_out, job_out[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["runs"][0]["resumed_from"].endswith("run_1/checkpoint.pt")
    assert result["valid"] is False
    assert any("resumed from a checkpoint" in r for r in result["validity_reasons"])
    assert list((run_dir / "run_1").glob("mlperf_log.before-restart-1.txt"))  # the first attempt's log kept


def _requeue_and_wait(cluster, job_id: str) -> None:
    """Requeue the running job, release it at once and wait until it has ended."""
    req = cluster.run("scontrol", "requeue", job_id)
    assert req.returncode == 0, req.stderr
    # SLURM holds a requeued batch job for ~2 minutes (BeginTime); release it now, as an admin could.
    deadline = time.monotonic() + 30
    while cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() != "PENDING":
        assert time.monotonic() < deadline, "the requeued job did not return to PENDING"
        time.sleep(0.3)
    cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    deadline = time.monotonic() + 180
    while state := cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip():
        assert time.monotonic() < deadline, f"job still {state} after 180 s"
        time.sleep(1)


@pytest.mark.timeout(240)
def test_scale_sweep_over_one_and_two_nodes(slurm_cluster, tmp_path):
    out = tmp_path / "runs"
    res = _mlbench(slurm_cluster, "scale", "resnet50", "--size", "tiny", "--nproc", "1", "--nnodes", "1,2",
                   "--slurm", "--time", "10", "--seed", "3", "--output-dir", str(out), timeout=220)
    sweep_dir = _only_run_dir(out)
    job_out = "\n".join(p.read_text()[-2000:] for p in sweep_dir.glob("*/slurm-*.out"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + job_out
    result = json.loads((sweep_dir / "result.json").read_text())
    assert result["kind"] == "scale" and result["status"] == "success" and result["launcher"] == "slurm"
    one, two = result["points"]
    assert (one["nnodes"], one["nproc"], one["processes"], one["world_size"]) == (1, 1, 1, 1)
    assert (two["nnodes"], two["nproc"], two["processes"], two["world_size"]) == (2, 1, 2, 2)
    assert one["job_id"] != two["job_id"] and one["job_state"] == two["job_state"] == "COMPLETED"
    assert one["scaling_efficiency"] == 1.0 and two["scaling_efficiency"] > 0 and two["speedup"] > 0
    assert result["metrics"]["nnodes_2_nproc_1/throughput/samples_per_s"] == two["throughput/samples_per_s"] > 0
    # Each size is a job of its own, written like `mlbench slurm submit` writes one.
    assert "#SBATCH --nodes=2" in (sweep_dir / "nnodes_2_nproc_1" / "job.sbatch").read_text()
    assert json.loads((sweep_dir / "nproc_1" / "slurm_job.json").read_text())["job_id"] == one["job_id"]
    head = next(line for line in res.stdout.splitlines() if line.startswith("nodes"))
    assert "job" in head and "efficiency" in head


@pytest.mark.timeout(300)
def test_requeued_job_of_several_runs_keeps_the_finished_run_and_resumes_the_next(slurm_cluster, tmp_path):
    out = tmp_path / "runs"
    # --lr 0: no run reaches the target, so each runs its whole epoch budget; long enough to requeue run 2.
    res = _mlbench(slurm_cluster, "slurm", "submit", "resnet50", "--size", "tiny", "--nodes", "2", "--requeue",
                   "--runs", "2", "--lr", "0", "--epochs", "5", "--seed", "9", "--output-dir", str(out), timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = _only_run_dir(out)
    job_id = json.loads((run_dir / "slurm_job.json").read_text())["job_id"]
    deadline = time.monotonic() + 120
    while not (run_dir / "run_2" / "run_1" / "checkpoint.pt").is_file():
        assert time.monotonic() < deadline, "run 2 wrote no checkpoint within 120 s"
        time.sleep(0.3)
    assert multirun.finished(run_dir / "run_1") and not multirun.finished(run_dir / "run_2")
    _requeue_and_wait(slurm_cluster, job_id)
    job_out = (run_dir / f"slurm-{job_id}.out").read_text()
    assert "run 1/2: finished before restart 1, kept" in job_out, job_out[-3000:]
    assert f"requeued (restart 1): run 2 resuming from {run_dir}/run_2/run_1/checkpoint.pt" in job_out
    result = json.loads((run_dir / "result.json").read_text())
    assert result["finished_at"] and result["status"] == "aborted"  # --lr 0 never reaches the target
    first, second = result["runs"]
    assert (first["run"], first["seed"], first["resumed_from"]) == (1, 9, None)
    assert (second["run"], second["seed"]) == (2, 10) and second["resumed_from"].endswith("run_2/run_1/checkpoint.pt")
    assert second["epochs"] == 5 and result["score"]["runs"] == 2 and result["world_size"] == 2
    assert any("resumed from a checkpoint" in r for r in result["validity_reasons"])
    assert (run_dir / "run_2" / "run_1" / "mlperf_log.before-restart-1.txt").is_file()
    assert not list((run_dir / "run_1").rglob("mlperf_log.before-restart-*"))  # the finished run was left alone
