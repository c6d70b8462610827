"""CUDA graphs for the PyTorch backend (``--cuda-graphs``): the model's kernels recorded once per batch size
before the test, then replayed with one launch per batch.

A graph replays fixed shapes at fixed addresses, so the runner keeps one static input per captured batch size
(powers of two up to the SUT's largest batch, and that batch itself): a batch of ``n`` samples is copied into
the smallest captured size that holds it (the rows past ``n`` keep whatever the previous batch left there: each
sample's outputs depend only on its own inputs, and only the first ``n`` rows of the outputs are read), the
graph is replayed, and the first ``n`` rows of its outputs are cloned out before anyone replays it again.
Copy-in, replay and clone are queued on the current stream under one lock, so that SUT workers sharing the
graphs never interleave them; the copy to the host runs after the lock is released.

Capture happens in ``prepare`` (untimed, like the rest of the warm-up): nothing is captured while the test runs.
A batch whose per-sample shape differs from the captured one, or that is larger than every graph, runs eagerly
and is counted (``eager_batches`` in result.json). Inputs must have a fixed per-sample shape: a Ragged batch
(rows of several samples back to back, DLRM) changes shape every batch and is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mlbench.errors import ConfigError
from mlbench.inference import inputs


def batch_sizes(largest: int) -> list[int]:
    """Captured batch sizes: 1, 2, 4, ... below ``largest``, and ``largest``."""
    sizes, b = [], 1
    while b < largest:
        sizes.append(b)
        b *= 2
    return sizes + [largest]


def as_tuple(out: Any) -> tuple[Any, ...]:
    """A model's output(s) as a tuple."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def map_inputs(x: Any, f: Callable[[Any], Any]) -> Any:
    """``f`` applied to a batch's tensor, or to each of its named tensors."""
    return {k: f(v) for k, v in x.items()} if isinstance(x, dict) else f(x)


def sample_shapes(x: Any) -> Any:
    """What every sample of a batch looks like: (shape past the batch dimension, dtype), per named input."""
    return map_inputs(x, lambda t: (tuple(t.shape[1:]), t.dtype))


def filled(t: Any, n: int) -> Any:
    """A new tensor of ``n`` rows shaped like ``t``'s and in its memory format (channels_last stays so): ``t``'s
    rows first, then ``t``'s rows repeated (valid samples) up to ``n``."""
    import torch

    out = t.new_empty((n, *t.shape[1:]))
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    reps = -(-n // len(t))
    out.copy_(t.repeat(reps, *([1] * (t.dim() - 1)))[:n])
    return out


def check_task(task: Any) -> None:
    """ConfigError when the task says its model cannot be replayed from a graph (``cuda_graphs_unsupported``)."""
    why = getattr(task, "cuda_graphs_unsupported", None)
    if why:
        name = getattr(getattr(task, "bench", None), "name", "this benchmark")
        raise ConfigError(f"--cuda-graphs cannot replay {name}'s model: {why}", "drop --cuda-graphs")


def check_inputs(example: Any) -> None:
    """ConfigError unless ``example`` is what a graph can replay: one array or named arrays of fixed shape."""
    if isinstance(example, inputs.Ragged):
        raise ConfigError("--cuda-graphs needs inputs of a fixed shape per sample, and this benchmark's batches "
                          "are ragged (each batch has a different number of rows)", "drop --cuda-graphs")


def cuda_capture(fn: Callable[[Any], Any], static: Any, warmup: int = 3) -> tuple[Any, Any]:
    """Capture ``fn(static)`` in a CUDA graph (after ``warmup`` runs on a side stream, as torch asks); returns
    (graph, static outputs)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(static)
    return graph, out


class GraphRunner:
    """``fn`` (tensors in, a tensor or a tuple of tensors out) replayed from graphs captured with ``capture``
    (``cuda_capture``; tests pass a stand-in) for each of ``sizes``, from ``example`` (device tensors: one,
    or a dict by name) whose per-sample shape and dtype every captured input has."""

    def __init__(self, fn: Callable[[Any], Any], example: Any, sizes: list[int],
                 capture: Callable[[Callable[[Any], Any], Any], tuple[Any, Any]] = cuda_capture):
        self.fn = fn
        self.lock = threading.Lock()
        self.eager_batches = 0
        if not inputs.length(example):
            raise ValueError("cannot capture a CUDA graph from an empty example batch")
        self.sample_shapes = sample_shapes(example)
        self.graphs: dict[int, tuple[Any, Any, Any]] = {}  # size -> (graph, static input, static outputs)
        for size in sorted(set(sizes)):
            static = map_inputs(example, lambda t, n=size: filled(t, n))
            graph, out = capture(fn, static)
            self.graphs[size] = (graph, static, out)
        self.sizes = sorted(self.graphs)

    def __call__(self, x: Any) -> tuple[Any, ...]:
        n = inputs.length(x)
        size = next((s for s in self.sizes if s >= n), None)
        if size is None or sample_shapes(x) != self.sample_shapes:
            self.eager_batches += 1
            return as_tuple(self.fn(x))
        graph, static, out = self.graphs[size]
        pairs = [(static[k], v) for k, v in x.items()] if isinstance(x, dict) else [(static, x)]
        with self.lock:  # copy in, replay, clone out: queued in order on the stream before another worker's
            for dst, src in pairs:
                dst[:n].copy_(src, non_blocking=True)
            graph.replay()
            return tuple(o[:n].clone() for o in as_tuple(out))

    def info(self) -> dict[str, Any]:
        return {"batch_sizes": self.sizes, "eager_batches": self.eager_batches}
