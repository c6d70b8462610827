"""Mask R-CNN data: the COCO 2017 loader with polygon and RLE masks, its errors, the generated masks, and the
box + mask evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from maskrcnn_helpers import edit_annotation, make_coco

from mlbench.benchmarks.maskrcnn import data as mdata
from mlbench.benchmarks.maskrcnn import definition, mask_map
from mlbench.detection import synthetic
from mlbench.errors import DataError


@pytest.fixture
def coco(tmp_path):
    return make_coco(tmp_path / "coco")


def test_loader_reads_polygons_rle_and_crowd(coco):
    bench = definition.TINY
    index = mdata.load_index(bench, coco, "train")
    raw = index.raw["annotations"]
    kinds = {("poly" if isinstance(a["segmentation"], list) else
              "rle-list" if isinstance(a["segmentation"]["counts"], list) else "rle") for a in raw}
    assert kinds == {"poly", "rle", "rle-list"}
    assert index.crowd == 1  # the crowd region is evaluated, never a training target
    assert all(len(index.segms.get(i, [])) == len(index.boxes[i]) for i in index.boxes)
    train = mdata.MaskDataset(index, positions=index.annotated())
    # Images without annotations (one made so, others drawn empty) are left out of training, as the reference does.
    annotated = {a["image_id"] for a in raw if not a["iscrowd"]}
    assert len(train) == len(annotated) < len(index) and index.images[-1]["id"] not in annotated
    img, t = train[0]
    assert img.shape == (3, 96, 96) and t["masks"].shape == (len(t["boxes"]), 96, 96)
    assert t["masks"].dtype == torch.uint8 and int(t["labels"].min()) >= 1  # 0 is the background
    # Every mask lies inside its box (polygons and RLE decode to the right place).
    for box, m in zip(t["boxes"], t["masks"]):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]


def test_flip_mirrors_masks_and_boxes(coco):
    index = mdata.load_index(definition.TINY, coco, "train")
    plain = mdata.MaskDataset(index)[0][1]
    torch.manual_seed(0)
    flipped = None
    for _ in range(20):
        img, t = mdata.MaskDataset(index, flip=True)[0]
        if not torch.equal(t["masks"], plain["masks"]):
            flipped = t
            break
    assert flipped is not None
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))
    assert torch.allclose(flipped["boxes"][:, [0, 2]], 96 - plain["boxes"][:, [2, 0]])


def _poly_two_points(anns):
    anns[0]["segmentation"] = [[10.0, 10.0, 20.0, 20.0]]


def _poly_outside(anns):
    anns[0]["segmentation"] = [[10.0, 10.0, 150.0, 10.0, 20.0, 40.0]]


def _rle_wrong_size(anns):
    a = next(a for a in anns if isinstance(a["segmentation"], dict))
    a["segmentation"]["size"] = [64, 64]
    anns[:] = [a, *[b for b in anns if b is not a]]


def _rle_counts_short(anns):
    a = next(a for a in anns if isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], list))
    a["segmentation"]["counts"] = a["segmentation"]["counts"][:-1]
    anns[:] = [a, *[b for b in anns if b is not a]]


def _no_segmentation(anns):
    del anns[0]["segmentation"]


@pytest.mark.parametrize("breakage, words", [
    (_poly_two_points, "has 2 point(s); a polygon needs at least three"),
    (_poly_outside, "reaches outside the image"),
    (_rle_wrong_size, "RLE of size 64x64 (height x width) does not match its image (96x96)"),
    (_rle_counts_short, "RLE counts cover"),
    (_no_segmentation, "has no 'segmentation'"),
])
def test_bad_masks_are_named(coco, breakage, words):
    edit_annotation(coco, "train", breakage)
    first = json.loads((coco / "annotations/instances_train2017.json").read_text())["annotations"][0]
    with pytest.raises(DataError) as err:
        mdata.load_index(definition.TINY, coco, "train")
    assert words in str(err.value) and f"annotation {first['id']} " in str(err.value)


def test_bad_mask_fails_the_cli_with_nothing_valid(coco, tmp_path):
    from mlbench.cli import main as cli_main

    edit_annotation(coco, "val", _poly_two_points)
    out = tmp_path / "runs"
    code = cli_main(["train", "maskrcnn", "--size", "tiny", "--device", "cpu", "--workers", "0",
                     "--data-dir", str(coco), "--output-dir", str(out), "--no-checkpoint"])
    assert code == 1
    results = list(out.glob("*/result.json"))
    for r in results:  # whatever was recorded says it failed
        doc = json.loads(r.read_text())
        assert doc["valid"] is False and doc["status"] != "success"


def test_generated_masks_are_the_visible_regions(tmp_path):
    pixels, objects = synthetic.draw_image(3, 96)
    pixels2, objects2, visible = synthetic.draw_image(3, 96, masks=True)
    assert np.array_equal(pixels, pixels2) and objects == objects2  # the images are RetinaNet's
    covered = np.zeros((96, 96), dtype=int)
    for v in visible:
        covered += v
    assert covered.max() <= 1  # visible regions never overlap
    # A ring keeps its hole: find one among the generated images and check its centre is not in the mask.
    for seed in range(40):
        _, objs, vis = synthetic.draw_image(seed, 96, masks=True)
        rings = [(b, v) for (c, b), v in zip(objs, vis) if synthetic.CLASSES[c] == "ring"]
        if rings:
            (x0, y0, x1, y1), v = rings[-1]
            assert not v[int((y0 + y1) / 2), int((x0 + x1) / 2)] and v.any()
            break
    else:
        pytest.fail("no ring drawn")
    root = synthetic.ensure(tmp_path / "g", {**definition.TINY.hparams}, phantom=True, masks=True)
    anns = json.loads((root / "validation/labels/shapes.json").read_text())["annotations"]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in anns)
    # Box-only sets (RetinaNet) are unchanged: no segmentation, no 'masks' in the stamp.
    plain = synthetic.ensure(tmp_path / "r", {**definition.TINY.hparams}, phantom=True)
    assert "segmentation" not in json.loads((plain / "validation/labels/shapes.json").read_text())["annotations"][0]
    assert "masks" not in json.loads((plain / "validation/generated.json").read_text())


def test_perfect_detections_score_one_and_masks_matter(coco):
    index = mdata.load_index(definition.TINY, coco, "eval")
    ds = mdata.MaskDataset(index)
    outputs, ids = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        outputs.append({"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"],
                        "masks": t["masks"][:, None].float()})
        ids.append(t["image_id"])
    dets = mask_map.to_coco_results(outputs, ids, index.label_to_cat)
    m = mask_map.score(index.raw, dets, ids)
    assert m["bbox_mAP"] == pytest.approx(1.0) and m["segm_mAP"] == pytest.approx(1.0)
    # Right boxes, wrong masks (shifted by a quarter of the box): box mAP stays 1, mask mAP drops.
    for o in outputs:
        o["masks"] = torch.roll(o["masks"], shifts=12, dims=-1)
    m2 = mask_map.score(index.raw, mask_map.to_coco_results(outputs, ids, index.label_to_cat), ids)
    assert m2["bbox_mAP"] == pytest.approx(1.0) and m2["segm_mAP"] < 0.9
