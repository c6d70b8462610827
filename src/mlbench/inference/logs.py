"""Reading what LoadGen wrote: mlperf_log_detail.txt (results, validity) and mlperf_log_accuracy.json.

LoadGen decides validity; we only translate its verdict into plain words with the numbers behind it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlbench.errors import DataError

# The scenario's MLPerf metric: (detail-log key, metric name with unit, scale to that unit).
SCENARIO_METRIC = {
    "Offline": ("result_samples_per_second", "throughput/samples_per_s", 1.0),
    "Server": ("result_completed_samples_per_sec", "throughput/completed_samples_per_s", 1.0),
    "SingleStream": ("early_stopping_latency_ss", "latency/p90_early_stopping_ms", 1e-6),
    "MultiStream": ("early_stopping_latency_ms", "latency/p99_early_stopping_ms", 1e-6),
}


def read_detail(path: Path) -> dict[str, Any]:
    """Every ``:::MLLOG`` entry of a detail log as key -> value (the last one wins)."""
    out: dict[str, Any] = {}
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:  # a line cut by a crash: keep what is whole
            continue
        out[entry.get("key")] = entry.get("value")
        if entry.get("metadata", {}).get("is_error"):
            out.setdefault("_errors", []).append(str(entry.get("value")))
    return out


def metrics(detail: dict[str, Any], scenario: str) -> dict[str, Any]:
    """Flat metrics with units in the keys: the scenario's metric first, then latencies and counts."""
    key, name, scale = SCENARIO_METRIC[scenario]
    m: dict[str, Any] = {"scenario_metric": name}
    value = detail.get(key)
    m[name] = None if value is None else float(value) * scale
    if scenario == "Offline":
        m["throughput/samples_per_s"] = m[name]
        if detail.get("result_tokens_per_second") is not None:  # token latencies on: MLPerf's metric is tokens/s
            m["throughput/tokens_per_s"] = float(detail["result_tokens_per_second"])
            m["scenario_metric"] = "throughput/tokens_per_s"
    if scenario == "Server":
        m["throughput/scheduled_qps"] = detail.get("result_scheduled_samples_per_sec")
        m["throughput/samples_per_s"] = m[name]
        m["server/target_qps"] = detail.get("effective_target_qps")
        m["server/target_latency_ms"] = _ms(detail.get("effective_target_latency_ns"))
        m["server/overlatency_queries"] = detail.get("result_overlatency_query_count")
    if scenario == "SingleStream":
        qps = detail.get("result_qps_with_loadgen_overhead")
        m["throughput/samples_per_s"] = float(qps) if qps is not None else None
    per_query = "per_query_" if scenario == "MultiStream" else ""
    for p in ("50.00", "90.00", "99.00", "99.90"):
        m[f"latency/p{p.rstrip('0').rstrip('.')}_ms"] = _ms(detail.get(f"result_{p}_percentile_{per_query}latency_ns"))
    m["latency/mean_ms"] = _ms(detail.get(f"result_mean_{'query_' if per_query else ''}latency_ns"))
    m["queries"] = detail.get("result_query_count")
    return m


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6


def validity(detail: dict[str, Any], scenario: str, min_latency_s: float | None = None) -> tuple[bool, list[str]]:
    """LoadGen's verdict and, when INVALID, each reason in plain words with its numbers and advice that fits
    the cause. ``min_latency_s``: the shortest single-sample latency measured before the test (the warm-up
    estimate), which tells whether any target QPS could meet a latency bound."""
    if not detail:
        return False, ["LoadGen wrote no result (the test did not finish)"]
    valid = detail.get("result_validity") == "VALID"
    reasons: list[str] = []
    if detail.get("result_min_duration_met") is False:
        reasons.append(_too_short(detail, scenario))
    if detail.get("result_min_queries_met") is False:
        reasons.append(f"too few queries: {detail.get('result_query_count')} ran, at least "
                       f"{detail.get('effective_min_query_count')} are required")
    if detail.get("result_perf_constraints_met") is False:
        reasons.append(_over_latency(detail, min_latency_s))
    if detail.get("early_stopping_met") is False:
        text = " ".join(str(detail.get("early_stopping_result", "")).replace("*", "").split())
        for what in ("ttft", "tpot"):  # token latencies: one verdict per bound
            part = " ".join(str(detail.get(f"early_stopping_{what}_result", "")).replace("*", "").split())
            if part:
                text += f"{'; ' if text else ''}{what.upper()}: {part}"
        reasons.append(f"early stopping not met: {text}" if text else "early stopping not met")
    for err in detail.get("_errors", []):
        reasons.append(f"LoadGen error: {err}")
    if not valid and not reasons:
        reasons.append(f"LoadGen marked the result {detail.get('result_validity', 'INVALID')}")
    return valid, reasons


