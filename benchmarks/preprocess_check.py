"""Does mlbench pre-process images exactly as the MLPerf inference reference does? (issue 33)

For each JPEG, the reference's pre-processing is written here step by step as its vision harness does it
(mlcommons/inference ``vision/classification_and_detection/python/dataset.py``), with OpenCV: ``cv2.imread``,
``cv2.cvtColor``, ``cv2.resize``; mlbench's is the function its inference store calls. The script reports
the largest absolute difference per pipeline, over all images and per image:

- ``resnet50-onnx``: ``pre_process_vgg`` (MLPerf's resnet50_v1.onnx): INTER_AREA resize of the short side to
  256, centre crop 224, float32 0-255 minus the RGB means, NCHW; mlbench: ``resnet50.modelfiles.mlperf_onnx_image``.
- ``resnet50-pytorch``: ``pre_process_imagenet_pytorch`` (torchvision's .pth): OpenCV decode, then PIL and
  torchvision's resize 256, centre crop 224, to_tensor, normalize; mlbench: ``modelfiles.torchvision_image``.
- ``retinanet``: ``pre_process_openimages_retinanet``: float32, INTER_LINEAR resize to 800x800, /255, NCHW;
  mlbench: the RetinaNet reference store's function (when that module offers it).

By default the JPEGs are made here (photo-like content at ImageNet's common sizes, small images that are
enlarged, grey, progressive, 4:4:4, an EXIF-rotated one); ``--images DIR`` checks real ones (e.g. ImageNet's
val/). Without OpenCV (``pip install opencv-python-headless``) the script says so and exits with code 3.

    python benchmarks/preprocess_check.py [--images DIR] [--limit N] [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


# ---------------------------------------------------------------------------------------------- reference
# The reference's steps, written out as its dataset.py performs them (OpenCV throughout).
def ref_read(cv2, path: Path) -> np.ndarray:
    img = cv2.imread(str(path))  # 8-bit BGR, EXIF orientation applied, grey expanded to 3 channels
    if img is None:
        raise ValueError(f"OpenCV cannot read {path}")
    return img


def ref_resnet50_onnx(cv2, path: Path) -> np.ndarray:
    img = cv2.cvtColor(ref_read(cv2, path), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    short = int(100.0 * 224 / 87.5)  # resize_with_aspectratio(scale=87.5)
    if h > w:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = int((new_h - 224) / 2), int((new_w - 224) / 2)  # center_crop
    img = np.asarray(img[top:int((new_h + 224) / 2), left:int((new_w + 224) / 2)], dtype="float32")
    img -= np.array([123.68, 116.78, 103.94], dtype=np.float32)
    return img.transpose([2, 0, 1])


def ref_resnet50_pytorch(cv2, path: Path) -> np.ndarray:
    import torchvision.transforms.functional as F  # noqa: N812 - the reference's name
    from PIL import Image

    img = Image.fromarray(cv2.cvtColor(ref_read(cv2, path), cv2.COLOR_BGR2RGB))
    img = F.resize(img, 256, Image.BILINEAR)
    img = F.normalize(F.to_tensor(F.center_crop(img, 224)), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    return np.asarray(img, dtype="float32")


def ref_retinanet(cv2, path: Path) -> np.ndarray:
    img = np.array(ref_read(cv2, path), dtype=np.float32)  # maybe_resize: float first, then colour and size
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (800, 800), interpolation=cv2.INTER_LINEAR)
    img /= 255.0
    return img.transpose([2, 0, 1])


# ---------------------------------------------------------------------------------------------- mlbench
def mlbench_pipelines() -> dict:
    from mlbench.benchmarks.resnet50 import modelfiles

    out = {"resnet50-onnx": modelfiles.mlperf_onnx_image, "resnet50-pytorch": modelfiles.torchvision_image}
    try:
        from mlbench.benchmarks.retinanet.modelfiles import reference_image
    except ImportError:  # RetinaNet's model files module is not there yet: skip that pipeline
        pass
    else:
        out["retinanet"] = reference_image
    return out


REFERENCE = {"resnet50-onnx": ref_resnet50_onnx, "resnet50-pytorch": ref_resnet50_pytorch,
             "retinanet": ref_retinanet}


# ---------------------------------------------------------------------------------------------- images
def make_jpegs(folder: Path, quick: bool = False) -> list[Path]:
    """Photo-like JPEGs: smooth shapes, texture and edges, at the sizes ImageNet and OpenImages hold (``quick``:
    one of each kind: landscape, portrait, an integer shrink, an enlargement)."""
    from PIL import Image

    rng = np.random.default_rng(33)
    sizes = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (640, 480), (1024, 768), (800, 600),
             (256, 256), (512, 512), (200, 150), (120, 180), (1600, 1067)]
    if quick:
        sizes = [(500, 375), (333, 500), (512, 512), (200, 150)]
    files = []
    for k, (w, h) in enumerate(sizes):
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.zeros((h, w, 3), np.float32)
        for c in range(3):
            img[..., c] = 128 + 70 * np.sin(x / rng.uniform(8, 40) + c) * np.cos(y / rng.uniform(8, 40))
        for _ in range(6):  # hard-edged shapes
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, min(w, h) / 3)
            img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        p = folder / f"photo_{k:02d}_{w}x{h}.jpg"
        Image.fromarray(img).save(p, quality=int(rng.integers(75, 96)))
        files.append(p)
    base = Image.open(files[0])
    extra = {"grey.jpg": dict(image=base.convert("L")), "progressive.jpg": dict(progressive=True),
             "subsampling444.jpg": dict(subsampling=0, quality=95)}
    for name, kw in extra.items():
        img = kw.pop("image", base)
        img.save(folder / name, **kw)
        files.append(folder / name)
    exif = base.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    base.save(folder / "exif_rotated.jpg", exif=exif.tobytes())
    files.append(folder / "exif_rotated.jpg")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, help="a folder of JPEGs to check (default: JPEGs made here)")
    ap.add_argument("--limit", type=int, default=200, help="check at most this many images")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--quick", action="store_true", help="made JPEGs: one of each kind only (8 instead of 17)")
    args = ap.parse_args(argv)
    try:
        import cv2
    except ImportError:
        print("OpenCV is not installed: the reference's pre-processing cannot be run here "
              "(pip install opencv-python-headless); nothing was compared")
        return 3
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[:args.limit]
        else:
            files = make_jpegs(Path(tmp), quick=args.quick)
        if not files:
            print(f"no JPEGs under {args.images}")
            return 2
        ours = mlbench_pipelines()
        report: dict = {"opencv": cv2.__version__, "images": len(files), "pipelines": {}}
        for name, ref in REFERENCE.items():
            if name not in ours:
                report["pipelines"][name] = "not compared: mlbench has no such pipeline yet"
                continue
            per_image = {}
            for f in files:
                a, b = ref(cv2, f), ours[name](f)
                if a.shape != b.shape:
                    per_image[f.name] = f"shape {a.shape} vs {b.shape}"
                    continue
                per_image[f.name] = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            worst = max((v for v in per_image.values() if isinstance(v, float)), default=None)
            report["pipelines"][name] = {"max_abs_diff": worst, "per_image": per_image}
        for name, r in report["pipelines"].items():
            if isinstance(r, str):
                print(f"{name:18s} {r}")
                continue
            bad = {k: v for k, v in r["per_image"].items() if not isinstance(v, float) or v > 0}
            shown = ", ".join(f"{k} ({v:.3g})" if isinstance(v, float) else f"{k} ({v})" for k, v in list(bad.items())[:3])
            print(f"{name:18s} max |reference - mlbench| = {r['max_abs_diff']:.3g} over {len(files)} images"
                  + (f"; {len(bad)} differ, e.g. {shown}" if bad else "; identical on every image"))
        print(f"(OpenCV {cv2.__version__})")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
