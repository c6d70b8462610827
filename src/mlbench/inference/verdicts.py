"""TEST01 and TEST04 verdicts, derived from LoadGen's logs and written in the form MLPerf's compliance scripts
write them (mlcommons/inference ``compliance/TEST01/run_verification.py`` and ``compliance/TEST04``):
``verify_performance.txt`` and, for TEST01, ``verify_accuracy.txt``, each ending with ``TEST PASS`` or a
``TEST FAIL...`` line, which is what the submission checker looks for.

The rules are the official ones:
- TEST01 performance: both runs VALID, same scenario (and Server latency bound); the audit run's score within
  10% of the performance run's either way (20% for a SingleStream p90 up to 0.2 ms or a MultiStream p99 up to
  1.6 ms). Scores from the detail logs.
- TEST01 accuracy: every response logged in performance mode matches the accuracy run's for the same sample
  (mlbench compares every byte, where the official script compares the first element).
- TEST04 performance: both runs VALID; the same-sample run is not 10% (20% for short latencies, in the official
  script's units) or more better than the performance run. Scores from the summaries.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DETAIL_SCORE = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss",
                "MultiStream": "early_stopping_latency_ms", "Server": "result_completed_samples_per_sec"}


def _lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def first_values(path: Path) -> dict[str, Any]:
    """A detail log as key -> the first value logged for it (as the submission checker reads it)."""
    out: dict[str, Any] = {}
    for line in _lines(path):
        if not line.startswith(":::MLLOG"):
            continue
        try:
            ev = json.loads(line[len(":::MLLOG"):])
        except (ValueError, RecursionError):
            continue
        if isinstance(ev, dict) and isinstance(ev.get("key"), str):
            out.setdefault(ev["key"], ev.get("value"))
            if isinstance(ev.get("metadata"), dict) and ev["metadata"].get("is_error"):
                out.setdefault("_errors", []).append(str(ev.get("value")))
    return out


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def test01_performance(reference: Path, test: Path, shown: tuple[str, str]) -> str:
    """verify_performance.txt of TEST01 from the two detail logs (``shown``: how to name them in the text)."""
    lines = ["Verifying performance."]
    runs = []
    for path, name in zip((reference, test), shown):
        d = first_values(path)
        scen = d.get("effective_scenario")
        score = _number(d.get(DETAIL_SCORE.get(scen, ""), None)) if scen in DETAIL_SCORE else None
        if d.get("result_validity") != "VALID" or score is None:
            return "\n".join(lines + [f"TEST FAIL: Invalid results in {name}"]) + "\n"
        runs.append((scen, score, d.get("effective_target_latency_ns")))
    (ref_scen, ref, ref_lat), (test_scen, got, test_lat) = runs
    if ref_scen != test_scen:
        return "\n".join(lines + ["TEST FAIL: Test and reference scenarios do not match!"]) + "\n"
    if ref_scen == "Server" and ref_lat != test_lat:
        return "\n".join(lines + ["TEST FAIL: Server target latency mismatch"]) + "\n"
    lines += [f"Reference score = {ref}", f"Test score = {got}"]
    threshold = 0.20 if (ref_scen == "SingleStream" and ref <= 200_000
                         or ref_scen == "MultiStream" and ref <= 1_600_000) else 0.10
    ok = ref * (1 - threshold) <= got <= ref * (1 + threshold)
    return "\n".join(lines + ["TEST PASS" if ok else "TEST FAIL: Test score invalid"]) + "\n"


_SUMMARY_SCORE = {
    "SingleStream": re.compile(r".*Early stopping (90th|90\.0th|99\.9th) percentile estimate"),
    "MultiStream": re.compile(r".*Early stopping (99th|99\.0th) percentile estimate"),
    "Server": re.compile(r"Completed samples per second"),
    "Offline": re.compile(r"Samples per second"),
}


def _summary(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in _lines(path):
        key, _, value = line.partition(": ")
        value = value.strip()
        if line.startswith("Scenario") and "scenario" not in out:
            out["scenario"] = value
        elif line.startswith("Result is") and "valid" not in out:
            out["valid"] = value
        elif line.startswith("target_latency (ns)"):
            out["target_latency"] = value
        elif (rx := _SUMMARY_SCORE.get(out.get("scenario", ""))) and rx.match(line) and "score" not in out:
            v = _number(value)
            if v is not None and out["scenario"] in ("SingleStream", "MultiStream"):
                v = 1e9 / v if v else None
            out["score"] = v
    return out


def test04_performance(reference: Path, test: Path) -> str:
    """verify_performance.txt of TEST04 from the two summaries."""
    lines = ["Verifying performance."]
    ref, got = _summary(reference), _summary(test)
    if ref.get("valid") != "VALID":
        return "\n".join(lines + ["TEST FAIL: Reference results are invalid"]) + "\n"
    if got.get("valid") != "VALID":
        return "\n".join(lines + ["TEST FAIL: Test results are invalid"]) + "\n"
    if ref.get("scenario") == "Server" and ref.get("target_latency") != got.get("target_latency"):
        return "\n".join(lines + ["TEST FAIL: Server target latency mismatch"]) + "\n"
    if ref.get("scenario") != got.get("scenario"):
        return "\n".join(lines + ["TEST FAIL: Test and reference scenarios do not match!"]) + "\n"
    r, t = ref.get("score"), got.get("score")
    if r is None or t is None:
        return "\n".join(lines + ["TEST FAIL: no score in the summaries"]) + "\n"
    lines += [f"reference score = {r}", f"test score = {t}"]
    threshold = 0.20 if (ref["scenario"] == "SingleStream" and r <= 200_000
                         or ref["scenario"] == "MultiStream" and r <= 1_600_000) else 0.10
    return "\n".join(lines + ["TEST PASS" if t < r * (1 + threshold) else "TEST FAIL: Test score invalid"]) + "\n"


def _entries(path: Path) -> list[tuple[int, str]] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "[]")
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(data, list):
        return None
    out = []
    for e in data:
        if not isinstance(e, dict) or not isinstance(e.get("qsl_idx"), int) or not isinstance(e.get("data"), str):
            return None
        out.append((e["qsl_idx"], e["data"].lower()))
    return out


def test01_accuracy(reference: Path, test: Path) -> str:
    """verify_accuracy.txt of TEST01: the responses logged in performance mode against the accuracy run's."""
    lines = ["Verifying accuracy: every response logged in performance mode against the accuracy run's (mlbench "
             "compares them in full)."]
    ref, got = _entries(reference), _entries(test)
    if ref is None or got is None:
        which = reference if ref is None else test
        return "\n".join(lines + [f"TEST FAIL: {Path(which).name} is missing or not an accuracy log"]) + "\n"
    table: dict[int, str] = {}
    dup = dup_mismatch = 0
    for i, data in ref:
        if i in table:
            dup += 1
            dup_mismatch += table[i] != data
        else:
            table[i] = data
    matched = mismatched = missing = 0
    for i, data in got:
        if i in table:
            matched += 1
            mismatched += table[i] != data
        else:
            missing += 1
    lines += [f"num_acc_log_entries = {len(ref)}", f"num_acc_log_duplicate_keys = {dup}",
              f"num_acc_log_data_mismatch = {dup_mismatch}", f"num_perf_log_entries = {len(got)}",
              f"num_perf_log_qsl_idx_match = {matched}", f"num_perf_log_data_mismatch = {mismatched}",
              f"num_missing_qsl_idxs = {missing}"]
    return "\n".join(lines + ["TEST PASS" if mismatched == 0 and matched > 0 else "TEST FAIL"]) + "\n"


def passed(text: str) -> bool:
    """What the submission checker reads from a verify file: a line that is ``TEST PASS``."""
    return "TEST PASS" in (ln.strip() for ln in text.splitlines())
