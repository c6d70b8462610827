"""The backend interface: take a torch model once, then run batches of numpy inputs."""

from __future__ import annotations

import abc
import os
from typing import Any

import numpy as np


class Backend(abc.ABC):
    """Runs one model. ``prepare`` happens before LoadGen starts (untimed); ``predict`` is the timed work.

    ``runs_model`` False: no model runs (the null backend, which measures the harness), so there are no FLOPs
    and no speed estimate. ``needs_input`` False: the SUT skips gathering batches and passes None (the null
    backend with ``--null-skip-gather``, which measures LoadGen and the SUT alone).
    """

    name = "base"
    needs_input = True
    runs_model = True

    def __init__(self, cfg: Any, threads: int):
        self.cfg = cfg
        self.threads = threads

    @abc.abstractmethod
    def prepare(self, task: Any, example: np.ndarray) -> None:
        """Build the runnable model from ``task.model()`` and warm it up on ``example`` ([N, ...])."""

    @abc.abstractmethod
    def predict(self, x: np.ndarray) -> list[np.ndarray] | None:
        """Model outputs for the batch ``x`` as numpy arrays with leading dimension ``len(x)``."""

    def close(self) -> None:  # noqa: B027 - most backends change nothing beyond themselves
        """Undo what ``prepare`` changed beyond this object (process-wide settings), once the tests are done."""

    def info(self) -> dict[str, Any]:
        """What ran, for result.json (backend name, version, threads, precision, device)."""
        return {"backend": self.name, "threads": self.threads}


def default_threads(workers: int) -> int:
    """Intra-op threads per worker so that workers x threads fills the usable cores and no more: worker
    threads and the backend's threads fighting over cores is what slows the MLPerf reference harness."""
    return max(1, usable_cores() // max(1, workers))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
