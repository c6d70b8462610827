"""`mlbench scale`: the same training at 1 and 2 processes (real torchrun), compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlbench import runs
from mlbench.cli import main
from mlbench.slurm import scale


def test_parse_sizes():
    assert scale.parse_sizes("4, 1,2") == [1, 2, 4]


@pytest.mark.parametrize("text", ["1,x", "0,2", "2,2", ""])
def test_bad_sizes_fail_with_a_fix(text, capsys, tmp_path):
    code = main(["scale", "resnet50", "--size", "tiny", "--nproc", text, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "invalid value for 'nproc'" in err and "fix:" in err
    assert list(tmp_path.iterdir()) == []


def test_parse_node_counts_and_plan():
    assert scale.parse_sizes("2,1", "nnodes") == [1, 2]
    # Every combination, smallest total process count first, fewer nodes first on a tie.
    assert scale.plan([1, 2], [1, 2]) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert scale.label(1, 2) == "nproc_2" and scale.label(2, 1) == "nnodes_2_nproc_1"


@pytest.mark.parametrize("text", ["1,0", "a", "2,2"])
def test_bad_node_counts_fail_with_a_fix(text, capsys, tmp_path):
    code = main(["scale", "resnet50", "--size", "tiny", "--nnodes", text, "--slurm", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "invalid value for 'nnodes'" in err and "fix:" in err
    assert list(tmp_path.iterdir()) == []


def test_several_nodes_need_slurm(capsys, tmp_path):
    code = main(["scale", "resnet50", "--size", "tiny", "--nproc", "1", "--nnodes", "1,2",
                 "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--nnodes 2: one machine cannot start training on other nodes" in err
    assert "add --slurm" in err and "mlbench train --nnodes M --rdzv-endpoint" in err
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing started


@pytest.mark.parametrize("flags, words", [
    (["--partition", "cpu"], "--partition applies only to SLURM jobs"),
    (["--time", "10", "--account", "a"], "--time, --account apply only to SLURM jobs"),
    (["--slurm", "--time", "soon"], "invalid value for 'time'"),
    (["--slurm", "--partition", "a b"], "invalid value for 'partition'"),
    (["--slurm", "--gpus-per-node", "1", "--nproc", "1,2"], "--nproc 2 with --gpus-per-node 1"),
    (["--slurm", "--gpus-per-node", "-1"], "invalid value for 'gpus_per_node'"),
    (["--slurm", "--gpus-per-node", "2", "--device", "cpu"], "--gpus-per-node with --device cpu"),
])
def test_bad_cluster_options_fail_before_anything_runs(flags, words, capsys, tmp_path):
    code = main(["scale", "resnet50", "--size", "tiny", "--output-dir", str(tmp_path), *flags])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "fix:" in err, err
    assert list(tmp_path.iterdir()) == []


def test_slurm_sweep_without_sbatch_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(["scale", "resnet50", "--size", "tiny", "--nnodes", "1,2", "--slurm",
                 "--output-dir", str(tmp_path / "runs")])
    assert code == 1 and "`sbatch` not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_time_limit_in_seconds():
    from mlbench.slurm.script import time_limit_s

    assert [time_limit_s(t) for t in ("30", "30:15", "01:30:00", "2-3", "1-02:03", "1-00:00:01")] == [
        1800, 1815, 5400, 2 * 86400 + 3 * 3600, 86400 + 2 * 3600 + 180, 86401]


def test_job_per_size_asks_one_gpu_per_process():
    sweep = scale.SlurmSweep(partition="gpu", time="20", gpus_per_node=4)
    job = sweep.job(2, 3)
    assert (job.nodes, job.gpus_per_node, job.partition, job.time) == (2, 3, "gpu", "20")
    assert scale.SlurmSweep().job(2, 3).gpus_per_node == 0


def test_efficiency_is_against_the_smallest_total_process_count():
    points = [{"nnodes": 1, "nproc": 2, "processes": 2, "throughput/samples_per_s": 100.0},
              {"nnodes": 2, "nproc": 1, "processes": 2, "throughput/samples_per_s": 90.0},
              {"nnodes": 2, "nproc": 2, "processes": 4, "throughput/samples_per_s": 160.0}]
    scale.efficiencies(points)
    assert points[0]["scaling_efficiency"] == 1.0  # the base: 2 processes on one node
    assert points[1]["scaling_efficiency"] == pytest.approx(0.9)
    assert points[2]["speedup"] == pytest.approx(1.6) and points[2]["scaling_efficiency"] == pytest.approx(0.8)


def test_table_has_a_nodes_column(capsys):
    from mlbench.cli.scale import print_table

    result = {"benchmark": "resnet50", "size": "tiny", "status": "failed", "timed": "t", "run_dir": "/r",
              "points": [{"nnodes": 1, "nproc": 1, "processes": 1, "job_id": "7", "status": "success",
                          "throughput/samples_per_s": 10.0, "speedup": 1.0, "scaling_efficiency": 1.0,
                          "time_to_train/minutes": 0.1, "quality": 0.7},
                         {"nnodes": 2, "nproc": 1, "processes": 2, "job_id": "8", "status": "failed",
                          "error": "job 8 ended FAILED", "log_tail": ["Traceback", "boom"]}]}
    print_table(result)
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("nodes"))
    assert head.split()[:5] == ["nodes", "per", "node", "processes", "job"]
    assert "failed: 2 node(s) x 1: job 8 ended FAILED" in out and "    | boom" in out


def test_a_failed_job_is_a_failed_point_and_the_sweep_fails(tmp_path, monkeypatch, capsys):
    """Jobs faked at the sbatch/squeue boundary: the first size's job fails, the second's completes."""
    from mlbench.slurm import jobs

    submitted = []

    def fake_submit(run_dir, slurm, benchmark, size):
        job_id = str(100 + len(submitted))
        submitted.append((run_dir.name, slurm.nodes))
        if slurm.nodes == 1:
            (run_dir / f"slurm-{job_id}.out").write_text("line 1\nTraceback (most recent call last):\nboom\n")
        else:
            runs.write_json(run_dir / "result.json", {
                "status": "success", "finished_at": "now", "world_size": 2, "quality": {"value": 0.7},
                "metrics": {"throughput/samples_per_s": 50.0}, "score": {"time_to_train_minutes": 0.5}})
        return job_id

    def fake_wait(job_id, run_limit_s=None, poll_s=2.0, on_change=None, unknown_limit_s=300.0):
        # the first size's sweep result.json was written before the second job was waited for
        if job_id == "101":
            written = json.loads(next(tmp_path.glob("*/result.json")).read_text())
            assert [p["status"] for p in written["points"]] == ["failed"]
        assert run_limit_s == 600 + scale.WAIT_MARGIN_S  # --time 10: ten minutes, plus the margin
        return ("FAILED" if job_id == "100" else "COMPLETED"), True

    monkeypatch.setattr(jobs, "tool", lambda name: name)
    monkeypatch.setattr(jobs, "submit", fake_submit)
    monkeypatch.setattr(jobs, "wait", fake_wait)
    code = main(["scale", "resnet50", "--size", "tiny", "--nproc", "1", "--nnodes", "1,2", "--slurm",
                 "--time", "10", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert submitted == [("nproc_1", 1), ("nnodes_2_nproc_1", 2)]
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "cache"]
    result = json.loads((sweep_dir / "result.json").read_text())
    assert result["status"] == "failed"
    one, two = result["points"]
    assert one["status"] == "failed" and one["job_id"] == "100" and one["job_state"] == "FAILED"
    assert one["error"] == "job 100 ended FAILED without a result.json" and one["log_tail"][-1] == "boom"
    assert two["status"] == "success" and two["processes"] == 2 and two["scaling_efficiency"] == 1.0
    assert "failed: 1 node(s) x 1: job 100 ended FAILED" in out and "    | boom" in out
    # The job scripts were written as `mlbench slurm submit` writes them, into each size's directory.
    assert "#SBATCH --nodes=2" in (sweep_dir / "nnodes_2_nproc_1" / "job.sbatch").read_text()


def test_efficiency_is_against_the_smallest_size():
    points = [{"nproc": 2, "throughput/samples_per_s": 150.0}, {"nproc": 4, "throughput/samples_per_s": 240.0},
              {"nproc": 8, "throughput/samples_per_s": None}]
    scale.efficiencies(points)
    assert points[0]["scaling_efficiency"] == 1.0
    assert points[1]["speedup"] == pytest.approx(1.6) and points[1]["scaling_efficiency"] == pytest.approx(0.8)
    assert "scaling_efficiency" not in points[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_scale_tiny_at_1_and_2_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLBENCH_SKIP_CACHE_CLEAR": "1"}
    res = subprocess.run([sys.executable, "-m", "mlbench", "scale", "resnet50", "--size", "tiny", "--nproc", "1,2",
                          "--seed", "2", "--output-dir", str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=220)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "cache"]
    result = json.loads((sweep_dir / "result.json").read_text())
    assert result["kind"] == "scale" and result["status"] == "success" and result["valid"] is False
    one, two = result["points"]
    assert (one["nproc"], one["world_size"], two["nproc"], two["world_size"]) == (1, 1, 2, 2)
    assert one["scaling_efficiency"] == 1.0 and two["scaling_efficiency"] > 0
    assert result["metrics"]["nproc_2/throughput/samples_per_s"] == two["throughput/samples_per_s"] > 0
    assert one["time_to_train/minutes"] is not None  # tiny reaches its target
    assert (one["nnodes"], one["processes"], one["job_id"]) == (1, 1, None) and two["processes"] == 2
    assert "efficiency" in res.stdout and "samples/s" in res.stdout and "nodes" in res.stdout
