"""RNN-T end to end: `mlbench train rnnt --size tiny` (MLPerf log through the official checker),
`mlbench infer rnnt --size tiny --mode accuracy --quick` on its checkpoint, and bad data refused (exit 1,
nothing valid recorded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rnnt_helpers import tiny_dataset

ENV = {"OMP_NUM_THREADS": "2", "MLBENCH_SKIP_CACHE_CLEAR": "1"}


def cli(*args: str, tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "MLBENCH_CACHE": str(tmp / "cache")}
    return subprocess.run([sys.executable, "-m", "mlbench", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def only_run(out: Path) -> dict:
    [d] = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((d / "result.json").read_text()) | {"_dir": str(d)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rnnt-train")
    p = cli("train", "rnnt", "--size", "tiny", "--seed", "1", "--output-dir", str(tmp / "runs"), tmp=tmp)
    return tmp, p


@pytest.mark.slow
def test_tiny_trains_to_target_and_passes_the_compliance_checker(trained):
    tmp, p = trained
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = only_run(tmp / "runs")
    assert res["status"] == "success" and res["quality"]["metric"] == "wer"
    run = res["runs"][0]
    assert run["compliance"]["passed"], run["compliance"]
    log = (Path(res["_dir"]) / "run_1" / "mlperf_log.txt").read_text()
    assert '"key": "opt_name", "value": "lamb"' in log and '"key": "eval_max_prediction_symbols"' in log
    assert run["evals"][-1]["quality"] <= 0.9
    assert run["speed"]["rnnt_loss"] in ("torchaudio", "pytorch")  # which loss kernel ran


@pytest.mark.slow
def test_tiny_inference_scores_wer_from_the_accuracy_log(trained):
    tmp, p = trained
    assert p.returncode == 0
    ckpt = Path(only_run(tmp / "runs")["_dir"]) / "run_1" / "checkpoint.pt"
    out = tmp / "infer"
    q = cli("infer", "rnnt", "--size", "tiny", "--mode", "accuracy", "--quick", "--weights", str(ckpt),
            "--output-dir", str(out), tmp=tmp)
    assert q.returncode == 0, q.stdout[-3000:] + q.stderr[-3000:]
    acc = only_run(out)["accuracy"]
    assert acc["metric"] == "wer" and acc["scores"]["samples"] == 48 and 0 <= acc["value"] < 1.0


def test_bad_data_fails_cleanly_with_nothing_valid(tmp_path):
    ds = tiny_dataset(tmp_path / "ls")
    m = ds / "librispeech-dev-wav.json"
    entries = json.loads(m.read_text())
    entries[3]["transcript"] = "go 4 ever"
    m.write_text(json.dumps(entries))
    p = cli("train", "rnnt", "--size", "tiny", "--data-dir", str(ds), "--seed", "0", "--output-dir",
            str(tmp_path / "runs"), tmp=tmp_path, timeout=300)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert "entry 3" in p.stdout + p.stderr and "outside the tokenizer" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    for res in (tmp_path / "runs").rglob("result.json"):
        assert json.loads(res.read_text()).get("valid") is not True
