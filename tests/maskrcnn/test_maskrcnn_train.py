"""Mask R-CNN training end to end: the tiny size through the CLI with its MLPerf log through the official checker
(eval_accuracy as {BBOX, SEGM}, ruleset 3.1.0), the reference recipe's schedule and log keys, the reference
model's construction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlbench.benchmarks.maskrcnn import definition, workload
from mlbench.training.recipe import OptimArgs, StepContext


def read_result(out: Path) -> dict:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((run_dir / "result.json").read_text())


def test_tiny_trains_through_the_cli(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlbench", "train", "maskrcnn", "--size", "tiny", "--device", "cpu", "--seed", "3",
         "--epochs", "1", "--workers", "0", "--log-every", "4", "--output-dir", str(out), "--no-checkpoint"],
        capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    # torchvision's loss parts on the MetricLogger line.
    assert "Epoch: [0]  [0/" in text
    for part in ("loss_classifier: ", "loss_box_reg: ", "loss_mask: ", "loss_objectness: ", "loss_rpn_box_reg: "):
        assert part in text, text[-2000:]
    assert "bbox_mAP" in text and "segm_mAP" in text
    result = read_result(out)
    run = result["runs"][0]
    assert run["compliance"]["passed"], run["compliance"]["output"]
    assert run["compliance"]["ruleset"] == "3.1.0"
    ev = run["evals"][0]
    assert ev["epoch"] == 1 and set(ev["metrics"]) >= {"bbox_mAP", "segm_mAP"}
    assert 0.0 <= run["quality"] == ev["metrics"]["segm_mAP"] < 1.0
    assert result["valid"] is False and any("open division" in r for r in result["validity_reasons"])
    log = (next(p for p in out.iterdir() if p.is_dir()) / "run_1" / "mlperf_log.txt").read_text()
    acc = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in log.splitlines() if '"eval_accuracy"' in line]
    assert set(acc[0]["value"]) == {"BBOX", "SEGM"} and acc[0]["metadata"]["epoch_num"] == 1
    assert '"submission_benchmark", "value": "maskrcnn"' in log


def test_two_targets_and_the_logged_form():
    wl = workload.WORKLOAD(definition.REFERENCE)
    assert wl.has_reached_target({"bbox_mAP": 0.38, "segm_mAP": 0.34})
    assert not wl.has_reached_target({"bbox_mAP": 0.376, "segm_mAP": 0.35})  # box short
    assert not wl.has_reached_target({"bbox_mAP": 0.40, "segm_mAP": 0.338})  # mask short
    assert wl.quality({"bbox_mAP": 0.4, "segm_mAP": 0.3}) == 0.3
    assert wl.logged_accuracy({"bbox_mAP": 0.4, "segm_mAP": 0.3}) == {"BBOX": 0.4, "SEGM": 0.3}
    assert "bbox_mAP >= 0.377 and segm_mAP >= 0.339" == wl.target_text()


def test_reference_recipe_schedule_and_log_keys():
    wl = workload.WORKLOAD(definition.REFERENCE)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    args = OptimArgs(global_batch_size=16, steps_per_epoch=7329, epochs=14)
    opt, sched = wl.build_optimizer(model, args)
    weights, biases = opt.param_groups
    assert (weights["weight_decay"], biases["weight_decay"]) == (0.0001, 0.0)  # no decay on biases
    assert sched.lr_at(0) == pytest.approx(0.02 / 3) and sched.lr_at(500) == pytest.approx(0.02)
    assert sched.lr_at(60000) == pytest.approx(0.002) and sched.lr_at(80000) == pytest.approx(0.0002)
    assert biases["lr"] == pytest.approx(2 * weights["lr"])  # maskrcnn-benchmark's BIAS_LR_FACTOR 2
    keys = wl.mllog_hparams(args, opt)
    assert keys["opt_learning_rate_decay_steps"] == [60000, 80000] and keys["opt_base_learning_rate"] == 0.02
    assert keys["num_image_candidates"] % 1000 == 0 and keys["opt_learning_rate_decay_factor"] == 0.1
    assert (keys["min_image_size"], keys["max_image_size"]) == (800, 1333)
    # Batch 32: the rate doubles, warm-up and decay points halve in steps (the same images).
    wl2 = workload.WORKLOAD(definition.REFERENCE)
    args2 = OptimArgs(global_batch_size=32, steps_per_epoch=3664, epochs=14)
    wl2.build_optimizer(model, args2)
    assert args2.extra["base_lr"] == pytest.approx(0.04) and args2.extra["decay_steps"] == [30000, 40000]


@pytest.mark.slow
def test_reference_model_builds_and_computes_the_loss(monkeypatch):
    from mlbench.benchmarks.maskrcnn import model

    monkeypatch.setenv(model.BACKBONE_ENV, "random")  # no download in tests
    bench = definition.REFERENCE
    net = model.build_model(bench)
    trainable = {n.split(".")[0] for n, p in net.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}
    assert net.roi_heads.box_predictor.cls_score.out_features == 81
    assert net.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 81
    assert (net.transform.min_size, net.transform.max_size) == ((800,), 1333)
    assert net.rpn._post_nms_top_n["training"] == 1000
    images = [torch.rand(3, 96, 128)]
    mask = torch.zeros(1, 96, 128, dtype=torch.uint8)
    mask[:, 20:60, 30:90] = 1
    targets = [{"boxes": torch.tensor([[30.0, 20.0, 90.0, 60.0]]), "labels": torch.tensor([5]), "masks": mask}]
    loss, parts = workload.WORKLOAD(bench).loss(net, (images, targets), StepContext(device=torch.device("cpu")))
    assert set(parts) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert torch.isfinite(loss)


def write_overfit_coco(root: Path, train_copies: int = 16) -> Path:
    """One generated image with its masks repeated (train) and twice in validation, one copy with an annotated
    object that is not drawn: a small model learns the image in a few dozen steps, and mAP stays below 1.0."""
    from PIL import Image

    from mlbench.detection import synthetic

    pixels, objects, visible = synthetic.draw_image(seed=11, size=64, masks=True)
    ghost = torch.zeros(64, 64, dtype=torch.bool)
    ghost[2:20, 40:60] = True
    (root / "annotations").mkdir(parents=True)
    for split, folder, n in (("train", "train2017", train_copies), ("val", "val2017", 2)):
        (root / folder).mkdir()
        images, anns = [], []
        for i in range(n):
            Image.fromarray(pixels).save(root / folder / f"{i}.jpg", quality=95)
            images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 64, "height": 64})
            regions = [(c, v) for (c, _), v in zip(objects, visible)]
            if split == "val" and i == 0:
                regions.append((2, ghost.numpy()))
            for cls, region in regions:
                fields = synthetic.mask_annotation(region)
                if fields:
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1, "iscrowd": 0,
                                 **fields})
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps(synthetic.coco_dict(images, anns)))
    return root


@pytest.mark.slow
def test_reference_recipe_log_passes_closed_compliance(tmp_path, monkeypatch):
    # The reference network (ResNet-50 FPN at 800-1333 px) takes minutes per step on 2 CPU cores, so this test
    # keeps the reference definition (closed division, SGD recipe and its log keys, 81 classes, both targets,
    # eval every epoch) and swaps only the network for the light one at 64x64, on one image repeated.
    from mlbench.benchmarks.maskrcnn import definition as d
    from mlbench.cli import main as cli_main

    light = {k: v for k, v in d.MINI.hparams.items() if k not in d.REFERENCE.hparams or k in (
        "backbone", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
        "box_batch_size_per_image", "detections_per_img")}
    fast = d.REFERENCE.derive(
        batch_size=8, max_epochs=40, input_shape=(3, 64, 64),
        hparams={**light, "image_size": 64, "width": 8, "fpn_channels": 32, "box_representation": 64,
                 "mask_convs": 1, "lr": 0.04, "lr_reference_batch": 8, "warmup_images": 16})
    monkeypatch.setitem(d.SIZES, "reference", fast)
    data = write_overfit_coco(tmp_path / "coco")
    out = tmp_path / "runs"
    torch.set_num_threads(2)
    code = cli_main(["train", "maskrcnn", "--size", "reference", "--device", "cpu", "--seed", "0", "--workers", "0",
                     "--data-dir", str(data), "--output-dir", str(out), "--log-every", "50", "--no-checkpoint"])
    result = read_result(out)
    run = result["runs"][0]
    assert code == 0 and run["status"] == "success", run["reason"]
    assert result["division"] == "closed" and run["compliance"]["passed"], run["compliance"]["output"]
    log = (next(p for p in out.iterdir() if p.is_dir()) / "run_1" / "mlperf_log.txt").read_text()
    for key in ('"opt_learning_rate_decay_factor", "value": 0.1', '"num_image_candidates", "value": 1000',
                '"submission_division", "value": "closed"', '"opt_learning_rate_warmup_steps", "value": 2'):
        assert key in log, key
