"""benchmarks/seed_sweep.py at the tiny size: seeds trained and recorded (when the target was reached, each
evaluation), the tables written, and a second invocation resumes (runs only what is missing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sweep(out: Path, seeds: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLBENCH_SKIP_CACHE_CLEAR": "1", "MLBENCH_CACHE": str(tmp / "cache")}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed_sweep.py"), "--size", "tiny",
                           "--benchmarks", "dlrm", "--seed-list", seeds, "--jobs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


@pytest.mark.slow
def test_seed_sweep_records_every_seed_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    p = sweep(out, "3,4", tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    state = json.loads((out / "sweep.json").read_text())
    entry = state["benchmarks"]["dlrm"]
    assert entry["seeds"] == [3, 4] and set(entry["results"]) == {"3", "4"}
    for r in entry["results"].values():
        assert r["status"] == "success" and r["reached"]["quality"] >= r["target"] and r["by_samples"]
        assert r["evals"] and r["reached"]["samples"] == next(e["samples"] for e in r["evals"]
                                                               if e["quality"] >= r["target"])
    assert "| dlrm | 3 | yes |" in (out / "sweep.md").read_text()
    p = sweep(out, "4,5", tmp_path)  # seed 4 is kept, only seed 5 runs
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "1 runs to do" in p.stdout
    entry = json.loads((out / "sweep.json").read_text())["benchmarks"]["dlrm"]
    assert entry["seeds"] == [3, 4, 5] and entry["results"]["4"] == state["benchmarks"]["dlrm"]["results"]["4"]