def measured_duration_s(detail: dict[str, Any], scenario: str) -> float | None:
    """How long the performance test ran by LoadGen's clock: what it completed over the rate it measured."""
    if scenario == "Offline":
        n, rate = detail.get("generated_samples_per_query"), detail.get("result_samples_per_second")
    elif scenario == "Server":
        n, rate = detail.get("result_query_count"), detail.get("result_completed_samples_per_sec")
    else:  # SingleStream, MultiStream: queries per second with LoadGen's overhead
        n, rate = detail.get("result_query_count"), detail.get("result_qps_with_loadgen_overhead")
    return float(n) / float(rate) if n and rate else None


def _n(x: Any) -> str:
    """A rate in plain digits: 54,490 rather than 5.449e+04."""
    v = float(x)
    return f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"


def _too_short(detail: dict[str, Any], scenario: str) -> str:
    need = float(detail.get("effective_min_duration_ms") or 0) / 1000
    ran = measured_duration_s(detail, scenario)
    text = "duration too short: the test ran " + ((f"{ran:.3g} s" if ran >= 0.01 else f"{ran * 1000:.3g} ms")
                                                  if ran is not None else "less")
    text += f" and must run at least {need:g} s"
    if scenario == "Offline":
        rate, asked = detail.get("result_samples_per_second"), detail.get("requested_offline_expected_qps")
        if rate:  # LoadGen plans expected QPS x minimum duration samples; 10% over the rate for noise
            text += (f": it completed {_n(rate)} samples/s, more than the expected {_n(asked or 0)} that LoadGen "
                     f"planned the samples for; an expected QPS of at least {_n(rate)} would have met it: rerun "
                     f"with --target-qps {_n(float(rate) * 1.1)}")
        return text
    if scenario == "Server":
        qps = detail.get("effective_target_qps")
        return text + (f": at {float(qps):.4g} QPS it ran out of queries; raise --target-qps" if qps else "")
    mean = detail.get("result_mean_latency_ns") or detail.get("result_mean_query_latency_ns")
    if mean:  # SingleStream / MultiStream: LoadGen plans queries from the warm-up's latency estimate
        text += (f": queries took {float(mean) / 1e6:.3g} ms on average, shorter than the warm-up estimate LoadGen "
                 f"planned them for; an expected rate of {1e9 / float(mean):.4g} queries/s "
                 f"({float(mean) / 1e6:.3g} ms a query) would have met it: rerun (the estimate is re-measured), "
                 "ideally on a quieter machine")
    return text


def _over_latency(detail: dict[str, Any], min_latency_s: float | None) -> str:
    bound = _ms(detail.get("effective_target_latency_ns"))
    pct = float(detail.get("effective_target_latency_percentile", 0.99)) * 100
    p = f"{pct:.2f}".rstrip("0").rstrip(".")
    got = _ms(detail.get(f"result_{pct:.2f}_percentile_latency_ns"))
    over = detail.get("result_overlatency_query_count")
    if got is None or bound is None:
        return "latency bound exceeded"
    text = (f"latency bound exceeded: p{p} latency {got:.2f} ms > {bound:g} ms bound "
            f"({over} of {detail.get('result_query_count')} queries over)")
    shortest = [v for v in (_ms(detail.get("result_min_latency_ns")),
                            None if min_latency_s is None else min_latency_s * 1000) if v is not None]
    if shortest and min(shortest) > bound:
        return (f"{text}; no target QPS can pass: the shortest single-sample latency is {min(shortest):.3g} ms, "
                f"above the {bound:g} ms bound even with one sample at a time. What could: a faster precision "
                "(--precision bf16, or --backend onnxruntime --precision int8), a faster backend or device "
                "(--device cuda), or more cores on each sample (--threads, with --workers 1); a smaller batch "
                "or more workers cannot shorten one sample")
    return (f"{text}; lower the target QPS (--find-peak searches the highest VALID one), or shorten the queue: "
            "a smaller --batch-size, --max-wait-ms 0, more --workers")


def read_accuracy_entries(path: Path) -> list[tuple[int, bytes]]:
    """Every entry of mlperf_log_accuracy.json as (dataset index, response bytes), in log order."""
    if not path.is_file():
        raise DataError(f"LoadGen wrote no accuracy log ({path})", "the accuracy run did not finish; run again")
    try:
        entries = json.loads(path.read_text() or "[]")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}", "the accuracy run was cut short; run it again") from exc
    return [(int(e["qsl_idx"]), bytes.fromhex(e["data"])) for e in entries]


