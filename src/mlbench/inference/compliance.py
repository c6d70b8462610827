"""``--compliance``: the MLPerf audit tests TEST01 and TEST04.

Compliance goes through LoadGen's audit.config mechanism (LoadGen reads the file and overrides the settings):
- TEST01 logs a sample of responses in performance mode; they must equal the accuracy-mode responses for the
  same samples, and performance with logging on must stay within 10% of the performance run.
- TEST04 issues the same sample over and over; the result must not be more than 10% better than the
  performance run (a faster result means the SUT caches answers).
The verdicts are MLPerf's compliance scripts' rules (``mlbench.inference.verdicts``), written beside each test's
logs as they write them (``verify_performance.txt``, TEST01's ``verify_accuracy.txt``); ``mlbench package``
derives them again from the logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlbench.errors import ConfigError
from mlbench.inference import logs, runner

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
    acc_ref, acc_log = _accuracy_reference(s, run_dir, tests, say)
    out: dict[str, Any] = {}
    for name, text in (("TEST01", TEST01.format(target=min(1024, s.store.performance_count))), ("TEST04", TEST04)):
        d = run_dir / "compliance" / name
        d.mkdir(parents=True, exist_ok=True)
        audit = d / "audit.config"
        audit.write_text(text)
        p = runner.plan_for(s, "performance")
        test = runner.run_planned(s, p, d, audit_config=audit)
        check = _check_performance(name, perf, test, s.cfg.scenario)
        check["passed"], failing = _official_verdicts(name, ref_dir, d, acc_log)
        if failing:
            check["detail"] += f"; {failing}"
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


def _accuracy_reference(s, run_dir: Path, tests: dict, say) -> tuple[dict[int, bytes], Path]:
    """Responses of an accuracy run (the run's own, or one made now for TEST01), and its log."""
    if "accuracy" not in tests:
        say("compliance: running accuracy mode for TEST01's reference responses")
        p = runner.plan_for(s, "accuracy")
        d = run_dir / "compliance" / "accuracy_reference"
        runner.run_test(s, p, d)
        return logs.read_accuracy(d / "mlperf_log_accuracy.json"), d / "mlperf_log_accuracy.json"
    log = Path(tests["accuracy"]["dir"]) / "mlperf_log_accuracy.json"
    return logs.read_accuracy(log), log


def _official_verdicts(name: str, ref_dir: Path, d: Path, acc_log: Path) -> tuple[bool, str]:
    """The compliance scripts' verify files for test ``name`` (in ``d``), by MLPerf's rules: whether all pass, and
    the verdict line of the first that does not."""
    from mlbench.inference import verdicts

    if name == "TEST01":
        perf = verdicts.test01_performance(
            ref_dir / "mlperf_log_detail.txt", d / "mlperf_log_detail.txt",
            ("performance/mlperf_log_detail.txt", f"compliance/{name}/mlperf_log_detail.txt"))
        acc = verdicts.test01_accuracy(acc_log, d / "mlperf_log_accuracy.json")
        (d / "verify_accuracy.txt").write_text(acc)
    else:
        perf, acc = verdicts.test04_performance(ref_dir / "mlperf_log_summary.txt", d / "mlperf_log_summary.txt"), ""
    (d / "verify_performance.txt").write_text(perf)
    failing = next((t.strip().splitlines()[-1] for t in (perf, acc) if t and not verdicts.passed(t)), "")
    return not failing, failing


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
    if name == "TEST01":  # logging responses must not change performance by more than the threshold, either way
        ratio = t / r if higher_better else r / t
        passed = 1 - threshold <= ratio <= 1 + threshold
        detail = (f"performance with response logging is {ratio:.1%} of the performance run "
                  f"({1 - threshold:.0%} to {1 + threshold:.0%})")
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
