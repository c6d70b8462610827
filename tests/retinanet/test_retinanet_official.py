"""Issue 33: MLPerf's RetinaNet model files. The whole-detector ONNX (images -> boxes, scores, labels for one image
per run) through the whole path, and the .pth that pickles a whole module, read without running its code."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import official_models as om
from mlbench import registry
from mlbench.benchmarks.retinanet import definition, modelfiles
from mlbench.inference.task import TaskOptions, build


def _mean_of_reference_preprocessing(data) -> float:
    files = sorted((data / "validation" / "data").glob("*.jpg"))
    return float(modelfiles.reference_image(files[0]).mean())


def test_retinanet_mlperf_onnx_through_the_whole_path(tmp_path, capsys):
    data = om.make_openimages_val(tmp_path / "openimages")
    onnx_file = om.retinanet_mlperf_onnx(tmp_path / "resnext50_32x4d_fpn.onnx", _mean_of_reference_preprocessing(data))
    code, r, out = om.run_infer(["retinanet", "--size", "reference", "--data-dir", str(data), "--weights",
                                 str(onnx_file), "--backend", "onnxruntime", "--mode", "accuracy", "--threads", "1"],
                                tmp_path / "runs", capsys)
    assert r["status"] == "success", out
    assert r["backend"]["batch_size"] == 1  # the file runs one image at a time
    assert r["accuracy"]["value"] == pytest.approx(1.0, abs=1e-6) and r["accuracy"]["scores"]["samples"] == 4
    assert r["task"]["model_file"]["outputs"] == ["boxes", "scores", "labels"]
    assert code == 0


def test_retinanet_onnx_detections_are_scaled_thresholded_and_refuse_bigger_batches(tmp_path):
    data = om.make_openimages_val(tmp_path / "openimages")
    onnx_file = om.retinanet_mlperf_onnx(tmp_path / "m.onnx", _mean_of_reference_preprocessing(data))
    task = build(registry.get("retinanet", "reference"), TaskOptions(data_dir=str(data), weights=str(onnx_file),
                                                                     say=lambda m: None))
    store = task.dataset()
    store.load([1])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (rows,) = task.postprocess(sess.run(task.onnx_outputs, {"images": store.batch([1])}), [1])
    assert rows.shape == (2, 6)  # the 0.01 duplicate is dropped, as the reference drops it
    w, h = 480, 640  # image 1's own size: boxes come back in its pixels
    np.testing.assert_allclose(rows[0, :4], [om.OBJECT[0] * w, om.OBJECT[1] * h, om.OBJECT[2] * w, om.OBJECT[3] * h],
                               rtol=0.02)
    assert rows[0, 4:].tolist() == pytest.approx([0.9, om.OBJECT_CATEGORY])
    from mlbench.errors import ConfigError
    from mlbench.inference.config import InferConfig
    from mlbench.inference.runner import batch_limit

    with pytest.raises(ConfigError, match="runs at most 1 sample"):
        batch_limit(task, InferConfig(benchmark="retinanet", batch_size=4, backend="onnxruntime"), 4)
    assert batch_limit(task, InferConfig(benchmark="retinanet", backend="onnxruntime"), 32) == 1


def _old_key(k: str) -> str:
    """torchvision's current RetinaNet key -> the name in MLPerf's training code (an older torchvision)."""
    k = re.sub(r"(head\.\w+_head\.conv)\.(\d)\.0\.", lambda m: f"{m.group(1)}.{2 * int(m.group(2))}.", k)
    return re.sub(r"(fpn\.(?:inner|layer)_blocks\.\d)\.0\.", r"\1.", k)


def test_retinanet_mlperf_pth_pickled_module_is_read_without_its_code(tmp_path):
    """resnext50_32x4d_fpn.pth pickles the whole detector (classes of MLPerf's training code, older key names):
    mlbench reads its tensors without that code and loads them into torchvision's RetinaNet."""
    from mlbench.benchmarks.retinanet.model import build_model

    torch.manual_seed(0)
    net = build_model(definition.REFERENCE, backbone_weights=False)
    state = {_old_key(k): v for k, v in net.state_dict().items()}
    assert any(".conv.6.weight" in k for k in state) and any("inner_blocks.0.weight" in k for k in state)
    path = om.pickled_module(state, tmp_path / "resnext50_32x4d_fpn.pth")
    task = build(registry.get("retinanet", "reference"), TaskOptions(data_dir=str(tmp_path), weights=str(path)))
    core = task.model()
    assert torch.equal(core.head.classification_head.conv[3][0].weight,
                       net.head.classification_head.conv[3][0].weight)
    assert torch.equal(core.backbone.fpn.inner_blocks[2][0].weight, net.backbone.fpn.inner_blocks[2][0].weight)
    assert task.interface() is modelfiles.NETWORK
