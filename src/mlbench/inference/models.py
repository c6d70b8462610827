"""Models that inference serves for the sizes without published weights (mini, tiny): the checkpoint that
``mlbench train BENCH --size SIZE`` makes, cached per benchmark and size, trained first when missing; and the
weights-file steps every benchmark's ``inference`` module takes alike (find ``--weights`` or the cached model,
refuse an ONNX file for PyTorch, load a state dict, seed ``--weights random``).
Any benchmark's ``inference`` module uses it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.errors import ConfigError, DataError, MlbenchError
from mlbench.finite import nonfinite_weights
from mlbench.inference.task import TaskOptions

WEIGHTS_HINT = "pass a state dict of the same model and size (as mlbench train saves)"


def trained_checkpoint(bench: Benchmark, opts: TaskOptions) -> Path:
    """The cached model of ``mlbench train <bench.name> --size <bench.size>``; trained first when missing, or
    again when it was trained toward another target than the size's current one."""
    dest = download.cache_dir("models", f"{bench.name}-{bench.size}.pt")
    stale = _other_target(bench, dest) if dest.is_file() else None
    if dest.is_file() and stale is None:
        return dest
    if not opts.train_if_missing:
        raise MlbenchError(f"no trained {bench.name} {bench.size} model in {dest}" + (f" ({stale})" if stale else ""),
                           f"run `mlbench train {bench.name} --size {bench.size}` first, or drop "
                           "--no-train-if-missing, or pass --weights")
    from mlbench.config import TrainConfig
    from mlbench.training import runner

    opts.say(f"{f'the cached {bench.size} model is stale ({stale})' if stale else f'no cached {bench.size} model'}: "
             f"training one first (mlbench train {bench.name} --size {bench.size})")
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


def _other_target(bench: Benchmark, dest: Path) -> str | None:
    """Why the cached model ``dest`` no longer serves ``bench``: the result.json kept beside it names another
    training target (the size's target moved since, as RNN-T mini's did from WER 0.62 to 0.45); None when it
    names this one or none."""
    try:
        quality = json.loads(dest.with_suffix(".result.json").read_text()).get("quality") or {}
        was = quality.get("target")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(was, (int, float)) or was == bench.target:
        return None
    return f"trained toward {quality.get('metric', bench.metric)} {was:g}, the target is now {bench.metric} {bench.target:g}"


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
                 prefix: str = "", modules: bool = False) -> nn.Module:
    """``model`` with the state dict of ``path`` (read as tensors only: a file never runs code). A dict holding
    the state under one of ``keys`` (a training checkpoint's ``model``) is unwrapped, DDP's ``module.`` prefix
    dropped, and ``prefix`` added when no name has it (the state of the model ``model`` wraps); ``modules``: a
    whole pickled ``nn.Module`` is accepted too (see :func:`read_weights`). ConfigError "weights PATH do not fit
    <what>: ..." (one line: what is missing, extra or of another shape) with ``hint`` when they do not fit."""
    state = read_weights(path, modules=modules)
    for key in keys:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"weights {path} do not fit {what}: the file holds a {type(state).__name__}, not a "
                          "state dict", hint)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if prefix and not any(k.startswith(prefix) for k in state):
        state = {prefix + k: v for k, v in state.items()}
    return load_state(model, state, path, what=what, hint=hint)


def read_weights(path: Path, *, modules: bool = False, key: str | None = None) -> Any:
    """What a weights file holds, read as tensors and plain values only (``training.checkpoint.read``). A file
    refused because it pickles other objects is read without running any of their code
    (``modelfile.read_inert``) when the caller says what it wants from it: ``modules``, the state dict of the
    whole ``nn.Module`` it pickles (``torch.save(model)``, as MLPerf's RetinaNet .pth); ``key``, the dict of
    tensors under that key (a training checkpoint that also pickles its optimizer or arguments, as MLPerf's
    RNN-T ``rnnt.pt``). Without what was asked for, the refusal stands."""
    from mlbench.training import checkpoint

    try:
        return checkpoint.read(path, what="weights file")
    except DataError as exc:
        if not ((modules or key) and getattr(exc, "refused_objects", False)):
            raise
        from mlbench.inference import modelfile

        try:
            if modules:
                return modelfile.read_pickled_module(path)
            obj = modelfile.read_inert(path)
            found = obj.get(key) if isinstance(obj, dict) else None
            if not isinstance(found, dict) or not all(isinstance(v, torch.Tensor) for v in found.values()):
                raise DataError(f"{path} holds no tensors under {key!r}", "")
            return {key: found}
        except DataError:
            raise exc from None


def load_state(model: nn.Module, state: dict, path: Path | str, *, what: str, hint: str, strict: bool = True
               ) -> nn.Module:
    """``model.load_state_dict(state)``, or a one-line ConfigError saying how the file differs from ``what`` (a
    DataError when the weights hold NaN or infinity)."""
    try:  # load_state_dict first: some modules rename older keys as they load (torchvision's FPN and heads)
        model.load_state_dict(state, strict=strict)
    except (RuntimeError, KeyError, ValueError, AttributeError, TypeError) as exc:
        problem = fit_problems(model, state, strict=strict) or " ".join(str(exc).split())[:300]
        raise ConfigError(f"weights {path} do not fit {what}: {problem}", hint) from None
    bad = nonfinite_weights(model.state_dict())
    if bad:  # every prediction would be NaN: nothing to measure or score
        raise DataError(f"weights {path} hold NaN or infinite values (in {', '.join(bad[:3])}"
                        f"{', ...' if len(bad) > 3 else ''}): saved from a run whose training diverged?",
                        "pass weights from a run that converged (its result.json says success)")
    return model


def fit_problems(model: nn.Module, state: dict, strict: bool = True) -> str | None:
    """How a state dict differs from ``model``'s, in one line (a few names of each kind), or None when it fits."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want] if strict else []
    shapes = [f"{k} {list(getattr(state[k], 'shape', ()))} vs {list(want[k].shape)}" for k in want
              if k in state and tuple(getattr(state[k], "shape", ())) != tuple(want[k].shape)]
    return describe_mismatch(missing, extra, shapes, len(want)) if missing or extra or shapes else None


def describe_mismatch(missing: list[str], extra: list[str], shapes: list[str], total: int) -> str:
    """One line: which of the model's ``total`` tensors a file lacks, has in excess or has of another shape."""
    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {total} tensors missing ({few(missing)})")
    if extra:
        parts.append(f"{len(extra)} the model does not have ({few(extra)})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (file vs model: {few(shapes)})")
    return "; ".join(parts)


def seeded_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``--weights random``: the model of ``build()`` in eval mode, initialised under ``seed`` without touching
    the global RNG, so that every call (export, check, FLOPs) builds the same weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build().eval()
