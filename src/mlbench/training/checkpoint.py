"""Checkpoints: model, optimizer, scheduler and progress, written atomically.

A checkpoint holds tensors and plain values only (numbers, strings, lists, dicts), so that it is read with
``torch.load(weights_only=True)``: a file passed by a user (``--resume``, ``--weights``) or found in a cache is
data, never code. :func:`read` is the one way mlbench opens such a file.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from mlbench.errors import DataError
from mlbench.untrusted import read_bytes

PLAIN_HINT = ("pass a file of tensors and plain values, as `mlbench train` writes (run_N/checkpoint.pt) or "
              "torch.save(model.state_dict(), FILE) does")


def save(path: Path, *, model: torch.nn.Module, optimizer, scheduler, epoch: int, extra: dict | None = None) -> None:
    state = plain({
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "extra": extra or {},
    })
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint


def rank_path(path: str | Path, rank: int) -> Path:
    """The checkpoint file of ``rank`` next to ``path`` (rank 0: ``path`` itself), for sharded checkpoints."""
    p = Path(path)
    return p if rank == 0 else p.with_name(f"{p.stem}.rank{rank}{p.suffix}")


def load(path: str | Path, *, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore a checkpoint; returns its ``epoch`` (epochs completed) and ``extra``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"checkpoint not found: {p}", "pass the checkpoint.pt of an earlier run to --resume")
    state = read(p, what="checkpoint", hint="pass the checkpoint.pt of an earlier mlbench run to --resume")
    try:
        if not isinstance(state, dict):
            raise ValueError(f"it holds a {type(state).__name__}, not a dict")
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        epoch = int(state["epoch"])
    except (RuntimeError, KeyError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"checkpoint {p} does not fit this benchmark and size: {_one_line(exc)}",
                        "resume with a checkpoint written by the same benchmark, size and options") from exc
    return {"epoch": epoch, "extra": state.get("extra", {})}


def read(path: str | Path, *, what: str = "weights file", hint: str = PLAIN_HINT) -> Any:
    """The content of a PyTorch file, loaded with ``weights_only=True``: tensors and plain values only.

    A file that holds other Python objects (whose loading could run code) is refused; a file that is not a
    PyTorch file at all (text, truncated, empty) is a DataError too. Neither ends in a traceback.
    """
    p = Path(path)
    head = read_bytes(p, what, hint, limit=4)
    if not head:
        raise DataError(f"{what} {p} is empty (an interrupted copy?)", hint)
    if not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip archive; older PyTorch, a pickle
        raise DataError(f"{what} {p} is not a PyTorch weights file (neither a zip archive nor a pickle; it "
                        f"starts with {head!r})", hint)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise before our own message
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        refused = _refused(text)
        if refused:
            err = DataError(f"{what} {p} is not a plain weights file: it holds {refused}, which could run code "
                            "when loaded; refused", hint)
            err.refused_objects = True  # a caller may read it inertly (inference.modelfile.read_pickled_module)
            raise err from None
        raise DataError(f"{what} {p} is not a PyTorch weights file, or is corrupt ({_one_line(text)})",
                        hint) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes torch/pickle raise many types
        reason = "it ends too early" if isinstance(exc, EOFError) else _one_line(exc)
        if "zip archive" in reason or "central directory" in reason:
            reason = "not a complete zip archive"
        raise DataError(f"{what} {p} is truncated or corrupt ({reason})", hint) from None


def _refused(text: str) -> str | None:
    """What torch's weights-only loader refused, in words; None when it failed on unreadable bytes."""
    found = re.search(r"(?:GLOBAL|Unsupported class)\s+([\w.]+)", text)
    if found:
        return f"a Python object ({found.group(1)})"
    found = re.search(r"Unsupported operand \S+|Unsupported opcode \S+", text, re.IGNORECASE)
    if found:
        return f"pickle instructions beyond tensors and plain values ({found.group(0)})"
    return None


