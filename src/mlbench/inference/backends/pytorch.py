"""The PyTorch backend: eager (or torch.compile, or CUDA graphs), channels_last, autocast for bf16/fp16."""

from __future__ import annotations

import collections
import contextlib
from typing import Any

import numpy as np

from mlbench import signals
from mlbench.errors import ConfigError
from mlbench.inference import inputs
from mlbench.inference.backends import compiled, graphs
from mlbench.inference.backends.base import Backend


class PyTorchBackend(Backend):
    name = "pytorch"
    _graphs: graphs.GraphRunner | None = None  # --cuda-graphs, captured at the end of prepare
    weights_cast_once = 0  # parameters of convolutions and linear layers cast to bf16/fp16 at prepare
    _compiled: compiled.CompiledRunner | None = None  # --compile: every batch size compiled in prepare
    _freezing_was: bool | None = None  # inductor's freezing before prepare switched it on (CPU), for close
    freezing_error: str | None = None  # why compiling with freezing failed, and the model was compiled without

    def prepare(self, task: Any, example: inputs.Inputs) -> None:
        import torch

        from mlbench.training.precision import DTYPES, resolve_device

        if self.cfg.precision == "int8":
            raise ConfigError("int8 is offered through the onnxruntime backend (static quantization)",
                              "use --backend onnxruntime --precision int8, or bf16 with pytorch")
        self.device = resolve_device(self.cfg.device)
        if self.cfg.cuda_graphs:
            graphs.check_task(task)  # first: what cannot be replayed on any device
            graphs.check_inputs(example)
            if self.device.type != "cuda":
                raise ConfigError(f"--cuda-graphs needs a CUDA device, and this run is on {self.device}",
                                  "add --device cuda on a machine with a GPU, or drop --cuda-graphs")
        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        model = task.model().to(self.device).eval()
        self.channels_last = bool(self.cfg.channels_last and not isinstance(example, dict) and example.ndim == 4)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        p = self.cfg.precision
        self.weights_cast_once = cast_weights_once(model, DTYPES[p]) if p in ("bf16", "fp16") else 0
        self._autocast = (contextlib.nullcontext if p == "fp32" else
                          lambda: torch.autocast(device_type=self.device.type, dtype=DTYPES[p]))
        if self.cfg.compile:
            freeze = self.device.type == "cpu"  # weights as constants: folded and pre-packed (see compiled.py)
            try:
                self._compiled = self._compile(model, example, freezing=freeze)
            except Exception as exc:  # noqa: BLE001 - inductor's freezing passes fail on some models
                self._close_freezing()
                if not freeze or signals.stopped(exc):
                    raise
                self.freezing_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
                torch._dynamo.reset()
                self._compiled = self._compile(model, example, freezing=False)
        self.model = model
        for _ in range(2):  # oneDNN primitive creation, cuDNN's choices: untimed
            self.predict(example)
        if self.cfg.cuda_graphs:  # captured after the eager warm-up (cuDNN's choices made), before the test
            self._graphs = self._capture(example)

    def _compile(self, model: Any, example: inputs.Inputs, freezing: bool) -> compiled.CompiledRunner:
        """``model`` compiled for every batch size (see compiled.py); with inductor's ``freezing`` on while the
        backend is open (``close`` restores it)."""
        import torch

        if freezing:
            import torch._inductor.config as inductor_config

            self._freezing_was, inductor_config.freezing = inductor_config.freezing, True
        ragged = isinstance(example, inputs.Ragged)
        net = torch.compile(model, dynamic=None if ragged else False)

        def run(t: Any) -> Any:
            with self._autocast():
                return inputs.call(net, t)

        with torch.inference_mode():
            largest = max(inputs.length(example), self.cfg.batch_size or 0)
            return compiled.CompiledRunner(run, self._tensors(example),
                                           compiled.bucket_sizes(largest, compiled.recompile_limit()), ragged)

    def _capture(self, example: inputs.Inputs) -> graphs.GraphRunner:
        import torch

        from mlbench.training.precision import DTYPES

        p = self.cfg.precision
        # autocast's cache of cast weights would be freed after capture while the graph still reads it
        cast = (contextlib.nullcontext if p == "fp32" else
                lambda: torch.autocast(device_type="cuda", dtype=DTYPES[p], cache_enabled=False))

        def run(t: Any) -> Any:
            with cast():
                return inputs.call(self.model, t)

        with torch.inference_mode():
            t = self._tensors(example)
            # up to the SUT's largest batch even when the example is smaller (a dataset of fewer samples: LoadGen
            # repeats them); the static inputs are filled by repeating the example's rows
            largest = max(inputs.length(example), self.cfg.batch_size or 0)
            return graphs.GraphRunner(run, t, graphs.batch_sizes(largest))

    def _tensors(self, x: Any) -> Any:
        import torch

        t = x if isinstance(x, torch.Tensor) else inputs.to_torch(x, self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def on_load(self, store: Any) -> None:
        """On a GPU, keep the loaded samples in device memory (loading is untimed in MLPerf), so that a
        batch is a gather on the device instead of a host gather and a copy per batch."""
        import torch

        self._dev = None
        if self.device.type == "cpu" or not hasattr(store, "buffer"):
            return
        buf, slots = store.buffer()
        if isinstance(buf, np.ndarray):
            self._dev = (torch.from_numpy(buf).to(self.device), torch.from_numpy(slots).to(self.device))

    def gather(self, indices) -> Any:
        """A batch from the device copy when there is one (see ``on_load``), else None for the host path."""
        import torch

        dev = getattr(self, "_dev", None)
        if dev is None:
            return None
        buf, slots = dev
        return buf[slots[torch.as_tensor(indices, device=self.device)]]

    def predict(self, x: Any) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            t = self._tensors(x)
            if self._graphs is not None:
                outs = self._graphs(t)
            elif self._compiled is not None:
                outs = self._compiled(t)
            else:
                with self._autocast():
                    outs = graphs.as_tuple(inputs.call(self.model, t))
            return [o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in outs]

    def close(self) -> None:
        """Inductor's freezing back as it was: a model compiled later in this process may train."""
        self._close_freezing()

    def _close_freezing(self) -> None:
        if self._freezing_was is not None:
            import torch._inductor.config as inductor_config

            inductor_config.freezing, self._freezing_was = self._freezing_was, None

    def info(self) -> dict[str, Any]:
        import torch

        return {"backend": "pytorch", "version": torch.__version__, "threads": self.threads,
                "device": str(self.device), "precision": self.cfg.precision,
                "channels_last": self.channels_last, "compile": self.cfg.compile,
                "weights_cast_once": self.weights_cast_once,
                "compiled": self._compiled.info() if self._compiled is not None else False,
                "compile_freezing": bool(self._compiled and self.device.type == "cpu" and not self.freezing_error),
                **({"compile_freezing_failed": self.freezing_error} if self.freezing_error else {}),
                "cuda_graphs": self._graphs.info() if self._graphs is not None else False}


def cast_weights_once(model: Any, dtype: Any) -> int:
    """Cast the weights and biases of convolutions and linear layers to autocast's ``dtype`` once, here, instead
    of on every call: autocast casts them to exactly these values each time (these layers run in ``dtype`` under
    it), and drops its cast copies when each call leaves it, so an eager call re-reads and re-writes every weight
    (for ResNet-50 at batch 1 on a CPU, about a tenth of the call). The outputs are bit-identical
    (tests/inference/test_cast_weights_once.py, for every benchmark's model). A parameter that another module
    also holds (tied embeddings) keeps its dtype. Returns the number of tensors cast."""
    import torch

    owners = collections.Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))
    cast = 0
    for m in model.modules():
        if not isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)):
            continue
        for p in (m.weight, m.bias):
            if isinstance(p, torch.nn.Parameter) and p.dtype == torch.float32 and owners[id(p)] == 1:
                p.data = p.data.to(dtype)  # keeps the memory format (channels_last)
                cast += 1
    return cast
