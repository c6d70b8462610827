"""RetinaNet post-processing: mlbench's batched decode against torchvision's ``postprocess_detections``,
side by side on the same network outputs (the mini model on its validation images), and a check that both
give the same detections.

    python benchmarks/retinanet_decode.py [--batch-size 8] [--images 64] [--trials 5] [--threads 1]

Prints the time per sample of each, and the median of the per-trial ratios (torchvision / mlbench).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mlbench import registry
from mlbench.benchmarks.retinanet import decode
from mlbench.benchmarks.retinanet.inference import RetinaNetTask
from mlbench.inference.task import TaskOptions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the SUT's workers use 1 each on 2 cores)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    task = RetinaNetTask(registry.get("retinanet", "mini").definition, TaskOptions(max_samples=a.images))
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    core = task.model()
    with torch.no_grad():
        outs = [[o for o in core(torch.from_numpy(store.batch(idx[s:s + a.batch_size])))]
                for s in range(0, len(idx) - a.batch_size + 1, a.batch_size)]
    task.postprocess([o.numpy() for o in outs[0]], idx[:a.batch_size])  # builds the anchors and tables
    net = task._post
    anchors, per_level = task._anchor_grid(outs[0][0].shape[1])
    settings, size = task._settings, task.size

    def ours():
        return [decode.batch_detections(c, r, anchors, per_level, settings, net.box_coder) for c, r in outs]

    def theirs():
        res = []
        for c, r in outs:
            n = c.shape[0]
            head = {"cls_logits": list(c.split(per_level, 1)), "bbox_regression": list(r.split(per_level, 1))}
            res.append(net.postprocess_detections(head, [list(anchors.split(per_level))] * n, [(size, size)] * n))
        return res

    with torch.no_grad():
        mine, ref = ours(), theirs()
        same = all(_same(b, sc, cnt, dets) for (b, sc, _, cnt), dets in zip(mine, ref))
        n = sum(len(c) for c, _ in outs)
        rows = []
        for _ in range(a.trials):
            t0 = time.perf_counter()
            theirs()
            t1 = time.perf_counter()
            ours()
            t2 = time.perf_counter()
            rows.append(((t1 - t0) / n * 1e3, (t2 - t1) / n * 1e3))
    ratios = sorted(t / o for t, o in rows)
    print(f"samples {n}, batch {a.batch_size}, torch threads {a.threads}, same detections: {same}")
    for t, o in rows:
        print(f"torchvision {t:.3f} ms/sample   mlbench {o:.3f} ms/sample   ratio {t / o:.2f}")
    print(f"median ratio torchvision/mlbench: {ratios[len(ratios) // 2]:.2f}; "
          f"median ms/sample: torchvision {np.median([r[0] for r in rows]):.3f}, "
          f"mlbench {np.median([r[1] for r in rows]):.3f}")


def _same(boxes, scores, counts, dets) -> bool:
    """Per image the same (box, score) rows, up to the order of equal scores and an ulp of sigmoid."""
    start = 0
    for c, d in zip(counts, dets):
        if c != len(d["scores"]):
            return False
        got = np.array(sorted(torch.cat([boxes[start:start + c], scores[start:start + c, None]], 1).tolist()))
        want = np.array(sorted(torch.cat([d["boxes"], d["scores"][:, None]], 1).tolist()))
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-5):
            return False
        start += c
    return True


if __name__ == "__main__":
    main()
