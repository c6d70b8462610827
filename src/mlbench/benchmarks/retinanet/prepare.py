"""``mlbench data prepare retinanet``: OpenImages-MLPerf from the official OpenImages CSVs and image store.

What MLPerf's reference builds with FiftyOne, without it: the boxes of the 264 MLPerf classes (or a
``--classes`` demo subset) from ``class-descriptions-boxable.csv`` and ``<split>-annotations-bbox.csv``,
the images that hold at least one such box downloaded in parallel from the OpenImages image store, and a
COCO json per split in the layout the loader (and the MLPerf reference) reads::

    ROOT/<split>/data/<ImageID>.jpg    ROOT/<split>/labels/openimages-mlperf.json

Every download goes to a ``.part`` file and is renamed only once verified (length as announced; CSV
header as expected and last row complete; JPEG decodes completely), so a file under its final name is
complete, and running the command again resumes where it stopped; a file already under its final name is
verified the same way before it counts as done (else it is fetched again). Failed images are listed in
``ROOT/<split>/failed.txt``.

``--root`` must be a new or empty folder, or one this command made (it holds a ``.mlbench-data`` marker): a
folder holding other files is refused before anything is downloaded, and left as it is.

The image IDs come from a downloaded CSV and become file names: an ID that is not a plain name (absolute,
``..``, a path separator, a space, a control character) is refused with its line, and nothing is written
outside ``--root``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from mlbench.config import opt
from mlbench.data import folders
from mlbench.data.download import fetch_resumable
from mlbench.errors import ConfigError, DataError

ANNOTATIONS_URL = "https://storage.googleapis.com/openimages/"
IMAGES_URL = "https://s3.amazonaws.com/open-images-dataset/"
CLASS_FILE = "v5/class-descriptions-boxable.csv"
BOX_FILES = {"train": "v6/oidv6-train-annotations-bbox.csv", "validation": "v5/validation-annotations-bbox.csv"}
BOX_HEADER = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax"]
LABELS_FILE = "openimages-mlperf.json"
_IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")  # OpenImages IDs: 16 hex digits


@dataclass(kw_only=True)
class PrepareConfig:
    """Options of ``mlbench data prepare retinanet``."""

    root: str = opt("", "where to build the data set (ROOT/<split>/{data,labels}): a new or empty folder, or one "
                        "this command made (it resumes there)")
    split: str = opt("validation", "which split to build", choices=("validation", "train", "all"))
    classes: str | None = opt(None, "comma-separated class names for a small demo subset; default: "
                                    "MLPerf's 264 classes")
    max_images: int | None = opt(None, "keep at most this many images per split (a demo subset)", min=1,
                                    max=10**8)
    workers: int = opt(16, "parallel image downloads", min=1, max=256)
    retries: int = opt(3, "attempts per file before it counts as failed", min=1, max=100)
    allow_missing: bool = opt(False, "write the json even when some images failed (without them)")
    annotations_url: str = opt(ANNOTATIONS_URL, "base address of the OpenImages annotation CSVs")
    images_url: str = opt(IMAGES_URL, "base address of the OpenImages images (<split>/<ImageID>.jpg)")


def _download(url: str, dest: Path, verify: Callable[[Path], None], retries: int = 3, timeout: float = 60.0) -> Path:
    return fetch_resumable(url, dest, verify, retries, timeout,
                           hint="check the address (--annotations-url/--images-url) and the network; run again to "
                                "resume")


def check_jpeg(path: Path) -> None:
    """The whole image decodes (a truncated JPEG fails here)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises several types for broken files
        raise DataError(f"{path.name} is not a complete image: {exc}", None) from exc


def check_csv(header: list[str]) -> Callable[[Path], None]:
    def verify(path: Path) -> None:
        with open(path, newline="") as f:
            first = next(csv.reader(f), [])
        if first[: len(header)] != header:
            raise DataError(f"{path.name}: unexpected header {first[:4]}", None)
        _check_last_row(path, len(first))
    return verify


def check_class_file(path: Path) -> None:
    with open(path, newline="") as f:
        first = next(csv.reader(f), [])
    if len(first) != 2 or not first[0].startswith("/m/"):
        raise DataError(f"{path.name}: not an OpenImages class description file (first row {first})", None)
    _check_last_row(path, 2)


