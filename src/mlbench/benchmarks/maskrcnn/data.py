"""Mask R-CNN data: COCO instance-segmentation sets (boxes plus polygon or RLE masks).

The reference reads COCO 2017 in its standard layout from ``--data-dir``::

    DIR/annotations/instances_train2017.json   DIR/train2017/*.jpg
    DIR/annotations/instances_val2017.json     DIR/val2017/*.jpg

Mini and tiny generate RetinaNet's shapes set with instance masks (the visible region of each object, RLE)
into ``$MLBENCH_CACHE/maskrcnn-<size>/`` in the layout RetinaNet uses (``<split>/data``, ``<split>/labels``);
a ``--data-dir`` holding ``annotations/instances_val2017.json`` is read as COCO 2017 at any size.

The index is RetinaNet's checked COCO index (:class:`mlbench.detection.coco_data.CocoIndex`: images
exist, boxes lie in their image, categories are declared), extended with the masks: every annotation needs a
``segmentation``; a polygon needs at least three points, every point in its image (1 px of slack); an RLE's
``size`` must be the image's ``[height, width]`` and its uncompressed counts must cover it exactly. Each problem
is a :class:`~mlbench.errors.DataError` naming the annotation, raised before ``run_start``.

As the MLPerf reference (maskrcnn-benchmark's COCODataset): crowd annotations (``iscrowd: 1``) are not training
targets (pycocotools still uses them in the evaluation), and training skips images without any annotation.
Samples are ``(image float [3,H,W] in 0-1, {boxes, labels 1..K (0 is background), masks uint8 [n,H,W],
image_id})``; training flips horizontally at random, the reference's only augmentation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.detection import coco_data
from mlbench.errors import DataError
from mlbench.training.batches import DataBundle, DataSpec

COCO_SPLITS = {"train": ("instances_train2017.json", "train2017"),
               "eval": ("instances_val2017.json", "val2017")}


class MaskCocoIndex(coco_data.CocoIndex):
    """RetinaNet's checked COCO index plus each annotation's segmentation (checked, kept undecoded)."""

    def __init__(self, path: Path, image_dir: Path, check_files: bool = True):
        self.segms: dict[int, list[Any]] = {}  # image id -> segmentations, parallel to boxes/labels
        self.crowd = 0  # crowd annotations seen (evaluation only, as the reference)
        super().__init__(path, image_dir, check_files=check_files)

    def _add(self, ann: Any, by_id: dict[int, dict]) -> None:
        if not isinstance(ann, dict):
            raise DataError(f"{self.path}: an entry of the annotations is {ann!r}, not an object",
                            "fix or re-create the annotation json")
        super()._add(ann, by_id)  # the box checks: image listed, category declared, box inside the image
        im = by_id[ann["image_id"]]
        check_segmentation(ann, im, self.path)
        if ann.get("iscrowd", 0):  # checked like any other, but not a training target: take its box back
            self.boxes[im["id"]].pop()
            self.labels[im["id"]].pop()
            self.crowd += 1
            return
        self.segms.setdefault(im["id"], []).append(ann["segmentation"])

    def annotated(self) -> list[int]:
        """Positions (in ``images``) of the images that hold at least one training target."""
        return [i for i, im in enumerate(self.images) if self.boxes[im["id"]]]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_segmentation(ann: dict, im: dict, path: Path) -> None:
    """DataError naming the annotation when its segmentation is missing, malformed or outside its image."""
    where = f"{path}: annotation {ann.get('id')} (image {im.get('file_name')}, {im['width']}x{im['height']})"
    seg = ann.get("segmentation")
    fix = ("COCO segmentations are polygons [[x1, y1, x2, y2, x3, y3, ...], ...] in pixels, or RLE "
           "{\"size\": [height, width], \"counts\": ...} of the whole image; fix the mask or drop the annotation")
    if seg is None:
        raise DataError(f"{where} has no 'segmentation' (Mask R-CNN needs a mask for every object)", fix)
    W, H = float(im["width"]), float(im["height"])  # noqa: N806
    if isinstance(seg, list):
        if not seg:
            raise DataError(f"{where} has an empty polygon list", fix)
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(_number(v) for v in poly):
                raise DataError(f"{where}: polygon {k} is not a list of numbers", fix)
            if len(poly) % 2:
                raise DataError(f"{where}: polygon {k} has an odd number of coordinates ({len(poly)})", fix)
            if len(poly) < 6:
                raise DataError(f"{where}: polygon {k} has {len(poly) // 2} point(s); a polygon needs at "
                                "least three", fix)
            xs, ys = poly[0::2], poly[1::2]
            if min(xs) < -1 or min(ys) < -1 or max(xs) > W + 1 or max(ys) > H + 1:
                raise DataError(f"{where}: polygon {k} reaches outside the image (x {min(xs):g}..{max(xs):g}, "
                                f"y {min(ys):g}..{max(ys):g})", fix)
        return
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            raise DataError(f"{where}: RLE 'size' is {size!r}, not [height, width]", fix)
        if size != [int(H), int(W)]:
            raise DataError(f"{where}: RLE of size {size[0]}x{size[1]} (height x width) does not match its "
                            f"image ({int(H)}x{int(W)}): the mask lies outside the image or belongs to another",
                            fix)
        if isinstance(counts, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
                raise DataError(f"{where}: RLE counts must be non-negative integers", fix)
            if sum(counts) != size[0] * size[1]:
                raise DataError(f"{where}: RLE counts cover {sum(counts)} pixels, but the image has "
                                f"{size[0] * size[1]}", fix)
        elif isinstance(counts, str):
            runs = rle_runs(counts)  # pycocotools decodes without bounds checks: check the runs first
            if isinstance(runs, str):
                raise DataError(f"{where}: RLE counts is not a valid compressed RLE string: {runs}", fix)
            if (runs < 0).any():
                raise DataError(f"{where}: RLE counts decode to a negative run length", fix)
            if int(runs.sum()) != size[0] * size[1]:
                raise DataError(f"{where}: RLE counts cover {int(runs.sum())} pixels, but the image has "
                                f"{size[0] * size[1]}", fix)
        else:
            raise DataError(f"{where}: RLE 'counts' is {type(counts).__name__}, not a string or a list", fix)
        return
    raise DataError(f"{where}: 'segmentation' is {type(seg).__name__}, not polygons or RLE", fix)


def rle_runs(counts: str) -> np.ndarray | str:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, vectorised), or why it is
    not one. Each run is 5-bit groups, least significant first, in characters ``0`` + 0..63 (bit 5: more groups
    follow; bit 4 of the last group: negative); from the third run on, each is a difference to the run two back.
    """
    if not counts.isascii():
        return "it holds non-ASCII characters"
    c = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if not len(c):
        return "it is empty"
    if (c < 0).any() or (c > 63).any():
        return "it holds characters outside '0' to 'o'"
    last = (c & 0x20) == 0  # the last group of its run
    if not last[-1]:
        return "it ends in the middle of a run (truncated)"
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    k = np.arange(len(c)) - np.repeat(starts, ends - starts + 1)  # each group's place in its run
    if k.max() > 6:  # 35 bits: more than any image's pixel count
        return "a run is longer than 7 characters"
    runs = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    runs[negative] -= np.int64(1) << (5 * (k[ends][negative] + 1))
    # cnts[i] = x[i] + cnts[i - 2] for i > 2: running sums over the odd runs from 1 and the even ones from 2
    if len(runs) > 3:
        runs[1::2] = np.cumsum(runs[1::2])
        runs[2::2] = np.cumsum(runs[2::2])
    return runs


