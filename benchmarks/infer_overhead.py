"""Harness overhead: mlbench's SUT with the null backend against a bare LoadGen null SUT, side by side.

Both run in this process under the same LoadGen settings (ResNet-50's Server latency bound from mlperf.conf,
the same probe duration). The two are measured alternately, so machine noise hits both:
- Offline: LoadGen's samples/s, with the expected rate set above what either can do (the test runs a bit long).
- Server: the highest target QPS LoadGen still calls VALID, found by doubling and then bisecting.
The bare SUT is the few lines a user would write: complete every query at once in the issue callback
(LoadGen alone: no sample data). mlbench's null backend gathers (copies) each batch out of the loaded sample
store as a real backend receives it, so by default the figures include that data path; ``--skip-gather``
(``--null-skip-gather``) measures the SUT without it. Every report says which (``mlbench_gather``).

Offline also reports the CPU time per sample of the thread that completes the samples (the bare SUT's issue
callback; mlbench's SUT worker, whose next batch is gathered ahead on a helper thread): the critical path,
which, unlike LoadGen's wall-clock rate, hardly moves when other processes load the machine.
``--no-gather-ahead`` measures mlbench with the gather on the worker thread (as before gather-ahead).

The bare SUT completes each query in one call by default. LoadGen stamps every sample of that call with the
call's start time, so the bare SUT's timed window leaves out LoadGen's own per-sample completion work (queued
for its logging thread), which any SUT completing batch by batch pays inside the window; ``--bare-batched``
makes the bare SUT complete in mlbench's batch size instead. ``--bare-twice`` puts a second bare run where
mlbench's would be (an A/A test): the spread of those ratios is what the machine's noise alone does.

    python benchmarks/infer_overhead.py [--seconds 2] [--batch-size 32] [--skip-gather] [--bare-batched]
        [--bare-twice]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import mlperf_loadgen as lg

from mlbench import registry
from mlbench.inference import logs, runner, settings
from mlbench.inference.config import InferConfig


def bare_test(scenario: str, values: dict, outdir: Path, batch: int = 0) -> dict:
    """A bare null SUT, inline in LoadGen's issue callback: QuerySamplesComplete for the whole query at once
    (``batch`` 0), or one call per ``batch`` samples, as a SUT that runs batches completes them."""
    cpu = [0.0, 0]

    def issue(ids, indices):
        t0 = time.thread_time()
        step = batch or len(ids)
        for s in range(0, len(ids), step):
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids[s:s + step]])
        cpu[0] += time.thread_time() - t0
        cpu[1] += len(ids)

    sut = lg.ConstructFastSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(256, 256, lambda s: None, lambda s: None)
    s = lg.TestSettings()
    for k, v in values.items():
        setattr(s, k, v)
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.PerformanceOnly
    outdir.mkdir(parents=True, exist_ok=True)
    lg.StartTestWithLogSettings(sut, qsl, s, settings.log_settings(outdir, False), str(outdir / "none"))
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(sut)
    d = logs.read_detail(outdir / "mlperf_log_detail.txt")
    return {"valid": logs.validity(d, scenario)[0], **logs.metrics(d, scenario),
            "cpu_us_per_sample": 1e6 * cpu[0] / max(1, cpu[1])}


def harness_test(session, p: settings.Plan, outdir: Path) -> dict:
    sut, cpu = session.sut, [0.0, 0]
    run = type(sut)._run

    def timed(ids, indices, ahead=None):  # the worker's CPU time per batch, waits for the gather excluded
        t0 = time.thread_time()
        run(sut, ids, indices, ahead)
        cpu[0] += time.thread_time() - t0
        cpu[1] += len(ids)

    sut._run = timed
    try:
        t = runner.run_test(session, p, outdir)
    finally:
        del sut._run
    return {"valid": t["loadgen_valid"], **t["metrics"], "cpu_us_per_sample": 1e6 * cpu[0] / max(1, cpu[1])}


def spread(values: list[float]) -> dict:
    v = sorted(values)
    return {"median": v[len(v) // 2], "min": v[0], "max": v[-1]}


def peak(probe, start: float, steps: int = 12) -> tuple[float, list]:
    good, bad, q, seen = 0.0, None, start, []
    for _ in range(steps):
        ok = probe(q)
        seen.append((round(q), ok))
        good, bad = (max(good, q), bad) if ok else (good, q if bad is None else min(bad, q))
        if bad is None:
            q *= 2
        elif good == 0:
            q = bad / 2
        elif (bad - good) / bad < 0.03:
            break
        else:
            q = (good + bad) / 2
    return good, seen


def measure(scenario: str, a, bench, out: Path) -> dict:
    """One scenario, bare and mlbench alternately on the same settings."""
    cfg = InferConfig(size="tiny", backend="null", scenario=scenario, quick=True, duration_s=a.seconds,
                      batch_size=a.batch_size, output_dir=str(out), null_skip_gather=a.skip_gather)
    s = runner.open_session(cfg, lambda m: None)
    s.sut.gather_ahead = s.sut.gather_ahead and not a.no_gather_ahead
    n = [0]

    def plan(qps: float) -> settings.Plan:
        c = InferConfig(**{**cfg.to_dict(), "target_qps": qps})
        return settings.plan(c, bench, mode="performance", store_counts=(256, 256),
                             estimate_qps=qps, estimate_latency_s=1e-5, server_qps=qps)

    def both(qps: float) -> tuple[dict, dict]:
        n[0] += 1
        p = plan(qps)
        batch = s.batch_size if a.bare_batched else 0
        b = bare_test(scenario, p.values, out / f"{scenario}-bare-{n[0]}", batch)
        if a.bare_twice:  # the same bare SUT in mlbench's place: the ratio the machine's noise alone gives
            return b, bare_test(scenario, p.values, out / f"{scenario}-bare-again-{n[0]}", batch)
        h = harness_test(s, p, out / f"{scenario}-mlbench-{n[0]}")
        return b, h

    try:
        if scenario == "Offline":
            rows = []
            for i in range(a.repeats):
                rows.append(both(runner.NULL_OFFLINE_QPS))
                b, h = rows[-1]
                print(f"run {i + 1}: bare {b['throughput/samples_per_s']:,.0f} samples/s "
                      f"({b['cpu_us_per_sample']:.3f} us CPU a sample), {'bare again' if a.bare_twice else 'mlbench'} "
                      f"{h['throughput/samples_per_s']:,.0f} "
                      f"({h['cpu_us_per_sample']:.3f} us): ratio {h['throughput/samples_per_s'] / b['throughput/samples_per_s']:.3f}, "
                      f"CPU ratio {b['cpu_us_per_sample'] / h['cpu_us_per_sample']:.3f}", flush=True)
            rate = [r[1]["throughput/samples_per_s"] / r[0]["throughput/samples_per_s"] for r in rows]
            cpu = [r[0]["cpu_us_per_sample"] / r[1]["cpu_us_per_sample"] for r in rows]
            return {"bare_samples_per_s": spread([r[0]["throughput/samples_per_s"] for r in rows]),
                    "mlbench_samples_per_s": spread([r[1]["throughput/samples_per_s"] for r in rows]),
                    "ratio": spread(rate), "runs_at_least_0.9": sum(x >= 0.9 for x in rate),
                    "bare_cpu_us_per_sample": spread([r[0]["cpu_us_per_sample"] for r in rows]),
                    "mlbench_cpu_us_per_sample": spread([r[1]["cpu_us_per_sample"] for r in rows]),
                    "cpu_ratio": spread(cpu), "gather_ahead": s.sut.gather_ahead,
                    "mlbench_batch": s.batch_size, "runs": a.repeats, "statistic": "median, min, max of the runs",
                    "all": [(r[0]["throughput/samples_per_s"], r[1]["throughput/samples_per_s"]) for r in rows]}
        if a.ladder:  # fixed rates, each tried `attempts` times, bare and mlbench alternating
            rows = []
            for q in [float(x) for x in a.ladder.split(",")]:
                runs = [both(q) for _ in range(a.attempts)]
                rows.append({"target_qps": q, "bare_valid": sum(r[0]["valid"] for r in runs),
                             "mlbench_valid": sum(r[1]["valid"] for r in runs), "attempts": a.attempts,
                             "bare_p99_ms": [r[0]["latency/p99_ms"] for r in runs],
                             "mlbench_p99_ms": [r[1]["latency/p99_ms"] for r in runs]})
            need = a.attempts // 2 + 1
            bare = max((r["target_qps"] for r in rows if r["bare_valid"] >= need), default=0.0)
            ours = max((r["target_qps"] for r in rows if r["mlbench_valid"] >= need), default=0.0)
            return {"method": f"highest ladder rate VALID in at least {need} of {a.attempts} runs",
                    "bare_valid_qps": bare, "mlbench_valid_qps": ours, "ratio": ours / bare if bare else None,
                    "ladder": rows, "mlbench_batch": s.batch_size}
        cache: dict = {}

        def probe(q: float, which: int) -> bool:
            if q not in cache:
                cache[q] = both(q)
            return cache[q][which]["valid"]

        bare_peak, bare_seen = peak(lambda q: probe(q, 0), 10_000.0)
        ours_peak, ours_seen = peak(lambda q: probe(q, 1), 10_000.0)
        return {"bare_valid_qps": bare_peak, "mlbench_valid_qps": ours_peak,
                "ratio": ours_peak / bare_peak if bare_peak else None, "bare_probes": bare_seen,
                "mlbench_probes": ours_seen, "mlbench_batch": s.batch_size,
                "latency_bound_ms": plan(1.0).values["server_target_latency_ns"] / 1e6}
    finally:
        s.close()


def check_options(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Bad options end here with one line and exit 2 (argparse's error), before anything runs."""
    if not math.isfinite(a.seconds) or not 0 < a.seconds <= 3600:
        ap.error(f"--seconds must be a number of seconds in (0, 3600], not {a.seconds}")
    for name in ("repeats", "attempts", "batch_size"):
        value = getattr(a, name)
        if value is not None and not 1 <= value <= 100_000:
            ap.error(f"--{name.replace('_', '-')} must be between 1 and 100000, not {value}")
    scenarios = a.scenarios.split(",")
    if not all(x in ("Offline", "Server") for x in scenarios):
        ap.error(f"--scenarios takes Offline and/or Server (comma-separated), not {a.scenarios!r}")
    if a.ladder:
        try:
            rates = [float(x) for x in a.ladder.split(",")]
        except ValueError:
            rates = []
        if not rates or not all(math.isfinite(q) and 0 < q <= 1e9 for q in rates):
            ap.error(f"--ladder takes target QPS values above 0 (comma-separated), not {a.ladder!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=None, help="mlbench SUT batch (default: per scenario)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ladder", default="", help="Server: fixed target QPS list instead of the search")
    ap.add_argument("--attempts", type=int, default=3, help="--ladder: runs per rate")
    ap.add_argument("--scenarios", default="Offline,Server")
    ap.add_argument("--skip-gather", action="store_true", help="mlbench without the sample gather (LoadGen alone)")
    ap.add_argument("--bare-batched", action="store_true",
                    help="the bare SUT completes the samples in batches of mlbench's batch size (one "
                         "QuerySamplesComplete each), not the whole query in one call")
    ap.add_argument("--bare-twice", action="store_true",
                    help="measure the bare SUT against itself in mlbench's place (an A/A test: how far the "
                         "machine's noise alone moves the ratio)")
    ap.add_argument("--no-gather-ahead", action="store_true",
                    help="Offline: gather each batch on the worker thread (no helper thread gathering ahead)")
    a = ap.parse_args()
    check_options(ap, a)
    out = Path(tempfile.mkdtemp(prefix="infer-overhead-"))
    bench = registry.get("resnet50", "tiny").definition
    if a.bare_twice:
        measured = "the bare LoadGen null SUT against itself (A/A: the 'mlbench' figures are a second bare run)"
    else:
        measured = ("mlbench null backend " + ("without the sample gather (LoadGen and the SUT alone)" if a.skip_gather
                                               else "with the sample gather (a copy of each batch from the sample store)")
                    + " against a bare LoadGen null SUT (no sample data)")
    report: dict = {"seconds": a.seconds, "cores": len(os.sched_getaffinity(0)), "mlbench_gather": not a.skip_gather,
                    "measured": measured}
    report["bare_completes"] = ("in batches of mlbench's batch size, one QuerySamplesComplete each" if a.bare_batched
                                else "each query in one QuerySamplesComplete call")
    report["load_average_1min_before"] = os.getloadavg()[0]
    for scenario in a.scenarios.split(","):
        report[scenario.lower()] = {"mlbench_gather": not a.skip_gather, **measure(scenario, a, bench, out)}
        print(json.dumps(report[scenario.lower()], indent=1), flush=True)
    report["load_average_1min_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
