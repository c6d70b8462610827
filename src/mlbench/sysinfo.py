"""The system description: what ran the benchmark, in the MLPerf systems-JSON field names.

Each probe runs on its own: a failing probe records its error under ``probe_errors`` and never stops a
run. No hostname or user name is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import mlbench

INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16",
                     "amx_bf16", "amx_int8", "amx_tile", "asimd", "sve", "sve2", "bf16", "i8mm")
PACKAGES = ("torch", "torchvision", "numpy", "onnxruntime", "onnx", "mlcommons-loadgen", "mlperf-logging",
            "pycocotools", "pillow")


def _cpuinfo() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text()
    model, flags, sockets = "", set(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model name", "Hardware") and not model:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "physical id":
            sockets.add(value)
    return {
        "host_processor_model_name": model or platform.processor() or platform.machine(),
        "host_processors_per_node": max(1, len(sockets)),
        "host_processor_core_count": os.cpu_count(),
        "host_processor_flags": [f for f in INTERESTING_FLAGS if f in flags],
        "host_processor_architecture": platform.machine(),
    }


def _memory() -> dict[str, Any]:
    import psutil

    total = psutil.virtual_memory().total
    return {"host_memory_capacity": f"{total / 2**30:.1f} GiB", "host_memory_bytes": total}


def _gpus() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"accelerators_per_node": 0, "accelerator_model_name": "", "accelerator_memory_capacity": ""}
    n = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    info = {
        "accelerators_per_node": n,
        "accelerator_model_name": props.name,
        "accelerator_memory_capacity": f"{props.total_memory / 2**30:.1f} GiB",
        "cuda_version": torch.version.cuda,
        "cudnn_version": str(torch.backends.cudnn.version()),
    }
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        info["accelerator_driver_version"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired, IndexError):
        info["accelerator_driver_version"] = ""
    return info


def _os() -> dict[str, Any]:
    name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"operating_system": name, "kernel": platform.release()}


def _software() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    torch_v = versions.get("torch", "?")
    return {"framework": f"PyTorch {torch_v}", "other_software_stack": versions}


def _mlbench() -> dict[str, Any]:
    info = {"mlbench_version": mlbench.__version__, "mlbench_commit": ""}
    src = Path(mlbench.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            info["mlbench_commit"] = out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


PROBES: dict[str, Callable[[], dict[str, Any]]] = {
    "cpu": _cpuinfo, "memory": _memory, "gpu": _gpus, "os": _os, "software": _software, "mlbench": _mlbench,
}


def describe() -> dict[str, Any]:
    """The system description; each probe isolated."""
    info: dict[str, Any] = {"number_of_nodes": int(os.environ.get("SLURM_NNODES", os.environ.get("NNODES", 1))),
                            "host_networking": "", "python_executable": sys.executable}
    errors: dict[str, str] = {}
    for name, probe in PROBES.items():
        try:
            info.update(probe())
        except Exception as exc:  # noqa: BLE001 - a failing probe must never stop a run
            errors[name] = f"{type(exc).__name__}: {exc}"
    info["probe_errors"] = errors
    info["system_fingerprint"] = fingerprint(info)
    return info


def fingerprint(info: dict[str, Any]) -> str:
    """A short hash of the hardware fields: the same machine type gives the same fingerprint."""
    keys = ("host_processor_model_name", "host_processor_core_count", "host_memory_bytes",
            "accelerators_per_node", "accelerator_model_name", "number_of_nodes")
    blob = json.dumps({k: info.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
