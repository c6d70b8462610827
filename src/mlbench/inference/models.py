"""Models that inference serves for the sizes without published weights (mini, tiny): the checkpoint that
``mlbench train BENCH --size SIZE`` makes, cached per benchmark and size, trained first when missing; and the
weights-file steps every benchmark's ``inference`` module takes alike (find ``--weights`` or the cached model,
refuse an ONNX file for PyTorch, load a state dict, seed ``--weights random``).
Any benchmark's ``inference`` module uses it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.errors import ConfigError, DataError, MlbenchError
from mlbench.inference.task import TaskOptions

WEIGHTS_HINT = "pass a state dict of the same model and size (as mlbench train saves)"


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


def find_weights(bench: Benchmark, opts: TaskOptions, *, files: str, reference: Callable[[], Path],
                 trained: Callable[[Benchmark, TaskOptions], Path] | None = None) -> Path:
    """The weights file of an inference run: ``--weights FILE`` (``files`` names the kinds it may be, for the
    hint when it is missing), else ``reference()`` for the reference size (a download, or an error that says what
    to pass), else ``trained(bench, opts)`` (default: the cached model of ``mlbench train``)."""
    if opts.weights:
        p = Path(opts.weights)
        if not p.is_file():
            raise DataError(f"weights file not found: {p}", f"pass an existing {files} file")
        return p
    if bench.is_reference:
        return reference()
    return (trained or trained_checkpoint)(bench, opts)


def random_weights(bench: Benchmark, opts: TaskOptions) -> bool:
    """``--weights random`` on the reference size: throughput only, no weights file."""
    return bench.is_reference and opts.weights == "random"


def pytorch_weights(path: Path, files: str) -> Path:
    """``path``, unless it is an ONNX model (the pytorch backend needs a state dict; ``files`` names its kinds)."""
    if path.suffix == ".onnx":
        raise ConfigError(f"{path} is an ONNX model; the pytorch backend needs a PyTorch state dict",
                          f"use --backend onnxruntime with an .onnx file, or pass a {files} file")
    return path


def load_weights(model: nn.Module, path: Path, *, what: str, hint: str, keys: tuple[str, ...] = ("model",),
                 prefix: str = "") -> nn.Module:
    """``model`` with the state dict of ``path`` (read as tensors only: a file never runs code). A dict holding
    the state under one of ``keys`` (a training checkpoint's ``model``) is unwrapped, DDP's ``module.`` prefix
    dropped, and ``prefix`` added when no name has it (the state of the model ``model`` wraps); DataError
    "weights PATH do not fit <what>: ..." with ``hint`` when they do not fit."""
    from mlbench.training import checkpoint

    state = checkpoint.read(path, what="weights file")
    try:
        for key in keys:
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        if prefix and not any(k.startswith(prefix) for k in state):
            state = {prefix + k: v for k, v in state.items()}
        model.load_state_dict(state)
    except (RuntimeError, KeyError, EOFError, ValueError, AttributeError, OSError) as exc:
        raise DataError(f"weights {path} do not fit {what}: {str(exc)[:300]}", hint) from exc
    return model


def seeded_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``--weights random``: the model of ``build()`` in eval mode, initialised under ``seed`` without touching
    the global RNG, so that every call (export, check, FLOPs) builds the same weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build().eval()
