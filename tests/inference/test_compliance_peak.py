"""--compliance (TEST01, TEST04 through LoadGen's audit.config) and --find-peak (Server)."""

from __future__ import annotations

import json
from pathlib import Path

from infer_support import QUICK


def test_compliance_tests_run_through_audit_config(infer):
    code, r, out = infer(*QUICK, "--mode", "submission", "--compliance")
    c = r["compliance"]
    run_dir = Path(r["run_dir"])
    for name in ("TEST01", "TEST04"):
        assert (run_dir / "compliance" / name / "audit.config").is_file()
        assert (run_dir / "compliance" / name / "mlperf_log_detail.txt").is_file()
        assert c[name]["audit_applied"], name  # LoadGen read our audit.config
        assert c[name]["reference"] > 0 and c[name]["test"] > 0
    # TEST01: responses logged in performance mode equal the accuracy run's, sample for sample
    acc = c["TEST01"]["accuracy"]
    assert acc["compared"] > 0 and acc["mismatched"] == 0
    logged = json.loads((run_dir / "compliance" / "TEST01" / "mlperf_log_accuracy.json").read_text())
    assert len(logged) == acc["logged"]
    assert c["passed"] == (c["TEST01"]["passed"] and c["TEST04"]["passed"])
    assert f"compliance: {'passed' if c['passed'] else 'FAILED'}" in out


def test_find_peak_reports_every_probe(infer):
    code, r, out = infer("--size", "tiny", "--backend", "null", "--scenario", "Server", "--quick",
                         "--duration-s", "0.5", "--find-peak", "--target-qps", "2000")
    fp = r["find_peak"]
    assert len(fp["probes"]) >= 2
    assert fp["probes"][0]["target_qps"] == 2000
    valid = [p["target_qps"] for p in fp["probes"] if p["valid"]]
    assert fp["peak_qps"] == (max(valid) if valid else None)  # a loaded machine may find no VALID rate
    if valid:  # the confirming performance test ran at the peak
        assert r["loadgen"]["settings"]["server_target_qps"] == fp["peak_qps"]
    assert fp["confirmed"] == (r["loadgen"]["validity"] == "VALID")
    assert len(list((Path(r["run_dir"]) / "find_peak").iterdir())) == len(fp["probes"])


def test_find_peak_needs_server(infer):
    code, r, out = infer(*QUICK, "--backend", "null", "--find-peak")
    assert code == 2 and "--scenario Server" in out
