"""The ONNX Runtime backend: the task's model exported with torch.onnx, cached, checked against PyTorch.

int8 is ONNX Runtime static quantization (QDQ, per-channel weights, calibrated on samples of the task's own
dataset). Every exported or quantized model is compared with PyTorch on a real batch before use: fp32 must
agree closely, int8 on most predicted classes; accuracy mode then says whether the target still holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlbench.errors import ConfigError, MlbenchError
from mlbench.inference import inputs
from mlbench.inference.backends.base import Backend

OPSET = 18
CALIBRATION_SAMPLES = 128


def export(model: Any, example: inputs.Inputs, dest: Path) -> Path:
    """Export ``model`` to ONNX with a dynamic batch dimension; atomic, so a cache hit is always whole.

    Named inputs become the graph's input names (the model is called with them by keyword)."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    feed = inputs.named(inputs.head(example, 2))
    names = list(feed)
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values())
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic: tuple = ({0: batch},)
    if isinstance(example, dict):  # one *args parameter holding every named input
        model = inputs.Positional(model, names)
        dynamic = (tuple({0: batch} for _ in names),)
    try:
        torch.onnx.export(model, args, str(tmp), input_names=names, dynamic_shapes=dynamic,
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    except Exception:  # noqa: BLE001 - models torch.export cannot trace still export with TorchScript
        torch.onnx.export(model, args, str(tmp), input_names=names, dynamic_axes={n: {0: "batch"} for n in names},
                          opset_version=17, dynamo=False)
    os.replace(tmp, dest)
    return dest


def quantize_int8(fp32_path: Path, calibration: inputs.Inputs, dest: Path) -> Path:
    """Static int8 quantization (QDQ, per-channel) calibrated on ``calibration`` ([N, ...] or named)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(inputs.split(calibration, max(1, inputs.length(calibration) // 16)))

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {k: np.ascontiguousarray(v) for k, v in inputs.named(b).items()}

    dest.parent.mkdir(parents=True, exist_ok=True)
    pre = dest.with_name(f".{dest.stem}.pre.{os.getpid()}.onnx")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    pre.unlink(missing_ok=True)
    os.replace(tmp, dest)
    return dest


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    output_names: list[str] | None = None  # the outputs fetched (None: all), set by prepare
    fp32_path: Path | None = None  # the fp32 ONNX file (given or exported): its graph's FLOPs are counted

    def prepare(self, task: Any, example: inputs.Inputs) -> None:
        import torch

        from mlbench.data.download import cache_dir

        if self.cfg.precision in ("bf16", "fp16"):
            raise ConfigError(f"the onnxruntime backend runs fp32 or int8, not {self.cfg.precision}",
                              "use --backend pytorch for bf16/fp16, or --precision int8 here")
        weights = self.cfg.weights or ""
        given_onnx = weights.endswith(".onnx")
        model = None if given_onnx else task.model().eval()
        if given_onnx:
            fp32 = Path(weights)
            if not fp32.is_file():
                raise ConfigError(f"ONNX model not found: {fp32}", "pass an existing .onnx file to --weights")
        else:
            fp32 = cache_dir("onnx", f"{self.cfg.benchmark}-{self.cfg.size}-{task.model_id()}-op{OPSET}.onnx")
            if not fp32.is_file():
                export(model, example, fp32)
        self.fp32_path = fp32
        path = fp32
        if self.cfg.precision == "int8":  # quantized into the cache (never beside a user's file)
            path = cache_dir("onnx", f"{self.cfg.benchmark}-{self.cfg.size}-{task.model_id()}-op{OPSET}-int8.onnx"
                             if not given_onnx else f"{fp32.stem}-{task.model_id()}-int8.onnx")
            if not path.is_file():
                quantize_int8(fp32, self._calibration(task, example), path)
        self.path = path
        self.session = self._session(path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        # the outputs the task reads, in its order (a model file's interface may offer more, e.g. ArgMax and softmax)
        self.output_names = getattr(task, "onnx_outputs", None) if given_onnx else None
        if model is None:
            self.check = {"ok": True, "detail": "given as ONNX: no PyTorch model to compare with"}
            self.predict(example)
            return
        with torch.inference_mode():
            out = inputs.call(model, inputs.to_torch(example))
        ref = [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
        self.check = agreement(ref, self.predict(example), int8=self.cfg.precision == "int8")
        if not self.check["ok"]:
            raise MlbenchError(f"the ONNX model {path} disagrees with PyTorch: {self.check['detail']}",
                               f"delete {path} so that it is exported again, or check --weights")
        self.predict(example)

    def _calibration(self, task: Any, example: inputs.Inputs) -> inputs.Inputs:
        store = task.dataset()
        n = min(CALIBRATION_SAMPLES, store.total_count)
        idx = list(range(n))
        store.load(idx)
        try:
            return store.batch(idx)
        finally:
            store.unload(idx)

    @property
    def spinning(self) -> bool:
        """Do ORT's intra-op threads spin between runs (its default)? Not for Offline on a CPU with several
        threads: there the spinning pool takes the cores that the harness's own threads (the gather ahead,
        LoadGen's completions) need between runs. Measured on 2 cores, DLRM mini Offline: 103k rows/s against
        92k with spinning (medians of 6), and 0.98 of the raw loop against 0.96; ResNet-50 mini within noise.
        Latency scenarios keep it: a sleeping pool wakes later."""
        return not (self.cfg.scenario == "Offline" and not self.cfg.device.startswith("cuda") and self.threads > 1)

    def _session(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not self.spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if self.cfg.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("onnxruntime here has no CUDA provider",
                                  "install onnxruntime-gpu, or use --backend pytorch --device cuda")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            return ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise MlbenchError(f"onnxruntime cannot load {path}: {exc}",
                               "delete the file so that it is exported again, or pass a valid .onnx") from exc

    def predict(self, x: inputs.Inputs) -> list[np.ndarray]:
        if isinstance(x, dict):
            return self.session.run(self.output_names, x)
        return self.session.run(self.output_names, {self.input_names[0]: x})

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": "onnxruntime", "version": ort.__version__, "threads": self.threads,
                "intra_op_spinning": self.spinning,
                "device": self.cfg.device, "precision": self.cfg.precision, "model_file": str(self.path),
                "check_against_pytorch": self.check}


def agreement(ref: list[np.ndarray], got: list[np.ndarray], int8: bool) -> dict[str, Any]:
    """Does ONNX Runtime agree with PyTorch? fp32: outputs within tolerance; int8: same argmax mostly."""
    if len(ref) != len(got) or any(r.shape != g.shape for r, g in zip(ref, got, strict=True)):
        return {"ok": False, "detail": f"output shapes {[r.shape for r in ref]} vs {[g.shape for g in got]}"}
    diff = max(float(np.abs(r.astype(np.float64) - g).max()) if r.size else 0.0 for r, g in zip(ref, got, strict=True))
    scale = max(float(np.abs(r).max()) if r.size else 0.0 for r in ref) or 1.0
    out: dict[str, Any] = {"max_abs_diff": diff, "relative": diff / scale}
    if int8:
        r, g = ref[0], got[0]
        same = float((r.argmax(-1) == g.argmax(-1)).mean()) if r.ndim == 2 else 1.0
        out.update(ok=same >= 0.8, argmax_agreement=same,
                   detail=f"int8 predicts the same class as fp32 PyTorch on {same:.0%} of a batch")
    else:
        out.update(ok=diff / scale < 1e-3, detail=f"largest difference {diff:.3g} (relative {diff / scale:.3g})")
    return out
