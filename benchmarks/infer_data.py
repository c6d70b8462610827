"""Generated ImageNet-layout validation data (val/*.JPEG + val_map.txt) for throughput checks without ImageNet.

    python benchmarks/infer_data.py DIR [--images 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_val_tree(root: str | Path, images: int = 256, seed: int = 0) -> Path:
    """``root/val`` with ``images`` JPEGs of ImageNet-like sizes (smooth colour fields plus noise) and random
    labels 0-999. Accuracy on these is meaningless; they exercise decoding, resizing and the model."""
    from PIL import Image

    root = Path(root)
    val = root / "val"
    if (val / "val_map.txt").is_file() and len(list(val.glob("*.JPEG"))) >= images:
        return root
    val.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(images):
        h, w = int(rng.integers(300, 500)), int(rng.integers(300, 500))
        base = rng.integers(0, 255, (4, 4, 3)).astype(np.float32)
        img = np.kron(base, np.ones((h // 4 + 1, w // 4 + 1, 1)))[:h, :w]
        img = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        Image.fromarray(img).save(val / name, format="JPEG", quality=85)
        lines.append(f"{name} {int(rng.integers(0, 1000))}")
    (val / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    print(make_val_tree(a.dir, a.images))
