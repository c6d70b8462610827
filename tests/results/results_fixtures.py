"""Builders for the results tests: run directories in the real result.json / system.json / LoadGen formats."""

from __future__ import annotations

import itertools
from pathlib import Path

from mlbench import runs

_counter = itertools.count()

SYSTEM = {"host_processor_model_name": "Test CPU 9000", "host_processor_core_count": 2,
          "host_memory_capacity": "24.0 GiB", "accelerators_per_node": 0, "accelerator_model_name": "",
          "number_of_nodes": 1, "operating_system": "Debian", "framework": "PyTorch 2.14.1",
          "other_software_stack": {"python": "3.11", "torch": "2.14.1", "onnxruntime": "1.20.0",
                                   "mlcommons-loadgen": "6.0.17"}}


def write_system(run_dir: Path, cpu: str = "Test CPU 9000", gpu: str = "") -> str:
    from mlbench import sysinfo

    info = {**SYSTEM, "host_processor_model_name": cpu, "accelerator_model_name": gpu,
            "accelerators_per_node": 1 if gpu else 0}
    info["system_fingerprint"] = sysinfo.fingerprint(info)
    runs.write_json(run_dir / "system.json", info)
    return info["system_fingerprint"]


def make_train(out: Path, minutes: list[float | None], *, size: str = "tiny", device: str = "cpu",
               precision: str = "fp32", world_size: int = 1, throughput: float = 1000.0, cpu: str = "Test CPU 9000",
               gpu: str = "", status: str | None = None, lr: float | None = None, stamp: str | None = None,
               mfu: float | None = None) -> Path:
    """A training run directory as runner.py writes it: N runs with evals, score, metrics."""
    n = next(_counter)
    run_id = f"2026010{1 + n % 9}-1200{n:02d}-train-resnet50-{size}-{n:04x}"
    run_dir = out / run_id
    run_dir.mkdir(parents=True)
    fp = write_system(run_dir, cpu, gpu)
    per_run = []
    for i, m in enumerate(minutes):
        ok = m is not None
        evals = [{"epoch": e, "samples": 512 * e, "quality": 0.3 + 0.3 * e, "elapsed_s": (m or 1.0) * 60 * e / 2}
                 for e in (1, 2)]
        per_run.append({"run": i + 1, "seed": i, "status": "success" if ok else "aborted", "reason": "",
                        "quality": evals[-1]["quality"] if ok else 0.4, "evals": evals if ok else evals[:1],
                        "metrics": {"time_to_train/minutes": m, "throughput/samples_per_s": throughput}})
    done = [m for m in minutes if m is not None]
    result = {
        "schema": runs.RESULT_SCHEMA, "kind": "train", "run_id": run_id, "benchmark": "resnet50", "size": size,
        "division": "open", "ruleset": "4.0.0", "command": "mlbench train resnet50", "device": device,
        "precision": precision, "world_size": world_size, "started_at": stamp or f"2026-01-01T12:00:{n % 60:02d}+00:00",
        "finished_at": "2026-01-01T12:10:00+00:00",
        "quality": {"metric": "top1", "target": 0.6, "value": 0.9, "reached": bool(done)},
        "config": {"benchmark": "resnet50", "size": size, "device": device, "precision": precision, "lr": lr,
                   "epochs": None, "resume": None, "compile": False, "channels_last": False},
        "runs": per_run, "system": {"fingerprint": fp, "host_processor_model_name": cpu,
                                    "accelerator_model_name": gpu},
        "status": status or ("success" if len(done) == len(minutes) else "aborted"),
        "score": {"time_to_train_minutes": sum(done) / len(done) if done else None},
        "metrics": {"time_to_train/minutes": sum(done) / len(done) if done else None,
                    "throughput/samples_per_s": throughput},
        "valid": False, "validity_reasons": [f"size '{size}' is not the MLPerf definition (open division)"],
    }
    if mfu is not None:  # as training writes it: MFU over a datasheet peak, with the figures it came from
        result["metrics"].update({"compute/achieved_tflops": mfu * 989.5, "compute/mfu": mfu,
                                  "compute/peak_tflops": 989.5, "compute/kernel_peak_fraction": mfu * 1.25})
        result["compute"] = {"mfu": mfu, "flags": [f"MFU {mfu:.2f} is above 1: test"] if mfu > 1 else [],
                             "peak": {"kind": "datasheet", "accelerator": "H100 SXM", "math": "bf16",
                                      "flops_per_s": 989.5e12}}
    runs.write_json(run_dir / "result.json", result)
    return run_dir


def run_loadgen(run_dir: Path, queries: int = 300, scenario: str = "SingleStream", trace: bool = False) -> None:
    """A real LoadGen run (SingleStream, or Server with a 0.05 ms bound that a Python SUT partly misses) with a
    null SUT, logs (and the trace, with ``trace``) written into ``run_dir``."""
    import mlperf_loadgen as lg

    def issue(samples):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(64, 64, lambda s: None, lambda s: None)
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, scenario)
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = 50
    ts.min_query_count = queries
    ts.single_stream_expected_latency_ns = 20000
    ts.server_target_qps = 2000
    ts.server_target_latency_ns = 50_000
    log = lg.LogSettings()
    log.log_output.outdir = str(run_dir)
    log.enable_trace = trace
    lg.StartTestWithLogSettings(sut, qsl, ts, log)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


def make_infer(out: Path, value: float, *, scenario: str = "Offline", backend: str = "onnxruntime",
               valid_loadgen: bool = True, quick: bool = True, loadgen_logs: bool = False,
               per_query: list[float] | None = None, trace: bool = False) -> Path:
    """An inference run directory: result.json (kind infer) and, optionally, real LoadGen logs."""
    n = next(_counter)
    run_id = f"20260102-1300{n:02d}-infer-resnet50-tiny-{n:04x}"
    run_dir = out / run_id
    run_dir.mkdir(parents=True)
    fp = write_system(run_dir)
    if loadgen_logs:
        run_loadgen(run_dir, scenario=scenario, trace=trace)
    if per_query is not None:
        (run_dir / "query_latencies_ns.txt").write_text("\n".join(str(int(v)) for v in per_query))
    metric = {"Offline": "throughput/samples_per_s", "Server": "throughput/completed_samples_per_s",
              "SingleStream": "latency/p90_early_stopping_ms"}[scenario]
    result = {
        "schema": runs.RESULT_SCHEMA, "kind": "infer", "run_id": run_id, "benchmark": "resnet50", "size": "tiny",
        "scenario": scenario, "mode": "performance", "device": "cpu", "precision": "fp32",
        "backend": {"backend": backend, "version": "1.20.0" if backend == "onnxruntime" else "2.14.1", "threads": 2},
        "started_at": f"2026-01-02T13:00:{n % 60:02d}+00:00", "status": "success",
        "loadgen": {"validity": "VALID" if valid_loadgen else "INVALID",
                    "reasons": [] if valid_loadgen else ["min duration not met (0.05 s of 600 s)"]},
        "metrics": {"scenario_metric": metric, metric: value, "latency/p99_ms": 3.0}, "quality": None,
        "config": {"backend": backend, "scenario": scenario, "quick": quick, "duration_s": 5.0},
        "system": {"fingerprint": fp}, "valid": False, "validity_reasons": ["quick run"],
    }
    runs.write_json(run_dir / "result.json", result)
    return run_dir
