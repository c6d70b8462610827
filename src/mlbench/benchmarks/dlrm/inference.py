"""dlrm-v2 inference (``mlbench infer dlrm``): the task of :mod:`mlbench.inference.task`.

Samples are user queries as the MLPerf reference aggregates them: consecutive rows of the validation half of
the evaluation day, ``query_min``..``query_max`` rows each (the reference draws sizes from its quantile file,
100-700 rows; we draw them uniformly from the definition's range with a fixed seed, so every run serves the
same queries). The store keeps a loaded query's rows ragged (no padding in memory) and pads a batch to
``query_max`` rows per query inside ``batch``: named inputs ``dense`` float32 [N, R, 13] and ``sparse_0`` ..
``sparse_25`` int64 [N, R, h_k]. The model returns click probabilities [N, R]; the response LoadGen logs for a
query is its rows' probabilities (float32, as many as the query has rows); accuracy is the exact AUC over all
rows of the logged queries against the day's labels.

Models: mini/tiny use the checkpoint of ``mlbench train dlrm --size mini|tiny`` (cached; trained first when
missing). The reference takes ``--weights FILE``: a state dict with TorchRec's DLRM_DCN names (``model.``
prefix optional); ``--weights random`` serves seeded random weights (throughput only, the run is invalid).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlbench.benchmarks.base import Benchmark
from mlbench.benchmarks.dlrm import auc as auc_mod
from mlbench.benchmarks.dlrm import days
from mlbench.errors import ConfigError, DataError, MlbenchError
from mlbench.inference.task import TaskOptions

QUERY_SEED = 0


def query_bounds(n_rows: int, lo: int, hi: int, seed: int = QUERY_SEED) -> np.ndarray:
    """Start offsets of consecutive queries covering ``n_rows`` (the last one may be shorter), plus the end."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lo, hi + 1, n_rows // max(1, lo) + 2)
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, n_rows)) + 1
    bounds = np.concatenate([[0], np.minimum(ends[:k], n_rows)])
    return bounds.astype(np.int64)


class QueryStore:
    """Queries of consecutive rows; ragged in memory, padded to ``max_rows`` per query in ``batch``."""

    def __init__(self, rows: days.Rows, bounds: np.ndarray, max_rows: int, performance_count: int,
                 count: int | None = None):
        self.rows, self.bounds, self.max_rows = rows, bounds, max_rows
        n = len(bounds) - 1
        self.total_count = n if count is None else min(count, n)
        self.performance_count = min(performance_count, self.total_count)
        self.loaded: dict[int, dict[str, np.ndarray]] = {}
        self._labels: dict[int, np.ndarray] = {}

    def length(self, index: int) -> int:
        return int(self.bounds[index + 1] - self.bounds[index])

    def load(self, indices: Sequence[int]) -> None:
        for i in indices:
            i = int(i)
            if i not in self.loaded:
                q = self.rows.read(int(self.bounds[i]), int(self.bounds[i + 1]))
                self.loaded[i] = q
                self._labels[i] = q["labels"]

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self.loaded.pop(int(i), None)

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        n, r = len(indices), self.max_rows
        first = self.loaded[int(indices[0])] if len(indices) else None
        if first is None:
            raise KeyError("batch() needs at least one loaded sample")
        dense = np.zeros((n, r, days.DENSE_FEATURES), np.float32)
        sparse = [np.zeros((n, r, s.shape[1]), np.int64) for s in first["sparse"]]
        for j, i in enumerate(indices):
            q = self.loaded[int(i)]  # KeyError for a sample that was not loaded
            m = len(q["labels"])
            dense[j, :m] = q["dense"]
            for k, s in enumerate(q["sparse"]):
                sparse[k][j, :m] = s
        return {"dense": dense, **{f"sparse_{k}": s for k, s in enumerate(sparse)}}

    def label(self, index: int) -> np.ndarray:
        if index not in self._labels:
            self._labels[index] = self.rows.read(int(self.bounds[index]), int(self.bounds[index + 1]))["labels"]
        return self._labels[index]