def decode_masks(segms: list[Any], height: int, width: int) -> torch.Tensor:
    """Segmentations (polygons or RLE) -> uint8 [n, H, W] (as torchvision's ConvertCocoPolysToMask)."""
    from pycocotools import mask as mask_util

    out = np.zeros((len(segms), height, width), dtype=np.uint8)
    for k, seg in enumerate(segms):
        if isinstance(seg, list):
            rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
        elif isinstance(seg["counts"], list):
            rle = mask_util.frPyObjects(seg, height, width)
        else:
            rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
        out[k] = mask_util.decode(rle)
    return torch.from_numpy(out)


class MaskDataset(coco_data.CocoDetection):
    """Images, boxes, labels 1..K and masks of one split; ``positions`` picks images (training: annotated)."""

    def __init__(self, index: MaskCocoIndex, flip: bool = False, positions: list[int] | None = None):
        super().__init__(index, flip=False)  # the flip happens here, to boxes and masks together
        self.mask_flip = flip
        self.positions = list(range(len(index))) if positions is None else positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        pos = self.positions[i]
        img, target = super().__getitem__(pos)
        im = self.index.images[pos]
        masks = decode_masks(self.index.segms.get(im["id"], []), im["height"], im["width"])
        boxes = target["boxes"]
        if self.mask_flip and torch.rand(()) < 0.5:
            w = img.shape[-1]
            img, masks = img.flip(-1), masks.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return img, {"boxes": boxes, "labels": target["labels"] + 1, "masks": masks, "image_id": im["id"]}


def split_paths(bench: Benchmark, root: Path, split: str) -> tuple[Path, Path]:
    """(annotation json, image folder) of ``split`` ("train" or "eval") under ``root``."""
    ann, images = COCO_SPLITS[split]
    if bench.is_reference or (root / "annotations" / COCO_SPLITS["eval"][0]).is_file():
        return root / "annotations" / ann, root / images
    return coco_data.split_paths(root, coco_data.SPLITS[split], bench.hparams["labels_file"])


def data_root(bench: Benchmark, data_dir: str | None) -> Path:
    """``--data-dir``, else (mini/tiny) the generated shapes set with masks, in the cache."""
    if data_dir:
        return Path(data_dir)
    if bench.is_reference:
        raise DataError("Mask R-CNN reference needs COCO 2017",
                        "download train2017, val2017 and annotations_trainval2017 from cocodataset.org, unpack "
                        "them into DIR (DIR/annotations/instances_val2017.json, DIR/val2017/...) and pass "
                        "--data-dir DIR")
    from mlbench.detection import synthetic

    return synthetic.ensure(download.cache_dir(f"maskrcnn-{bench.size}"), bench.hparams,
                           phantom=bench.hparams.get("phantom", False), masks=True)


def load_index(bench: Benchmark, root: Path, split: str) -> MaskCocoIndex:
    labels, images = split_paths(bench, root, split)
    if not labels.is_file():
        raise DataError(f"annotation file not found: {labels}",
                        "pass --data-dir DIR holding COCO 2017 (annotations/instances_{train,val}2017.json "
                        "and the train2017/val2017 image folders)")
    index = MaskCocoIndex(labels, images)
    if len(index.label_to_cat) > bench.num_classes - 1:
        raise DataError(f"{labels} declares {len(index.label_to_cat)} categories but {bench.name} {bench.size} "
                        f"has {bench.num_classes - 1} (plus background)", "use the annotation json of this size")
    return index


def build_data(bench: Benchmark, spec: DataSpec) -> DataBundle:
    root = data_root(bench, spec.data_dir)
    train_index, val_index = load_index(bench, root, "train"), load_index(bench, root, "eval")
    train = MaskDataset(train_index, flip=True, positions=train_index.annotated())
    val = MaskDataset(val_index)
    return coco_data.bundle(train, val, spec, what="annotated images")