def read_accuracy(path: Path) -> dict[int, bytes]:
    """mlperf_log_accuracy.json as dataset index -> response bytes (the last response per index wins)."""
    return dict(read_accuracy_entries(path))


# ---------------------------------------------------------------- language models: token latencies
TOKEN_PERCENTILES = ("50.00", "90.00", "99.00")


def token_metrics(detail: dict[str, Any], scenario: str) -> dict[str, Any]:
    """Tokens/s, samples/s, TTFT and TPOT percentiles (ms) and their bounds, from a token-latency detail log.

    Offline: LoadGen's ``result_tokens_per_second`` (generated tokens over the whole query); Server: its
    ``result_completed_tokens_per_second``; SingleStream: tokens per second with LoadGen's overhead."""
    m: dict[str, Any] = {}
    key = {"Offline": "result_tokens_per_second", "Server": "result_completed_tokens_per_second"}.get(
        scenario, "result_token_throughput_with_loadgen_overhead")
    tps = detail.get(key)
    m["throughput/tokens_per_s"] = None if tps is None else float(tps)
    if scenario in ("Offline", "Server"):
        m["scenario_metric"] = "throughput/tokens_per_s"
    for p in TOKEN_PERCENTILES:
        short = p.rstrip("0").rstrip(".")
        m[f"latency/ttft_p{short}_ms"] = _ms(detail.get(f"result_first_token_{p}_percentile_latency_ns"))
        m[f"latency/tpot_p{short}_ms"] = _ms(detail.get(f"result_time_per_output_token_{p}_percentile_ns"))
    if scenario == "Server":
        m["bounds/ttft_p99_ms"] = _ms(detail.get("requested_server_ttft_latency"))
        m["bounds/tpot_p99_ms"] = _ms(detail.get("requested_server_tpot_latency"))
    return {k: v for k, v in m.items() if v is not None or k == "throughput/tokens_per_s"}


def token_lines(m: dict[str, Any]) -> list[str]:
    """The token figures of a metrics dict in a few console lines (none when it has none)."""
    out = []
    if m.get("throughput/tokens_per_s") is not None:
        out.append(f"tokens/s: {m['throughput/tokens_per_s']:.4g}; samples/s: "
                   f"{_g(m.get('throughput/samples_per_s'))}")
    for name, what in (("ttft", "TTFT"), ("tpot", "TPOT")):
        if m.get(f"latency/{name}_p50_ms") is None:
            continue
        bound = m.get(f"bounds/{name}_p99_ms")
        out.append(f"{what} p50/p90/p99: {_g(m.get(f'latency/{name}_p50_ms'))} / {_g(m.get(f'latency/{name}_p90_ms'))}"
                   f" / {_g(m.get(f'latency/{name}_p99_ms'))} ms" + (f" (bound: p99 <= {bound:g} ms)" if bound else ""))
    return out


def _g(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.4g}"


def token_reasons(detail: dict[str, Any], reasons: list[str]) -> list[str]:
    """``reasons`` (from :func:`validity`) with the latency reason told in TTFT and TPOT terms: which bound, by how
    much, and what could help."""
    if detail.get("result_perf_constraints_met") is not False:
        return reasons
    out = [r for r in reasons if not r.startswith("latency bound exceeded")]
    told = False
    for name, what, lat_key, bound_key, help_text in (
            ("ttft", "time to first token", "result_first_token_99.00_percentile_latency_ns",
             "requested_server_ttft_latency", "prompts wait in the queue: lower --target-qps (--find-peak finds the "
             "highest VALID one), or a larger --batch-size so that more waiting prompts start together"),
            ("tpot", "time per output token", "result_time_per_output_token_99.00_percentile_ns",
             "requested_server_tpot_latency", "each step decodes every sequence of the batch: a smaller "
             "--batch-size shortens a step; a faster --device or --precision helps both")):
        got, bound = _ms(detail.get(lat_key)), _ms(detail.get(bound_key))
        if got is not None and bound and got > bound:
            out.append(f"{what} bound exceeded: p99 {name.upper()} {got:.1f} ms > "
                       f"{bound:g} ms ({got / bound:.2g}x the bound); {help_text}")
            told = True
    if not told:
        out.append("LoadGen found the TTFT/TPOT constraints not met (see mlperf_log_summary.txt)")
    return out
