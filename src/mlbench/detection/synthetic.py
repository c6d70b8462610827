"""The generated detection dataset of the mini and tiny sizes, written in the OpenImages-MLPerf layout.

``<root>/<split>/data/*.jpg`` and ``<root>/<split>/labels/<labels_file>`` (COCO json), the layout
``mlbench data prepare retinanet`` writes, so generated and real data go through the same loader.
Images are textured backgrounds (smooth colour fields plus grain) with 0-5 shapes of four classes
(circle, square, triangle, ring) of varied size, colour and position; shapes may overlap and a later one
may hide part of an earlier one, whose box then stays the full extent, as in hand-made annotations.
Generation is deterministic (numpy seeded per image) and written atomically: the split folder appears only
when complete, with a ``generated.json`` stamp of its parameters.

With ``masks=True`` (Mask R-CNN's sizes) the same images also get instance masks: the visible region of each
object (what later shapes leave of it; a ring keeps its hole), stored as COCO RLE, with the box and area of that
visible region; an object hidden almost entirely is not annotated. Without it the output is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from mlbench.data import folders

CLASSES = ("circle", "square", "triangle", "ring")
VERSION = 1  # bump when the drawing changes: caches with another stamp are regenerated
MASKS_VERSION = 1  # bump when the instance masks change (sets made with masks=True only)
MIN_VISIBLE_PIXELS = 16  # with masks: an object showing fewer pixels than this is not annotated


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    from PIL import Image

    coarse = rng.uniform(40, 215, size=(5, 5, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), dtype=np.float32)
    grain = rng.normal(0, 12, size=(size, size, 1)) + rng.normal(0, 6, size=(size, size, 3))
    return np.clip(field + grain, 0, 255).astype(np.uint8)


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _draw(draw, cls: int, box: list[float], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if CLASSES[cls] == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=colour)
    elif CLASSES[cls] == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour)
    elif CLASSES[cls] == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=colour)
    else:
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], outline=colour, width=max(2, int((x1 - x0) / 6)))


def draw_image(seed: int, size: int, masks: bool = False):
    """One image (HxWx3 uint8) and its objects as (class index, [x0, y0, x1, y1]) in pixels.

    ``masks=True`` returns a third item: each object's visible region (HxW bool; later shapes hide earlier
    ones), drawn with the same calls as the pixels. The image and objects are the same either way.
    """
    from PIL import Image, ImageDraw

    rng = np.random.RandomState(seed)
    img = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(img)
    objects: list[tuple[int, list[float]]] = []
    shapes: list[np.ndarray] = []  # each object's full silhouette (masks=True)
    for _ in range(rng.choice(6, p=[0.04, 0.3, 0.3, 0.2, 0.1, 0.06])):
        for _attempt in range(10):
            side = float(rng.uniform(0.12, 0.45) * size)
            w = round(side * rng.uniform(0.8, 1.25))
            h = round(side)
            x0 = int(rng.randint(0, size - w + 1))
            y0 = int(rng.randint(0, size - h + 1))
            box = [float(x0), float(y0), float(x0 + w), float(y0 + h)]
            if all(_iou(box, b) < 0.3 for _, b in objects):  # some overlap, never a near-duplicate
                break
        else:
            continue
        cls = int(rng.randint(len(CLASSES)))
        colour = tuple(int(c) for c in rng.randint(0, 256, size=3))
        if max(colour) - min(colour) < 80:  # keep shapes saturated enough to stand out from grey texture
            colour = (colour[0], colour[1], 255 - colour[1])
        _draw(draw, cls, box, colour)
        objects.append((cls, box))
        if masks:
            sil = Image.new("L", (size, size), 0)
            _draw(ImageDraw.Draw(sil), cls, box, 255)
            shapes.append(np.asarray(sil) > 0)
    if not masks:
        return np.asarray(img), objects
    visible, hidden = [], np.zeros((size, size), dtype=bool)
    for sil in reversed(shapes):  # the last shape drawn is fully visible; each hides what lies below it
        visible.append(sil & ~hidden)
        hidden |= sil
    return np.asarray(img), objects, visible[::-1]


def coco_dict(images: list[dict], annotations: list[dict]) -> dict:
    """A COCO detection json with the generated classes (category ids 1..4)."""
    return {"info": {"description": "mlbench generated shapes", "version": VERSION},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]}


def write_split(root: Path, split: str, count: int, size: int, seed: int, labels_file: str,
                phantom: bool = False, masks: bool = False) -> Path:
    """Generate ``count`` images into ``root/split`` unless an identical stamped copy is there.

    ``phantom`` adds one annotated object to the first image without drawing it: an object no detector
    can find, so that mAP stays below 1.0 (MLPerf's checker rejects an eval_accuracy of 1.0).
    ``masks`` adds each object's visible region as a COCO RLE ``segmentation`` (see the module's text).
    """
    from PIL import Image

    params = {"version": VERSION, "count": count, "size": size, "seed": seed, "phantom": phantom,
              "labels_file": labels_file}
    if masks:  # only then: the stamps of box-only sets stay as they were (no needless regeneration)
        params["masks"] = MASKS_VERSION
    dest = root / split
    stamp = dest / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return dest
    tmp = root / f".{split}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    (tmp / "labels").mkdir()
    images, annotations = [], []
    for i in range(count):
        if masks:
            pixels, objects, visible = draw_image(seed * 1_000_003 + i, size, masks=True)
        else:
            pixels, objects = draw_image(seed * 1_000_003 + i, size)
        name = f"{split}_{i:06d}.jpg"
        Image.fromarray(pixels).save(tmp / "data" / name, quality=92)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        if masks:
            if phantom and i == 0:
                ghost = np.zeros((size, size), dtype=bool)
                ghost[: size // 4, : size // 4] = True
                objects, visible = [*objects, (0, [0.0, 0.0, size / 4, size / 4])], [*visible, ghost]
            for cls, region in zip((c for c, _ in objects), visible):
                ann = mask_annotation(region)
                if ann is not None:
                    annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                        **ann, "iscrowd": 0})
            continue
        if phantom and i == 0:
            objects = [*objects, (0, [0.0, 0.0, size / 4, size / 4])]
        for cls, (x0, y0, x1, y1) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                "iscrowd": 0})
    (tmp / "labels" / labels_file).write_text(json.dumps(coco_dict(images, annotations)))
    (tmp / "generated.json").write_text(json.dumps(params))
    folders.replace_dir(tmp, dest)  # an older set of mlbench's; never a folder it did not make
    return dest


def mask_annotation(region: np.ndarray, min_pixels: int = MIN_VISIBLE_PIXELS) -> dict | None:
    """COCO fields of one visible region (HxW bool): RLE ``segmentation``, its ``bbox`` and ``area``.
    None when fewer than ``min_pixels`` pixels show (an object hidden by later ones is not annotated)."""
    from pycocotools import mask as mask_util

    area = int(region.sum())
    if area < min_pixels:
        return None
    ys, xs = np.nonzero(region)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    rle = mask_util.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "area": float(area)}


def ensure(root: Path, hp: dict, phantom: bool, masks: bool = False) -> Path:
    """Both splits of a generated dataset under ``root`` (generated on first use, then reused)."""
    root.mkdir(parents=True, exist_ok=True)
    size, labels = hp["image_size"], hp["labels_file"]
    write_split(root, "train", hp["train_images"], size, seed=1, labels_file=labels, masks=masks)
    write_split(root, "validation", hp["val_images"], size, seed=2, labels_file=labels, phantom=phantom,
                masks=masks)
    return root
