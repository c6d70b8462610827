"""Accuracy mode: the reported top-1 equals what mlperf_log_accuracy.json says; ONNX Runtime agrees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from infer_support import QUICK


def decode_top1(run_dir: Path) -> tuple[float, dict[int, int]]:
    """Decode LoadGen's accuracy log ourselves: one int32 class per sample, labels from the tiny generator."""
    from mlbench.benchmarks.resnet50.data import generate_patterns
    from mlbench.benchmarks.resnet50.definition import TINY

    entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    pred = {int(e["qsl_idx"]): int(np.frombuffer(bytes.fromhex(e["data"]), dtype=np.int32)[0]) for e in entries}
    _, labels = generate_patterns(TINY.hparams["eval_samples"], seed=2, num_classes=TINY.num_classes)
    return float(np.mean([pred[i] == int(labels[i]) for i in pred])), pred


def test_accuracy_mode_top1_matches_the_log(infer):
    code, r, out = infer(*QUICK, "--mode", "accuracy")
    top1, pred = decode_top1(Path(r["run_dir"]))
    assert len(pred) == 256  # the whole tiny evaluation set, each sample once
    assert r["quality"]["value"] == top1
    assert r["quality"]["target"] == 0.5  # the definition's inference_target, not a copy
    assert r["quality"]["reached"] == (top1 >= 0.5)
    assert code == (0 if top1 >= 0.5 else 1)
    assert any("accuracy only" in x for x in r["validity_reasons"])


def test_onnxruntime_agrees_with_pytorch(infer):
    _, r_pt, _ = infer(*QUICK, "--mode", "accuracy", "--batch-size", "64")
    _, r_ort, out = infer(*QUICK, "--mode", "accuracy", "--backend", "onnxruntime", "--batch-size", "64")
    assert r_ort["status"] == "success", out
    check = r_ort["backend"]["check_against_pytorch"]
    assert check["ok"] and check["relative"] < 1e-3
    _, pred_pt = decode_top1(Path(r_pt["run_dir"]))
    _, pred_ort = decode_top1(Path(r_ort["run_dir"]))
    same = np.mean([pred_pt[i] == pred_ort[i] for i in pred_pt])
    assert same >= 0.99
    assert abs(r_ort["quality"]["value"] - r_pt["quality"]["value"]) <= 0.01


def test_int8_and_bf16_are_scored(infer):
    code, r, out = infer(*QUICK, "--mode", "accuracy", "--backend", "onnxruntime", "--precision", "int8")
    assert r["status"] == "success", out
    assert r["backend"]["precision"] == "int8" and r["backend"]["model_file"].endswith("-int8.onnx")
    assert r["backend"]["check_against_pytorch"]["argmax_agreement"] >= 0.8
    code, r, out = infer(*QUICK, "--mode", "accuracy", "--precision", "bf16")
    assert r["status"] == "success" and r["precision"] == "bf16", out
    assert r["quality"]["value"] is not None
    assert r["backend"]["weights_cast_once"] > 0  # recorded, so that runs stay comparable


def test_random_reference_weights_are_reproducible():
    """--weights random (throughput only) must give the same model to the export, the check and the FLOPs."""
    import torch

    from mlbench import registry
    from mlbench.inference.task import TaskOptions, build

    task = build(registry.get("resnet50", "reference"), TaskOptions(weights="random"))
    a, b = task.model().state_dict(), task.model().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert task.model_id() == "random0"
