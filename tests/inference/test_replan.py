"""Offline plans enough samples on any machine: a warm-up estimate below the real rate repeats the test once
at the measured rate instead of ending INVALID (duration too short), and the result says so."""

from __future__ import annotations

import time

from infer_support import QUICK

from mlbench.inference import backends, runner
from mlbench.inference.backends.null import NullBackend


class SlowStartBackend(NullBackend):
    """No model, but its warm-up predictions are slow (as a cold backend's are) and later ones are instant:
    the warm-up estimate is far below the rate the SUT then reaches."""

    runs_model = True
    name = "slow-start"

    def __init__(self, cfg, threads):
        super().__init__(cfg, threads)
        self.calls = 0

    def predict(self, x):
        self.calls += 1
        if self.calls <= 9:  # the estimate's predictions (3 x single, 8 and batch)
            time.sleep(0.02)
        return super().predict(x)


def _slow_start(monkeypatch):
    real = backends.get
    monkeypatch.setattr(backends, "get", lambda name: SlowStartBackend if name == "null" else real(name))
    # a real backend's run also counts FLOPs and calibrates the peak: not what this test is about
    monkeypatch.setattr("mlbench.inference.execute._compute_info", lambda result, s: None)


def test_offline_repeats_when_the_estimate_was_low(infer, monkeypatch):
    _slow_start(monkeypatch)
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", "Offline", "--batch-size", "64")
    assert r["loadgen"]["validity"] == "VALID", r["validity_reasons"]
    again = r["loadgen"]["replanned"]
    first = again["tries"][0]
    assert first["samples_per_s"] > first["expected_qps"]  # it ran short because the SUT was faster
    assert again["expected_qps"] >= runner.OFFLINE_REPLAN_MARGIN * first["samples_per_s"] * 0.999
    assert r["loadgen"]["settings"]["offline_expected_qps"] == again["expected_qps"]
    assert "the test ran too short" in out and "repeated" in out
    assert not any("duration too short" in x for x in r["validity_reasons"])
    from pathlib import Path

    assert (Path(first["logs"]) / "mlperf_log_detail.txt").is_file()  # the short try's logs are kept


def test_no_repeat_with_an_explicit_target_qps(infer, monkeypatch):
    _slow_start(monkeypatch)
    code, r, out = infer(*QUICK, "--backend", "null", "--scenario", "Offline", "--batch-size", "64",
                         "--target-qps", "10")
    assert code == 1
    assert "replanned" not in r["loadgen"]
    assert any(x.startswith("duration too short") for x in r["validity_reasons"])

