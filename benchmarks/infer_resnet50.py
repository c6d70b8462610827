"""ResNet-50 (reference size) on this machine: mlbench Offline against the same backend's raw throughput,
per backend and precision, and SingleStream p90 latency.

Raw throughput: the prepared backend's ``predict`` in a loop on pre-processed batches of the same size, with
no LoadGen, timed right before each LoadGen test, so both see the same machine; the backend at its best
(one predict at a time on all cores) even when the SUT runs several workers. Also reported: the same loop
with the task's post-processing (``raw_with_postprocess``), the plain-Python way to produce the responses.
The weights are random (torchvision resnet50(weights=None)): the real weights cannot be downloaded here, and
throughput does not depend on them. Accuracy per precision is checked on the mini model
(``--accuracy-size mini``), which has trained weights.

    python benchmarks/infer_resnet50.py [--seconds 10] [--configs pytorch:fp32,pytorch:bf16,onnxruntime:fp32,onnxruntime:int8]

Any other benchmark and size with ``--benchmark/--size`` (its own data and trained model, trained first when
no checkpoint is cached), e.g. RetinaNet mini against its backend's raw throughput:

    python benchmarks/infer_resnet50.py --benchmark retinanet --size mini --configs pytorch:fp32,onnxruntime:fp32
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from pathlib import Path

from infer_data import make_val_tree

from mlbench.inference import backends, runner
from mlbench.inference.config import InferConfig


def raw_throughput(s, seconds: float, post: bool = False) -> float:
    """Samples/s of backend.predict on loaded batches, outside LoadGen, on a worker thread like the SUT's
    (the thread matters: each thread has its own OpenMP pool). ``post``: each batch's outputs also go
    through the task's postprocess (what a plain loop producing the responses does)."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(rate=_raw_loop(s, seconds, post)))
    t.start()
    t.join()
    return box["rate"]


def _raw_loop(s, seconds: float, post: bool) -> float:
    idx = list(range(min(s.store.performance_count, s.store.total_count)))
    s.store.load(idx)
    bs = s.batch_size
    batches = [(idx[i:i + bs], s.store.batch(idx[i:i + bs])) for i in range(0, len(idx) - bs + 1, bs)]
    s.backend.predict(batches[0][1])
    n, t0, k = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        ids, x = batches[k % len(batches)]
        out = s.backend.predict(x)
        if post:
            s.task.postprocess(out, ids)
        n += len(ids)
        k += 1
    rate = n / (time.perf_counter() - t0)
    s.store.unload(idx)
    return rate


