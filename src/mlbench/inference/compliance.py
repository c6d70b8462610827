"""``--find-peak`` (highest VALID Server QPS) and ``--compliance`` (MLPerf audit tests TEST01 and TEST04).

Find-peak: short Server probes, doubling the target QPS while LoadGen says VALID, then bisecting between the
last VALID and the first INVALID rate; the run's own performance test at the found rate is the confirming
run. Every probe is reported.

Compliance goes through LoadGen's audit.config mechanism (LoadGen reads the file and overrides the settings):
- TEST01 logs a sample of responses in performance mode; they must equal the accuracy-mode responses for the
  same samples, and performance with logging on must stay within 10% of the performance run.
- TEST04 issues the same sample over and over; the result must not be more than 10% better than the
  performance run (a faster result means the SUT caches answers). Latency scenarios relax this to 20% when
  the p90/p99 is short (under 0.2 ms / 1.6 ms), as the MLPerf checker does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mlbench import runs
from mlbench.errors import ConfigError
from mlbench.inference import logs, runner

PROBE_STEPS = 10  # at most this many probes after the first


def find_peak(s, run_dir: Path, result: dict, state: dict, say) -> float:
    """Search the highest VALID Server QPS with short probes; sets ``s.server_qps`` to it."""
    cfg = s.cfg
    if cfg.scenario != "Server":
        raise ConfigError("--find-peak searches the Server scenario's QPS", "add --scenario Server")
    probe_s = min(cfg.duration_s, 3.0) if cfg.quick else 10.0
    probes: list[dict[str, Any]] = []
    good, bad = 0.0, None
    qps = cfg.target_qps or s.server_qps
    for i in range(PROBE_STEPS + 1):
        valid, m = _probe(s, qps, probe_s, run_dir / "find_peak" / f"probe_{i + 1:02d}")
        probes.append({"target_qps": qps, "valid": valid, "completed_qps": m.get("throughput/samples_per_s"),
                       "p99_ms": m.get("latency/p99_ms")})
        say(f"find-peak probe {i + 1}: {qps:.1f} QPS -> {'VALID' if valid else 'INVALID'} "
            f"(p99 {m.get('latency/p99_ms') or float('nan'):.2f} ms)")
        if valid:
            good = max(good, qps)
        else:
            bad = qps if bad is None else min(bad, qps)
        if bad is None:
            qps *= 2
        elif good == 0.0:
            qps = bad / 2
        elif (bad - good) / bad < 0.05:
            break
        else:
            qps = (good + bad) / 2
    result["find_peak"] = {"peak_qps": good or None, "probe_duration_s": probe_s, "probes": probes,
                           "note": "short probes; the performance test that follows at peak_qps confirms it"}
    runs.write_json(run_dir / "result.json", result)
    if good:
        s.server_qps = good
    return good


def _probe(s, qps: float, seconds: float, outdir: Path) -> tuple[bool, dict]:
    cfg = dataclasses.replace(s.cfg, quick=True, duration_s=seconds, target_qps=qps)
    p = runner.plan_for(s, "performance", cfg=cfg, server_qps=qps)
    test = runner.run_test(s, p, outdir)
    return test["loadgen_valid"], test["metrics"]


TEST01 = """# mlbench TEST01: log a sample of responses in performance mode (mode 2 = performance)
*.*.mode = 2
*.*.accuracy_log_rng_seed = 720381539243781796
*.*.accuracy_log_sampling_target = {target}
"""
TEST04 = """# mlbench TEST04: issue the same sample for every query (detects caching)
*.*.mode = 2
*.*.performance_issue_unique = 0
*.*.performance_issue_same = 1
*.*.performance_issue_same_index = 3
"""


def compliance(s, run_dir: Path, result: dict, state: dict, say) -> dict:
    """Run TEST01 and TEST04 after the run's own tests and record pass/fail with the numbers."""
    tests = state["tests"]
    perf = tests.get("performance")
    if perf is None:
        raise ConfigError("--compliance compares with the run's performance test", "use --mode performance or submission")
    ref_dir = Path(perf["dir"])
    acc_ref = _accuracy_reference(s, run_dir, tests, say)
    out: dict[str, Any] = {}
    for name, text in (("TEST01", TEST01.format(target=min(1024, s.store.performance_count))), ("TEST04", TEST04)):
        d = run_dir / "compliance" / name
        d.mkdir(parents=True, exist_ok=True)
        audit = d / "audit.config"
        audit.write_text(text)
        p = runner.plan_for(s, "performance")
        test = runner.run_planned(s, p, d, audit_config=audit)
        check = _check_performance(name, perf, test, s.cfg.scenario)
        if name == "TEST01":
            check["accuracy"] = _check_responses(acc_ref, d / "mlperf_log_accuracy.json")
            check["passed"] = check["passed"] and check["accuracy"]["passed"]
        check["audit_applied"] = _audit_applied(d, name)
        check["passed"] = check["passed"] and check["audit_applied"]
        out[name] = check
        say(f"compliance {name}: {'PASS' if check['passed'] else 'FAIL'} ({check['detail']})")
    out["passed"] = all(v["passed"] for v in out.values() if isinstance(v, dict))
    out["reference_performance_dir"] = str(ref_dir)
    result["compliance"] = out
    return out


