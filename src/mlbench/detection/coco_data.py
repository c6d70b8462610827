"""COCO-format detection sets in the OpenImages-MLPerf layout, and their evaluation images as inference samples.

``<root>/train/data/*.jpg`` + ``<root>/train/labels/<labels_file>`` and the same under ``validation/``
(what the MLPerf RetinaNet reference reads and ``mlbench data prepare retinanet`` writes; the generated shapes
sets of ``synthetic.py`` use it too). The annotation json is checked when the set is indexed, before ``run_start``:
images it names must exist, boxes must lie in their image (1 px of slack), categories must be declared.

Samples are ``(image float [3,H,W] in 0-1, target {boxes xyxy float, labels int64, image_id})``; the
model's own transform resizes to the fixed input size and normalises. Training flips horizontally
at random, as the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.finite import finite_number
from mlbench.inference.sample_store import ArrayStore
from mlbench.inference.task import TaskOptions
from mlbench.training.batches import DataBundle, DataSpec, LoaderBatches
from mlbench.untrusted import inside, load_json

SPLITS = {"train": "train", "eval": "validation"}


class CocoIndex:
    """A checked COCO detection json: images, their boxes (xyxy) and contiguous labels. ``prepare`` is the command
    that builds the set (``mlbench data prepare NAME``), named in the hints; None where there is none."""

    def __init__(self, path: Path, image_dir: Path, check_files: bool = True, prepare: str | None = None):
        self.path, self.image_dir = path, image_dir
        made_by = f"`{prepare}`" if prepare else "the data preparation"
        if not path.is_file() and not path.is_dir():
            raise DataError(f"annotation file not found: {path}",
                            f"build the set with `{prepare} --root DIR` and pass --data-dir DIR" if prepare
                            else "pass --data-dir DIR holding the set")
        self.raw = load_json(path, "COCO annotation file", expect=(dict, list),
                             hint=f"prepare the data again, or use the COCO json that {made_by} writes")
        if not isinstance(self.raw, dict):
            raise DataError(f"{path} holds a json list, not a COCO detection object "
                            "({\"images\": [...], \"annotations\": [...], \"categories\": [...]})",
                            f"use the COCO json that {made_by} writes")
        for key in ("images", "annotations", "categories"):
            if not isinstance(self.raw.get(key), list):
                raise DataError(f"{path} has no '{key}' list (not a COCO detection json)",
                                f"use the COCO json that {made_by} writes")
        for c in self.raw["categories"]:
            self._need(c, "category", ("id", int))
        for im in self.raw["images"]:
            self._need(im, "image", ("id", int), ("file_name", str), ("width", _SIZE), ("height", _SIZE))
            inside(image_dir, im["file_name"], f"{path}: image {im['id']}", what="file_name",
                   hint=f"a COCO file_name is a name inside the image folder {image_dir}, e.g. '000001.jpg'; fix "
                        "the entry or re-create the annotation json")
        for what, items in (("categories", self.raw["categories"]), ("images", self.raw["images"])):
            ids = [item["id"] for item in items]
            if len(set(ids)) != len(ids):  # the second would silently take the first's place
                seen: set[int] = set()
                dup = next(i for i in ids if i in seen or seen.add(i))
                raise DataError(f"{path}: two {what} have the id {dup}", f"give each of the {what} its own id; fix "
                                "or re-create the annotation json")
        cat_ids = sorted(c["id"] for c in self.raw["categories"])
        self.cat_to_label = {c: i for i, c in enumerate(cat_ids)}
        self.label_to_cat = cat_ids
        self.images = sorted(self.raw["images"], key=lambda im: im["id"])
        by_id = {im["id"]: im for im in self.images}
        self.boxes: dict[int, list[list[float]]] = {i: [] for i in by_id}
        self.labels: dict[int, list[int]] = {i: [] for i in by_id}
        for ann in self.raw["annotations"]:
            self._add(ann, by_id)
        if check_files:
            missing = [im["file_name"] for im in self.images if not (image_dir / im["file_name"]).is_file()]
            if missing:
                raise DataError(f"{len(missing)} image(s) named in {path} are missing from {image_dir}, "
                                f"e.g. {', '.join(missing[:3])}",
                                f"re-run {made_by} (it resumes), or remove them from the json" if prepare
                                else "restore them, or remove them from the json")

    def _add(self, ann: dict, by_id: dict[int, dict]) -> None:
        self._need(ann, "annotation", ("bbox", _BOX))
        im = by_id.get(ann.get("image_id"))
        if im is None:
            raise DataError(f"{self.path}: annotation {ann.get('id')} refers to image {ann.get('image_id')}, "
                            "which the json does not list", "fix or re-create the annotation json")
        crowd = ann.get("iscrowd", 0)
        if isinstance(crowd, bool) or crowd not in (0, 1):  # "0" is truthy: pycocotools would ignore the object
            raise DataError(f"{self.path}: annotation {ann.get('id')} has iscrowd {crowd!r}; it must be the number 0 "
                            "or 1", "write iscrowd as 0 (one object) or 1 (a crowd region), not as text")
        if ann.get("category_id") not in self.cat_to_label:
            raise DataError(f"{self.path}: annotation {ann.get('id')} has undeclared category "
                            f"{ann.get('category_id')}", "add the category to 'categories' or drop the box")
        x, y, w, h = (float(v) for v in ann["bbox"])
        W, H = float(im["width"]), float(im["height"])  # noqa: N806
        if w <= 0 or h <= 0 or x < -1 or y < -1 or x + w > W + 1 or y + h > H + 1:
            raise DataError(f"{self.path}: annotation {ann.get('id')} box [x={x}, y={y}, w={w}, h={h}] lies "
                            f"outside its image {im['file_name']} ({im['width']}x{im['height']}) or is empty",
                            "COCO boxes are [x, y, width, height] in pixels; fix the box or drop it")
        self.boxes[im["id"]].append([max(0.0, x), max(0.0, y), min(W, x + w), min(H, y + h)])
        self.labels[im["id"]].append(self.cat_to_label[ann["category_id"]])

    def _need(self, item: Any, what: str, *fields: tuple[str, Any]) -> None:
        """DataError naming ``item`` when it is not an object holding ``fields`` of the right kind."""
        if not isinstance(item, dict):
            raise DataError(f"{self.path}: an entry of the {what}s is {item!r}, not an object",
                            "fix or re-create the annotation json")
        for key, kind in fields:
            value = item.get(key)
            if isinstance(kind, type):
                ok = isinstance(value, kind) and not isinstance(value, bool)
            else:
                ok = kind(value)
            if not ok:
                name = item.get("file_name") or item.get("id")
                problem = (f"lacks {key!r}" if key not in item
                           else f"has an invalid {key!r}: {value!r} ({_KINDS[kind]})")
                raise DataError(f"{self.path}: {what} {name!r} {problem}",
                                "every image needs id, file_name, width and height; every annotation a bbox "
                                "[x, y, width, height] of finite numbers; fix or re-create the annotation json")

    def __len__(self) -> int:
        return len(self.images)


def _SIZE(v: Any) -> bool:  # noqa: N802 - used as a kind beside int and str
    return finite_number(v) and v > 0


def _BOX(v: Any) -> bool:  # noqa: N802
    return isinstance(v, list) and len(v) == 4 and all(finite_number(x) for x in v)


_KINDS = {int: "expected an integer", str: "expected a string", _SIZE: "expected a positive number of pixels",
          _BOX: "expected [x, y, width, height], four finite numbers"}


class CocoDetection(Dataset):
    """Images and targets of one split; ``flip`` adds the random horizontal flip of training."""

    def __init__(self, index: CocoIndex, flip: bool = False):
        self.index, self.flip = index, flip

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        im = self.index.images[i]
        path = self.index.image_dir / im["file_name"]
        try:
            with Image.open(path) as f:
                img = pil_to_tensor(f.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:  # PIL raises all three on corrupt files
            raise DataError(f"cannot read image {path}: {exc}", "re-run the data preparation") from exc
        if (img.shape[-1], img.shape[-2]) != (im["width"], im["height"]):
            raise DataError(f"image {path} is {img.shape[-1]}x{img.shape[-2]} but {self.index.path.name} says "
                            f"{im['width']}x{im['height']} (its boxes would be misplaced)",
                            "re-run the data preparation, or fix the image's width and height in the json")
        boxes = torch.tensor(self.index.boxes[im["id"]], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(self.index.labels[im["id"]], dtype=torch.int64)
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
            boxes = torch.stack([img.shape[-1] - boxes[:, 2], boxes[:, 1], img.shape[-1] - boxes[:, 0],
                                 boxes[:, 3]], 1)
        return img.float().div_(255.0), {"boxes": boxes, "labels": labels, "image_id": im["id"]}


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Detection batches are lists: images may differ in size before the model's resize."""
    return [b[0] for b in batch], [b[1] for b in batch]


