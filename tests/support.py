"""Helpers shared by the tests: tiny datasets in real formats, and the CLI run as a user runs it.

(A uniquely named module: several test folders have a conftest.py, so ``import conftest`` is ambiguous.)
"""

from __future__ import annotations

import atexit
import functools
import http.server
import json
import os
import signal
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
    """Run the CLI as a user would, in a new process: ``python -m mlbench ARGS``, forked from a server that has
    imported torch already (tests/cli_forks.py) where the environment allows it, else started afresh."""
    full_env = {**os.environ, **(env or {})}
    argv = [sys.executable, "-m", "mlbench", *args]
    server = None if os.environ.get("MLBENCH_TEST_NO_FORK") else _FORKS.server(full_env)
    if server is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    cwd = Path(cwd or os.getcwd())
    if not cwd.is_dir():
        raise FileNotFoundError(f"no folder {cwd}")
    return server.run(argv, full_env, cwd, timeout)


# What the preloaded packages (tests/cli_forks.py) read from the environment when imported: a server per value.
_IMPORT_ENV = ("OMP_", "MKL_", "OPENBLAS_", "KMP_", "GOMP_", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "NPY",
               "HF_", "TRANSFORMERS", "TOKENIZERS", "MALLOC", "LD_")


class _ForkServer:
    """One tests/cli_forks.py process; see there."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cli_forks.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.pending = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _answer(self, timeout: float | None) -> dict | None:
        """The server's next answer, or None when ``timeout`` seconds pass without one."""
        import select
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("the test fork server ended")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mlbench-fork-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            self.proc.stdin.write((json.dumps({"argv": argv[3:], "env": env, "cwd": str(cwd.resolve()),
                                               "stdout": str(out), "stderr": str(err)}) + "\n").encode())
            self.proc.stdin.flush()
            pid = self._answer(None)["pid"]
            answer = self._answer(timeout)
            if answer is None:  # as subprocess.run does: kill the command, then say it timed out
                os.kill(pid, signal.SIGKILL)
                self._answer(None)
                raise subprocess.TimeoutExpired(argv, timeout, _read(out), _read(err))
            code = os.waitstatus_to_exitcode(answer["status"])
            return subprocess.CompletedProcess(argv, code, _read(out), _read(err))

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _read(path: Path) -> str:
    """A command's output as subprocess.run(text=True) gives it: the locale's encoding, universal newlines."""
    return path.read_text() if path.exists() else ""


class _ForkServers:
    """This test process's fork servers, one per value of the variables in _IMPORT_ENV (at most two kept)."""

    def __init__(self):
        self.servers: dict[tuple, _ForkServer] = {}

    def server(self, env: dict[str, str]) -> _ForkServer | None:
        here = {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}
        if {k: v for k, v in env.items() if k.startswith("PYTHON")} != here:
            return None  # Python's own start-up (path, flags) would differ: a fresh process
        key = tuple(sorted((k, v) for k, v in env.items() if k.startswith(_IMPORT_ENV)))
        server = self.servers.pop(key, None)
        if server is None or not server.alive():
            if len(self.servers) >= 2:
                self.servers.pop(next(iter(self.servers))).close()
            server = _ForkServer(env)
        self.servers[key] = server  # the most recently used last
        return server

    def close(self) -> None:
        while self.servers:
            self.servers.popitem()[1].close()


_FORKS = _ForkServers()
atexit.register(_FORKS.close)


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
