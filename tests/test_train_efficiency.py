"""Training reports its efficiency beside its throughput: model FLOPs x samples/s over the hardware peak (MFU)
and over the measured kernel peak, neither capped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import mlbench


def _result(out: Path) -> dict:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((run / "result.json").read_text())


def test_resnet50_tiny_reports_its_mfu(tmp_path):
    out = tmp_path / "runs"
    p = mlbench("train", "resnet50", "--size", "tiny", "--output-dir", str(out), "--no-checkpoint",
                "--peak-tflops", "0.5", env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    r = _result(out)
    m = r["metrics"]
    assert m["throughput/samples_per_s"] > 0 and m["model/train_gflops_per_sample"] > 0
    assert m["compute/achieved_tflops"] == pytest.approx(
        m["model/train_gflops_per_sample"] * m["throughput/samples_per_s"] / 1e3, rel=1e-6)
    c = r["compute"]
    # --peak-tflops replaces the CPU's theoretical peak (kept beside it when the clock could be read)
    assert c["peak"]["kind"] == "user" and m["compute/peak_tflops"] == 0.5
    assert m["compute/mfu"] == pytest.approx(m["compute/achieved_tflops"] / 0.5) == c["mfu"]
    assert c["precision"] == "fp32" and c["kernel_peak"]["precision"] == "fp32" and c["kernel_peak"]["method"]
    assert m["compute/kernel_peak_fraction"] == pytest.approx(
        m["compute/achieved_tflops"] / m["compute/kernel_peak_tflops"])
    assert "after run_stop" in c["flops_counted"] and isinstance(c["flags"], list)
    assert r["runs"][0]["metrics"]["compute/mfu"] == m["compute/mfu"]
    assert "efficiency:" in p.stdout and "MFU" in p.stdout
    # counted outside the timed part: the MLPerf log ends with run_stop, and the run's timing is unchanged
    log = next(p for p in out.iterdir() if p.is_dir()) / "run_1" / "mlperf_log.txt"
    assert json.loads(log.read_text().strip().splitlines()[-1].split(" ", 1)[1])["key"] == "run_stop"


def test_training_flops_counted_outside_the_timed_part():
    """One synthetic batch, forward and backward: about 3x the forward FLOPs, gradients cleared after."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mlbench import registry
    from mlbench.training.harness import training_flops_per_sample
    from mlbench.training.recipe import StepContext

    handle = registry.get("resnet50", "tiny")
    wl = handle.workload()
    model = wl.build_model()
    ctx = StepContext(device=torch.device("cpu"), channels_last=False, autocast=None, rank=0, world_size=1)
    per_sample = training_flops_per_sample(wl, model, 8, ctx)
    x = wl.synthetic_batch(1, ctx)[0]
    with torch.no_grad(), FlopCounterMode(display=False) as fwd:
        model.eval()(x)
    assert 2.5 * fwd.get_total_flops() <= per_sample <= 3.5 * fwd.get_total_flops()
    assert all(q.grad is None for q in model.parameters())
