"""mlbench package inference: the Inference layout and mlbench's structural checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlbench.submission import inference


def test_accuracy_log_is_truncated_and_its_hash_kept(tmp_path):
    src = tmp_path / "mlperf_log_accuracy.json"
    src.write_bytes(b"[" + b'{"seq_id": 1, "qsl_idx": 2, "data": "00"},\n' * 2000 + b"]")
    digest = inference._truncate(src, tmp_path / "out.json")
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (tmp_path / "out.json").stat().st_size <= inference.MAX_ACCURACY_LOG
    text = inference._accuracy_txt({"metric": "top1", "value": 0.75, "target": 0.5, "reached": True,
                                    "scores": {"samples": 256}}, digest)
    assert text.splitlines()[0] == "accuracy=75.000%, good=192, total=256"  # the official checker's pattern
    assert f"hash={digest}" in text


def test_summary_flags_are_read_from_loadgen_summary():
    text = "Result is : INVALID\n  Min duration satisfied : NO\n  Min queries satisfied : Yes\n"
    assert inference._summary_flags(text) == {"Result is": "INVALID", "Min duration satisfied": "NO",
                                              "Min queries satisfied": "Yes"}


def _run(tmp_path: Path, **result) -> inference.InferRun:
    base = {"kind": "infer", "benchmark": "resnet50", "size": "tiny", "scenario": "Offline", "mode": "submission",
            "status": "success", "config": {"quick": False, "backend": "pytorch"}}
    return inference.InferRun(tmp_path, {**base, **result}, {"system_fingerprint": "abc"})


def test_quick_accuracy_only_and_open_as_closed_runs_are_refused(tmp_path):
    quick = _run(tmp_path / "q", config={"quick": True, "duration_s": 5.0})
    acc_only = _run(tmp_path / "a", mode="accuracy", scenario="Server")
    reasons = inference.refusals([quick, acc_only], "closed")
    assert f"{tmp_path / 'q'}: a --quick run (5.0 s instead of MLPerf's 600 s minimum): rerun without --quick" \
        in reasons
    assert any(r.startswith(f"{tmp_path / 'a'}: --mode accuracy") for r in reasons)
    assert sum("cannot be packaged as closed" in r for r in reasons) == 2


def test_bert_and_dlrm_folders_carry_the_accuracy_target(tmp_path):
    assert _run(tmp_path, benchmark="bert", accuracy={"target_name": "99.9"}).mlperf_name == "bert-99.9"
    assert _run(tmp_path, benchmark="dlrm").mlperf_name == "dlrm-v2-99"
    assert _run(tmp_path).mlperf_name == "resnet"


USER = {"status": "available", "system_type": "edge", "host_networking_card_count": "0",
        "host_processor_frequency": "2.0 GHz", "host_processor_caches": "L2 1 MiB", "host_processor_interconnect": "N/A",
        "host_storage_type": "SSD", "host_storage_capacity": "100 GB", "host_networking_topology": "N/A",
        "host_memory_configuration": "N/A", "cooling": "air"}


@pytest.mark.slow
def test_quick_submission_run_is_refused_then_forced_package_reports_each_problem(tmp_path, capsys, monkeypatch):
    """A real `mlbench infer --mode submission --quick --compliance` run (tiny model), packaged."""
    from mlbench.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "runs"
    assert main(["infer", "resnet50", "--size", "tiny", "--mode", "submission", "--quick", "--duration-s", "2",
                 "--compliance", "--output-dir", str(out)]) in (0, 1)
    (run,) = [d for d in out.iterdir() if d.is_dir() and "infer" in d.name]
    capsys.readouterr()
    user = tmp_path / "user.json"
    user.write_text(json.dumps(USER))
    args = ["package", "inference", str(run), "--submitter", "ACME", "--system", "cpu_2c", "-o", str(tmp_path / "p"),
            "--system-json", str(user)]
    assert main(args) == 1
    assert f"{run}: a --quick run" in capsys.readouterr().err
    assert main([*args, "--force"]) == 1
    text = capsys.readouterr().out
    scen = tmp_path / "p" / "open" / "ACME" / "results" / "cpu_2c" / "resnet" / "Offline"
    for rel in ("performance/run_1/mlperf_log_summary.txt", "performance/run_1/mlperf_log_detail.txt",
                "accuracy/accuracy.txt", "accuracy/mlperf_log_accuracy.json", "measurements.json", "user.conf",
                "README.md", "TEST01/verify_performance.txt", "TEST01/verify_accuracy.txt",
                "TEST04/verify_performance.txt", "TEST04/performance/run_1/mlperf_log_summary.txt"):
        assert (scen / rel).is_file(), rel
    assert (tmp_path / "p" / "open" / "ACME" / "code" / "resnet" / "README.md").is_file()
    assert (scen / "accuracy" / "mlperf_log_accuracy.json").stat().st_size <= inference.MAX_ACCURACY_LOG
    lines = text.splitlines()
    for name in ("system description", "files", "LoadGen VALID"):
        assert any(ln.split()[:len(name.split()) + 1] == [*name.split(), "pass"] for ln in lines), text
    assert "performance/run_1: the test ran with a 2 s minimum duration; MLPerf requires 600 s" in text
