"""SingleStream p90 latency: mlbench against the MLPerf reference harness, same ONNX file, same threads (issue 33).

The reference is mlcommons/inference ``vision/classification_and_detection/python`` (``main.py --profile
resnet50-onnxruntime``), fetched by you into a folder outside this repository (``--ref-dir``; it needs its
``main.py``, ``dataset.py``, ``imagenet.py``, ``coco.py``, ``openimages.py``, ``pycoco.py``, ``backend.py``,
``backend_onnxruntime.py`` and ``user.conf``, plus OpenCV and pycocotools). Both run the same file: a ResNet-50
with the interface of MLPerf's ``resnet50_v1.onnx`` (``input_tensor:0`` NCHW, ``ArgMax:0`` over 1001 classes),
made here from torchvision's ResNet-50 with random weights unless ``--model`` names one, on JPEGs made here
(ImageNet layout) unless ``--data`` names a folder. ONNX Runtime's intra-op threads: the reference leaves ORT's
default (one per core); mlbench is given ``--threads`` of the same number.

Runs alternate (reference, mlbench, mlbench, reference, ...), each a fresh process and one LoadGen test of
``--seconds``; the figure compared is LoadGen's own 90th percentile latency from each run's
``mlperf_log_detail.txt``, with the number of queries it was taken over. The windows match only where a query
takes under ``--seconds``/100: the reference's ``--time`` caps its test at that duration, while mlbench's
``--quick`` runs at least 100 queries; on a machine so loaded that fewer fit, the two p90s cover different
windows. Prints each pair and the medians; ``--json`` writes them.

    python benchmarks/singlestream_reference.py --ref-dir DIR [--pairs 5] [--seconds 20] [--model M] [--data D]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def make_model(path: Path, seed: int = 0) -> Path:
    """torchvision's ResNet-50 (random weights, 1001 classes) exported with resnet50_v1.onnx's interface."""
    import torch
    import torchvision

    class Official(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torchvision.models.resnet50(num_classes=1001)

        def forward(self, x):
            logits = self.net(x)
            return logits.argmax(1), torch.softmax(logits, 1)

    torch.manual_seed(seed)
    model = Official().eval()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, (x,), str(path), input_names=["input_tensor:0"],
                      output_names=["ArgMax:0", "softmax_tensor:0"], opset_version=11, dynamo=False,
                      dynamic_axes={"input_tensor:0": {0: "unk__614"}, "ArgMax:0": {0: "unk__615"},
                                    "softmax_tensor:0": {0: "unk__616"}})
    return path


def make_data(root: Path, n: int) -> Path:
    """``root/val/*.JPEG`` + ``val_map.txt``: photo-like JPEGs of ImageNet's common sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    val = root / "val"
    val.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        w, h = [(500, 375), (375, 500), (500, 333), (640, 480)][k % 4]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = 128 + 60 * np.sin(x / rng.uniform(5, 30))[..., None] * np.cos(y / rng.uniform(5, 30))[..., None]
        img = np.clip(img + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        name = f"ILSVRC2012_val_{k + 1:08d}.JPEG"
        Image.fromarray(img).save(val / name, quality=90)
        lines.append(f"{name} {k % 1000}")
    (val / "val_map.txt").write_text("\n".join(lines) + "\n")
    return val


def p90_ms(detail: Path) -> tuple[float, int]:
    """LoadGen's 90th percentile latency (ms) and the number of queries it was taken over, from its detail log."""
    from mlbench.inference import logs

    d = logs.read_detail(detail)
    return float(d["result_90.00_percentile_latency_ns"]) / 1e6, int(d["result_query_count"])


def run_reference(ref: Path, model: Path, val: Path, seconds: int, out: Path, env: dict) -> tuple[float, int]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ref / "main.py"), "--profile", "resnet50-onnxruntime", "--model", str(model),
           "--dataset-path", str(val), "--scenario", "SingleStream", "--time", str(seconds),
           "--output", str(out), "--user_conf", str(ref / "user.conf"), "--cache_dir", str(out.parent / "refcache")]
    p = subprocess.run(cmd, cwd=ref, env={**env, "USE_GPU": "no"}, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"the reference harness failed:\n{p.stderr[-3000:]}")
    return p90_ms(out / "mlperf_log_detail.txt")


def run_mlbench(model: Path, data: Path, seconds: int, threads: int, out: Path, env: dict) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "mlbench", "infer", "resnet50", "--size", "reference", "--data-dir", str(data),
           "--weights", str(model), "--backend", "onnxruntime", "--scenario", "SingleStream", "--threads",
           str(threads), "--quick", "--duration-s", str(seconds), "--output-dir", str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    runs = sorted(out.glob("*/result.json"))
    if not runs:
        raise SystemExit(f"mlbench failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p90_ms(runs[-1].parent / "mlperf_log_detail.txt")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-dir", type=Path, required=True, help="the reference harness's python/ folder")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=20, help="each LoadGen test's duration")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="ONNX Runtime intra-op threads (the reference uses ORT's default: one per core)")
    ap.add_argument("--model", type=Path, help="an ONNX file with resnet50_v1.onnx's interface (default: made here)")
    ap.add_argument("--data", type=Path, help="an ImageNet-layout folder holding val/ (default: made here)")
    ap.add_argument("--images", type=int, default=64, help="JPEGs to make when --data is not given")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or make_model(work / "resnet50_v1.onnx")
        data = args.data or make_data(work / "imagenet", args.images).parent
        pairs = []
        for k in range(args.pairs):
            first_ref = k % 2 == 0  # alternate which harness runs first
            got = {}
            for which in (("reference", "mlbench") if first_ref else ("mlbench", "reference")):
                out = work / f"{which}_{k}"
                got[which] = (run_reference(args.ref_dir, model, data / "val", args.seconds, out, env)
                              if which == "reference" else run_mlbench(model, data, args.seconds, args.threads,
                                                                       out, env))
            queries = {f"{w}_queries": got[w][1] for w in got}
            got = {w: got[w][0] for w in got}
            pairs.append({**got, **queries, "ratio": got["mlbench"] / got["reference"], "load": os.getloadavg()[0]})
            print(f"pair {k + 1}: p90 reference {got['reference']:.2f} ms ({queries['reference_queries']} queries), "
                  f"mlbench {got['mlbench']:.2f} ms ({queries['mlbench_queries']} queries), mlbench/reference "
                  f"{pairs[-1]['ratio']:.3f} (load average {pairs[-1]['load']:.1f})", flush=True)
        report = {"pairs": pairs, "threads": args.threads, "seconds": args.seconds,
                  "median_reference_ms": statistics.median(p["reference"] for p in pairs),
                  "median_mlbench_ms": statistics.median(p["mlbench"] for p in pairs),
                  "median_ratio": statistics.median(p["ratio"] for p in pairs), "when": time.strftime("%Y-%m-%d %H:%M")}
        print(f"median p90: reference {report['median_reference_ms']:.2f} ms, mlbench {report['median_mlbench_ms']:.2f} "
              f"ms; median ratio mlbench/reference {report['median_ratio']:.3f} over {len(pairs)} pairs "
              f"(range {min(p['ratio'] for p in pairs):.3f}-{max(p['ratio'] for p in pairs):.3f})")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
