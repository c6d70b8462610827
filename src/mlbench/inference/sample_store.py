"""A ready-made :class:`~mlbench.inference.task.SampleStore` for tasks whose samples are fixed-shape arrays.

Samples are pre-processed once when LoadGen loads them and kept in one contiguous array, so that building a
batch inside the timed region is a single gather (``buf[slots[indices]]``), never a decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class ArrayStore:
    """``preprocess(indices) -> np.ndarray [len(indices), ...]`` fills the store; ``labels[i]`` is sample i's truth."""

    def __init__(self, *, total_count: int, performance_count: int,
                 preprocess: Callable[[Sequence[int]], np.ndarray], labels: Sequence[Any]):
        self.total_count = int(total_count)
        self.performance_count = int(min(performance_count, total_count))
        self._preprocess = preprocess
        self._labels = labels
        self._loaded: dict[int, np.ndarray] = {}
        self._slots = np.full(self.total_count, -1, dtype=np.int64)
        self._buf: np.ndarray | None = None

    def load(self, indices: Sequence[int]) -> None:
        new = [int(i) for i in indices if int(i) not in self._loaded]
        if new:
            data = np.asarray(self._preprocess(new))
            if len(data) != len(new):
                raise ValueError(f"preprocess returned {len(data)} samples for {len(new)} indices")
            for i, row in zip(new, data, strict=True):
                self._loaded[i] = row
        self._rebuild()

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.pop(int(i), None)
        self._rebuild()

    def _rebuild(self) -> None:
        self._slots[:] = -1
        if not self._loaded:
            self._buf = None
            return
        keys = sorted(self._loaded)
        self._buf = np.ascontiguousarray(np.stack([self._loaded[k] for k in keys]))
        self._slots[keys] = np.arange(len(keys))
        self._loaded = {k: self._buf[s] for s, k in enumerate(keys)}  # views: memory held once

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        slots = self._slots[np.asarray(indices, dtype=np.int64)]
        if self._buf is None or (slots < 0).any():
            raise KeyError("batch() asked for samples that were not loaded")
        return self._buf[slots]

    def buffer(self) -> tuple[np.ndarray | None, np.ndarray]:
        """(loaded samples, slot of each dataset index or -1): lets a backend keep a device copy."""
        return self._buf, self._slots

    def label(self, index: int) -> Any:
        return self._labels[index]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self._buf.shape[1:]) if self._buf is not None else ()
