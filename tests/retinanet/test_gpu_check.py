"""benchmarks/gpu_check.sh (issue 16's GPU checks): it stops at once without a CUDA device, and its dry run on
CPU (tiny sizes) runs the RetinaNet comparison end to end and writes the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env})


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_stops_at_once_without_cuda(tmp_path):
    t = time.perf_counter()
    proc = run([str(tmp_path / "out")])
    assert proc.returncode == 1
    assert "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr
    assert time.perf_counter() - t < 60
    assert not list((tmp_path / "out").glob("*.json"))


@pytest.mark.slow
def test_dry_run_levers_inference_and_smoke_steps(tmp_path):
    """One dry run of the RetinaNet, inference and end-to-end steps (one test, so that the steps run once: each
    step's own start-up is most of what the dry run times); a budget as each step had when run alone."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run(["--dry-run", str(out)], STEPS="levers infer graphs smoke", WORK=str(work), BUDGET_S="900")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # two files come back (a device machine returns a few files only); the data and caches stay in WORK
    assert sorted(p.name for p in out.iterdir()) == ["details.tgz", "summary.txt"]
    summary = (out / "summary.txt").read_text()
    assert "0 step(s) failed" in summary
    with tarfile.open(out / "details.tgz") as tar:
        names = set(tar.getnames())
        report = json.load(tar.extractfile("./retinanet_levers.json"))
    _check_retinanet_figures(report, summary, work)
    _check_inference_steps(summary, names)
    _check_smoke_step(summary, names)


def _check_retinanet_figures(report: dict, summary: str, work: Path) -> None:
    assert (work / "openimages-like").is_dir()
    assert report["precision"] == "fp32" and report["mlbench_side"]["channels_last"]  # bf16 on the GPU
    assert report["median_plain"] > 0 and report["median_mlbench"] > 0
    assert report["loss_check"]["max_rel_diff"] < 2e-2
    assert report["speed"]["batched_matching_and_loss"] and report["speed"]["frozen_bn_folded_into_conv"] == 11
    assert 0.0 <= report["data"]["data_wait_share"] < 1.0
    assert "RetinaNet reference train" in summary and "data wait" in summary


def _check_inference_steps(summary: str, names: set[str]) -> None:
    """The ResNet-50 Offline step runs on the CPU; the CUDA graphs step says it is skipped there."""
    assert "ResNet-50 Offline bf16 batch 2 on cpu" in summary and "status success" in summary
    assert "cuda graphs: skipped in the dry run" in summary
    assert "./infer_eager.log" in names
    assert any(n.startswith("infer_runs/") and n.endswith("/result.json") for n in names)


def _check_smoke_step(summary: str, names: set[str]) -> None:
    """The end-to-end step runs one benchmark's tiny train and infer on the CPU (every benchmark on a GPU) and
    puts one line per command in the summary."""
    assert "ok   mlbench train dlrm --size tiny --device cpu --precision bf16" in summary
    assert "ok   mlbench infer dlrm" in summary and "2 of 2 commands passed" in summary
    assert {"smoke/dlrm-train.log", "smoke/dlrm-infer.log", "./smoke.json"} <= names


def test_stops_at_once_without_loadgen(tmp_path):
    """A GPU machine without the wheels: one line naming the fix, before any step starts."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "mlperf_loadgen.py").write_text("raise ImportError('not installed (test)')\n")
    out = tmp_path / "out"
    proc = run(["--dry-run", str(out)], PYTHONPATH=str(block), WORK=str(tmp_path / "work"))
    assert proc.returncode == 1
    assert "lacks LoadGen or mlperf-logging" in proc.stderr and "benchmarks/gpu_wheels.sh" in proc.stderr
    assert not (out / "details.tgz").exists()
