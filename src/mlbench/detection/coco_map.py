"""COCO box mAP@[.5:.95] with pycocotools (the metric MLPerf's RetinaNet uses, train and inference).

Detections are COCO result records ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in the
original image's pixels. pycocotools prints its tables; they are captured, not shown, unless asked.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import torch


def coco_from_dict(gt: dict[str, Any]):
    """A pycocotools COCO object from a COCO json already in memory."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def box_map(gt: dict[str, Any], detections: list[dict[str, Any]], image_ids: list[int] | None = None,
            verbose: bool = False) -> dict[str, float]:
    """mAP@[.5:.95], mAP@.5 and mAP@.75 of ``detections`` against the ground truth ``gt``.

    ``image_ids`` restricts the evaluation (default: every image of ``gt``). No detections at all give 0.
    """
    return coco_eval_map(gt, detections, "bbox", image_ids, verbose)


def coco_eval_map(gt: Any, detections: list[dict[str, Any]], iou_type: str, image_ids: list[int] | None = None,
                  verbose: bool = False) -> dict[str, float]:
    """pycocotools' COCOeval of ``iou_type`` (``bbox``; Mask R-CNN's ``segm`` too) over ``image_ids`` (default
    all): ``mAP`` (@[.5:.95]), ``mAP_50``, ``mAP_75``; 0 without detections. ``gt``: a COCO json or a COCO."""
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"mAP": 0.0, "mAP_50": 0.0, "mAP_75": 0.0}
    coco = gt if hasattr(gt, "loadRes") else coco_from_dict(gt)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        res = coco.loadRes([dict(d) for d in detections])  # loadRes adds fields in place: copy
        ev = COCOeval(coco, res, iouType=iou_type)
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(out.getvalue())
    # pycocotools reports -1 where a category has no ground truth at all; that is no score, so 0.
    return {"mAP": max(0.0, float(ev.stats[0])), "mAP_50": max(0.0, float(ev.stats[1])),
            "mAP_75": max(0.0, float(ev.stats[2]))}


def to_coco_results(outputs: list[dict[str, torch.Tensor]], image_ids: list[int],
                    label_to_cat: list[int]) -> list[dict[str, Any]]:
    """torchvision detection outputs (xyxy boxes, scores, contiguous labels) as COCO result records."""
    return [r for out, image_id in zip(outputs, image_ids) for r in records(out, image_id, label_to_cat)]


def records(out: dict[str, torch.Tensor], image_id: int, label_to_cat: list[int], first_label: int = 0
            ) -> list[dict[str, Any]]:
    """One image's torchvision detections (xyxy boxes, scores, labels counted from ``first_label``: 0 here, 1
    for Mask R-CNN's background-first labels) as COCO result records, boxes xywh rounded to 3 places."""
    boxes = out["boxes"].detach().float().cpu()
    if boxes.numel() == 0:
        return []
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    scores = out["scores"].detach().float().cpu().tolist()
    labels = out["labels"].detach().cpu().tolist()
    return [{"image_id": int(image_id), "category_id": int(label_to_cat[label - first_label]),
             "bbox": [round(v, 3) for v in box], "score": round(float(score), 5)}
            for box, score, label in zip(xywh, scores, labels)]
