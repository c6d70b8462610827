"""dlrm-v2 inference (``mlbench infer dlrm``): the task of :mod:`mlbench.inference.task`.

Samples are user queries as the MLPerf reference aggregates them: consecutive rows (user-item pairs) of the
validation half of the evaluation day. The number of rows per query is drawn as the reference draws it
(``recommendation/dlrm_v2/pytorch/python/multihot_criteo.py``), chosen with ``--query-sizes``:

- ``quantile:FILE``: the reference's ``--samples-to-aggregate-quantile-file`` (its official runs pass
  ``tools/dist_quantile.txt``, sizes 100-700): the first line of FILE holds integers separated by commas (the
  inverse CDF of the size distribution, non-decreasing); each query's size is ``q[randint(0, len(q))]``;
- ``uniform:MIN-MAX``: the reference's ``--samples-to-aggregate-min/max``, sizes uniform in ``MIN..MAX``;
- ``fixed:N``: the reference's ``--samples-to-aggregate-fix``, every query N rows;
- default: ``uniform`` over the size's ``query_min..query_max`` (reference 100-700, mini/tiny 20-100).

Draws come from numpy's ``RandomState(123)`` (the reference's ``--numpy-rand-seed`` default and its quantile
draw, ``np.random.randint(low=0, high=len(q))`` once per query): every run serves the same queries, and with
the reference's quantile file they are the reference's queries (checked against the first 100 lines of its
``tools/dist_trace_verification.txt``). The last query takes what rows remain. (The reference draws uniform
sizes with Python's unseeded ``random``, so there it cannot be matched; ours is seeded.)

No padding: a batch of queries is their rows back to back (an ``inputs.Ragged`` batch, named inputs ``dense``
float32 [R, 13] and ``sparse`` int64 [R, h_0 + ... + h_25], the 26 multi-hot fields side by side, R the rows of
all its queries), the model scores each row (click probabilities [R]), and ``postprocess`` cuts them back
into queries by their lengths. The response LoadGen logs for a query is its rows' probabilities (float32, one
per row); accuracy is the exact AUC over all rows of the logged queries against the day's labels. LoadGen's samples are queries:
``throughput/samples_per_s`` counts queries; rows/s is that times the mean rows per query (``task`` in
result.json).

Models: mini/tiny use the checkpoint of ``mlbench train dlrm --size mini|tiny`` (cached; trained first when
missing). The reference takes ``--weights FILE``: a state dict with TorchRec's DLRM_DCN names (``model.``
prefix optional); ``--weights random`` serves seeded random weights (throughput only, the run is invalid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlbench.benchmarks.dlrm import auc as auc_mod
from mlbench.benchmarks.dlrm import days
from mlbench.definition import Benchmark
from mlbench.errors import ConfigError, DataError, MlbenchError
from mlbench.inference import inputs, snapshot
from mlbench.inference.models import find_weights, load_weights, pytorch_weights, seeded_model
from mlbench.inference.task import TaskOptions

WEIGHTS_HINT = ("pass MLPerf's dlrm-v2 model_weights folder (torchsnapshot) for the reference, or a state dict of "
                "the same model and size (TorchRec DLRM_DCN names)")
QUERY_SEED = 123  # the reference's --numpy-rand-seed default, which seeds its query-size draws
QUERY_FORMS = "uniform:MIN-MAX, fixed:N or quantile:FILE"


@dataclass(frozen=True)
class QuerySizes:
    """How many rows each query has: ``kind`` uniform (``low..high``), fixed (``low == high``) or quantile
    (``quantile``, the reference's inverse-CDF table, from ``source``)."""

    kind: str
    low: int
    high: int
    quantile: tuple[int, ...] = ()
    source: str | None = None

    def draw(self, count: int, rng: np.random.RandomState) -> np.ndarray:
        """The next ``count`` query sizes from ``rng`` (as the reference draws them, one per query)."""
        if self.kind == "fixed":
            return np.full(count, self.low, np.int64)
        if self.kind == "quantile":
            return np.asarray(self.quantile, np.int64)[rng.randint(0, len(self.quantile), size=count)]
        return rng.randint(self.low, self.high + 1, size=count).astype(np.int64)

    def describe(self) -> dict:
        d = {"kind": self.kind, "min": self.low, "max": self.high, "seed": QUERY_SEED}
        if self.kind == "quantile":
            from mlbench.data import download

            d.update(file=self.source, sha256=download.sha256_file(Path(self.source)),
                     quantile_points=len(self.quantile))
        return d


def _size(text: str, what: str, n_rows: int, spec: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise ConfigError(f"invalid value for 'query_sizes' {spec!r}: {what} {text.strip()!r} is not an integer",
                          f"use {QUERY_FORMS}") from None
    if not 1 <= v <= n_rows:
        raise ConfigError(f"invalid value for 'query_sizes' {spec!r}: {what} {v} is outside 1..{n_rows} (the rows "
                          "of the validation half)", f"give sizes from 1 to {n_rows}")
    return v


def read_quantile_file(path: str | Path, n_rows: int) -> tuple[int, ...]:
    """The reference's quantile file: integers on its first line, separated by commas (and/or spaces),
    non-decreasing, each in ``1..n_rows``. Missing: ConfigError; empty or malformed: DataError naming it."""
    p = Path(path)
    fix = ("pass the reference's --samples-to-aggregate-quantile-file (e.g. recommendation/dlrm_v2/pytorch/tools/"
           "dist_quantile.txt): one line of non-decreasing integers separated by commas")
    if not p.is_file():  # a wrong option value, as for a missing --user-conf: exit code 2
        raise ConfigError(f"query-size quantile file not found: {p}", fix)
    try:
        with open(p, encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the query-size quantile file {p}: {exc}", fix) from None
    tokens = [t for t in line.replace(",", " ").split()]
    if not tokens:
        raise DataError(f"query-size quantile file {p} has no numbers on its first line", fix)
    values = []
    for i, t in enumerate(tokens):
        try:
            v = int(t)
        except ValueError:
            raise DataError(f"query-size quantile file {p}: entry {i + 1} ({t[:20]!r}) is not an integer", fix) from None
        if not 1 <= v <= n_rows:
            raise DataError(f"query-size quantile file {p}: entry {i + 1} ({v}) is outside 1..{n_rows} (the rows of "
                            "the validation half)", fix)
        values.append(v)
    if any(b < a for a, b in zip(values, values[1:])):
        i = next(i for i, (a, b) in enumerate(zip(values, values[1:])) if b < a)
        raise DataError(f"query-size quantile file {p}: entry {i + 2} ({values[i + 1]}) is below entry {i + 1} "
                        f"({values[i]}); a quantile (inverse CDF) never decreases", fix)
    return tuple(values)


def parse_query_sizes(spec: str | None, default: tuple[int, int], n_rows: int) -> QuerySizes:
    """``--query-sizes`` (None: uniform over ``default``) as a QuerySizes, checked against ``n_rows``."""
    if spec is None:
        lo, hi = min(default[0], n_rows), min(default[1], n_rows)
        return QuerySizes("uniform", lo, hi)
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("uniform", "fixed", "quantile") or not arg.strip():
        raise ConfigError(f"invalid value for 'query_sizes': {spec!r}", f"use {QUERY_FORMS}, e.g. uniform:100-700")
    if kind == "fixed":
        n = _size(arg, "size", n_rows, spec)
        return QuerySizes("fixed", n, n)
    if kind == "uniform":
        a, dash, b = arg.partition("-")
        if not dash:
            raise ConfigError(f"invalid value for 'query_sizes': {spec!r} (uniform needs MIN-MAX)",
                              "e.g. uniform:100-700")
        lo, hi = _size(a, "MIN", n_rows, spec), _size(b, "MAX", n_rows, spec)
        if lo > hi:
            raise ConfigError(f"invalid value for 'query_sizes': {spec!r} has MIN {lo} above MAX {hi}",
                              f"e.g. uniform:{hi}-{lo}")
        return QuerySizes("uniform", lo, hi)
    q = read_quantile_file(arg.strip(), n_rows)
    return QuerySizes("quantile", q[0], q[-1], q, str(Path(arg.strip())))


def query_bounds(n_rows: int, sizes: QuerySizes, seed: int = QUERY_SEED) -> np.ndarray:
    """Start offsets of consecutive queries covering ``n_rows`` (the last one takes what remains), plus the end."""
    rng = np.random.RandomState(seed)
    parts, total = [], 0
    while total < n_rows:  # in chunks: the draws are one stream whatever the chunk sizes
        chunk = sizes.draw(min(1 << 20, (n_rows - total) // max(1, sizes.low) + 1), rng)
        parts.append(chunk)
        total += int(chunk.sum())
    ends = np.cumsum(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    k = int(np.searchsorted(ends, n_rows)) + 1 if n_rows else 0
    return np.concatenate([[0], np.minimum(ends[:k], n_rows)]).astype(np.int64)


class QueryStore:
    """Queries of consecutive rows. Loaded queries are kept in one pool of rows (``dense`` float32 [P, 13] and
    ``sparse`` int64 [P, sum of multi-hot sizes], the 26 fields side by side); ``batch`` takes its queries' rows
    out of the pool with one index per array (an ``inputs.Ragged`` batch: no padding). One take per array
    instead of a concatenation of every query's 27 arrays: 0.1 ms a batch instead of 0.7 (mini, 32 queries)."""

    def __init__(self, rows: days.Rows, bounds: np.ndarray, performance_count: int, count: int | None = None):
        self.rows, self.bounds = rows, bounds
        self.lengths = np.diff(bounds)
        n = len(bounds) - 1
        self.total_count = n if count is None else min(count, n)
        self.performance_count = min(performance_count, self.total_count)
        self._start = np.full(n, -1, np.int64)  # each loaded query's first row in the pool; -1: not loaded
        self._dense = np.zeros((0, days.DENSE_FEATURES), np.float32)
        self._sparse: np.ndarray | None = None
        self._labels: dict[int, np.ndarray] = {}

    def length(self, index: int) -> int:
        return int(self.lengths[index])

    @property
    def loaded(self) -> list[int]:
        """The loaded queries."""
        return np.flatnonzero(self._start >= 0).tolist()

    def load(self, indices: Sequence[int]) -> None:
        new = np.unique(np.fromiter(indices, np.int64))
        new = new[self._start[new] < 0]
        if not len(new):
            return
        dense, sparse = [], []
        # consecutive queries are consecutive rows: one read (and one check) per run of them
        for run in np.split(new, np.flatnonzero(np.diff(new) != 1) + 1):
            q = self.rows.read(int(self.bounds[run[0]]), int(self.bounds[run[-1] + 1]))
            dense.append(np.asarray(q["dense"], np.float32))
            sparse.append(np.concatenate([np.asarray(ids, np.int64) for ids in q["sparse"]], axis=1))
            ends = self.bounds[run + 1] - self.bounds[run[0]]
            for i, a, b in zip(run.tolist(), ends - self.lengths[run], ends, strict=True):
                self._labels[i] = q["labels"][a:b]
        base = len(self._dense)
        self._dense = np.concatenate([self._dense, *dense])
        self._sparse = np.concatenate(([] if self._sparse is None else [self._sparse]) + sparse)
        self._start[new] = base + np.cumsum(self.lengths[new]) - self.lengths[new]

    def unload(self, indices: Sequence[int]) -> None:
        gone = np.unique(np.fromiter(indices, np.int64))
        gone = gone[self._start[gone] >= 0]
        self._start[gone] = -1
        for i in gone.tolist():
            self._labels.pop(i, None)
        live = int(self.lengths[self._start >= 0].sum())
        if live == 0:  # LoadGen unloads what it loaded: the pool empties
            self._dense, self._sparse = self._dense[:0], None
        elif live < len(self._dense) // 2:  # mostly holes: keep only the loaded queries' rows
            keep = np.flatnonzero(self._start >= 0)
            rows = self._rows(keep)
            self._dense, self._sparse = self._dense.take(rows, 0), self._sparse.take(rows, 0)
            self._start[keep] = np.cumsum(self.lengths[keep]) - self.lengths[keep]

    def _rows(self, idx: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
        """Pool rows of queries ``idx`` back to back (``offsets``: their cumulative lengths from 0)."""
        lengths = self.lengths[idx]
        if offsets is None:
            offsets = np.concatenate([[0], np.cumsum(lengths)])
        return np.repeat(self._start[idx] - offsets[:-1], lengths) + np.arange(offsets[-1])

    def batch(self, indices: Sequence[int]) -> inputs.Ragged:
        idx = np.asarray(indices, np.int64)
        if not len(idx):
            raise KeyError("batch() needs at least one loaded sample")
        if (self._start[idx] < 0).any():
            raise KeyError(f"query {int(idx[self._start[idx] < 0][0])} was not loaded")
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(self.lengths[idx], out=offsets[1:])
        if len(idx) == 1:  # one query: its rows are consecutive in the pool
            a = int(self._start[idx[0]])
            return inputs.Ragged({"dense": self._dense[a:a + offsets[1]], "sparse": self._sparse[a:a + offsets[1]]},
                                 offsets)
        rows = self._rows(idx, offsets)
        return inputs.Ragged({"dense": self._dense.take(rows, 0), "sparse": self._sparse.take(rows, 0)}, offsets)

    def label(self, index: int) -> np.ndarray:
        if index not in self._labels:
            self._labels[index] = self.rows.read(int(self.bounds[index]), int(self.bounds[index + 1]))["labels"]
        return self._labels[index]


class SumBag(torch.nn.Module):
    """An ``nn.EmbeddingBag`` (mode sum, fixed-size bags: 2-D ids) with the same weight, that exports to ONNX as
    Gather + ReduceSum. torch.onnx lowers ``embedding_bag`` to a Loop over the bags, which ONNX Runtime runs
    ~100x slower than PyTorch; eager PyTorch keeps ``embedding_bag`` (no [rows, h, D] intermediate)."""

    def __init__(self, bag: torch.nn.EmbeddingBag):
        super().__init__()
        self.weight = bag.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return torch.nn.functional.embedding(ids, self.weight).sum(1)
        return torch.nn.functional.embedding_bag(ids, self.weight, mode="sum")


def _sum_bags(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with each sum EmbeddingBag replaced by a SumBag on the same weight (parameter names unchanged)."""
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.EmbeddingBag) and child.mode == "sum" and child.padding_idx is None:
                setattr(module, child_name, SumBag(child))
    return net


class QueryModel(torch.nn.Module):
    """DLRM over the rows of a batch of queries: ``dense`` [R, 13] and ``sparse`` [R, sum of multi-hot sizes] (the
    fields side by side, as the store packs them) -> click probabilities [R]."""

    def __init__(self, net: torch.nn.Module, multi_hot: Sequence[int]):
        super().__init__()
        self.net, self.multi_hot = _sum_bags(net), [int(h) for h in multi_hot]

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        ids = list(torch.split(sparse, self.multi_hot, dim=1))
        return torch.sigmoid(self.net(dense, ids).float()).reshape(-1)  # fp32 scores: bf16 would tie many


class DLRMTask:
    metric = "auc"
    higher_is_better = True
    response_dtype = "float32"
    options = ("query_sizes",)  # --query-sizes (see the module docstring)

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self._store: QueryStore | None = None
        self._weights: Path | None = None
        self.sizes: QuerySizes | None = None
        self._snapshot: dict | None = None  # what load_into read from a torchsnapshot folder

    def dataset(self) -> QueryStore:
        if self._store is None:
            from mlbench.benchmarks.dlrm.data import data_root

            hp = self.bench.hparams
            root = data_root(self.bench, self.opts.data_dir, self.opts.say)
            day = days.open_day(root, hp["eval_day"], hp["table_rows"], hp["multi_hot"])
            rows = days.eval_rows(day, hp["table_rows"], "val")
            self.sizes = parse_query_sizes(self.opts.extra.get("query_sizes"), (hp["query_min"], hp["query_max"]),
                                           len(rows))
            bounds = query_bounds(len(rows), self.sizes)
            self._store = QueryStore(rows, bounds, self.bench.performance_sample_count, self.opts.max_samples)
        return self._store

    def info(self) -> dict:
        """For result.json: how queries were made (LoadGen's samples are queries; rows are user-item pairs)."""
        store = self.dataset()
        lengths = store.lengths[:store.total_count]
        return {"query_sizes": self.sizes.describe() if self.sizes else None,
                "queries": int(store.total_count), "rows": int(lengths.sum()),
                "rows_per_query_mean": float(lengths.mean()) if len(lengths) else 0.0,
                "rows_per_query_min": int(lengths.min()) if len(lengths) else 0,
                "rows_per_query_max": int(lengths.max()) if len(lengths) else 0,
                "batch_layout": "the rows of a batch's queries back to back, no padding",
                "sample": "one LoadGen sample is one query (throughput/samples_per_s counts queries)",
                "model_file": {"file": self.opts.weights, **({"interface": "torchsnapshot of the training code's "
                               "DistributedModelParallel(DLRMTrain(DLRM_DCN)) (MLPerf's model_weights), app 'model'",
                               **self._snapshot} if self._snapshot else {})}}

    def model(self) -> torch.nn.Module:
        from mlbench.benchmarks.dlrm.model import DLRMTrain

        hp = self.bench.hparams
        if self.opts.weights == "random":
            net = seeded_model(lambda: DLRMTrain(hp), 0)
        else:
            net, path = DLRMTrain(hp), self._weights_path()
            what = f"DLRM-DCNv2 {self.bench.size}"
            if snapshot.is_snapshot(path):  # MLPerf's published weights: the training code's torchsnapshot
                self.opts.say(f"reading the torchsnapshot {path} into the model")
                self._snapshot = snapshot.load_into(path, net, app="model", what=what, hint=WEIGHTS_HINT,
                                                    rename=lambda k: k if k.startswith("model.") else f"model.{k}")
            else:
                load_weights(net, path, what=what, prefix="model.", hint=WEIGHTS_HINT)
        return QueryModel(net, hp["multi_hot"]).eval()

    def model_id(self) -> str:
        # "-packed": the model takes rows (no query axis) with the sparse fields packed in one input; keeps ONNX
        # files exported for padded queries or for 26 sparse inputs unused
        if self.opts.weights == "random":
            return "random0-packed"
        from mlbench.data import download

        path = self._weights_path()
        if snapshot.is_snapshot(path):  # a folder: its metadata names every tensor, file and byte range
            path = path / snapshot.METADATA
        return download.sha256_file(path)[:12] + "-packed"  # (no padding, no embedding Loop)

    def _weights_path(self) -> Path:
        if self._weights is None:
            p = Path(self.opts.weights) if self.opts.weights and self.opts.weights != "random" else None
            if p is not None and p.is_dir():
                if not snapshot.is_snapshot(p):
                    raise ConfigError(f"{p} is a folder without {snapshot.METADATA}: not a torchsnapshot",
                                      "pass MLPerf's model_weights folder (the torchsnapshot the reference restores) "
                                      "or a .pt state dict")
                self._weights = p
            else:
                found = find_weights(self.bench, self.opts, files=".pt state dict", reference=self._reference_weights)
                self._weights = pytorch_weights(found, ".pt state dict")
        return self._weights

    def _reference_weights(self) -> Path:
        raise MlbenchError("DLRM-DCNv2 reference inference needs trained weights",
                           "pass --weights DIR (MLPerf's dlrm-v2 model_weights torchsnapshot folder) or a "
                           "state dict with TorchRec DLRM_DCN names, or --weights random for throughput only")

    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> inputs.RaggedArray:
        """The batch's row probabilities cut back into its queries, in order (one array and the queries' offsets:
        the SUT passes LoadGen a pointer per query without making an array per query)."""
        probs = np.ascontiguousarray(outputs[0], dtype=np.float32).reshape(-1)
        offsets = np.zeros(len(indices) + 1, np.int64)
        np.cumsum(self.dataset().lengths[np.asarray(indices, np.int64)], out=offsets[1:])
        if offsets[-1] != len(probs):
            raise ValueError(f"the model returned {len(probs)} probabilities for {int(offsets[-1])} rows")
        return inputs.RaggedArray(probs, offsets)

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