def _accuracy_reference(s, run_dir: Path, tests: dict, say) -> dict[int, bytes]:
    """Responses of an accuracy run (the run's own, or one made now for TEST01)."""
    if "accuracy" not in tests:
        say("compliance: running accuracy mode for TEST01's reference responses")
        p = runner.plan_for(s, "accuracy")
        d = run_dir / "compliance" / "accuracy_reference"
        runner.run_test(s, p, d)
        return logs.read_accuracy(d / "mlperf_log_accuracy.json")
    return logs.read_accuracy(Path(tests["accuracy"]["dir"]) / "mlperf_log_accuracy.json")


def _check_responses(reference: dict[int, bytes], log: Path) -> dict[str, Any]:
    logged = logs.read_accuracy_entries(log)  # every entry: a repeated sample must match each time
    matched = [(i, data) for i, data in logged if i in reference]
    mismatched = [i for i, data in matched if data != reference[i]]
    return {"passed": bool(matched) and not mismatched, "logged": len(logged), "compared": len(matched),
            "mismatched": len(mismatched), "unique_samples": len({i for i, _ in logged})}


def _score(test: dict, scenario: str) -> float | None:
    m = test["metrics"]
    return m.get(m.get("scenario_metric", ""))


def _check_performance(name: str, ref: dict, test: dict, scenario: str) -> dict[str, Any]:
    r, t = _score(ref, scenario), _score(test, scenario)
    if r is None or t is None:
        return {"passed": False, "detail": "no score to compare", "reference": r, "test": t}
    higher_better = scenario in ("Offline", "Server")
    threshold = 0.10
    if scenario == "SingleStream" and r <= 0.2 or scenario == "MultiStream" and r <= 1.6:  # ms
        threshold = 0.20
    if name == "TEST01":  # logging responses must not change performance by more than the threshold
        ratio = t / r if higher_better else r / t
        passed = ratio >= 1 - threshold
        detail = f"performance with response logging is {ratio:.1%} of the performance run (>= {1 - threshold:.0%})"
    else:  # the same sample every time must not be faster: caching
        ratio = t / r if higher_better else r / t
        passed = ratio < 1 + threshold
        detail = f"same-sample performance is {ratio:.1%} of the performance run (< {1 + threshold:.0%})"
    return {"passed": passed and test["loadgen_valid"], "reference": r, "test": t, "ratio": ratio,
            "threshold": threshold, "loadgen_valid": test["loadgen_valid"], "detail": detail}


def _audit_applied(outdir: Path, name: str) -> bool:
    """LoadGen logs the settings it used; make sure it did read our audit.config."""
    d = logs.read_detail(outdir / "mlperf_log_detail.txt")
    if name == "TEST04":
        return bool(d.get("effective_performance_issue_same"))
    return d.get("effective_accuracy_log_sampling_target", 0) > 0 or d.get("effective_accuracy_log_probability", 0) > 0
