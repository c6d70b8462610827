"""Model inputs as the inference harness moves them: one array, or named arrays.

A sample store's ``batch(indices)`` returns either one ``np.ndarray [N, ...]`` (image benchmarks: the model's
single input, exported to ONNX as ``input``) or a dict of named arrays with a common leading dimension N
(BERT: ``input_ids``, ``attention_mask``, ``token_type_ids``), which the backends feed by name:
``model(**inputs)`` in PyTorch, the ONNX graph's inputs of the same names in ONNX Runtime. Ragged samples are
the store's business: it pads a batch to a common shape (and may sort by length) before returning it; a
store that pads every sample to one fixed shape keeps the ONNX export simple (only the batch is dynamic).

Samples whose rows the model scores each on its own (DLRM: a query of user-item pairs) need no padding: the
store returns a :class:`Ragged` batch, the samples' rows back to back along the first axis (named arrays
``[sum of rows, ...]``) with the sample boundaries in ``offsets``; the model sees only rows (a dynamic first
axis, exported as such), and the task's ``postprocess`` cuts its outputs back into samples by the lengths of
``indices``. ``length``, ``head`` and ``split`` below count such a batch in samples, not rows, so that the
harness's estimates and calibration treat it like any other batch. Such a store also says how many rows each
sample has (``store.length(i)``): the FLOPs per sample in result.json are the FLOPs per row times the mean.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

Inputs = Union[np.ndarray, dict[str, np.ndarray]]  # noqa: UP007 - a runtime alias, py3.10 safe
SINGLE = "input"  # the name of a single-array input (ONNX)


class Ragged(dict):
    """Named arrays holding several samples' rows back to back: sample ``j`` is rows
    ``offsets[j]:offsets[j + 1]`` of every array (``offsets``: int64, ``len = samples + 1``, starts at 0)."""

    def __init__(self, arrays: dict[str, np.ndarray], offsets: np.ndarray):
        super().__init__(arrays)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    def rows(self, a: int, b: int) -> Ragged:
        """Samples ``a:b`` as a Ragged batch of their rows."""
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        return Ragged({k: v[lo:hi] for k, v in self.items()}, self.offsets[a:b + 1] - lo)


class RaggedArray:
    """N variable-size responses back to back in one array: response ``i`` is rows ``offsets[i]:offsets[i + 1]``
    of ``data`` (C-contiguous). What a task with Ragged batches returns from ``postprocess``: the SUT hands
    LoadGen one pointer and size per response, computed for the whole batch at once, where a list of N arrays
    costs a numpy view and a Python call per sample. Indexing and iterating give the responses as arrays. ``tokens``
(optional): the tokens each response generated, handed to LoadGen with it (its ``n_tokens``: tokens/s)."""

    __slots__ = ("data", "offsets", "tokens")

    def __init__(self, data: np.ndarray, offsets: np.ndarray, tokens: np.ndarray | None = None):
        self.data = np.ascontiguousarray(data)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        # generated tokens per response (a text or speech model): LoadGen's token count, what tokens/s counts
        self.tokens = None if tokens is None else np.asarray(tokens, dtype=np.int64)
        if self.tokens is not None and len(self.tokens) != len(self.offsets) - 1:
            raise ValueError(f"RaggedArray has {len(self.tokens)} token counts for {len(self.offsets) - 1} responses")
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0 or (
                len(self.offsets) > 1 and (np.diff(self.offsets) < 0).any()):
            raise ValueError("RaggedArray offsets must start at 0 and never decrease")
        if self.offsets[-1] != len(self.data):
            raise ValueError(f"RaggedArray offsets end at {int(self.offsets[-1])} for {len(self.data)} rows")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    def __iter__(self):
        return iter(np.split(self.data, self.offsets[1:-1]))

    def pointers(self) -> tuple[list[int], list[int]]:
        """(address, size in bytes) of every response, as Python ints (what LoadGen's responses take)."""
        row = self.data.itemsize * (int(np.prod(self.data.shape[1:])) if self.data.ndim > 1 else 1)
        start = self.offsets * row
        return (start[:-1] + self.data.ctypes.data).tolist(), np.diff(start).tolist()


def named(x: Inputs) -> dict[str, np.ndarray]:
    """``x`` as named arrays (a single array is called ``input``)."""
    return x if isinstance(x, dict) else {SINGLE: x}


def length(x: Inputs) -> int:
    """Samples in a batch (a Ragged batch: samples, not rows)."""
    if isinstance(x, Ragged):
        return len(x.offsets) - 1
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def head(x: Inputs, n: int) -> Inputs:
    """The first ``n`` samples."""
    if isinstance(x, Ragged):
        return x.rows(0, min(n, length(x)))
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def split(x: Inputs, parts: int) -> list[Inputs]:
    """``x`` cut into ``parts`` consecutive batches (calibration)."""
    n = length(x)
    bounds = np.linspace(0, n, max(1, parts) + 1).astype(int)
    if isinstance(x, Ragged):
        return [x.rows(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    if isinstance(x, dict):
        return [{k: v[a:b] for k, v in x.items()} for a, b in zip(bounds[:-1], bounds[1:])]
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def to_torch(x: Inputs, device: Any = None) -> Any:
    """Tensors (on ``device`` when given and not the CPU) sharing memory with the arrays where possible."""
    import torch

    def one(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if device is not None and torch.device(device).type != "cpu":
            t = t.pin_memory().to(device, non_blocking=True)
        return t

    return {k: one(v) for k, v in x.items()} if isinstance(x, dict) else one(x)


def call(model: Any, x: Any) -> Any:
    """``model(x)`` for one tensor, ``model(**x)`` for named tensors."""
    return model(**x) if isinstance(x, dict) else model(x)


class Positional:
    """Wraps a model that takes named inputs so that it takes them positionally, in ``names`` order (what
    ``torch.onnx.export`` traces); the exported graph's inputs carry those names."""

    def __new__(cls, model: Any, names: list[str]):
        import torch

        class _Positional(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args):
                return self.model(**dict(zip(names, args, strict=True)))

        return _Positional().eval()
