"""Models that inference serves for the sizes without published weights (mini, tiny): the checkpoint that
``mlbench train BENCH --size SIZE`` makes, cached per benchmark and size, trained first when missing.
Any benchmark's ``inference`` module uses it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch

from mlbench.benchmarks.base import Benchmark
from mlbench.data import download
from mlbench.errors import MlbenchError
from mlbench.inference.task import TaskOptions


def trained_checkpoint(bench: Benchmark, opts: TaskOptions) -> Path:
    """The cached model of ``mlbench train <bench.name> --size <bench.size>``; trained first when missing."""
    dest = download.cache_dir("models", f"{bench.name}-{bench.size}.pt")
    if dest.is_file():
        return dest
    if not opts.train_if_missing:
        raise MlbenchError(f"no trained {bench.name} {bench.size} model in {dest}",
                           f"run `mlbench train {bench.name} --size {bench.size}` first, or drop "
                           "--no-train-if-missing, or pass --weights")
    from mlbench.config import TrainConfig
    from mlbench.training import runner

    opts.say(f"no cached {bench.size} model: training one first (mlbench train {bench.name} --size {bench.size})")
    cfg = TrainConfig(benchmark=bench.name, size=bench.size, device="cpu", seed=0, data_dir=opts.data_dir,
                      output_dir=str(download.cache_dir("models", "training-runs")))
    result = runner.execute(cfg, say_prefix="  [train] ")
    run_dir = Path(result["config"].get("run_dir") or Path(cfg.output_dir) / result["run_id"])
    ckpt = run_dir / "run_1" / "checkpoint.pt"
    if not ckpt.is_file():
        raise MlbenchError(f"training did not write a checkpoint ({ckpt})", f"see {run_dir}/console.log")
    if result["status"] != "success":
        opts.say(f"warning: the trained model did not reach its training target ({result['quality']})")
    from mlbench.training import checkpoint

    state = checkpoint.read(ckpt, what="checkpoint", hint=f"delete {run_dir} and run the command again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    torch.save({"model": state["model"], "trained_by": result["run_id"], "quality": result["quality"]}, tmp)
    os.replace(tmp, dest)
    shutil.copyfile(run_dir / "result.json", dest.with_suffix(".result.json"))
    opts.say(f"model cached at {dest} (sha256 {hashlib.sha256(dest.read_bytes()).hexdigest()[:12]})")
    return dest
