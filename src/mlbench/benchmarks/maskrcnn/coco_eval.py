"""COCO box and mask mAP@[.5:.95] with pycocotools (``bbox`` and ``segm``), as MLPerf's Mask R-CNN scores.

Detections are COCO result records ``{"image_id", "category_id", "bbox": [x, y, w, h], "score",
"segmentation": RLE}`` in the original image's pixels. The box part is RetinaNet's evaluation
(:func:`mlbench.benchmarks.retinanet.coco_map.box_map`); the mask part runs the same COCOeval with
``iouType="segm"`` on the records' RLE masks.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from mlbench.benchmarks.retinanet import coco_map


def segm_map(gt: Any, detections: list[dict[str, Any]], image_ids: list[int] | None = None) -> dict[str, float]:
    """Mask mAP@[.5:.95], @.5 and @.75 (pycocotools ``segm``); no detections give 0."""
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"mAP": 0.0, "mAP_50": 0.0, "mAP_75": 0.0}
    coco = gt if hasattr(gt, "loadRes") else coco_map.coco_from_dict(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        res = coco.loadRes([dict(d) for d in detections])  # loadRes changes its records: copy
        ev = COCOeval(coco, res, iouType="segm")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"mAP": max(0.0, float(ev.stats[0])), "mAP_50": max(0.0, float(ev.stats[1])),
            "mAP_75": max(0.0, float(ev.stats[2]))}


def score(gt: dict[str, Any], detections: list[dict[str, Any]], image_ids: list[int]) -> dict[str, float]:
    """Both evaluations over ``image_ids``: ``bbox_mAP``, ``segm_mAP`` and their @.5 / @.75 values."""
    if not image_ids:
        return {"bbox_mAP": 0.0, "segm_mAP": 0.0}
    coco = coco_map.coco_from_dict(gt)  # indexed once for both evaluations
    boxes = [{k: v for k, v in d.items() if k != "segmentation"} for d in detections]
    b = coco_map.box_map(coco, boxes, image_ids=image_ids)
    s = segm_map(coco, detections, image_ids=image_ids)
    return {"bbox_mAP": b["mAP"], "segm_mAP": s["mAP"], "bbox_mAP_50": b["mAP_50"], "bbox_mAP_75": b["mAP_75"],
            "segm_mAP_50": s["mAP_50"], "segm_mAP_75": s["mAP_75"]}


def encode(masks: np.ndarray) -> list[dict[str, Any]]:
    """Binary masks [n, H, W] -> COCO RLE records (counts as a string, JSON-ready)."""
    from pycocotools import mask as mask_util

    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def to_coco_results(outputs: list[dict[str, torch.Tensor]], image_ids: list[int], label_to_cat: list[int],
                    threshold: float = 0.5) -> list[dict[str, Any]]:
    """torchvision Mask R-CNN outputs (original-size boxes, labels 1..K, mask probabilities [n,1,H,W]) as COCO
    result records with RLE masks (probability > ``threshold``, the reference's binarisation)."""
    results = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel() == 0:
            continue
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
        scores = out["scores"].detach().float().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        rles = encode((out["masks"].detach().float().cpu()[:, 0] > threshold).numpy())
        for box, s, label, rle in zip(xywh, scores, labels, rles):
            results.append({"image_id": int(image_id), "category_id": int(label_to_cat[label - 1]),
                            "bbox": [round(v, 3) for v in box], "score": round(float(s), 5), "segmentation": rle})
    return results
