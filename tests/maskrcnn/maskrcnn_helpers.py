"""Tiny COCO 2017 instance-segmentation sets made by the tests: generated shape images, masks as polygons (squares
and triangles, exact corners), compressed RLE (circles, rings: a ring keeps its hole) and uncompressed RLE (one
crowd region), in the standard layout ``annotations/instances_{train,val}2017.json`` + ``train2017/``, ``val2017/``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlbench.detection import synthetic

SPLITS = {"train": ("instances_train2017.json", "train2017"), "val": ("instances_val2017.json", "val2017")}


def rle_uncompressed(region: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major run lengths starting with zeros), as crowd regions are stored."""
    flat = region.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(region.shape), "counts": counts}


def make_coco(root: Path, n_train: int = 16, n_val: int = 6, size: int = 96, crowd: bool = True,
              empty_train: bool = True) -> Path:
    """A COCO 2017 tree under ``root``; returns ``root``."""
    from PIL import Image

    for split, n in (("train", n_train), ("val", n_val)):
        ann_file, folder = SPLITS[split]
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "annotations").mkdir(exist_ok=True)
        images, anns = [], []
        for i in range(n):
            pixels, objects, visible = synthetic.draw_image(500 + i + (0 if split == "train" else 1000), size,
                                                           masks=True)
            if split == "train" and empty_train and i == n - 1:
                objects, visible = [], []  # an image without annotations: not a training sample
            name = f"{i:012d}.jpg"
            Image.fromarray(pixels).save(root / folder / name, quality=95)
            images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            for k, ((cls, (x0, y0, x1, y1)), region) in enumerate(zip(objects, visible)):
                fields = synthetic.mask_annotation(region)
                if fields is None:
                    continue
                shape = synthetic.CLASSES[cls]
                if shape in ("square", "triangle") and k == len(objects) - 1:  # on top: nothing hides it
                    poly = ([x0, y0, x1, y0, x1, y1, x0, y1] if shape == "square"
                            else [(x0 + x1) / 2, y0, x1, y1, x0, y1])
                    fields["segmentation"] = [[float(v) for v in poly]]
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1, "iscrowd": 0,
                             **fields})
            if crowd and i == 0:
                region = np.zeros((size, size), dtype=bool)
                region[2:10, 2:30] = True
                anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 1, "iscrowd": 1,
                             "segmentation": rle_uncompressed(region), "bbox": [2.0, 2.0, 28.0, 8.0],
                             "area": float(region.sum())})
        (root / "annotations" / ann_file).write_text(json.dumps(synthetic.coco_dict(images, anns)))
    return root


def edit_annotation(root: Path, split: str, change) -> None:
    """Apply ``change(anns)`` to the annotation list of ``split`` in place."""
    path = root / "annotations" / SPLITS[split][0]
    data = json.loads(path.read_text())
    change(data["annotations"])
    path.write_text(json.dumps(data))
