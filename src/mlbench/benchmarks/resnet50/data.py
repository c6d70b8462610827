"""ResNet-50 data: ImageNet (reference), Fashion-MNIST (mini), generated patterns (tiny).

ImageNet follows the ILSVRC2012 layout: ``train/<wnid>/*.JPEG`` and ``val/`` holding the images with a
``val_map.txt`` of ``<file> <label>`` lines (the layout MLPerf inference uses), labels being the index of
the wnid in sorted order. Pre-processing is MLPerf's: random-resized crop to 224 and horizontal flip for
training; resize to 256 and centre crop 224 for evaluation; ImageNet mean/std normalisation.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mlbench.data import download, idx
from mlbench.definition import Benchmark
from mlbench.errors import DataError
from mlbench.training.batches import DataBundle, DataSpec, LoaderBatches, TensorBatches

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_EXTS = {".jpeg", ".jpg", ".png"}


def build_data(bench: Benchmark, spec: DataSpec) -> DataBundle:
    if bench.is_reference:
        bundle = imagenet_bundle(bench, spec)
    elif bench.size == "mini":
        bundle = fashion_mnist_bundle(bench, spec)
    else:
        bundle = tiny_bundle(bench, spec)
    if spec.batch_size * spec.world_size > bundle.train_samples:
        raise DataError(f"the global batch ({spec.batch_size * spec.world_size}: --batch-size {spec.batch_size} x "
                        f"{spec.world_size} processes) is larger than the training set ({bundle.train_samples} "
                        "images), so no training step could run", f"give --batch-size <= "
                        f"{bundle.train_samples // spec.world_size}, or use a larger data set")
    return bundle


# ---------------------------------------------------------------- ImageNet (reference)

def _pil_loader(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # PIL raises all on corrupt files
        raise DataError(f"corrupt or unreadable image {path}: {exc}",
                        "replace the file with an intact copy or remove it from the dataset") from exc


class ImageNetFolder(Dataset):
    """``train/<wnid>/*.JPEG`` (labels from the sorted wnids) or a folder with ``val_map.txt``."""

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None, num_classes: int = 1000):
        self.root = Path(root)
        self.transform = transform
        self.num_classes = num_classes
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise DataError(f"ImageNet {split} folder not found: {split_dir}",
                            "point --data-dir at a folder holding train/<wnid>/*.JPEG and val/ with "
                            "val_map.txt (the ILSVRC2012 layout)")
        val_map = split_dir / "val_map.txt"
        if val_map.is_file():
            self.samples = self._read_val_map(split_dir, val_map, num_classes)
        else:
            classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
            if len(classes) > num_classes:
                raise DataError(f"{split_dir} holds {len(classes)} class folders; the model has {num_classes} "
                                "classes", "keep one folder per ImageNet-1k class (wnid) and nothing else")
            self.samples = [(str(p), i) for i, wnid in enumerate(classes)
                            for p in sorted((split_dir / wnid).iterdir()) if p.suffix.lower() in IMAGE_EXTS]
        if not self.samples:
            raise DataError(f"no images found in {split_dir}",
                            "expected train/<wnid>/*.JPEG, or val/*.JPEG listed in val/val_map.txt")

    @staticmethod
    def _read_val_map(split_dir: Path, val_map: Path, num_classes: int = 1000) -> list[tuple[str, int]]:
        samples = []
        for n, line in enumerate(val_map.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()):
                raise DataError(f"{val_map}:{n}: expected '<file> <label>', got {line!r}",
                                f"fix the line; labels are class indices 0-{num_classes - 1}")
            if int(parts[1]) >= num_classes:
                raise DataError(f"{val_map}:{n}: label {parts[1]} is outside the {num_classes} classes "
                                f"(0-{num_classes - 1})", "fix the line; labels are the index of the wnid in "
                                "sorted order")
            path = split_dir / parts[0]
            if not path.is_file():
                raise DataError(f"{val_map}:{n}: image {parts[0]} is listed but missing",
                                "restore the image or remove its line")
            samples.append((str(path), int(parts[1])))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        img = _pil_loader(path)
        return (self.transform(img) if self.transform else img), label


def train_transform(size: int = 224):
    from torchvision import transforms as T  # noqa: N812

    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def eval_transform(size: int = 224, resize: int = 256):
    from torchvision import transforms as T  # noqa: N812

    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)])


def imagenet_bundle(bench: Benchmark, spec: DataSpec) -> DataBundle:
    if not spec.data_dir:
        raise DataError("ResNet-50 reference needs ImageNet", "pass --data-dir DIR holding train/ and val/ in the "
                        "ILSVRC2012 layout (val/val_map.txt); ImageNet cannot be downloaded automatically")
    hp = bench.hparams
    train = ImageNetFolder(spec.data_dir, "train", train_transform(hp["image_size"]), bench.num_classes)
    val = ImageNetFolder(spec.data_dir, "val", eval_transform(hp["image_size"], hp["resize"]), bench.num_classes)
    return DataBundle(
        train=LoaderBatches(train, spec.batch_size, train=True, spec=spec),
        eval=LoaderBatches(val, spec.eval_batch_size, train=False, spec=spec),
        train_samples=len(train), eval_samples=len(val),
    )


# ---------------------------------------------------------------- Fashion-MNIST (mini)

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
# sha256 of each file's decompressed IDX content (gzip framing differs between mirrors and Debian).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_dir(data_dir: str | None, *, verify: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST files: --data-dir, the Debian package, or the cache
    (downloaded from the dataset's official address when missing)."""
    candidates = [Path(data_dir)] if data_dir else [Path(FASHION_MNIST_SYSTEM_DIR), download.cache_dir("fashion-mnist")]
    for folder in candidates:
        if all(_find(folder, stem) for stem in FASHION_MNIST_FILES):
            return folder
    if data_dir:
        missing = [s for s in FASHION_MNIST_FILES if not _find(Path(data_dir), s)]
        raise DataError(f"Fashion-MNIST files missing in {data_dir}: {', '.join(missing)}",
                        "put the four *-ubyte(.gz) files there, or drop --data-dir to use the Debian package")
    dest = download.cache_dir("fashion-mnist")
    base = os.environ.get("MLBENCH_FASHION_MNIST_URL", FASHION_MNIST_URL)
    try:
        for stem, digest in FASHION_MNIST_FILES.items():
            download.fetch(base + stem + ".gz", dest / (stem + ".gz"), verify=_content_check(digest))
    except DataError as exc:
        raise DataError(
            f"Fashion-MNIST not found ({FASHION_MNIST_SYSTEM_DIR} or {dest}) and the download failed: {exc.message}",
            "install it with `apt-get install dataset-fashion-mnist`, or copy the four *-ubyte.gz files into "
            f"{dest} (or pass --data-dir)") from exc
    return dest


def _content_check(digest: str):
    def check(path: Path) -> None:
        with gzip.open(path, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != digest:
            raise DataError(f"{path.name}: sha256 of the content does not match", "delete it and download again")
    return check


def load_fashion_mnist(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,1,28,28], labels int64 [N]) for split 'train' or 't10k'."""
    images = idx.read(_find(folder, f"{split}-images-idx3-ubyte"))
    labels = idx.read(_find(folder, f"{split}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split} files in {folder} do not match: images {images.shape}, "
                        f"labels {labels.shape}", "replace them with the original files")
    if labels.max(initial=0) > 9:
        raise DataError(f"Fashion-MNIST {split} labels out of range 0-9 in {folder}", "replace the labels file")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def normalize_gray(mean: float, std: float, flip: bool):
    """uint8 batch -> normalised float; random horizontal flip for training batches."""
    def transform(xb: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        x = xb.float().div_(255.0).sub_(mean).div_(std)
        if flip and g is not None:
            m = torch.rand(len(x), generator=g) < 0.5
            x[m] = x[m].flip(-1)
        return x
    return transform


def check_fashion_headers(folder: Path, split: str) -> int:
    """The number of images of ``split``, after checking both files' headers: 28x28 images, one label each."""
    images = _find(folder, f"{split}-images-idx3-ubyte")
    dims, label_dims = idx.header_dims(images), idx.header_dims(_find(folder, f"{split}-labels-idx1-ubyte"))
    if len(dims) != 3 or tuple(dims[1:]) != (28, 28):
        raise DataError(f"{images} holds images of shape {'x'.join(map(str, dims[1:])) or dims}, not Fashion-MNIST's "
                        "28x28", "replace it with the original Fashion-MNIST file")
    if tuple(label_dims) != (dims[0],):
        raise DataError(f"Fashion-MNIST {split} files in {folder} do not match: {dims[0]} images, labels "
                        f"{tuple(label_dims)}", "replace them with the original files")
    return dims[0]


def fashion_mnist_bundle(bench: Benchmark, spec: DataSpec) -> DataBundle:
    folder = fashion_mnist_dir(spec.data_dir)
    n_train = check_fashion_headers(folder, "train")
    n_test = check_fashion_headers(folder, "t10k")
    common = dict(rank=spec.rank, world_size=spec.world_size, seed=spec.seed)
    return DataBundle(
        train=TensorBatches(lambda: load_fashion_mnist(folder, "train"), n_train, spec.batch_size, train=True,
                            transform=normalize_gray(FASHION_MEAN, FASHION_STD, flip=True), **common),
        eval=TensorBatches(lambda: load_fashion_mnist(folder, "t10k"), n_test, spec.eval_batch_size,
                           train=False, transform=normalize_gray(FASHION_MEAN, FASHION_STD, flip=False), **common),
        train_samples=n_train, eval_samples=n_test,
    )


# ---------------------------------------------------------------- generated patterns (tiny)

def generate_patterns(n: int, seed: int, num_classes: int = 10, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Gratings whose orientation is the class (random phase and frequency jitter, plus noise)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    theta = labels.float() * (torch.pi / num_classes)
    freq = 0.6 + 0.2 * torch.rand(n, generator=g)
    phase = 2 * torch.pi * torch.rand(n, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    proj = xx[None] * torch.cos(theta)[:, None, None] + yy[None] * torch.sin(theta)[:, None, None]
    img = torch.sin(freq[:, None, None] * proj + phase[:, None, None])
    img = img * 0.7 + 0.3 * torch.randn(n, size, size, generator=g)
    return ((img.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).unsqueeze(1), labels


def tiny_bundle(bench: Benchmark, spec: DataSpec) -> DataBundle:
    hp = bench.hparams
    n_train, n_eval = hp["train_samples"], hp["eval_samples"]
    common = dict(rank=spec.rank, world_size=spec.world_size, seed=spec.seed)
    tf = normalize_gray(127.5 / 255, 0.25, flip=False)
    return DataBundle(
        train=TensorBatches(lambda: generate_patterns(n_train, seed=1, num_classes=bench.num_classes), n_train, spec.batch_size, train=True,
                            transform=tf, **common),
        eval=TensorBatches(lambda: generate_patterns(n_eval, seed=2, num_classes=bench.num_classes), n_eval, spec.eval_batch_size, train=False,
                           transform=tf, **common),
        train_samples=n_train, eval_samples=n_eval,
    )
