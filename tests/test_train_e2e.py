"""End-to-end training through the CLI, as a user runs it, with the official compliance checker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import make_imagenet_tree, mlbench


def _only_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _checker(log: Path, ruleset: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "training",
                           "--ruleset", ruleset, str(log)], capture_output=True, text=True, cwd=log.parent)


def _events(log: Path) -> list[dict]:
    return [json.loads(line.split(":::MLLOG ", 1)[1]) for line in log.read_text().splitlines() if ":::MLLOG" in line]


def test_tiny_train_cli(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "tiny", "--output-dir", str(out), "--seed", "7", "--log-every", "4")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Epoch: [0]  [0/8]  eta: " in p.stdout and "loss: " in p.stdout and "lr: " in p.stdout
    run = _only_run_dir(out)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "success" and result["quality"]["reached"]
    assert result["valid"] is False and any("open division" in r for r in result["validity_reasons"])
    assert result["runs"][0]["seed"] == 7 and result["runs"][0]["compliance"]["passed"]
    for name in ("config.json", "system.json", "console.log", "run_1/mlperf_log.txt", "run_1/checkpoint.pt"):
        assert (run / name).exists(), name
    assert "hostname" not in (run / "system.json").read_text().lower()
    log = run / "run_1" / "mlperf_log.txt"
    assert _checker(log, "4.0.0").returncode == 0
    ev = _events(log)
    keys = [e["key"] for e in ev]
    assert keys.index("init_stop") < keys.index("run_start") < keys.index("epoch_start")
    stop = [e for e in ev if e["key"] == "run_stop"][0]
    assert stop["metadata"]["status"] == "success"
    assert [e for e in ev if e["key"] == "submission_division"][0]["value"] == "open"
    cache = [e for e in ev if e["key"] == "cache_clear"][0]
    assert cache["value"] is False and "skipped" in cache["metadata"]["how"]


def test_runs_have_distinct_seeds_and_a_score(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "tiny", "--output-dir", str(out), "--runs", "3", "--seed", "1",
                "--no-checkpoint")
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((_only_run_dir(out) / "result.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [1, 2, 3]
    assert result["score"]["method"].startswith("olympic")
    minutes = sorted(r["metrics"]["time_to_train/minutes"] for r in result["runs"])
    assert result["score"]["time_to_train_minutes"] == pytest.approx(minutes[1])


def test_budget_exhausted_is_aborted_and_its_checkpoint_resumes_marked(tmp_path):
    # one aborted run serves both checks: what a spent epoch budget records, and a resume from its checkpoint
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "tiny", "--output-dir", str(out), "--epochs", "1", "--lr", "0.0")
    assert p.returncode == 1
    result = json.loads((_only_run_dir(out) / "result.json").read_text())
    assert result["status"] == "aborted" and not result["valid"]
    assert "epoch budget (1 epochs) ran out" in result["runs"][0]["reason"]
    ev = _events(_only_run_dir(out) / "run_1" / "mlperf_log.txt")
    assert [e for e in ev if e["key"] == "run_stop"][0]["metadata"]["status"] == "aborted"

    ckpt = _only_run_dir(out) / "run_1" / "checkpoint.pt"
    out2 = tmp_path / "runs2"
    p = mlbench("train", "resnet50", "--size", "tiny", "--output-dir", str(out2), "--resume", str(ckpt))
    assert "resumed from" in p.stdout
    result = json.loads((_only_run_dir(out2) / "result.json").read_text())
    assert result["runs"][0]["resumed_from"] == str(ckpt)
    assert any("resumed" in r for r in result["validity_reasons"])


def test_non_finite_loss_aborts(tmp_path):
    # learning rates above 100 are refused; at 100 the dummy regression's SGD diverges to inf within a few steps
    out = tmp_path / "runs"
    p = mlbench("train", "dummy", "--size", "tiny", "--output-dir", str(out), "--lr", "100", "--log-every", "1")
    assert p.returncode == 1
    result = json.loads((_only_run_dir(out) / "result.json").read_text())
    assert "non-finite" in result["runs"][0]["reason"] and result["status"] == "aborted"


@pytest.mark.slow
def test_reference_closed_compliance(tmp_path):
    """ResNet-50 reference configuration (closed division, ruleset 4.0.0) on a tiny ILSVRC2012-layout tree.

    The tree has two colour-coded classes; one validation image is labelled against its colour, so the
    reachable top-1 is 0.9: above the MLPerf target 0.759 and below the checker's bound of 1.0.
    """
    tree = make_imagenet_tree(tmp_path / "imagenet")
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "reference", "--data-dir", str(tree), "--batch-size", "8",
                "--workers", "0", "--epochs", "8", "--output-dir", str(out), "--seed", "3", timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = _only_run_dir(out)
    log = run / "run_1" / "mlperf_log.txt"
    checked = _checker(log, "4.0.0")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ev = _events(log)
    assert [e for e in ev if e["key"] == "submission_division"][0]["value"] == "closed"
    assert [e for e in ev if e["key"] == "opt_name"][0]["value"] == "sgd"
    evals = [e for e in ev if e["key"] == "eval_accuracy"]
    assert evals[0]["metadata"]["epoch_num"] == 4  # ResNet evaluates every 4 epochs
    result = json.loads((run / "result.json").read_text())
    assert result["division"] == "closed" and result["status"] == "success"


@pytest.mark.slow
def test_ddp_two_processes_under_torchrun(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "tiny", "--nproc", "2", "--output-dir", str(out), "--seed", "5",
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = _only_run_dir(out)
    result = json.loads((run / "result.json").read_text())
    assert result["world_size"] == 2 and result["status"] == "success"
    # evaluation shards were reduced: the whole evaluation set was counted once
    assert "WARNING: evaluated" not in (run / "console.log").read_text()
    assert len(list(run.glob("run_1/mlperf_log*.txt"))) == 1
    assert _checker(run / "run_1" / "mlperf_log.txt", "4.0.0").returncode == 0


@pytest.mark.slow
def test_compile_builds_the_evaluation_graphs_before_run_start(tmp_path):
    """--compile: torch.compile builds another graph for evaluation (no gradients) and for a second batch shape;
    the warm-up before run_start runs the evaluation on synthetic batches, so that nothing compiles inside the
    timed run (before, the first evaluation compiled: half of the tiny run's time to train)."""
    import os

    proc = subprocess.run([sys.executable, "-m", "mlbench", "train", "resnet50", "--size", "tiny", "--compile",
                           "--output-dir", str(tmp_path / "runs"), "--seed", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
                          env={**os.environ, "TORCH_LOGS": "recompiles", "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    before, started, after = proc.stdout.partition("Epoch: [0]")  # the first progress line: the run has started
    assert started and "Recompiling" in before  # the warm-up compiled the evaluation's graphs
    assert "Recompiling" not in after
