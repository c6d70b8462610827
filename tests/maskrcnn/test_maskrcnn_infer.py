"""Mask R-CNN inference: the fixed-shape network outputs, responses scored as box and mask mAP, and
`mlbench infer maskrcnn --mode accuracy --quick` re-scored from LoadGen's accuracy log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlbench.benchmarks.maskrcnn import definition, inference, model
from mlbench.inference import logs
from mlbench.inference.task import TaskOptions


@pytest.fixture
def weights(tmp_path) -> Path:
    """Tiny-model weights of a random network (it detects plenty: random class scores above 0.05)."""
    torch.manual_seed(0)
    net = model.build_model(definition.TINY)
    path = tmp_path / "tiny.pt"
    torch.save({"model": net.state_dict()}, path)
    return path


def test_outputs_are_fixed_shape_and_responses_score(weights):
    task = inference.build_task(definition.TINY, TaskOptions(weights=str(weights), say=lambda m: None))
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    core = task.model()
    with torch.inference_mode():
        outs = [o.numpy() for o in core(torch.from_numpy(store.batch(idx[:4]).copy()))]
    d = definition.TINY.hparams["detections_per_img"]
    assert [o.shape for o in outs] == [(4, d, 4), (4, d), (4, d), (4, d, 28, 28)]
    responses = task.postprocess(outs, idx[:4])
    records = [json.loads(bytes(r).decode()) for r in responses]
    assert sum(len(r) for r in records) > 0
    assert all(len(rec) == 7 and rec[5] in (1, 2, 3, 4) for r in records for rec in r)
    # Perfect responses made from the ground truth score 1 on both.
    from mlbench.benchmarks.maskrcnn import data as mdata
    from mlbench.benchmarks.maskrcnn import mask_map

    gt = task._index
    ds = mdata.MaskDataset(gt)
    perfect = {}
    for i in idx:
        _, t = ds[i]
        rles = mask_map.encode(t["masks"].numpy())
        rows = [[*(float(v) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])), 1.0, gt.label_to_cat[int(lab) - 1],
                 r["counts"]] for b, lab, r in zip(t["boxes"], t["labels"], rles)]
        perfect[i] = np.frombuffer(json.dumps(rows).encode(), dtype=np.uint8).tobytes()
    m = task.accuracy(perfect, store)
    assert m["samples"] == 16 and m["bbox_mAP"] == pytest.approx(1.0) and m["segm_mAP"] == pytest.approx(1.0)


def test_infer_cli_accuracy_from_loadgen_log(weights, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench", "infer", "maskrcnn", "--size", "tiny", "--weights", str(weights),
         "--mode", "accuracy", "--quick", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "result.json").read_text())
    acc = result["accuracy"]
    assert acc["metric"] == "segm_mAP" and acc["scores"]["samples"] == 16
    assert {"bbox_mAP", "segm_mAP"} <= set(acc["scores"]) and 0.0 <= acc["value"] < 1.0
    logged = logs.read_accuracy(run_dir / "mlperf_log_accuracy.json")
    task = inference.build_task(definition.TINY, TaskOptions(weights=str(weights), say=lambda m: None))
    again = task.accuracy(logged, task.dataset())
    assert again["segm_mAP"] == pytest.approx(acc["value"])
    assert again["bbox_mAP"] == pytest.approx(acc["scores"]["bbox_mAP"])
    assert any(len(v) > 2 for v in logged.values())  # detections were logged (not just "[]")