class QueryModel(torch.nn.Module):
    """DLRM over padded queries: named inputs -> click probabilities [N, R]."""

    def __init__(self, net: torch.nn.Module, fields: int = days.SPARSE_FEATURES):
        super().__init__()
        self.net, self.fields = net, fields

    def forward(self, dense: torch.Tensor, **sparse: torch.Tensor) -> torch.Tensor:
        n, r = dense.shape[0], dense.shape[1]
        ids = [sparse[f"sparse_{k}"].reshape(n * r, -1) for k in range(self.fields)]
        return torch.sigmoid(self.net(dense.reshape(n * r, -1), ids)).reshape(n, r)


class DLRMTask:
    metric = "auc"
    higher_is_better = True
    response_dtype = "float32"

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self._store: QueryStore | None = None
        self._weights: Path | None = None

    def dataset(self) -> QueryStore:
        if self._store is None:
            from mlbench.benchmarks.dlrm.data import data_root

            hp = self.bench.hparams
            root = data_root(self.bench, self.opts.data_dir, self.opts.say)
            day = days.open_day(root, hp["eval_day"], hp["table_rows"], hp["multi_hot"])
            rows = days.eval_rows(day, hp["table_rows"], "val")
            bounds = query_bounds(len(rows), hp["query_min"], hp["query_max"])
            self._store = QueryStore(rows, bounds, hp["query_max"], self.bench.performance_sample_count,
                                     self.opts.max_samples)
        return self._store

    def model(self) -> torch.nn.Module:
        from mlbench.benchmarks.dlrm.model import DLRMTrain

        if self.opts.weights == "random":
            with torch.random.fork_rng():
                torch.manual_seed(0)
                return QueryModel(DLRMTrain(self.bench.hparams)).eval()
        net = DLRMTrain(self.bench.hparams)
        path = self._weights_path()
        from mlbench.training import checkpoint

        state = checkpoint.read(path, what="weights file")
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        try:
            if not isinstance(state, dict):
                raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
            if not any(k.startswith("model.") for k in state):
                state = {f"model.{k}": v for k, v in state.items()}
            net.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise DataError(f"weights {path} do not fit DLRM-DCNv2 {self.bench.size}: {str(exc)[:300]}",
                            "pass a state dict of the same model and size (TorchRec DLRM_DCN names)") from exc
        return QueryModel(net).eval()

    def model_id(self) -> str:
        if self.opts.weights == "random":
            return "random0"
        from mlbench.data import download

        return download.sha256_file(self._weights_path())[:12]

    def _weights_path(self) -> Path:
        if self._weights is None:
            if self.opts.weights:
                p = Path(self.opts.weights)
                if p.suffix == ".onnx":
                    raise ConfigError(f"{p} is an ONNX model; this task loads a PyTorch state dict",
                                      "pass a .pt state dict")
                if not p.is_file():
                    raise DataError(f"weights file not found: {p}", "pass an existing .pt state dict")
                self._weights = p
            elif self.bench.is_reference:
                raise MlbenchError("DLRM-DCNv2 reference inference needs trained weights",
                                   "pass --weights FILE (a state dict with TorchRec DLRM_DCN names, e.g. converted "
                                   "from the MLPerf dlrm-v2 checkpoint), or --weights random for throughput only")
            else:
                from mlbench.inference.models import trained_checkpoint

                self._weights = trained_checkpoint(self.bench, self.opts)
        return self._weights

    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        probs = np.asarray(outputs[0], dtype=np.float32)
        store = self.dataset()
        return [np.ascontiguousarray(probs[j, :store.length(int(i))]) for j, i in enumerate(indices)]

    def accuracy(self, responses: dict[int, bytes], store: QueryStore) -> dict[str, float]:
        scores, labels, short = [], [], 0
        for i, b in responses.items():
            y = store.label(int(i))
            p = np.frombuffer(b, dtype=np.float32)
            if len(p) != len(y):  # an empty or cut response scores as 0 for each of its rows
                short += 1
                p = np.zeros(len(y), np.float32)
            scores.append(p)
            labels.append(y)
        if not scores:
            return {"auc": 0.0, "samples": 0, "rows": 0}
        s, y = np.concatenate(scores), np.concatenate(labels)
        value = auc_mod.auc(s, y)
        return {"auc": 0.0 if np.isnan(value) else value, "samples": len(responses), "rows": len(y),
                "malformed_responses": short}


def build_task(bench: Benchmark, opts: TaskOptions) -> DLRMTask:
    return DLRMTask(bench, opts)
