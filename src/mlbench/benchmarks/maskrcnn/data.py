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

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.detection import coco_data
from mlbench.errors import DataError
from mlbench.finite import finite_number
from mlbench.training.batches import DataBundle, DataSpec

COCO_SPLITS = {"train": ("instances_train2017.json", "train2017"),
               "eval": ("instances_val2017.json", "val2017")}


class MaskCocoIndex(coco_data.CocoIndex):
    """RetinaNet's checked COCO index plus each annotation's segmentation (checked, kept undecoded)."""

    def __init__(self, path: Path, image_dir: Path, check_files: bool = True):
        self.segms: dict[int, list[Any]] = {}  # image id -> segmentations, parallel to boxes/labels
        self.crowd = 0  # crowd annotations seen (evaluation only, as the reference)
        self._compressed: list = []  # compressed RLE strings, checked together once every annotation is read
        super().__init__(path, image_dir, check_files=check_files)
        check_compressed(self._compressed)
        del self._compressed

    def _add(self, ann: Any, by_id: dict[int, dict]) -> None:
        if not isinstance(ann, dict):
            raise DataError(f"{self.path}: an entry of the annotations is {ann!r}, not an object",
                            "fix or re-create the annotation json")
        super()._add(ann, by_id)  # the box checks: image listed, category declared, box inside the image
        im = by_id[ann["image_id"]]
        check_segmentation(ann, im, self.path, self._compressed)
        if ann.get("iscrowd", 0):  # checked like any other, but not a training target: take its box back
            self.boxes[im["id"]].pop()
            self.labels[im["id"]].pop()
            self.crowd += 1
            return
        self.segms.setdefault(im["id"], []).append(ann["segmentation"])

    def annotated(self) -> list[int]:
        """Positions (in ``images``) of the images that hold at least one training target."""
        return [i for i, im in enumerate(self.images) if self.boxes[im["id"]]]


def check_segmentation(ann: dict, im: dict, path: Path, pending: list | None = None) -> None:
    """DataError naming the annotation when its segmentation is missing, malformed or outside its image.

    A compressed RLE string is appended to ``pending`` when given (the index checks all of them at once:
    :func:`check_compressed`, vectorised), else checked here."""
    where = f"{path}: annotation {ann.get('id')} (image {im.get('file_name')}, {im['width']}x{im['height']})"
    seg = ann.get("segmentation")
    fix = SEGMENTATION_FIX
    if seg is None:
        raise DataError(f"{where} has no 'segmentation' (Mask R-CNN needs a mask for every object)", fix)
    W, H = float(im["width"]), float(im["height"])  # noqa: N806
    if isinstance(seg, list):
        if not seg:
            raise DataError(f"{where} has an empty polygon list", fix)
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(finite_number(v) for v in poly):
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
        elif isinstance(counts, str):  # pycocotools decodes it without bounds checks: its runs are checked first
            item = (where, size[0] * size[1], counts)
            if pending is not None:
                pending.append(item)
            else:
                check_compressed([item])
        else:
            raise DataError(f"{where}: RLE 'counts' is {type(counts).__name__}, not a string or a list", fix)
        return
    raise DataError(f"{where}: 'segmentation' is {type(seg).__name__}, not polygons or RLE", fix)


SEGMENTATION_FIX = ("COCO segmentations are polygons [[x1, y1, x2, y2, x3, y3, ...], ...] in pixels, or RLE "
                    "{\"size\": [height, width], \"counts\": ...} of the whole image; fix the mask or drop the "
                    "annotation")
_RLE_PROBLEMS = {1: "RLE counts is not a valid compressed RLE string: it holds characters outside '0' to 'o'",
                 2: "RLE counts is not a valid compressed RLE string: it is empty or ends in the middle of a run "
                    "(truncated)",
                 3: "RLE counts is not a valid compressed RLE string: a run is longer than 7 characters",
                 4: "RLE counts decode to a negative run length"}


