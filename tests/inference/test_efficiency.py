"""MFU and the fraction of the measured kernel peak, as they are (never capped); the null backend's gather;
INVALID advice that fits the cause."""

from __future__ import annotations

import pytest
from infer_support import QUICK

from mlbench.efficiency import kernels
from mlbench.inference import logs


def test_int8_kernel_peak_is_measured_with_quantized_kernels():
    info = kernels.kernel_peak("cpu", "int8", 1)
    assert info["precision"] == "int8" and "ONNX Runtime" in info["method"]
    assert any(k.startswith("qdq conv") for k in info["kernels"]) and info["flops_per_s"] > 0
    assert kernels.kernel_peak("cpu", "int8", 1) == info  # cached: measured once


@pytest.mark.parametrize("args", [("--scenario", "Offline"), ("--scenario", "SingleStream"),
                                  ("--scenario", "Offline", "--precision", "bf16"),
                                  ("--scenario", "Offline", "--backend", "onnxruntime")],
                         ids=["fp32-offline", "fp32-singlestream", "bf16-offline", "ort-fp32-offline"])
def test_mfu_and_kernel_peak_fraction(infer, args):
    code, r, out = infer(*QUICK, *args)
    assert r["status"] == "success", out
    m, c = r["metrics"], r["compute"]
    pk, kp = c["peak"], c["kernel_peak"]
    assert pk["precision"] == r["precision"] and kp["precision"] == r["precision"] and kp["method"]
    if pk["kind"] == "theoretical":  # a CPU whose clock can be read
        assert pk["inputs"]["cores_used"] >= 1 and pk["inputs"]["clock_ghz"] > 0
        assert m["compute/mfu"] == pytest.approx(m["compute/achieved_tflops"] / m["compute/peak_tflops"])
        assert c["mfu"] == m["compute/mfu"] > 0
    else:
        assert "compute/mfu" not in m and pk["why"]
    frac = m["compute/kernel_peak_fraction"]
    assert frac == pytest.approx(m["compute/achieved_tflops"] / m["compute/kernel_peak_tflops"])
    assert (frac > 1) == any("measured kernel peak" in f for f in c["flags"])  # never capped; flagged above 1
    assert "efficiency:" in out


def test_user_given_peak(infer):
    code, r, out = infer(*QUICK, "--scenario", "Offline", "--backend", "onnxruntime", "--peak-tflops", "0.001")
    pk, m = r["compute"]["peak"], r["metrics"]
    assert pk["kind"] == "user" and pk["flops_per_s"] == 1e9 and "user-given" in pk["source"]
    assert m["compute/mfu"] == pytest.approx(m["compute/achieved_tflops"] / 0.001)
    code, r, out = infer(*QUICK, "--peak-tflops", "-1")
    assert code == 2 and "peak_tflops" in out


def test_null_backend_gathers_unless_told(infer):
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", "Offline")
    assert code == 0, out
    assert r["backend"]["gather"] is True
    assert any("with the sample gather" in x for x in r["validity_reasons"])
    assert "compute/mfu" not in r["metrics"] and "compute/kernel_peak_fraction" not in r["metrics"]
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", "Offline", "--null-skip-gather")
    assert code == 0, out
    assert r["backend"]["gather"] is False and r["config"]["null_skip_gather"] is True
    assert any("without the sample gather" in x for x in r["validity_reasons"])
    code, r, out = infer(*QUICK, "--null-skip-gather")
    assert code == 2 and "null backend only" in out


def test_null_backend_receives_the_gathered_batch():
    from types import SimpleNamespace

    import numpy as np

    from mlbench.inference.backends.null import NullBackend
    from mlbench.inference.sample_store import ArrayStore
    from mlbench.inference.sut import SUT

    store = ArrayStore(total_count=8, performance_count=8,
                       preprocess=lambda idx: np.stack([np.full((3, 4), i, np.float32) for i in idx]),
                       labels=list(range(8)))
    store.load(list(range(8)))
    for skip, expect in ((False, 3 * 48), (True, 0)):
        backend = NullBackend(SimpleNamespace(null_skip_gather=skip, precision="fp32"), 1)
        sut = SUT.__new__(SUT)
        sut.store, sut.backend, sut._device_gather = store, backend, None
        x = sut._gather([1, 5, 7]) if backend.needs_input else None
        backend.predict(x)
        assert backend.touched == expect


SERVER = {"result_validity": "INVALID", "result_perf_constraints_met": False, "result_min_duration_met": True,
          "effective_target_latency_ns": 15_000_000, "effective_target_latency_percentile": 0.99,
          "result_99.00_percentile_latency_ns": 41_000_000, "result_overlatency_query_count": 40,
          "result_query_count": 40, "result_min_latency_ns": 38_200_000}


def test_advice_when_no_qps_can_pass():
    _, reasons = logs.validity(SERVER, "Server", min_latency_s=0.0375)
    text = reasons[0]
    assert "no target QPS can pass" in text and "37.5 ms, above the 15 ms bound" in text
    assert "--precision" in text and "--threads" in text and "lower the target QPS" not in text


def test_advice_when_the_load_is_too_high():
    _, reasons = logs.validity({**SERVER, "result_min_latency_ns": 4_000_000}, "Server", min_latency_s=0.0035)
    assert "lower the target QPS" in reasons[0] and "no target QPS" not in reasons[0]


def test_advice_when_too_short():
    detail = {"result_validity": "INVALID", "result_min_duration_met": False, "effective_min_duration_ms": 5000,
              "generated_samples_per_query": 200, "result_samples_per_second": 100.0,
              "requested_offline_expected_qps": 40.0, "result_query_count": 1}
    _, reasons = logs.validity(detail, "Offline")
    assert reasons[0].startswith("duration too short: the test ran 2 s and must run at least 5 s")
    assert "expected QPS of at least 100" in reasons[0] and "--target-qps 110" in reasons[0]
    ss = {"result_validity": "INVALID", "result_min_duration_met": False, "effective_min_duration_ms": 1000,
          "result_query_count": 100, "result_qps_with_loadgen_overhead": 200.0, "result_mean_latency_ns": 5e6}
    text = logs.validity(ss, "SingleStream")[1][0]
    assert "ran 0.5 s" in text and "200 queries/s (5 ms a query)" in text


def test_cli_advice_fits_the_cause(infer):
    # one sample alone is far above a 0.001 ms bound: no QPS can pass, and the advice says so
    code, r, out = infer(*QUICK, "--scenario", "Server", "--target-latency-ms", "0.001", "--target-qps", "50")
    reason = next(x for x in r["validity_reasons"] if x.startswith("latency bound exceeded"))
    assert "no target QPS can pass" in reason, reason
    # too short: an Offline null run planned for 10 samples/s finishes early; the reason says how long it ran
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", "Offline", "--target-qps", "10")
    reason = next(x for x in r["validity_reasons"] if x.startswith("duration too short"))
    assert "the test ran" in reason and "--target-qps" in reason, reason
