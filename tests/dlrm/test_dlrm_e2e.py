"""`mlbench train dlrm --size tiny` and `mlbench infer dlrm --size tiny` as a user runs them; bad data exits 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from dlrm_support import write_days

from support import mlbench


def _run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_train_tiny_end_to_end_passes_the_checker(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "dlrm", "--size", "tiny", "--output-dir", str(out), "--seed", "3",
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((_run_dir(out) / "result.json").read_text())
    run = result["runs"][0]
    assert result["status"] == "success" and run["compliance"]["passed"], run["compliance"]
    assert run["evals"] and all(0.0 <= e["quality"] <= 1.0 for e in run["evals"])
    log = (_run_dir(out) / "run_1" / "mlperf_log.txt").read_text()
    for key in ("opt_adagrad_epsilon", "opt_learning_rate_decay_steps", '"dlrm_dcnv2"', '"samples_count"'):
        assert key in log


def test_bad_day_file_exits_1_and_records_nothing_valid(tmp_path):
    data = write_days(tmp_path / "days", rows_per_day=600)
    lab = np.load(data / "day_1_labels.npy")
    lab[10] = 3
    np.save(data / "day_1_labels.npy", lab)
    out = tmp_path / "runs"
    p = mlbench("train", "dlrm", "--size", "tiny", "--data-dir", str(data), "--output-dir", str(out),
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 1
    assert "day_1_labels.npy" in p.stdout + p.stderr and "Traceback" not in p.stderr
    for f in out.rglob("result.json"):
        assert json.loads(f.read_text()).get("valid") is not True
    shutil.rmtree(out)
    (data / "day_2_dense.npy").unlink()
    p = mlbench("train", "dlrm", "--size", "tiny", "--data-dir", str(data), "--output-dir", str(out),
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 1 and "day_2_dense.npy" in p.stdout + p.stderr


def test_infer_tiny_accuracy_quick(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("infer", "dlrm", "--size", "tiny", "--mode", "accuracy", "--quick", "--output-dir", str(out),
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((_run_dir(out) / "result.json").read_text())
    acc = result["accuracy"]
    assert acc["metric"] == "auc" and acc["scores"]["rows"] > acc["scores"]["samples"] > 0
    assert acc["value"] >= 0.55 and acc["scores"]["malformed_responses"] == 0
