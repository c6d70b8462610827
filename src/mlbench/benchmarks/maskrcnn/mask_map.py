"""COCO box and mask mAP@[.5:.95] with pycocotools (``bbox`` and ``segm``), as MLPerf's Mask R-CNN scores.

Detections are COCO result records ``{"image_id", "category_id", "bbox": [x, y, w, h], "score",
"segmentation": RLE}`` in the original image's pixels. The box part is RetinaNet's evaluation
(:func:`mlbench.detection.coco_map.box_map`); the mask part runs the same COCOeval with
``iouType="segm"`` on the records' RLE masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlbench.detection import coco_map


def segm_map(gt: Any, detections: list[dict[str, Any]], image_ids: list[int] | None = None) -> dict[str, float]:
    """Mask mAP@[.5:.95], @.5 and @.75 (pycocotools ``segm``); no detections give 0."""
    return coco_map.coco_eval_map(gt, detections, "segm", image_ids)


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
        recs = coco_map.records(out, image_id, label_to_cat, first_label=1)
        if recs:
            rles = encode((out["masks"].detach().float().cpu()[:, 0] > threshold).numpy())
            results.extend({**r, "segmentation": rle} for r, rle in zip(recs, rles))
    return results