def offline(cfg: InferConfig, seconds: float, out: Path, repeats: int) -> dict:
    """Raw and LoadGen alternately (raw, test, raw, test, ...) so that both see the same machine; medians.

    The raw figure is the backend at its best on one thread of batches: all cores to one predict at a time
    (``--workers 1``, default threads), even when the SUT under test runs several workers with fewer threads.
    """
    s = runner.open_session(cfg, lambda m: None)
    best = dataclasses.replace(cfg, workers=1, threads=None)
    r = s if (s.sut.n_workers, s.backend.threads) == (1, backends.base.default_threads(1)) else \
        runner.open_session(best, lambda m: None)
    try:
        raws, raws_post, ours, valid = [], [], [], []
        for i in range(repeats):
            raws.append(raw_throughput(r, seconds))
            raws_post.append(raw_throughput(r, seconds, post=True))
            s.estimate_qps = raws[-1]  # LoadGen plans the Offline sample count from the measured rate
            p = runner.plan_for(s, "performance")
            t = runner.run_test(s, p, out / f"run{i}")
            ours.append(t["metrics"]["throughput/samples_per_s"])
            valid.append(t["loadgen_valid"])
        raw, raw_post, mine = (sorted(v)[len(v) // 2] for v in (raws, raws_post, ours))
        pair_ratios = sorted(o / r for r, o in zip(raws, ours, strict=True))
        post_ratios = sorted(o / r for r, o in zip(raws_post, ours, strict=True))
        return {"raw_samples_per_s": raw, "raw_with_postprocess_samples_per_s": raw_post,
                "mlbench_samples_per_s": mine, "ratio_of_medians": mine / raw,
                "ratio": pair_ratios[len(pair_ratios) // 2], "ratio_note": "median of per-pair ratios (side by side)",
                "ratio_vs_raw_with_postprocess": post_ratios[len(post_ratios) // 2],
                "pairs": list(zip(raws, ours, strict=True)), "loadgen_valid": valid, "batch": s.batch_size,
                "threads": s.backend.threads, "workers": s.sut.n_workers, "raw_threads": r.backend.threads}
    finally:
        s.close()
        if r is not s:
            r.close()


def single_stream(cfg: InferConfig, out: Path) -> dict:
    s = runner.open_session(cfg, lambda m: None)
    try:
        p = runner.plan_for(s, "performance")
        t = runner.run_test(s, p, out)
        return {"p90_ms": t["metrics"]["latency/p90_early_stopping_ms"], "p50_ms": t["metrics"]["latency/p50_ms"],
                "loadgen_valid": t["loadgen_valid"]}
    finally:
        s.close()


def single_stream_interleaved(configs: list[InferConfig], rounds: int, out: Path) -> dict:
    """SingleStream p90 per config, all sessions open and the configs taking turns each round (medians), so
    that machine noise hits each config alike. Each config also gets the ratio of its p90 to the first
    config's and, beside it, the bound the hardware sets: the first config's peak FLOP/s over this one's
    (``mlbench.efficiency.kernels``' microbenchmark at the same threads; a latency ratio below it would need
    more than the whole speed-up of the units, in every part of the latency)."""
    from mlbench.efficiency import kernels

    sessions = {f"{c.backend}:{c.precision}": runner.open_session(c, lambda m: None) for c in configs}
    p90: dict[str, list[float]] = {k: [] for k in sessions}
    try:
        for r in range(rounds):
            for k, s in sessions.items():
                t = runner.run_test(s, runner.plan_for(s, "performance"), out / f"ss-{k}-{r}")
                p90[k].append(t["metrics"]["latency/p90_early_stopping_ms"])
        peaks = {}
        for k, s in sessions.items():
            try:
                peaks[k] = kernels.kernel_peak(str(s.backend.info().get("device", "cpu")), s.cfg.precision,
                                            s.backend.threads)["flops_per_s"]
            except Exception:  # noqa: BLE001 - no microbenchmark for this backend/precision: no bound
                peaks[k] = None
    finally:
        for s in sessions.values():
            s.close()
    report = {k: {"p90_ms_median": sorted(v)[len(v) // 2], "p90_ms": v, "peak_flops_per_s": peaks[k]}
              for k, v in p90.items()}
    first = next(iter(report.values()))
    for r in report.values():
        r["p90_ratio_vs_first"] = r["p90_ms_median"] / first["p90_ms_median"]
        if r["peak_flops_per_s"] and first["peak_flops_per_s"]:
            r["hardware_bound_ratio"] = first["peak_flops_per_s"] / r["peak_flops_per_s"]
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--configs", default="pytorch:fp32,pytorch:bf16,onnxruntime:fp32,onnxruntime:int8")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--single-stream", action="store_true", help="also measure SingleStream p90 per config")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="SUT workers (default: the task's default)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None, help="ImageNet-layout data (default: generated JPEGs)")
    ap.add_argument("--benchmark", default="resnet50")
    ap.add_argument("--size", default="reference", help="reference uses random weights and generated JPEGs")
    ap.add_argument("--ss-rounds", type=int, default=0, help="only SingleStream p90, configs interleaved")
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix=f"infer-{a.benchmark}-"))
    reference = a.size == "reference"
    data = a.data_dir or (str(make_val_tree(out / "data", a.images)) if reference else None)
    model = dict(benchmark=a.benchmark, size=a.size, weights="random" if reference else None)
    if a.ss_rounds:
        cfgs = [InferConfig(**model, backend=item.split(":")[0], precision=item.split(":")[1], data_dir=data,
                            quick=True, duration_s=a.seconds, output_dir=str(out),
                            scenario="SingleStream", threads=a.threads) for item in a.configs.split(",")]
        print(json.dumps(single_stream_interleaved(cfgs, a.ss_rounds, out), indent=1))
        return
    report = {}
    for item in a.configs.split(","):
        backend, precision = item.split(":")
        common = dict(**model, backend=backend, precision=precision, data_dir=data, quick=True,
                      duration_s=a.seconds, output_dir=str(out))
        r = offline(InferConfig(scenario="Offline", batch_size=a.batch_size, workers=a.workers, threads=a.threads,
                                **common), a.seconds, out / f"{item}-off", a.repeats)
        if a.single_stream:
            r["single_stream"] = single_stream(InferConfig(scenario="SingleStream", threads=a.threads, **common),
                                               out / f"{item}-ss")
        report[item] = r
        print(item, json.dumps(r), flush=True)
    base = report.get("onnxruntime:fp32", {}).get("raw_samples_per_s")
    if base:
        for r in report.values():
            r["vs_raw_onnxruntime_fp32"] = r["mlbench_samples_per_s"] / base
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
