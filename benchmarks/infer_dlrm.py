"""dlrm-v2 inference (mini by default): mlbench Offline under LoadGen against the raw backend on the same samples.

Samples: LoadGen's samples are queries (consecutive user-item rows, sizes from ``--query-sizes``; mini: uniform
20-100 rows). Both sides are reported per query and per row; the ratio is taken in rows/s, because the queries
LoadGen loads (a random ``performance_sample_count`` subset) are not exactly the raw loop's queries (the
first ones) and differ a little in mean size. Rows of the LoadGen side are counted as the task cuts them into
responses (its ``postprocess``, wrapped here to count), divided by LoadGen's own duration.

On a shared, oversubscribed machine wall-clock rates mostly measure what share of the CPU the process got;
``cpu_ratio_rows`` compares rows per CPU-second of this process instead (the LoadGen side counts everything
the test runs: LoadGen's threads, the SUT, the gather, the model, but not the sample loading, which MLPerf
does not time either). Pass ``--threads 1`` there, so that no thread pool spins waiting for a core.

Raw: the prepared backend's ``predict`` (the same PyTorch module or ONNX Runtime session the SUT runs) in a
plain loop over batches built beforehand from the day file (the queries' rows read and concatenated outside
the harness's store, untimed, in the model's input layout: dense [R, 13], the 26 sparse fields side by side), on a worker thread as the SUT's (each thread has its own OpenMP pool). Raw and
LoadGen alternate (raw, test, raw, test, ...) so that both see the same machine; medians and per-pair ratios.

    python benchmarks/infer_dlrm.py [--size mini] [--configs pytorch:fp32,onnxruntime:fp32] [--seconds 8]
        [--repeats 3] [--batch-size 32] [--threads N] [--query-sizes SPEC] [--weights random] [--no-raw]

``--no-raw`` runs only the LoadGen tests, e.g. to compare this version with an older one (the padded queries
before commit d61e4e1): ``git archive d61e4e1~1 src | tar -x -C /tmp/old`` and run this script again with
``PYTHONPATH=/tmp/old/src``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mlbench.inference import inputs, runner
from mlbench.inference.config import InferConfig


def raw_batches(s, count: int, bs: int) -> list[tuple[int, int, dict]]:
    """(queries, rows, named arrays) per batch of the first ``count`` queries, straight from the day file."""
    store = s.store
    out = []
    for a in range(0, count - bs + 1, bs):
        parts = [store.rows.read(int(store.bounds[i]), int(store.bounds[i + 1])) for i in range(a, a + bs)]
        x = {"dense": np.concatenate([p["dense"] for p in parts]).astype(np.float32),
             "sparse": np.concatenate([np.concatenate(p["sparse"], axis=1) for p in parts]).astype(np.int64)}
        out.append((bs, len(x["dense"]), x))
    return out


def raw_rate(s, batches, seconds: float) -> tuple[float, float, float]:
    """(queries/s, rows/s, rows per CPU-second of this process) of backend.predict over ``batches`` for
    ``seconds``, on a worker thread."""
    box: dict = {}

    def loop() -> None:
        s.backend.predict(batches[0][2])
        q = r = k = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            nq, nr, x = batches[k % len(batches)]
            s.backend.predict(x)
            q, r, k = q + nq, r + nr, k + 1
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        box["rate"] = (q / dt, r / dt, r / dc)

    t = threading.Thread(target=loop)
    t.start()
    t.join()
    return box["rate"]


class RowCounter:
    """Wraps ``task.postprocess`` to count the rows and queries it cuts into responses (a few µs per batch)."""

    def __init__(self, task):
        self.task, self.inner = task, task.postprocess
        self.rows = self.queries = 0
        task.postprocess = self

    def __call__(self, outputs, indices):
        out = self.inner(outputs, indices)
        self.rows += int(out.offsets[-1]) if isinstance(out, inputs.RaggedArray) else sum(len(o) for o in out)
        self.queries += len(indices)
        return out


class LoadTimer:
    """Wraps ``store.load``/``unload`` (called on LoadGen's thread before and after its timed window) to sum
    their CPU time, which the CPU comparison leaves out: MLPerf does not time sample loading, and the raw loop's
    batches are also built beforehand."""

    def __init__(self, store):
        self.cpu = 0.0
        for name in ("load", "unload"):
            setattr(store, name, self._timed(getattr(store, name)))

    def _timed(self, fn):
        def wrapper(indices):
            c = time.thread_time()
            try:
                return fn(indices)
            finally:
                self.cpu += time.thread_time() - c
        return wrapper


def offline(cfg: InferConfig, seconds: float, out: Path, repeats: int, raw: bool = True) -> dict:
    s = runner.open_session(cfg, lambda m: None)
    counter = RowCounter(s.task)
    loading = LoadTimer(s.store)
    try:
        batches = raw_batches(s, min(s.store.performance_count, s.store.total_count), s.batch_size) if raw else []
        raws, ours, valid = [], [], []
        for i in range(repeats):
            if raw:
                raws.append(raw_rate(s, batches, seconds))
                s.estimate_qps = raws[-1][0]  # LoadGen plans the Offline sample count from the measured rate
            counter.rows = counter.queries = 0
            plan = runner.plan_for(s, "performance")
            c0, loading.cpu = time.process_time(), 0.0
            t = runner.run_test(s, plan, out / f"run{i}")
            cpu = time.process_time() - c0 - loading.cpu  # LoadGen's threads, the SUT, the model; no loading
            qps = t["metrics"]["throughput/samples_per_s"]
            ours.append((qps, qps * counter.rows / max(1, counter.queries), counter.rows / cpu))
            valid.append(t["loadgen_valid"])
        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        if not raw:
            return {"mlbench_queries_per_s": med([o[0] for o in ours]), "mlbench_rows_per_s": med([o[1] for o in ours]),
                    "mlbench_rows_per_cpu_s": med([o[2] for o in ours]), "runs": ours, "loadgen_valid": valid}
        ratios = [o[1] / r[1] for r, o in zip(raws, ours, strict=True)]
        cpu_ratios = [o[2] / r[2] for r, o in zip(raws, ours, strict=True)]
        return {"raw_queries_per_s": med([r[0] for r in raws]), "raw_rows_per_s": med([r[1] for r in raws]),
                "mlbench_queries_per_s": med([o[0] for o in ours]), "mlbench_rows_per_s": med([o[1] for o in ours]),
                "ratio_rows": med(ratios), "ratio_range": [min(ratios), max(ratios)],
                "ratio_note": "median of per-pair ratios of rows/s (side by side)",
                "cpu_ratio_rows": med(cpu_ratios), "cpu_ratio_range": [min(cpu_ratios), max(cpu_ratios)],
                "cpu_ratio_note": "rows per CPU-second of the process, mlbench test / raw loop (median of pairs)",
                "raw_rows_per_cpu_s": med([r[2] for r in raws]), "mlbench_rows_per_cpu_s": med([o[2] for o in ours]),
                "pairs_rows_per_s": [(round(r[1]), round(o[1])) for r, o in zip(raws, ours, strict=True)],
                "raw_rows_per_query": sum(b[1] for b in batches) / sum(b[0] for b in batches),
                "loadgen_valid": valid, "batch_queries": s.batch_size, "threads": s.backend.threads,
                "workers": s.sut.n_workers, "task": s.task.info() if hasattr(s.task, "info") else None}
    finally:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="mini")
    ap.add_argument("--configs", default="pytorch:fp32,onnxruntime:fp32")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="queries per batch (default: the harness's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--query-sizes", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--weights", default=None, help="reference: a state dict, or random")
    ap.add_argument("--no-raw", action="store_true", help="only the LoadGen tests (e.g. to compare two versions)")
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="infer-dlrm-"))
    report = {}
    for item in a.configs.split(","):
        backend, precision = item.split(":")
        extra = {"query_sizes": a.query_sizes} if a.query_sizes else {}
        cfg = InferConfig(benchmark="dlrm", size=a.size, backend=backend, precision=precision, scenario="Offline",
                          quick=True, duration_s=a.seconds, output_dir=str(out), batch_size=a.batch_size,
                          threads=a.threads, data_dir=a.data_dir, weights=a.weights, **extra)
        report[item] = offline(cfg, a.seconds, out / item.replace(":", "-"), a.repeats, raw=not a.no_raw)
        print(item, json.dumps({k: v for k, v in report[item].items() if k != "task"}), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