def _check_last_row(path: Path, fields: int) -> None:
    """The last row has all its fields: a file cut short mostly ends in a partial row."""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - (1 << 16)))
        tail = f.read().decode("utf-8", errors="replace").splitlines()
    rows = list(csv.reader(io.StringIO(tail[-1]))) if tail else []
    if not rows or len(rows[-1]) != fields:
        raise DataError(f"{path.name}: the last row is incomplete (truncated file?)", None)


def image_id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot be a file name under the root (None when it can)."""
    if _IMAGE_ID.fullmatch(image_id):
        return None
    if image_id.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", image_id):
        return "an absolute path"
    if ".." in image_id:
        return "'..'"
    if "/" in image_id or "\\" in image_id:
        return "a path separator"
    if any(c.isspace() for c in image_id) and not re.search(r"[\x00-\x1f\x7f-\x9f]", image_id):
        return "a space"
    if re.search(r"[\x00-\x1f\x7f-\x9f]", image_id):
        return "a control character"
    return "empty" if not image_id else "a character other than letters, digits, '-' and '_'"


def resolve_classes(class_file: Path, wanted: list[str]) -> dict[str, tuple[int, str]]:
    """OpenImages label id -> (category id, display name) for the wanted display names."""
    with open(class_file, newline="") as f:
        by_name = {row[1]: row[0] for row in csv.reader(f) if len(row) == 2}
    from mlbench.registry import did_you_mean

    out = {}
    for i, name in enumerate(wanted):
        if name not in by_name:
            err = did_you_mean(name, sorted(by_name), "OpenImages class")
            raise ConfigError(err.message, err.hint or "class names are case-sensitive display names")
        out[by_name[name]] = (i + 1, name)
    return out


def read_boxes(path: Path, labels: dict[str, tuple[int, str]]) -> dict[str, list[dict]]:
    """ImageID -> its boxes of the wanted classes (normalised corners and the OpenImages flags)."""
    boxes: dict[str, list[dict]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            hit = labels.get(row["LabelName"])
            if hit is None:
                continue
            image_id = row["ImageID"] or ""
            problem = image_id_problem(image_id)
            if problem:
                raise DataError(f"{path.name} line {reader.line_num}: image ID {image_id[:80]!r} is not a plain "
                                f"file name ({problem}); refused, nothing was downloaded for it",
                                f"this is not an official OpenImages file: delete {path} and run again, or check "
                                "--annotations-url")
            try:
                corners = [float(row[k]) for k in ("XMin", "YMin", "XMax", "YMax")]
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path.name}: bad box row for image {row.get('ImageID')}: {exc}",
                                "delete the file and run the command again") from exc
            flags = {k: int(row.get(k) or 0) for k in ("IsOccluded", "IsTruncated", "IsGroupOf",
                                                        "IsDepiction", "IsInside")}
            boxes.setdefault(image_id, []).append({"cat": hit[0], "xyxy": corners, **flags})
    return boxes


def coco_json(image_dir: Path, boxes: dict[str, list[dict]], ids: list[str],
              categories: list[tuple[int, str]]) -> dict:
    """The COCO detection json of the downloaded images (pixel boxes; sizes read from the files)."""
    from PIL import Image

    images, anns = [], []
    for n, image_id in enumerate(ids, start=1):
        with Image.open(image_dir / f"{image_id}.jpg") as im:
            w, h = im.size
        images.append({"id": n, "file_name": f"{image_id}.jpg", "height": h, "width": w})
        for b in boxes[image_id]:
            x0, y0, x1, y1 = b["xyxy"]
            bw, bh = (x1 - x0) * w, (y1 - y0) * h
            anns.append({"id": len(anns) + 1, "image_id": n, "category_id": b["cat"],
                         "bbox": [round(x0 * w, 2), round(y0 * h, 2), round(bw, 2), round(bh, 2)],
                         "area": round(bw * bh, 2), "iscrowd": 0,
                         **{k: v for k, v in b.items() if k.startswith("Is")}})
    return {"info": {"description": "OpenImages v6 boxes, MLPerf class subset (mlbench data prepare)"},
            "licenses": [], "images": images, "annotations": anns,
            "categories": [{"id": i, "name": name, "supercategory": "openimages"} for i, name in categories]}


def prepare_split(cfg: PrepareConfig, split: str, labels: dict, say: Callable[[str], None]) -> Path:
    root = Path(cfg.root)
    csv_path = _download(cfg.annotations_url + BOX_FILES[split], root / "annotations" / Path(BOX_FILES[split]).name,
                         check_csv(BOX_HEADER), cfg.retries)
    boxes = read_boxes(csv_path, labels)
    ids = sorted(boxes)[: cfg.max_images] if cfg.max_images else sorted(boxes)
    say(f"{split}: {len(ids)} images hold boxes of the {len(labels)} classes; downloading with "
        f"{cfg.workers} workers")
    image_dir = root / split / "data"
    for i in ids:  # read_boxes refused any other ID; this keeps it true whatever changes above
        if os.path.dirname(os.path.normpath(image_dir / f"{i}.jpg")) != os.path.normpath(image_dir):
            raise DataError(f"image ID {i!r} would be written outside {image_dir}", None)
    failed: list[str] = []
    with ThreadPoolExecutor(cfg.workers) as pool:
        jobs = {pool.submit(_download, f"{cfg.images_url}{split}/{i}.jpg", image_dir / f"{i}.jpg", check_jpeg,
                            cfg.retries): i for i in ids}
        for done, job in enumerate(as_completed(jobs), start=1):
            try:
                job.result()
            except DataError as exc:
                failed.append(f"{jobs[job]}\t{exc.message}")
            if done % 1000 == 0 or done == len(ids):
                say(f"{split}: {done}/{len(ids)} images ({len(failed)} failed)")
    failed_file = root / split / "failed.txt"
    if failed:
        failed_file.write_text("\n".join(sorted(failed)) + "\n")
        if not cfg.allow_missing:
            raise DataError(f"{split}: {len(failed)} of {len(ids)} images could not be downloaded or verified "
                            f"(listed in {failed_file}); the json was not written",
                            "run the same command again to resume, or add --allow-missing to write the json "
                            "without them (the set is then not the full MLPerf one)")
        bad = {line.split("\t")[0] for line in failed}
        ids = [i for i in ids if i not in bad]
    else:
        failed_file.unlink(missing_ok=True)
    categories = sorted({v for v in labels.values()})
    out = root / split / "labels" / LABELS_FILE
    from mlbench.runs import write_json

    write_json(out, coco_json(image_dir, boxes, ids, categories))
    say(f"{split}: wrote {out} ({len(ids)} images)")
    return out


def prepare(cfg: PrepareConfig, say: Callable[[str], None] = print) -> list[Path]:
    """Build the requested splits under ``cfg.root``; returns the json files written."""
    from mlbench.benchmarks.retinanet.classes import MLPERF_CLASSES

    if not cfg.root:
        raise ConfigError("no --root given", "pass --root DIR, the folder to build the data set in")
    for name in ("annotations_url", "images_url"):
        if not getattr(cfg, name).endswith("/"):
            setattr(cfg, name, getattr(cfg, name) + "/")
    wanted = [c.strip() for c in cfg.classes.split(",") if c.strip()] if cfg.classes else list(MLPERF_CLASSES)
    with folders.writing(Path(cfg.root), "OpenImages-MLPerf", say=say):
        return _prepare(cfg, wanted, say)


def _prepare(cfg: PrepareConfig, wanted: list[str], say: Callable[[str], None]) -> list[Path]:
    class_file = _download(cfg.annotations_url + CLASS_FILE, Path(cfg.root) / "annotations" / Path(CLASS_FILE).name,
                           check_class_file, cfg.retries)
    labels = resolve_classes(class_file, wanted)
    splits = ["validation", "train"] if cfg.split == "all" else [cfg.split]
    written = [prepare_split(cfg, s, labels, say) for s in splits]
    (Path(cfg.root) / "prepared.json").write_text(json.dumps(
        {"classes": wanted, "splits": splits, "max_images": cfg.max_images}, indent=2))
    return written
