"""`mlbench scale`: the same training at 1 and 2 processes (real torchrun), compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((sweep_dir / "result.json").read_text())
    assert result["kind"] == "scale" and result["status"] == "success" and result["valid"] is False
    one, two = result["points"]
    assert (one["nproc"], one["world_size"], two["nproc"], two["world_size"]) == (1, 1, 2, 2)
    assert one["scaling_efficiency"] == 1.0 and two["scaling_efficiency"] > 0
    assert result["metrics"]["nproc_2/throughput/samples_per_s"] == two["throughput/samples_per_s"] > 0
    assert one["time_to_train/minutes"] is not None  # tiny reaches its target
    assert "efficiency" in res.stdout and "samples/s" in res.stdout
