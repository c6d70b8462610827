"""Ctrl-C and a crashing backend: the run is recorded (aborted, or failed for a crash), LoadGen's logs are kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlbench.errors import RunAborted


def test_ctrl_c_keeps_what_loadgen_wrote(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mlbench", "infer", "resnet50", "--size", "tiny", "--backend", "null",
           "--scenario", "Server", "--target-qps", "1000", "--quick", "--duration-s", "60", "--output-dir", str(out)]
    # Ctrl-C as a terminal gives it; a shell's background job (pytest run with &) inherits SIGINT ignored
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    for line in p.stdout:
        if "performance test" in line or time.time() > deadline:
            break
    time.sleep(1.5)  # LoadGen is running now
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=120)  # a loaded machine is slow to stop; a run ignoring ^C would take 60 s+
    assert p.returncode == 130, rest
    run_dir = next(p for p in out.iterdir() if p.is_dir())  # results.db lies beside the run
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "aborted" and result["valid"] is False
    assert any("interrupted" in r for r in result["validity_reasons"])
    assert (run_dir / "mlperf_log_detail.txt").stat().st_size > 0  # LoadGen's log survived


def test_crashing_backend_is_recorded(tmp_path, monkeypatch):
    from mlbench.inference.backends.null import NullBackend
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    calls = {"n": 0}

    def predict(self, x):
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("device lost")
        return None

    monkeypatch.setattr(NullBackend, "predict", predict)
    cfg = InferConfig(size="tiny", backend="null", scenario="Offline", quick=True, duration_s=0.5,
                      output_dir=str(tmp_path / "runs"), batch_size=4)
    with pytest.raises(RunAborted, match="device lost"):
        execute(cfg)
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())  # results.db lies beside it
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "device lost" in result["error"]  # a crash is a failed run
    assert (run_dir / "mlperf_log_detail.txt").is_file() and Path(run_dir / "mlperf_log_summary.txt").is_file()
