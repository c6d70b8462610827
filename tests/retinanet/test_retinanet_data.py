"""RetinaNet mAP against pycocotools on hand-made cases, the COCO loader's checks, the generated set."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from mlbench.detection import coco_map, synthetic
from mlbench.detection.coco_data import CocoDetection, CocoIndex, collate
from mlbench.errors import DataError


def gt_dict() -> dict:
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
              {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
              {"id": 3, "file_name": "empty.jpg", "width": 100, "height": 80}]
    boxes = [(1, 1, [10, 10, 30, 20]), (1, 2, [50, 40, 20, 30]), (2, 1, [0, 0, 40, 40]),
             (2, 2, [60, 10, 30, 60])]
    anns = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, (i, c, b) in enumerate(boxes)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]}


def perfect(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 0.9}
            for a in gt["annotations"]]


def pycocotools_map(gt: dict, dets: list[dict]) -> float:
    """pycocotools used directly, the way its own documentation does (the independent reference)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(json.loads(json.dumps(dets))), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_perfect_detections_give_one():
    gt = gt_dict()
    assert coco_map.box_map(gt, perfect(gt))["mAP"] == pytest.approx(1.0)


def test_shifted_boxes_match_pycocotools():
    gt = gt_dict()
    dets = perfect(gt)
    for k, d in enumerate(dets):
        d["bbox"][0] += 2 + 3 * k  # IoU falls as k grows: some thresholds miss
        d["score"] = 0.5 + 0.1 * k
    dets.append({"image_id": 3, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.95})  # a false positive
    ours = coco_map.box_map(gt, dets)["mAP"]
    assert 0.0 < ours < 1.0
    assert ours == pytest.approx(pycocotools_map(gt, dets), abs=1e-9)


def test_no_detections_give_zero():
    assert coco_map.box_map(gt_dict(), [])["mAP"] == 0.0


def test_torchvision_outputs_round_trip():
    gt = gt_dict()
    outputs = [{"boxes": torch.tensor([[10.0, 10, 40, 30], [50, 40, 70, 70]]), "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([0, 1])},
               {"boxes": torch.tensor([[0.0, 0, 40, 40], [60, 10, 90, 70]]), "scores": torch.tensor([0.7, 0.6]),
                "labels": torch.tensor([0, 1])},
               {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
    dets = coco_map.to_coco_results(outputs, [1, 2, 3], label_to_cat=[1, 2])
    assert len(dets) == 4 and dets[0]["bbox"] == [10.0, 10.0, 30.0, 20.0]
    assert coco_map.box_map(gt, dets)["mAP"] == pytest.approx(1.0)


def write_set(tmp_path: Path, gt: dict, skip: tuple[str, ...] = ()) -> tuple[Path, Path]:
    from PIL import Image

    img_dir = tmp_path / "data"
    img_dir.mkdir(parents=True, exist_ok=True)
    for im in gt["images"]:
        if im["file_name"] not in skip:
            Image.new("RGB", (im["width"], im["height"]), (120, 30, 60)).save(img_dir / im["file_name"])
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(gt))
    return path, img_dir


def test_loader_reads_boxes_labels_and_empty_images(tmp_path):
    path, img_dir = write_set(tmp_path, gt_dict())
    ds = CocoDetection(CocoIndex(path, img_dir))
    images, targets = collate([ds[0], ds[2]])
    assert images[0].shape == (3, 80, 100) and images[0].dtype == torch.float32
    assert targets[0]["boxes"].tolist() == [[10, 10, 40, 30], [50, 40, 70, 70]]
    assert targets[0]["labels"].tolist() == [0, 1]
    assert targets[1]["boxes"].shape == (0, 4)  # an image without objects is a valid sample


def test_flip_mirrors_boxes(tmp_path):
    path, img_dir = write_set(tmp_path, gt_dict())
    ds = CocoDetection(CocoIndex(path, img_dir), flip=True)
    torch.manual_seed(0)
    seen = {tuple(ds[0][1]["boxes"][0].tolist()) for _ in range(12)}
    assert seen == {(10.0, 10.0, 40.0, 30.0), (60.0, 10.0, 90.0, 30.0)}


@pytest.mark.parametrize("breakage, words", [
    (lambda gt: gt["annotations"][0].update(bbox=[90, 10, 30, 20]), "outside its image"),
    (lambda gt: gt["annotations"][0].update(bbox=[10, 10, 0, 20]), "is empty"),
    (lambda gt: gt["annotations"][0].update(image_id=99), "refers to image 99"),
    (lambda gt: gt["annotations"][0].update(category_id=7), "undeclared category 7"),
    (lambda gt: gt.pop("annotations"), "no 'annotations' list"),
])
def test_bad_annotations_are_named(tmp_path, breakage, words):
    gt = gt_dict()
    breakage(gt)
    path, img_dir = write_set(tmp_path, gt)
    with pytest.raises(DataError, match=words) as err:
        CocoIndex(path, img_dir)
    assert err.value.hint


def test_missing_images_and_files_are_named(tmp_path):
    path, img_dir = write_set(tmp_path, gt_dict(), skip=("b.jpg",))
    with pytest.raises(DataError, match=r"1 image\(s\) .* missing .*b\.jpg"):
        CocoIndex(path, img_dir)
    with pytest.raises(DataError, match="annotation file not found"):
        CocoIndex(tmp_path / "nope.json", img_dir)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        CocoIndex(tmp_path / "bad.json", img_dir)


def test_generated_set_is_deterministic_and_loadable(tmp_path):
    hp = {"image_size": 64, "train_images": 6, "val_images": 3, "labels_file": "shapes.json"}
    a = synthetic.ensure(tmp_path / "a", hp, phantom=True)
    b = synthetic.ensure(tmp_path / "b", hp, phantom=True)
    ja = json.loads((a / "validation/labels/shapes.json").read_text())
    assert ja == json.loads((b / "validation/labels/shapes.json").read_text())
    assert (a / "train/data/train_000000.jpg").read_bytes() == (b / "train/data/train_000000.jpg").read_bytes()
    idx = CocoIndex(a / "validation/labels/shapes.json", a / "validation/data")
    assert len(idx) == 3 and len(idx.label_to_cat) == 4
    stamp = (a / "train/generated.json").stat().st_mtime_ns
    synthetic.ensure(tmp_path / "a", hp, phantom=True)  # reused, not regenerated
    assert (a / "train/generated.json").stat().st_mtime_ns == stamp
