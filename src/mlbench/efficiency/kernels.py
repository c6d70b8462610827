"""The measured kernel peak: the best FLOP/s of a short microbenchmark of the kernels the backends run.

This is the second efficiency figure, beside MFU (which divides by the datasheet or theoretical peak, see
``mlbench.efficiency.mfu``): what this machine's libraries reach on large, well-shaped kernels at the run's
precision. It is measured at sizes large enough to saturate the units:
- fp32, bf16, fp16: a large GEMM and large 3x3 and 1x1 convolutions (channels_last) through torch, which runs
  them with oneDNN/MKL on a CPU and cuBLAS/cuDNN on a GPU, the libraries the pytorch backend uses. On CPUs
  where MKL's GEMM takes a slow path (AMD), oneDNN's convolution is faster; the best of the three counts.
- int8: what the int8 backend runs. On a CPU, ONNX Runtime's quantized MatMul and Conv (QDQ graphs with uint8
  activations and int8 weights, which ONNX Runtime fuses into QLinearMatMul/QLinearConv, as in the quantized
  models); on a GPU, ``torch._int_mm`` (cuBLAS int8 GEMM).

The figure is only ever measured, never raised by what a run achieved. A run faster than the microbenchmark gets
the kernels measured once more after it (``confirm``: a microbenchmark measured on a busy machine reads low) and
the best microbenchmark counts; a run still faster shows a fraction above 1, and ``mlbench.efficiency.mfu``
flags it with its likely cause.
Peaks are cached per machine fingerprint, device, precision and thread count (the microbenchmark takes a
second or two once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlbench import runs

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
BUDGET_S = 0.15  # timed repeats per kernel after one warm-up call (at least 2 repeats)
CACHE_VERSION = 3  # 3: no run-raised "measured" peak any more
_MEASURED: dict[str, dict[str, Any]] = {}  # microbenchmarks of this process, also when the cache moves (tests)


def kernel_peak(device: str, precision: str, threads: int) -> dict[str, Any]:
    """The measured kernel peak of ``precision`` on ``device`` ("cpu" or "cuda[:N]") with ``threads`` CPU
    threads: ``{"flops_per_s", "precision", "device", "threads", "method", "best_kernel", "kernels", "errors"}``.
    Raises when the microbenchmark cannot run (e.g. no ONNX Runtime for int8)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    path = _cache_path(device, precision, threads)
    state = _read(path)
    if state is None:
        key = path.name  # fingerprint, device, precision, threads: one microbenchmark per process at most
        if key not in _MEASURED:
            _MEASURED[key] = microbenchmark(device, precision, threads)
        state = {"version": CACHE_VERSION, "precision": precision, "device": device, "threads": threads,
                 "microbenchmark": _MEASURED[key]}
        runs.write_json(path, state)
    return _record(state["microbenchmark"], device, precision, threads)


def confirm(record: dict[str, Any], achieved_flops_per_s: float) -> dict[str, Any]:
    """The kernel peak ``record`` (from ``kernel_peak``), measured again when a run achieved more FLOP/s per
    device than it says: a microbenchmark measured while the machine was busy reads low, and a low figure would
    otherwise stay cached. The peak kept is the best microbenchmark of the two, never the run's figure; the record
    says that it was measured again (``remeasured``). Measured at most once per record; a run still above the
    peak keeps its fraction above 1 (``mlbench.efficiency.mfu`` flags it)."""
    peak = record.get("flops_per_s")
    if not peak or achieved_flops_per_s <= peak or record.get("remeasured"):
        return record
    device, precision, threads = record["device"], record["precision"], record["threads"]
    fresh = microbenchmark(device, precision, threads)
    path = _cache_path(device, precision, threads)
    state = _read(path) or {"version": CACHE_VERSION, "precision": precision, "device": device,
                            "threads": threads, "microbenchmark": record}
    if fresh["flops_per_s"] > state["microbenchmark"]["flops_per_s"]:
        state["microbenchmark"] = fresh
        runs.write_json(path, state)
    _MEASURED[path.name] = state["microbenchmark"]
    out = _record(state["microbenchmark"], device, precision, threads)
    out["remeasured"] = (f"the run's {achieved_flops_per_s / 1e9:.4g} GFLOP/s per device were above the kernel peak "
                         f"of {peak / 1e9:.4g} GFLOP/s measured before it; measured again after the run: "
                         f"{fresh['flops_per_s'] / 1e9:.4g} GFLOP/s; the best microbenchmark counts")
    return out


