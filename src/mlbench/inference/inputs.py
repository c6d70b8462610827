"""Model inputs as the inference harness moves them: one array, or named arrays.

A sample store's ``batch(indices)`` returns either one ``np.ndarray [N, ...]`` (image benchmarks: the model's
single input, exported to ONNX as ``input``) or a dict of named arrays with a common leading dimension N
(BERT: ``input_ids``, ``attention_mask``, ``token_type_ids``), which the backends feed by name:
``model(**inputs)`` in PyTorch, the ONNX graph's inputs of the same names in ONNX Runtime. Ragged samples are
the store's business: it pads a batch to a common shape (and may sort by length) before returning it; a
store that pads every sample to one fixed shape keeps the ONNX export simple (only the batch is dynamic).
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

Inputs = Union[np.ndarray, dict[str, np.ndarray]]  # noqa: UP007 - a runtime alias, py3.10 safe
SINGLE = "input"  # the name of a single-array input (ONNX)


def named(x: Inputs) -> dict[str, np.ndarray]:
    """``x`` as named arrays (a single array is called ``input``)."""
    return x if isinstance(x, dict) else {SINGLE: x}


def length(x: Inputs) -> int:
    """Samples in a batch."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def head(x: Inputs, n: int) -> Inputs:
    """The first ``n`` samples."""
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def split(x: Inputs, parts: int) -> list[Inputs]:
    """``x`` cut into ``parts`` consecutive batches (calibration)."""
    n = length(x)
    bounds = np.linspace(0, n, max(1, parts) + 1).astype(int)
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
