"""benchmarks/data_path.py end to end at a tiny size: both loaders of both benchmarks run side by side and the
report holds the per-core rates, their ratio and the cores-to-feed figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_data_path_tiny(tmp_path):
    out = tmp_path / "report.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data_path.py"), "--images", "8", "--batch-size",
                        "4", "--trials", "1", "--workers", "1", "--out", str(out)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    for name in ("resnet50", "retinanet"):
        row = r[name]["workers_1"]
        assert row["plain"]["images_per_core_s"] > 0 and row["mlbench"]["images_per_core_s"] > 0
        assert row["ratio_per_core"] > 0
    assert r["resnet50"]["feed_one_gpu"]["cores_at_published_rate"] > 0
    assert r["retinanet"]["feed_one_gpu"]["cores_at_twice_reference_148"] > r["retinanet"]["feed_one_gpu"][
        "cores_at_reference_74"]
