"""Device and numeric precision: autocast contexts and gradient scaling."""

from __future__ import annotations

import contextlib

import torch

from mlbench.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when available (one GPU per local rank), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible",
                              "use --device cpu, or check nvidia-smi and the CUDA build of torch")
        if name == "cuda":
            name = f"cuda:{local_rank % torch.cuda.device_count()}"
        dev = torch.device(name)
        torch.cuda.set_device(dev)
        return dev
    if name != "cpu":
        raise ConfigError(f"invalid value for 'device': {name!r}", "allowed: auto, cpu, cuda, cuda:N")
    return torch.device("cpu")


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def check(device: torch.device, precision: str) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 training needs a CUDA GPU (gradient scaling)",
                          "use --precision bf16 on CPU")


def grad_scaler(device: torch.device, precision: str):
    """A GradScaler for fp16 on CUDA, else None."""
    if precision != "fp16":
        return None
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        try:
            return amp.GradScaler("cuda")
        except TypeError:  # older torch: torch.amp.GradScaler took no device argument
            pass
    return torch.cuda.amp.GradScaler()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that the clock reads what was computed."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
