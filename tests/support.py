"""Helpers shared by the tests: tiny datasets in real formats, and the CLI run as a user runs it.

(A uniquely named module: several test folders have a conftest.py, so ``import conftest`` is ambiguous.)
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_jpeg(path: Path, color: tuple[int, int, int], size: int = 64, seed: int = 0) -> None:
    """A real JPEG: a coloured square with a little noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color, dtype=np.int16) + rng.integers(-20, 20, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, format="JPEG", quality=90)


COLORS = {"n01440764": (220, 30, 30), "n01443537": (30, 30, 220)}


def make_imagenet_tree(root: Path, per_class_train: int = 8, per_class_val: int = 5,
                       mislabel_one: bool = True) -> Path:
    """ILSVRC2012 layout: train/<wnid>/*.JPEG and val/*.JPEG with val_map.txt (labels = sorted wnid index).

    With ``mislabel_one`` one validation image of the second class is labelled as the first, so a model
    that learned the colours scores (n-1)/n, below 1.0 (the MLPerf checkers reject an accuracy of 1.0).
    """
    wnids = sorted(COLORS)
    lines = []
    k = 0
    for label, wnid in enumerate(wnids):
        for i in range(per_class_train):
            write_jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", COLORS[wnid], seed=100 * label + i)
        for _ in range(per_class_val):
            k += 1
            name = f"ILSVRC2012_val_{k:08d}.JPEG"
            write_jpeg(root / "val" / name, COLORS[wnid], seed=1000 + k)
            lines.append(f"{name} {label}")
    if mislabel_one:
        name, _ = lines[-1].split()
        lines[-1] = f"{name} 0"
    (root / "val" / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


def mlbench(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, in a subprocess."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


class FileServer:
    """The files under ``root`` served on localhost at ``base`` (``http://127.0.0.1:PORT/``); ``requests`` records
    the paths asked for. ``close()`` when done."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def check_closed_llm_log(path: Path, name: str, *, global_batch: int, local_batch: int, train_samples: int,
                         eval_samples: int, eval_at: int, quality: float) -> dict:
    """What a reference run of the language model ``name`` logs before run_start (the workload's
    hyper-parameters at ``global_batch`` on 8 processes, bf16, the 6.1.0 disclosures), then one evaluation of
    ``quality`` at ``eval_at`` samples; returns the official closed checker's verdict on that log."""
    import torch

    from mlbench import registry
    from mlbench.config import TrainConfig
    from mlbench.training import harness, runner
    from mlbench.training.mlperf_log import C, MLPerfLog
    from mlbench.training.recipe import OptimArgs

    handle = registry.get(name, "reference")
    bench, wl = handle.definition, handle.workload()
    wl.precision = "bf16"
    args = OptimArgs(global_batch_size=global_batch, steps_per_epoch=1, epochs=1, world_size=8)
    wl.build_optimizer(torch.nn.Linear(4, 4), args)  # the recipe does not depend on the model's size
    cfg = TrainConfig(benchmark=name, size="reference", precision="bf16")
    mll = MLPerfLog(path)
    for key, value in (("submission_org", "mlbench"), ("submission_platform", "8xH100"),
                       ("submission_division", "closed"), ("submission_status", "onprem"),
                       ("submission_benchmark", bench.mlperf_name), ("cache_clear", True)):
        mll.event(key, value)
    mll.start(C.INIT_START)
    mll.event(C.SEED, 1)
    mll.event(C.GLOBAL_BATCH_SIZE, global_batch)
    mll.event(C.GRADIENT_ACCUMULATION_STEPS, 1)
    for key, value in {**harness.disclosures(bench, cfg, wl, local_batch, torch.device("cpu")),
                       **wl.mllog_hparams(args, None)}.items():
        mll.event(key, value)
    mll.event(C.TRAIN_SAMPLES, train_samples)
    mll.event(C.EVAL_SAMPLES, eval_samples)
    mll.end(C.INIT_STOP)
    mll.start(C.RUN_START)
    mll.start(C.BLOCK_START, samples_count=0)
    mll.start(C.EVAL_START, samples_count=eval_at)
    mll.event(C.EVAL_ACCURACY, quality, samples_count=eval_at)
    mll.end(C.EVAL_STOP, samples_count=eval_at)
    mll.end(C.BLOCK_STOP, samples_count=eval_at)
    mll.end(C.RUN_STOP, status="success")
    mll.close()
    return runner.check_log(path, bench.ruleset)
