"""What the data-value checks of issue 32 cost where the data is read, side by side in one process: each loader
timed with its checks and with them stubbed out, alternately (with, without, with, ...), medians and the median
of the per-pair ratios.

- ``bert_read_shard``: one fixed-length MLPerf shard (``--bert-rows`` x 512 tokens, 76 predictions, int32 as the
  reference writes them) read by ``shards.read_shard``; the checks: ids against the vocabulary, positions
  against the sequence, segment/mask/next-sentence labels 0/1.
- ``dlrm_read_rows``: one global batch of 65,536 rows of a memory-mapped day (the reference's files; the page
  cache warm) read by ``days.read_rows``; the new check: the dense features finite (indices and labels were
  checked before).
- ``load_json``: a COCO-like annotation file (``--coco-images`` images, 8 boxes each) read by
  ``untrusted.load_json`` (depth scan, shape) against ``json.loads`` of the same bytes.
- ``rle_check``: the compressed-RLE check of every annotation of a Mask R-CNN set (``check_compressed``: all the
  strings' runs decoded at once and summed) against what it replaced (``pycocotools.mask.area`` per annotation,
  which decodes without bounds checks).
- ``input_problem``: the training step's record of the batch's finiteness (``Workload.input_problem``) on a
  ResNet-50 batch, as microseconds per step (CPU); a training step of that batch takes seconds on a CPU and
  ~0.1 s on a GPU, where the same two reductions run on the device.

    python benchmarks/validation_overhead.py [--repeats 7] [--bert-rows 4000] [--coco-images 20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def paired(with_checks, without, repeats: int) -> dict:
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((with_checks, a), (without, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    ratios = [x / y for x, y in zip(a, b)]
    return {"with_checks_s": statistics.median(a), "without_s": statistics.median(b),
            "ratio_median": statistics.median(ratios), "repeats": repeats}


def stubbed(module, name: str, fn):
    """``fn()`` with ``module.name`` replaced by a no-op."""
    def run():
        saved = getattr(module, name)
        setattr(module, name, lambda *a, **k: None)
        try:
            fn()
        finally:
            setattr(module, name, saved)
    return run


def bert(tmp: Path, rows: int, repeats: int) -> dict:
    from mlbench.benchmarks.bert import shards

    rng = np.random.default_rng(0)
    seq, preds, vocab = 512, 76, 30522
    arrays = {"input_ids": rng.integers(0, vocab, (rows, seq), dtype=np.int32),
              "input_mask": np.ones((rows, seq), np.int32), "segment_ids": rng.integers(0, 2, (rows, seq), np.int32),
              "masked_lm_positions": rng.integers(0, seq, (rows, preds), dtype=np.int32),
              "masked_lm_ids": rng.integers(0, vocab, (rows, preds), dtype=np.int32),
              "next_sentence_labels": rng.integers(0, 2, (rows,), dtype=np.int32)}
    info = shards.open_shard(shards.write_shard(tmp / "shard.hdf5", arrays), seq, preds, vocab_size=vocab)
    read = lambda: shards.read_shard(info, seq, preds)  # noqa: E731
    read()
    return paired(read, stubbed(shards, "check_values", read), repeats)


def dlrm(tmp: Path, repeats: int) -> dict:
    from mlbench.benchmarks.dlrm import days, synthetic

    rows, batch = 262_144, 65_536
    table_rows = [100_000] * 26
    multi_hot = [1, 2, 1, 3, 1, 1, 2, 1, 1, 4, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1]
    rng = np.random.default_rng(0)
    synthetic.write_day(tmp, 0, rng.standard_normal((rows, 13)).astype(np.float32),
                        [rng.integers(0, 100_000, (rows, h), dtype=np.int32) for h in multi_hot],
                        rng.integers(0, 2, (rows, 1), dtype=np.int32))
    day = days.open_day(tmp, 0, table_rows, multi_hot)
    starts = iter(range(0, 10**9, batch))
    read = lambda: days.read_rows(day, (s := next(starts) % rows), s + batch, table_rows)  # noqa: E731
    for _ in range(4):
        read()  # the page cache warm
    return paired(read, stubbed(days, "check_dense", read), repeats)


def coco_json(tmp: Path, images: int, repeats: int) -> dict:
    from mlbench import untrusted

    rng = np.random.default_rng(0)
    doc = {"images": [{"id": i, "file_name": f"{i:016x}.jpg", "width": 640, "height": 480} for i in range(images)],
           "annotations": [{"id": k, "image_id": k // 8, "category_id": int(rng.integers(1, 265)),
                            "bbox": [round(float(v), 2) for v in rng.uniform(0, 300, 4)], "area": 1215.5,
                            "iscrowd": 0, "IsOccluded": 0, "IsTruncated": 1, "IsGroupOf": 0}
                           for k in range(images * 8)],
           "categories": [{"id": i, "name": f"class \"{i}\" [x]", "supercategory": "openimages"}
                          for i in range(1, 265)]}
    path = tmp / "coco.json"
    path.write_text(json.dumps(doc))
    del doc
    out = paired(lambda: untrusted.load_json(path, "COCO annotation file", hint="-"),
                 lambda: json.loads(path.read_bytes()), repeats)
    return {**out, "megabytes": round(path.stat().st_size / 1e6, 1)}


def rle(repeats: int) -> dict:
    from pycocotools import mask as mask_util

    from mlbench.benchmarks.maskrcnn.data import check_compressed

    rng = np.random.default_rng(0)
    strings = []
    for _ in range(2000):  # shapes of 10-60 px in 96..480 px images, as the generated sets and COCO crowds
        h, w = (int(v) for v in rng.integers(96, 480, 2))
        m = np.zeros((h, w), np.uint8)
        y, x, s = int(rng.integers(0, h - 60)), int(rng.integers(0, w - 60)), int(rng.integers(10, 60))
        m[y:y + s, x:x + s] = 1
        strings.append(([h, w], mask_util.encode(np.asfortranarray(m))["counts"].decode()))
    ours = lambda: check_compressed([("-", hw[0] * hw[1], c) for hw, c in strings])  # noqa: E731
    before = lambda: [mask_util.area({"size": hw, "counts": c.encode("ascii")}) for hw, c in strings]  # noqa: E731
    return {**paired(ours, before, repeats), "annotations": len(strings)}


def input_problem(repeats: int) -> dict:
    import torch

    from mlbench import registry

    wl = registry.get("resnet50", "reference").workload()
    batch = (torch.randn(256, 3, 224, 224), torch.randint(0, 1000, (256,)))
    times = []
    for _ in range(repeats * 5):
        t = time.perf_counter()
        wl.input_problem(batch)
        times.append(time.perf_counter() - t)
    return {"microseconds_per_step": statistics.median(times) * 1e6, "batch": "256x3x224x224 float32, CPU"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--bert-rows", type=int, default=4000)
    ap.add_argument("--coco-images", type=int, default=20_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "dlrm").mkdir()
        result = {"bert_read_shard": bert(tmp, args.bert_rows, args.repeats),
                  "dlrm_read_rows": dlrm(tmp / "dlrm", args.repeats),
                  "load_json": coco_json(tmp, args.coco_images, args.repeats),
                  "rle_check": rle(args.repeats),
                  "input_problem": input_problem(args.repeats)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
