"""Issue 33: mlbench's OpenCV-style resizing equals OpenCV's, and benchmarks/preprocess_check.py finds mlbench's
pre-processing identical to the MLPerf reference's on JPEGs (OpenCV is a test dependency)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from support import ROOT

cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (512, 512), (200, 150), (257, 300), (1024, 768)])
def test_resize_matches_opencv(size):
    from mlbench.data import cvimage

    w, h = size
    rng = np.random.default_rng(w * h)
    img = np.clip(128 + 60 * np.sin(np.arange(w) / 9.0)[None, :, None] + rng.normal(0, 30, (h, w, 3)), 0, 255
                  ).astype(np.uint8)
    nw, nh = (256, int(256 * h / w)) if h > w else (int(256 * w / h), 256)
    assert np.array_equal(cvimage.resize_area(img, nw, nh), cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA))
    f = img.astype(np.float32)
    got, want = cvimage.resize_linear(f, 800, 800), cv2.resize(f, (800, 800), interpolation=cv2.INTER_LINEAR)
    assert np.abs(got - want).max() < 0.05  # 0-255 scale; OpenCV with or without IPP


def test_preprocess_check_script_finds_no_difference(tmp_path):
    spec = importlib.util.spec_from_file_location("preprocess_check", ROOT / "benchmarks" / "preprocess_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = tmp_path / "r.json"
    assert script.main(["--json", str(report), "--quick"]) == 0
    pipelines = json.loads(report.read_text())["pipelines"]
    assert pipelines["resnet50-onnx"]["max_abs_diff"] == 0 and pipelines["resnet50-pytorch"]["max_abs_diff"] == 0
    assert pipelines["retinanet"]["max_abs_diff"] < 1e-6  # 0-1 floats: float rounding only
    assert "exif_rotated.jpg" in pipelines["resnet50-onnx"]["per_image"]