def bundle(train: Dataset, val: Dataset, spec: DataSpec, what: str = "images") -> DataBundle:
    """Training and evaluation loaders of detection list batches; DataError when the training set (of ``what``)
    holds less than one global batch."""
    if len(train) < spec.batch_size * spec.world_size:
        raise DataError(f"the training set has {len(train)} {what}, fewer than one global batch "
                        f"({spec.batch_size * spec.world_size})", "lower --batch-size or add images")
    return DataBundle(
        train=LoaderBatches(train, spec.batch_size, train=True, spec=spec, collate_fn=collate),
        eval=LoaderBatches(val, spec.eval_batch_size, train=False, spec=spec, collate_fn=collate),
        train_samples=len(train), eval_samples=len(val),
    )


def split_paths(root: Path, split: str, labels_file: str) -> tuple[Path, Path]:
    return root / split / "labels" / labels_file, root / split / "data"


def image_store(bench: Benchmark, opts: TaskOptions, index: CocoIndex, image: Callable[[int], torch.Tensor] | None,
                size: int, read: Callable[[int], np.ndarray] | None = None) -> ArrayStore:
    """The evaluation images of ``index`` as samples (the first ``--max-samples``): ``image(i)``, a 0-1
    ``[3, H, W]`` tensor, resized bilinearly to ``size`` x ``size``, float32 (or ``read(i)``, the sample
    itself); each sample's label is ``(image id, width, height)`` of the original image."""
    n = len(index) if opts.max_samples is None else min(opts.max_samples, len(index))

    def preprocess(indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices), 3, size, size), dtype=np.float32)
        for k, i in enumerate(indices):
            out[k] = read(i) if read is not None else nn.functional.interpolate(
                image(i)[None], size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
        return out

    meta = [(im["id"], im["width"], im["height"]) for im in index.images[:n]]
    return ArrayStore(total_count=n, performance_count=bench.performance_sample_count, preprocess=preprocess,
                      labels=meta)