def _record(micro: dict[str, Any], device: str, precision: str, threads: int) -> dict[str, Any]:
    return {"flops_per_s": micro["flops_per_s"], "precision": precision, "device": device, "threads": threads,
            "method": micro["method"].split("; best kernel:")[0] + f"; best kernel: {micro['best_kernel']}",
            "best_kernel": micro["best_kernel"], "kernels": micro["kernels"], "errors": micro.get("errors") or {}}


def microbenchmark(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Best FLOP/s over the kernels of ``precision`` on ``device``: {flops_per_s, kernels, method}."""
    cuda = device.startswith("cuda")
    if precision == "int8":
        kernels = _int8_kernels_cuda(device) if cuda else _int8_kernels_cpu(threads)
        how = ("torch._int_mm (cuBLAS int8 GEMM)" if cuda else
               "ONNX Runtime QDQ MatMul and Conv (uint8 activations, int8 weights; fused to QLinearMatMul/"
               "QLinearConv as in the int8 backend's models)")
    else:
        kernels = _float_kernels(device, precision)
        how = f"torch {precision} GEMM and 3x3/1x1 convolutions (channels_last){' on the GPU' if cuda else ''}"
    import torch

    old = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(threads)
    results: dict[str, float] = {}
    errors: dict[str, str] = {}
    try:
        for name, (flops, fn, sync) in kernels.items():
            try:
                results[name] = flops / _best_time(fn, sync)
            except Exception as exc:  # noqa: BLE001 - a kernel this build lacks (e.g. fp16 conv on a CPU)
                errors[name] = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        torch.set_num_threads(old)
    if not results:
        raise RuntimeError(f"no {precision} kernel ran on {device}: {errors}")
    best = max(results, key=results.get)
    return {"flops_per_s": results[best], "best_kernel": best, "kernels": results, "errors": errors,
            "method": f"{how}: best of the kernels, each the fastest of timed repeats (~{BUDGET_S:g} s) after one "
                      f"warm-up call, {threads} thread(s)" if not cuda else
                      f"{how}: best of the kernels, each the fastest of timed repeats after one warm-up call"}


# ---------------------------------------------------------------------------------------------- internals
def _cache_path(device: str, precision: str, threads: int) -> Path:
    from mlbench import sysinfo
    from mlbench.data.download import cache_dir

    fp = sysinfo.fingerprint(sysinfo.describe())
    return cache_dir("calibration", f"peak-v{CACHE_VERSION}-{fp}-{device.replace(':', '')}-{precision}-t{threads}.json")


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = runs.read_json(path)
    except ValueError:
        return None
    ok = isinstance(state, dict) and state.get("version") == CACHE_VERSION and state.get("microbenchmark")
    return state if ok else None


def _best_time(fn: Callable[[], Any], sync: Callable[[], None], budget_s: float = BUDGET_S) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    if first > 4 * budget_s:  # a slow path: one more call is enough to tell
        budget_s = 0.0
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < (1 if budget_s == 0 else 2) or (time.perf_counter() - start < budget_s and reps < 20):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def _float_kernels(device: str, precision: str) -> dict[str, tuple[float, Callable, Callable]]:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    dev = torch.device(device)
    gpu = dev.type == "cuda"

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize(dev)

    g = torch.Generator(device=dev).manual_seed(0)
    if gpu:  # large enough to fill a GPU (smaller sizes measure launch overhead)
        n, batch, ch, hw = 8192, 256, 256, 28
    elif precision == "fp16" and not _cpu_has_fp16():  # a slow emulated path: small sizes keep it short
        n, batch, ch, hw = 512, 1, 256, 14
    else:  # 0.02-0.2 s a call on a few cores: the plateau of oneDNN/MKL
        n, batch, ch, hw = 1536, 32, 256, 14
    out: dict[str, tuple[float, Callable, Callable]] = {}
    a = torch.randn(n, n, device=dev, generator=g).to(dtype)
    b = torch.randn(n, n, device=dev, generator=g).to(dtype)
    out[f"gemm {n}x{n}x{n}"] = (2.0 * n**3, lambda: a @ b, sync)
    x = torch.randn(batch, ch, hw, hw, device=dev, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w3 = torch.randn(ch, ch, 3, 3, device=dev, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w1 = torch.randn(2 * ch, ch, 1, 1, device=dev, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.functional.conv2d

    def run_conv(w: Any, pad: int) -> Callable[[], Any]:
        def f() -> Any:
            with torch.inference_mode():
                return conv(x, w, padding=pad)
        return f

    out[f"conv3x3 {batch}x{ch}x{hw}x{hw}->{ch}"] = (2.0 * batch * hw * hw * ch * ch * 9, run_conv(w3, 1), sync)
    out[f"conv1x1 {batch}x{ch}x{hw}x{hw}->{2 * ch}"] = (2.0 * batch * hw * hw * ch * 2 * ch, run_conv(w1, 0), sync)
    return out


def _cpu_has_fp16() -> bool:
    """Whether the CPU computes fp16 natively (AVX512-FP16 or AMX-FP16); elsewhere torch emulates it slowly."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_fp16" in flags or "amx_fp16" in flags


def _int8_kernels_cuda(device: str) -> dict[str, tuple[float, Callable, Callable]]:
    import torch

    dev = torch.device(device)
    n = 8192
    a = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=dev)
    b = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=dev)
    return {f"int_mm {n}x{n}x{n}": (2.0 * n**3, lambda: torch._int_mm(a, b), lambda: torch.cuda.synchronize(dev))}


