"""Each scenario through LoadGen with quick settings: VALID where it should be, reasons recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from infer_support import QUICK


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream", "MultiStream"])
def test_null_backend_each_scenario_valid(infer, scenario):
    # Server at a rate a loaded 2-core machine keeps within the 15 ms bound (its default, 10,000 QPS, is not)
    rate = ("--target-qps", "1000") if scenario == "Server" else ()
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", scenario, *rate)
    assert code == 0, out
    assert r["kind"] == "infer" and r["scenario"] == scenario and r["status"] == "success"
    assert r["loadgen"]["validity"] == "VALID"
    assert r["valid"] is False  # quick + tiny + null: never valid for submission, and it says why
    assert any("--quick" in x for x in r["validity_reasons"])
    assert any("null backend" in x for x in r["validity_reasons"])
    name = r["metrics"]["scenario_metric"]
    assert r["metrics"][name] > 0
    # the backend's info is read again after the test: its counters include what the test ran
    assert r["backend"]["bytes_received"] > 0
    run_dir = Path(r["run_dir"])
    for f in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "config.json", "system.json", "console.log"):
        assert (run_dir / f).is_file(), f


def test_pytorch_single_stream_latency(infer):
    code, r, out = infer(*QUICK, "--scenario", "SingleStream")
    assert code == 0, out
    m = r["metrics"]
    assert r["loadgen"]["validity"] == "VALID"
    assert 0 < m["latency/p50_ms"] <= m["latency/p90_early_stopping_ms"] * 1.5
    assert r["backend"]["backend"] == "pytorch" and r["backend"]["threads"] == 1
    assert m["model/gflops_per_sample"] > 0 and m["compute/kernel_peak_fraction"] > 0


def test_submission_mode_writes_both_tests(infer):
    code, r, out = infer(*QUICK, "--mode", "submission")
    run_dir = Path(r["run_dir"])
    assert (run_dir / "performance" / "mlperf_log_detail.txt").is_file()
    assert (run_dir / "accuracy" / "mlperf_log_accuracy.json").is_file()
    assert r["quality"]["metric"] == "top1" and r["metrics"]["accuracy/top1"] == r["quality"]["value"]
    assert code == (0 if r["quality"]["reached"] and r["loadgen"]["validity"] == "VALID" else 1)


def test_user_conf_is_applied_and_kept(infer, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.SingleStream.min_query_count = 123\n")
    code, r, out = infer("--size", "tiny", "--backend", "null", "--scenario", "SingleStream",
                         "--user-conf", str(conf), "--quick", "--duration-s", "0.5")
    assert (Path(r["run_dir"]) / "user.conf").read_text() == conf.read_text()
    # --quick replaces the query count; without it, user.conf's value would hold (see settings.plan)
    assert r["loadgen"]["settings"]["min_query_count"] == 100


def test_user_conf_without_quick(tmp_path):
    from mlbench import registry
    from mlbench.inference import settings
    from mlbench.inference.config import InferConfig

    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Offline.min_duration = 1234\n")
    cfg = InferConfig(size="tiny", scenario="Offline", user_conf=str(conf))
    p = settings.plan(cfg, registry.get("resnet50", "tiny").definition, mode="performance",
                      store_counts=(256, 256), estimate_qps=100.0, estimate_latency_s=0.01, server_qps=50.0)
    assert p.values["min_duration_ms"] == 1234
    plain = settings.plan(InferConfig(size="reference", scenario="Offline"),
                          registry.get("resnet50", "reference").definition, mode="performance",
                          store_counts=(50000, 1024), estimate_qps=100.0, estimate_latency_s=0.01, server_qps=50.0)
    assert plain.values["min_duration_ms"] == 600000  # MLPerf's 10 minutes, from LoadGen's mlperf.conf
    assert plain.values["performance_sample_count_override"] == 1024
    assert plain.invalid_because == []
