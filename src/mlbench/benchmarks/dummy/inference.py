"""The dummy inference task: the harness tests' stand-in for BERT, DLRM and RNN-T. Samples are ragged
sequences (1 to 16 steps of 8 features) served as named inputs ``{"x", "mask"}``, padded to 16 steps; the
model mean-pools the valid steps and applies the true regression, so its error is float rounding only. The
metric is MSE (lower is better) with two named targets, like bert-99 / bert-99.9."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlbench.definition import Benchmark
from mlbench.inference.task import TaskOptions

STEPS, FEATURES = 16, 8


class DictStore:
    """Named, padded samples; ``batch`` gathers rows of the arrays filled at load time."""

    def __init__(self, n: int, performance_count: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.lengths = rng.integers(1, STEPS + 1, n)
        self.x = np.zeros((n, STEPS, FEATURES), np.float32)
        self.mask = np.zeros((n, STEPS), np.float32)
        for i, k in enumerate(self.lengths):
            self.x[i, :k] = rng.standard_normal((k, FEATURES))
            self.mask[i, :k] = 1.0
        pooled = (self.x * self.mask[..., None]).sum(1) / self.lengths[:, None]
        self.y = (pooled @ _true_weight() + 0.5).astype(np.float32)
        self.total_count, self.performance_count = n, min(performance_count, n)
        self.loaded: set[int] = set()

    def load(self, indices: Sequence[int]) -> None:
        self.loaded.update(int(i) for i in indices)

    def unload(self, indices: Sequence[int]) -> None:
        self.loaded.difference_update(int(i) for i in indices)

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        return {"x": self.x[idx], "mask": self.mask[idx]}

    def label(self, index: int) -> float:
        return float(self.y[index])


def _true_weight() -> np.ndarray:
    return np.linspace(-1.0, 1.0, FEATURES).astype(np.float32)


class PooledRegression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(_true_weight())[None])
            self.linear.bias.fill_(0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return self.linear(pooled).squeeze(-1)


class DummyTask:
    metric = "mse"
    higher_is_better = False
    response_dtype = "float32"

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self._store: DictStore | None = None

    def dataset(self) -> DictStore:
        if self._store is None:
            n = min(256, self.opts.max_samples or 256)
            self._store = DictStore(n, self.bench.performance_sample_count)
        return self._store

    def model(self) -> torch.nn.Module:
        return PooledRegression().eval()

    def model_id(self) -> str:
        return "exact"

    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
        return np.ascontiguousarray(outputs[0].astype(np.float32)[:, None])

    def accuracy(self, responses: dict[int, bytes], store: DictStore) -> dict[str, float]:
        err = [float(np.frombuffer(b, dtype=np.float32)[0]) - store.label(i) for i, b in responses.items()]
        return {"mse": float(np.mean(np.square(err))) if err else float("inf"), "samples": len(err)}


def build_task(bench: Benchmark, opts: TaskOptions) -> DummyTask:
    return DummyTask(bench, opts)
