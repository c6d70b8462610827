"""INVALID results say why in plain words with the numbers; a real LoadGen run for each reason."""

from __future__ import annotations

from infer_support import QUICK

from mlbench.inference import logs


def test_reasons_in_plain_words():
    detail = {"result_validity": "INVALID", "result_min_duration_met": False, "result_min_queries_met": False,
              "result_perf_constraints_met": False, "early_stopping_met": False,
              "effective_min_duration_ms": 600000, "effective_min_query_count": 100, "result_query_count": 42,
              "effective_target_latency_ns": 15_000_000, "effective_target_latency_percentile": 0.99,
              "result_99.00_percentile_latency_ns": 31_500_000, "result_overlatency_query_count": 7,
              "early_stopping_result": " * Run unsuccessful. * Processed 42 queries."}
    valid, reasons = logs.validity(detail, "Server")
    assert not valid
    text = "\n".join(reasons)
    assert "at least 600 s" in text
    assert "42 ran, at least 100" in text
    assert "p99 latency 31.50 ms > 15 ms bound (7 of 42 queries over)" in text
    assert "early stopping not met: Run unsuccessful. Processed 42 queries." in text
    assert logs.validity({}, "Offline") == (False, ["LoadGen wrote no result (the test did not finish)"])


def test_latency_bound_exceeded(infer):
    code, r, out = infer(*QUICK, "--scenario", "Server", "--target-latency-ms", "0.001", "--target-qps", "200")
    assert code == 1
    assert r["loadgen"]["validity"] == "INVALID"
    assert any(x.startswith("latency bound exceeded: p99 latency") for x in r["validity_reasons"]), r["validity_reasons"]
    assert any("latency bound was overridden" in x for x in r["validity_reasons"])
    assert "INVALID" in out


def test_duration_too_short(infer):
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", "Offline", "--target-qps", "10")
    assert code == 1
    assert r["loadgen"]["validity"] == "INVALID"
    assert any(x.startswith("duration too short") for x in r["validity_reasons"])
