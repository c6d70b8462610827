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


def test_train_tiny_compiled_warms_up_before_run_start(tmp_path):
    """--compile: the dense part only (inductor cannot compile the backward of sparse-gradient embedding bags:
    the whole model failed at its first step), compiled by a warm-up before run_start that never steps the
    optimizer (DLRM's tables are not deep-copied to be restored)."""
    out = tmp_path / "runs"
    p = mlbench("train", "dlrm", "--size", "tiny", "--compile", "--output-dir", str(out), "--seed", "3",
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    result = json.loads((_run_dir(out) / "result.json").read_text())
    assert result["status"] == "success"
    assert result["runs"][0]["speed"]["compiled"].startswith("dense part")


def test_warm_up_without_restore_leaves_weights_and_optimizer_alone():
    import torch

    from mlbench import registry
    from mlbench.training import harness
    from mlbench.training.recipe import OptimArgs, StepContext

    wl = registry.get("dlrm", "tiny").workload()
    model = wl.build_model()
    opt, _ = wl.build_optimizer(model, OptimArgs(global_batch_size=32, steps_per_epoch=1, epochs=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = opt.state_dict()
    calls = []
    loss = wl.loss

    def counted(*args, **kw):
        calls.append(1)
        return loss(*args, **kw)

    wl.loss = counted
    harness._warm_up(model, model, opt, wl, 32, StepContext(device=torch.device("cpu")), restore=False)
    assert len(calls) == 3  # forward and backward ran (what compiles)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert opt.state_dict() == opt_before and all(p.grad is None for p in model.parameters())