def _int8_kernels_cpu(threads: int) -> dict[str, tuple[float, Callable, Callable]]:
    import numpy as np

    n, batch, ch, hw = 1536, 16, 256, 14
    rng = np.random.default_rng(0)
    out: dict[str, tuple[float, Callable, Callable]] = {}
    mm = _ort_session(_qdq_matmul(n), threads)
    a = rng.integers(0, 255, (n, n), dtype=np.uint8)
    out[f"qdq matmul {n}x{n}x{n}"] = (2.0 * n**3, lambda: mm.run(None, {"x": a}), lambda: None)
    for k, cout in ((3, ch), (1, 2 * ch)):
        sess = _ort_session(_qdq_conv(ch, cout, k), threads)
        x = rng.integers(0, 255, (batch, ch, hw, hw), dtype=np.uint8)
        out[f"qdq conv{k}x{k} {batch}x{ch}x{hw}x{hw}->{cout}"] = (
            2.0 * batch * hw * hw * ch * cout * k * k, (lambda s=sess, v=x: s.run(None, {"x": v})), lambda: None)
    return out


def _ort_session(model: Any, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _qdq(core: str, w_shape: tuple[int, ...], x_shape: list, attrs: dict, axis: int) -> Any:
    """uint8 x -> DequantizeLinear -> ``core``(x, DequantizeLinear(int8 W, per-channel)) -> QuantizeLinear."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.integers(-127, 127, w_shape, dtype=np.int8)
    channels = w_shape[axis]
    inits = [numpy_helper.from_array(w, "w_q"),
             numpy_helper.from_array(np.full(channels, 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(channels, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
             numpy_helper.from_array(np.array(0.5, np.float32), "y_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "y_zp")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["x_f"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_f"], axis=axis),
             helper.make_node(core, ["x_f", "w_f"], ["y_f"], **attrs),
             helper.make_node("QuantizeLinear", ["y_f", "y_scale", "y_zp"], ["y"])]
    graph = helper.make_graph(nodes, f"int8-{core.lower()}",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _qdq_matmul(n: int) -> Any:
    return _qdq("MatMul", (n, n), ["m", n], {}, axis=1)


def _qdq_conv(cin: int, cout: int, k: int) -> Any:
    return _qdq("Conv", (cout, cin, k, k), ["n", cin, "h", "w"], {"pads": [k // 2] * 4}, axis=0)
