"""The benchmark-side contract of ``mlbench infer``.

A benchmark takes part in inference by giving its ``inference.py`` one function::

    def build_task(bench: Benchmark, opts: TaskOptions) -> InferenceTask

The harness (LoadGen, the query sample library, the systems under test, the backends, result.json) is
shared; the task supplies only what is specific to the benchmark: its pre-processed samples, its model,
how model outputs become the bytes LoadGen logs per sample, and how those bytes are scored. Benchmark facts
(``inference_target``, ``performance_sample_count``, ``server_latency_ms``, ``loadgen_model_name``) are
read from the :class:`~mlbench.definition.Benchmark` definition by the harness, never copied here.

The order of calls in one run::

    task = inference.build_task(bench, opts)
    store = task.dataset()                     # cheap: counts and file lists, no pre-processing yet
    model = task.model()                       # torch module in eval mode, fp32 weights, on the CPU
    store.load(indices) / store.unload(...)    # when LoadGen asks (pre-processing happens here)
    x = store.batch(indices)                   # np.ndarray [N, ...] or named arrays (inputs.py); the backend runs it
    responses = task.postprocess(outputs, indices)
    metrics = task.accuracy({qsl_index: bytes}, store)   # accuracy mode, from mlperf_log_accuracy.json
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlbench.inference import inputs


@dataclass(kw_only=True)
class TaskOptions:
    """What the task may use from the user's options."""

    data_dir: str | None = None  # dataset root; None means the size's built-in or standard location
    weights: str | None = None  # model file given with --weights (reference size), else None
    offline: bool = False  # never download (weights, data); fail with a clear error instead
    train_if_missing: bool = True  # mini/tiny: train the model when no checkpoint is cached
    max_samples: int | None = None  # cap the dataset (tests, --quick accuracy); None means all of it
    backend: str | None = None  # --backend (a task that runs differently behind a server reads it, e.g. openai)
    say: Callable[[str], None] = print  # progress messages (go to the console and console.log)
    # benchmark-specific options (e.g. query_sizes from --query-sizes); a task lists those it reads in its
    # ``options`` attribute, and ``build`` refuses any other (ConfigError) instead of ignoring it
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SampleStore(Protocol):
    """The query sample library's storage: the dataset, pre-processed on demand and kept in memory.

    Indices are dataset indices ``0 .. total_count-1`` (LoadGen's QSL indices). ``load`` is called by
    LoadGen before a test (``performance_count`` samples in performance mode, all of them in accuracy mode)
    and must pre-process exactly once; ``batch`` must be fast (a gather from memory, no decoding) because it
    runs inside the timed region. Raise :class:`mlbench.errors.DataError` for a missing or corrupt sample.
    """

    total_count: int  # samples in the dataset (accuracy mode runs every one)
    performance_count: int  # samples held in memory for performance mode (min(definition's, total))

    def load(self, indices: Sequence[int]) -> None: ...

    def unload(self, indices: Sequence[int]) -> None: ...

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """Loaded samples stacked along a new first axis, in the model's input dtype and layout; or, for
        samples of independent rows, an ``inputs.Ragged`` batch of their rows back to back (no padding)."""
        ...

    def label(self, index: int) -> Any:
        """The ground truth of one sample (used by ``InferenceTask.accuracy``)."""
        ...


@runtime_checkable
class InferenceTask(Protocol):
    """One benchmark at one size, as ``mlbench infer`` sees it."""

    metric: str  # name of the accuracy metric, e.g. "top1" or "mAP"
    # Optional: ``host_postprocess = True`` when ``postprocess`` is real CPU work (decoding, NMS); the runner
    # then defaults to two SUT workers so that it overlaps the network (see runner.default_workers).
    # Optional: ``cuda_graphs_unsupported = "why"`` when the model's forward has shapes or control flow that
    # depend on the data (NMS, a decoding loop): --cuda-graphs is then refused with that reason.
    # Optional: ``onnx_outputs``: the outputs of a given ONNX model file to fetch, in the order ``postprocess``
    # reads them (None: all of the model's, in its order); a task recognises the file's interface from the file
    # (mlbench.inference.modelfile) in ``dataset()``, before anything is pre-processed. ``info() -> dict``:
    # what result.json records under ``task`` (e.g. ``model_file``: the interface found and the pre-processing).
    response_dtype: str  # numpy dtype of the logged response bytes, e.g. "int32", "float32"

    def dataset(self) -> SampleStore:
        """The query sample library's store. Missing data: DataError naming the path and the fix."""
        ...

    def model(self) -> Any:
        """A ``torch.nn.Module`` in eval mode with fp32 weights on the CPU.

        Its ``forward`` takes one float tensor ``[N, *sample_shape]`` and returns a tensor or a tuple of
        tensors, each with leading dimension N and a fixed shape otherwise (pad variable-size outputs), so
        that ONNX export and batching work. Sizes: mini/tiny use the checkpoint trained by ``mlbench train``
        (cached; trained first when missing and ``opts.train_if_missing``); reference uses ``opts.weights``,
        else downloads the official weights verified by sha256, else raises MlbenchError saying where to put
        them. Weights that do not fit the model: DataError.
        """
        ...

    def model_id(self) -> str:
        """A short string that changes when the weights change (keys the ONNX export cache)."""
        ...

    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]
                    ) -> np.ndarray | inputs.RaggedArray | list[np.ndarray]:
        """Model outputs for ``indices`` -> what LoadGen logs for each sample.

        ``outputs`` are the model's outputs as numpy arrays (leading dimension N; for an ``inputs.Ragged``
        batch, the rows of all N samples back to back, cut by the lengths of ``indices``). Return either one array
        whose row ``i`` is sample ``i``'s response (fast path; C-contiguous), an ``inputs.RaggedArray`` (variable-size
        responses back to back in one array, with their offsets: as fast), or a list of N arrays (for
        variable-size responses such as detections). Responses are logged as raw bytes of
        ``response_dtype`` in mlperf_log_accuracy.json.
        """
        ...

    def accuracy(self, responses: dict[int, bytes], store: SampleStore) -> dict[str, float]:
        """Score the logged responses (dataset index -> bytes from mlperf_log_accuracy.json).

        Return a flat dict holding at least ``self.metric`` (higher is better, compared by the harness with
        the definition's ``inference_target``) and ``samples`` (how many were scored).
        """
        ...


def build(handle: Any, opts: TaskOptions) -> InferenceTask:
    """The task of a registry handle (``handle.inference.build_task``), with a clear error when absent."""
    from mlbench.errors import MlbenchError

    module = handle.inference
    builder = getattr(module, "build_task", None)
    if builder is None:
        raise MlbenchError(f"benchmark '{handle.name}' has no inference task yet",
                           f"add build_task(bench, opts) to {module.__name__} (see mlbench/inference/task.py)")
    task = builder(handle.definition, opts)
    unknown = sorted(set(opts.extra) - set(getattr(task, "options", ())))
    if unknown:
        from mlbench.errors import ConfigError

        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"{flags} does not apply to {handle.name}", f"drop {flags}")
    return task