def plain(obj: Any) -> Any:
    """``obj`` in the types ``torch.load(weights_only=True)`` accepts: numpy values become Python numbers or
    tensors; anything else that is not a tensor or a plain value is a TypeError, raised when saving (not when
    resuming)."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor, torch.dtype, torch.device,
                                       torch.Size)):
        return obj
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj) if type(obj) in (list, tuple) else [plain(v) for v in obj]
    import numpy as np

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"a checkpoint holds tensors and plain values only, not {type(obj).__name__}")


def _one_line(exc: BaseException | str) -> str:
    s = " ".join(str(exc).split())
    return (s[:200] + "...") if len(s) > 200 else s or type(exc).__name__


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, under any DistributedDataParallel and torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


# ---------------------------------------------------------------- sharded models (torch.distributed.checkpoint)

PROGRESS = "progress.json"


def is_distributed(path: str | Path) -> bool:
    """True when ``path`` is the folder of a sharded checkpoint (written by :func:`save_distributed`)."""
    return Path(path).is_dir() and (Path(path) / PROGRESS).is_file()


def save_distributed(folder: Path, *, model: torch.nn.Module, optimizer, scheduler, epoch: int,
                     extra: dict | None = None) -> None:
    """Every rank writes its shards of the model and the optimizer state into ``folder`` (one file per rank,
    torch.distributed.checkpoint's layout), rank 0 the progress as JSON; written beside ``folder`` and renamed
    when all ranks are done, so an interrupted save leaves the previous checkpoint whole. Call on every rank."""
    import json
    import shutil

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    rank = dist.get_rank() if dist.is_initialized() else 0
    tmp = folder.with_name(folder.name + ".part")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    _barrier()
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(tmp))
    if rank == 0:
        progress = plain({"scheduler": scheduler.state_dict() if scheduler is not None else None, "epoch": epoch,
                          "extra": extra or {}})
        (tmp / PROGRESS).write_text(json.dumps(progress) + "\n")
    _barrier()
    if rank == 0:
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def load_distributed(folder: str | Path, *, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore a sharded checkpoint on every rank; returns its ``epoch`` and ``extra`` (as :func:`load`). Its
    index is read with an unpickler that builds checkpoint metadata only: a folder passed by a user runs no code."""
    import json

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    p = Path(folder)
    hint = "pass the checkpoint folder of an earlier sharded mlbench run to --resume"
    if not is_distributed(p):
        raise DataError(f"{p} is not a sharded checkpoint folder (no {PROGRESS})", hint)
    try:
        progress = json.loads((p / PROGRESS).read_text())
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optimizer": osd}
        dcp.load(state, storage_reader=_SafeReader(str(p)))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        if scheduler is not None and progress.get("scheduler") is not None:
            scheduler.load_state_dict(progress["scheduler"])
        epoch = int(progress["epoch"])
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - DCP wraps every failure of every rank in its own exception
        raise DataError(f"sharded checkpoint {p} does not fit this benchmark and size: {_one_line(exc)}",
                        hint) from exc
    return {"epoch": epoch, "extra": progress.get("extra", {})}


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


class _MetadataUnpickler(pickle.Unpickler):
    """Builds torch.distributed.checkpoint's metadata and nothing else (no other class can be named)."""

    def find_class(self, module: str, name: str):  # noqa: D401
        if module in ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem") or \
                (module, name) in (("torch", "Size"), ("torch.serialization", "_get_layout"),
                                   ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("collections",
                                                                                            "OrderedDict")) or \
                (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused: the checkpoint's index names {module}.{name}")


def _safe_reader_class():
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any):
            with open(Path(self.path) / ".metadata", "rb") as f:
                metadata = _MetadataUnpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                from torch.distributed.checkpoint.metadata import StorageMeta

                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader


def _SafeReader(path: str):  # noqa: N802 - reads like the class it builds
    return _safe_reader_class()(path)
