"""The machine's measured matmul peak and the model's FLOPs: what fraction of the hardware a run used.

The peak is a short calibration (large square matmuls, best of a few timed repeats after warm-up), cached
per machine fingerprint, device, dtype and thread count, so it costs about a second once.
"""

from __future__ import annotations

import time
from typing import Any

from mlbench import runs

N = 2048  # big enough to reach the BLAS/oneDNN plateau on CPUs, small enough for about 0.1 s per matmul
N_GPU = 8192  # a GPU needs large matmuls to reach its peak (2048 would measure mostly launch overhead)


def model_flops(model: Any, example: Any) -> float | None:
    """FLOPs of one forward pass on one sample (multiply-add counted as 2), by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        from mlbench.inference import inputs

        x = inputs.to_torch(inputs.head(example, 1))
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            inputs.call(model, x)
        return float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - FLOPs are informative; never fail a run for them
        return None


def matmul_peak(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Measured matmul FLOP/s for ``precision`` (int8 is measured as bf16, the fastest float path)."""
    import torch

    from mlbench import sysinfo
    from mlbench.data.download import cache_dir

    dtype_name = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8": "bf16"}[precision]
    if device.startswith("cpu") and dtype_name == "fp16":
        dtype_name = "fp32"
    fp = sysinfo.fingerprint(sysinfo.describe())
    path = cache_dir("calibration", f"matmul-{fp}-{device.replace(':', '')}-{dtype_name}-t{threads}.json")
    if path.is_file():
        try:
            return runs.read_json(path)
        except ValueError:
            pass
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    dev = torch.device(device)
    n = N if dev.type == "cpu" else N_GPU
    old = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, device=dev).to(dtype)
        b = torch.randn(n, n, device=dev).to(dtype)
        best = float("inf")
        for i in range(6):
            _sync(dev)
            t0 = time.perf_counter()
            a @ b
            _sync(dev)
            if i >= 2:  # the first runs pick kernels and warm caches
                best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    info = {"flops_per_s": 2 * n**3 / best, "dtype": dtype_name, "device": device, "threads": threads,
            "method": f"best of 4 timed {n}x{n} matmuls after 2 warm-up ones"}
    runs.write_json(path, info)
    return info


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