def check_compressed(items: list[tuple[str, int, str]]) -> None:
    """Check compressed RLE strings (``(where, pixels of the image, counts)`` each) all at once: valid, and their
    runs covering exactly the image (a longer mask made pycocotools write past its buffer). DataError naming the
    first bad one."""
    if not items:
        return
    runs, owner, problems = rle_decode([c for _, _, c in items])
    totals = np.zeros(len(items), np.int64)
    np.add.at(totals, owner, runs)
    pixels = np.array([n for _, n, _ in items], dtype=np.int64)
    bad = np.flatnonzero(problems | (totals != pixels))
    if len(bad):
        i = int(bad[0])
        what = _RLE_PROBLEMS.get(int(problems[i])) or f"RLE counts cover {totals[i]} pixels, but the image has " \
                                                    f"{pixels[i]}"
        raise DataError(f"{items[i][0]}: {what}", SEGMENTATION_FIX)


def rle_decode(strings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run lengths of many compressed COCO RLE strings at once (pycocotools' ``rleFrString``, vectorised over
    their concatenation): ``(runs, owner, problems)``, ``owner[j]`` the string of run ``j``, ``problems[i]`` 0 for
    a sound string, else the key of what is wrong with it (:data:`_RLE_PROBLEMS`; its runs are then meaningless).

    Each run is 5-bit groups, least significant first, in characters ``0`` + 0..63 (bit 5: more groups follow;
    bit 4 of the last group: negative); from the third run on, each is a difference to the run two back."""
    n = len(strings)
    problems = np.zeros(n, np.int64)
    lengths = np.array([len(s) for s in strings], dtype=np.int64)
    problems[[i for i, s in enumerate(strings) if not s.isascii()]] = 1
    text = "".join(s if s.isascii() else "0" * len(s) for s in strings).encode("ascii")
    c = np.frombuffer(text, dtype=np.uint8).astype(np.int64) - 48
    owner_c = np.repeat(np.arange(n), lengths)
    out_of_range = (c < 0) | (c > 63)
    problems[np.unique(owner_c[out_of_range])] = 1
    c = np.clip(c, 0, 63)
    last = (c & 0x20) == 0
    ends_of_strings = np.cumsum(lengths) - 1
    filled = lengths > 0
    truncated = np.zeros(n, bool)
    truncated[filled] = ~last[ends_of_strings[filled]]
    problems[(~filled | truncated) & (problems == 0)] = 2
    if not len(c):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), problems
    last[ends_of_strings[filled]] = True  # a group never runs into the next string
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    k = np.arange(len(c)) - np.repeat(starts, ends - starts + 1)  # each character's place in its run
    long = np.unique(owner_c[k > 6])  # more than 35 bits: no image has that many pixels
    problems[long[problems[long] == 0]] = 3
    k = np.minimum(k, 6)
    runs = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    runs[negative] -= np.int64(1) << (5 * (k[ends][negative] + 1))
    owner = owner_c[ends]
    first = np.searchsorted(owner, np.arange(n))
    pos = np.arange(len(runs)) - first[owner]
    # run i (i > 2) adds run i - 2: running sums within each string over the odd runs and the even runs from 2
    key = owner * 3 + np.where(pos == 0, 0, np.where(pos % 2 == 1, 1, 2))
    order = np.argsort(key, kind="stable")
    sums = np.cumsum(runs[order])
    head = np.flatnonzero(np.diff(key[order], prepend=-1))
    sums -= np.repeat(sums[head] - runs[order][head], np.diff(np.append(head, len(order))))
    runs[order] = sums
    neg = np.unique(owner[runs < 0])
    problems[neg[problems[neg] == 0]] = 4
    return runs, owner, problems


def rle_runs(counts: str) -> np.ndarray | str:
    """The run lengths of one compressed RLE string, or what is wrong with it (see :func:`rle_decode`)."""
    runs, _, problems = rle_decode([counts])
    return _RLE_PROBLEMS[int(problems[0])] if problems[0] else runs


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
