"""The training data path at reference size on the CPU: JPEG files to the training batch, mlbench's loaders
against a plain torchvision DataLoader with the same transforms, side by side in one process.

- ResNet-50: ImageNet-like JPEGs (500x375) through RandomResizedCrop(224), horizontal flip, ToTensor and
  Normalize into a [B, 3, 224, 224] batch: mlbench's ``ImageNetFolder`` + ``LoaderBatches`` (what ``mlbench
  train resnet50 --size reference`` reads) against torchvision's ``ImageFolder`` + ``DataLoader``.
- RetinaNet: COCO-like JPEGs (640x480) with boxes in the OpenImages-MLPerf layout: mlbench's ``CocoDetection``
  (decode, 0-1 float, random flip with its boxes) + ``LoaderBatches`` against a plain dataset doing what the
  torchvision detection reference does (``pil_to_tensor``, ``convert_image_dtype``, flip with boxes) and a
  list collate. In both the 800x800 resize (with the boxes) and the normalisation run in the model's transform,
  on the device when training on a GPU; the script times that resize on one CPU core too
  (``resize_800_ms_per_image``) for a machine that would do it on the host.

Figures: wall images/s, and images per CPU-second of the whole loader (the main process and its worker
processes, from their CPU times): images/s per core, which hardly depends on how busy the machine is. Cores
to feed one GPU = the GPU's images/s / images per core-second. The JPEGs are written by the script (smooth
random content with noise, quality 90; median 77 kB at 500x375 and 125 kB at 640x480, somewhat smaller than
the real sets' ~110 kB ImageNet / ~160 kB COCO files: decoding cost follows the pixel count more than the size).

    python benchmarks/data_path.py [--images 192] [--epochs 1] [--trials 3] [--workers 1,2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

# What one H100 trains per second (images/s), for the cores-to-feed figures.
RETINANET_REFERENCE_PER_GPU = 74.0  # the seed's log: MLPerf reference on one H100, 0.4317 s per step of 32
# ResNet-50: /work/shared/MLPERF.md gives the best 8x H200 time to train (12.1 min), not a rate. Assumed: ~35
# epochs of ImageNet's 1,281,167 images (LARS at large batch), evaluation time ignored: 35 x 1,281,167 /
# (12.1 x 60 s) / 8 GPUs ~ 7,700 images/s per GPU (an H200 has an H100's compute).
RESNET50_PUBLISHED_PER_GPU = 35 * 1_281_167 / (12.1 * 60) / 8


# ---------------------------------------------------------------- the JPEGs

def _picture(rng: np.random.Generator, w: int, h: int):
    from PIL import Image

    small = (rng.random((h // 16, w // 16, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.float32)
    img += rng.normal(0, 10, img.shape)  # texture, so that the JPEG is as large as a photo's
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_imagenet(root: Path, n: int, size=(500, 375), classes: int = 8) -> Path:
    """``root/train/<wnid>/*.JPEG`` (the ILSVRC2012 layout)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / "train" / f"n{i % classes:08d}"
        d.mkdir(parents=True, exist_ok=True)
        _picture(rng, *size).save(d / f"img_{i:05d}.JPEG", quality=90)
    return root


def write_coco(root: Path, n: int, labels_file: str, size=(640, 480), categories: int = 10) -> Path:
    """``root/train/data/*.jpg`` + ``root/train/labels/<labels_file>`` (the OpenImages-MLPerf layout)."""
    rng = np.random.default_rng(1)
    data, labels = root / "train" / "data", root / "train" / "labels"
    data.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    w, h = size
    images, anns = [], []
    for i in range(n):
        name = f"{i:06d}.jpg"
        _picture(rng, w, h).save(data / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for _ in range(int(rng.integers(1, 9))):  # OpenImages-MLPerf: a few boxes an image
            bw, bh = float(rng.uniform(20, w / 2)), float(rng.uniform(20, h / 2))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, categories + 1)),
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, categories + 1)]
    (labels / labels_file).write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


# ---------------------------------------------------------------- the two paths of each benchmark

def resnet_loaders(root: Path, batch: int, workers: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T  # noqa: N812

    from mlbench.benchmarks.resnet50 import data as rdata
    from mlbench.training.batches import DataSpec, LoaderBatches

    def plain():
        tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(rdata.MEAN, rdata.STD)])
        ds = datasets.ImageFolder(str(root / "train"), transform=tf)
        return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                          persistent_workers=True, prefetch_factor=4)

    def mlbench():
        ds = rdata.ImageNetFolder(root, "train", rdata.train_transform(224))
        spec = DataSpec(batch_size=batch, eval_batch_size=batch, workers=workers)
        return LoaderBatches(ds, batch, train=True, spec=spec)

    return plain, mlbench


class PlainDetection(torch.utils.data.Dataset):
    """What the torchvision detection reference's training set does per image: decode, 0-1 float, flip."""

    def __init__(self, root: Path, labels_file: str):
        raw = json.loads((root / "train" / "labels" / labels_file).read_text())
        self.dir = root / "train" / "data"
        self.images = raw["images"]
        boxes: dict[int, list] = {im["id"]: [] for im in self.images}
        cats: dict[int, list] = {im["id"]: [] for im in self.images}
        for a in raw["annotations"]:
            x, y, w, h = a["bbox"]
            boxes[a["image_id"]].append([x, y, x + w, y + h])
            cats[a["image_id"]].append(a["category_id"])
        self.boxes, self.cats = boxes, cats

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image
        from torchvision.transforms import functional as F  # noqa: N812

        im = self.images[i]
        img = F.convert_image_dtype(F.pil_to_tensor(Image.open(self.dir / im["file_name"]).convert("RGB")),
                                    torch.float)
        boxes = torch.tensor(self.boxes[im["id"]], dtype=torch.float32)
        if torch.rand(1) < 0.5:
            img = img.flip(-1)
            boxes[:, [0, 2]] = img.shape[-1] - boxes[:, [2, 0]]
        return img, {"boxes": boxes, "labels": torch.tensor(self.cats[im["id"]]), "image_id": im["id"]}


def _list_collate(batch):
    return tuple(zip(*batch))


def retinanet_loaders(root: Path, batch: int, workers: int, bench):
    from torch.utils.data import DataLoader

    from mlbench.benchmarks.retinanet.workload import load_split
    from mlbench.detection import coco_data
    from mlbench.training.batches import DataSpec, LoaderBatches

    def plain():
        ds = PlainDetection(root, bench.hparams["labels_file"])
        return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                          collate_fn=_list_collate, persistent_workers=True, prefetch_factor=4)

    def mlbench():
        ds = load_split(bench, root, coco_data.SPLITS["train"], flip=True)
        spec = DataSpec(batch_size=batch, eval_batch_size=batch, workers=workers)
        return LoaderBatches(ds, batch, train=True, spec=spec, collate_fn=coco_data.collate)

    return plain, mlbench


# ---------------------------------------------------------------- measuring

def _cpu_s() -> float:
    """CPU seconds of this process and its children (the loader's worker processes) so far."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _count(batch) -> int:
    x = batch[0]
    return len(x)


def measure(make, epochs: int) -> dict:
    """One loader: an untimed epoch (workers started, caches warm), then ``epochs`` timed epochs."""
    loader = make()
    for _ in loader:
        pass
    c0, t0, n = _cpu_s(), time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            n += _count(batch)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    inner = getattr(loader, "loader", loader)
    if getattr(inner, "_iterator", None) is not None:
        inner._iterator._shutdown_workers()
    return {"images": n, "images_per_s": n / wall, "images_per_cpu_s": n / cpu}


def resize_ms(size=(480, 640), reps: int = 20) -> float:
    """One image's 800x800 bilinear resize and normalisation on one CPU core (the model's transform's work)."""
    torch.set_num_threads(1)
    img = torch.rand(3, *size)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    times = []
    for _ in range(reps):
        t = time.thread_time()
        x = torch.nn.functional.interpolate(((img - mean) / std)[None], size=(800, 800), mode="bilinear",
                                            align_corners=False)
        times.append(time.thread_time() - t)
    del x
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=192, help="JPEGs written per benchmark")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per measurement (after one untimed)")
    ap.add_argument("--trials", type=int, default=3, help="side-by-side trials (medians reported)")
    ap.add_argument("--workers", default="1,2", help="DataLoader worker processes to try")
    ap.add_argument("--benchmarks", default="resnet50,retinanet")
    ap.add_argument("--out", default=None, help="also write the report (JSON) here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from mlbench import registry

    tmp = Path(tempfile.mkdtemp(prefix="data-path-"))
    bench = registry.get("retinanet", "reference").definition
    todo = a.benchmarks.split(",")
    roots = {}
    if "resnet50" in todo:
        roots["resnet50"] = write_imagenet(tmp / "imagenet", a.images)
    if "retinanet" in todo:
        roots["retinanet"] = write_coco(tmp / "coco", a.images, bench.hparams["labels_file"])
    sizes = {k: statistics.median(f.stat().st_size for f in r.rglob("*") if f.suffix.lower() in (".jpeg", ".jpg"))
             for k, r in roots.items()}
    report: dict = {"cores": len(os.sched_getaffinity(0)), "load_average_1min_before": os.getloadavg()[0],
                    "images": a.images, "batch_size": a.batch_size, "epochs": a.epochs, "trials": a.trials,
                    "median_jpeg_kb": {k: v / 1000 for k, v in sizes.items()},
                    "per_core": "images per CPU-second of the loader (main process + its workers)"}
    for name in todo:
        rows: dict = {}
        for workers in [int(w) for w in a.workers.split(",")]:
            if name == "resnet50":
                plain, ours = resnet_loaders(roots[name], a.batch_size, workers)
            else:
                plain, ours = retinanet_loaders(roots[name], a.batch_size, workers, bench)
            got: dict = {"plain": [], "mlbench": []}
            for t in range(a.trials):  # alternate which goes first
                order = [("plain", plain), ("mlbench", ours)] if t % 2 == 0 else [("mlbench", ours), ("plain", plain)]
                for key, make in order:
                    got[key].append(measure(make, a.epochs))
            row = {}
            for key, ms in got.items():
                row[key] = {"images_per_s": statistics.median(m["images_per_s"] for m in ms),
                            "images_per_core_s": statistics.median(m["images_per_cpu_s"] for m in ms),
                            "images_per_core_s_range": [min(m["images_per_cpu_s"] for m in ms),
                                                        max(m["images_per_cpu_s"] for m in ms)]}
            row["ratio_per_core"] = row["mlbench"]["images_per_core_s"] / row["plain"]["images_per_core_s"]
            row["ratio_wall"] = row["mlbench"]["images_per_s"] / row["plain"]["images_per_s"]
            rows[f"workers_{workers}"] = row
            print(f"{name} {workers} worker(s): plain {row['plain']['images_per_core_s']:.1f} images/core-s "
                  f"({row['plain']['images_per_s']:.1f}/s wall), mlbench {row['mlbench']['images_per_core_s']:.1f} "
                  f"({row['mlbench']['images_per_s']:.1f}/s wall): per-core ratio {row['ratio_per_core']:.3f}",
                  flush=True)
        best = max(r["mlbench"]["images_per_core_s"] for r in rows.values())
        feed: dict = {}
        if name == "resnet50":
            feed["published_per_gpu_images_per_s"] = RESNET50_PUBLISHED_PER_GPU
            feed["published_per_gpu_source"] = ("assumed: ~35 epochs of 1,281,167 images in MLPerf's best 8x H200 "
                                                "time to train (12.1 min), evaluation ignored")
            feed["cores_at_published_rate"] = RESNET50_PUBLISHED_PER_GPU / best
        else:
            ms = resize_ms()
            with_resize = 1 / (1 / best + ms / 1000)
            feed["resize_800_ms_per_image"] = ms
            feed["images_per_core_s_with_cpu_resize"] = with_resize
            for label, rate in (("reference_74", RETINANET_REFERENCE_PER_GPU),
                                ("twice_reference_148", 2 * RETINANET_REFERENCE_PER_GPU)):
                feed[f"cores_at_{label}"] = rate / best
                feed[f"cores_at_{label}_with_cpu_resize"] = rate / with_resize
        rows["feed_one_gpu"] = feed
        print(f"{name}: {json.dumps(feed)}", flush=True)
        report[name] = rows
    report["load_average_1min_after"] = os.getloadavg()[0]
    text = json.dumps(report, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
