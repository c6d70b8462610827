"""RetinaNet inference: both backends give the same detections, and `mlbench infer` scores mAP from LoadGen's
accuracy log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlbench.benchmarks.retinanet import definition, inference, model
from mlbench.inference import logs
from mlbench.inference.task import TaskOptions


@pytest.fixture
def weights(tmp_path) -> Path:
    """Tiny-model weights that detect plenty: random network, class bias raised from the focal-loss prior."""
    torch.manual_seed(0)
    net = model.build_model(definition.TINY)
    with torch.no_grad():
        net.head.classification_head.cls_logits.bias.fill_(-1.0)
        net.head.classification_head.cls_logits.weight.mul_(30.0)  # scores spread out: no ties to order
    path = tmp_path / "tiny.pt"
    torch.save({"model": net.state_dict()}, path)
    return path


def test_pytorch_and_onnxruntime_give_the_same_detections(weights, tmp_path):
    import onnxruntime as ort

    from mlbench.inference.backends.onnxrt import export

    task = inference.build_task(definition.TINY, TaskOptions(weights=str(weights), say=lambda m: None))
    store = task.dataset()
    idx = list(range(6))
    store.load(idx)
    x = store.batch(idx)
    core = task.model()
    with torch.inference_mode():
        pt = [o.numpy() for o in core(torch.from_numpy(x.copy()))]
    onnx_file = export(core, x, tmp_path / "tiny.onnx")
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ox = sess.run(None, {sess.get_inputs()[0].name: x})
    det_pt, det_ox = task.postprocess(pt, idx), task.postprocess(ox, idx)
    assert sum(len(d) for d in det_pt) > 0
    for a, b in zip(det_pt, det_ox):
        assert a.shape == b.shape and a.shape[1] == 6
        order = lambda d: d[np.lexsort((d[:, 0], -d[:, 4].round(4)))]  # noqa: E731 - ties may swap rows
        np.testing.assert_allclose(order(a), order(b), atol=1e-3)
    # Boxes are in the original image's pixels and inside it; categories are the json's ids (1..4).
    assert (det_pt[0][:, :4] >= 0).all() and (det_pt[0][:, :4] <= 96).all()
    assert set(np.unique(np.concatenate(det_pt)[:, 5])) <= {1.0, 2.0, 3.0, 4.0}


def test_accuracy_scores_logged_bytes_like_pycocotools(weights):
    task = inference.build_task(definition.TINY, TaskOptions(weights=str(weights), say=lambda m: None))
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    # Perfect responses built from the ground truth give mAP 1 except for the annotated-but-undrawn object.
    gt = task._index
    responses = {}
    for i in idx:
        image_id = store.label(i)[0]
        rows = [[*b, 1.0, gt.label_to_cat[lab]] for b, lab in zip(gt.boxes[image_id], gt.labels[image_id])]
        responses[i] = np.asarray(rows, dtype=np.float32).reshape(-1, 6).tobytes()
    m = task.accuracy(responses, store)
    assert m["samples"] == 16 and m["mAP"] == pytest.approx(1.0)


@pytest.mark.slow
def test_infer_cli_accuracy_from_loadgen_log(weights, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench", "infer", "retinanet", "--size", "tiny", "--weights", str(weights),
         "--mode", "accuracy", "--quick", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]  # results.db lies beside the run
    result = json.loads((run_dir / "result.json").read_text())
    acc = result["accuracy"]
    assert acc["scores"]["samples"] == 16 and 0.0 <= acc["value"] < 1.0
    # Re-score the accuracy log LoadGen wrote: the same number.
    logged = logs.read_accuracy(run_dir / "mlperf_log_accuracy.json")
    task = inference.build_task(definition.TINY, TaskOptions(weights=str(weights), say=lambda m: None))
    store = task.dataset()
    assert task.accuracy(logged, store)["mAP"] == pytest.approx(acc["value"])
    assert any(len(v) for v in logged.values())  # detections were logged
