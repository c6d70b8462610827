"""Latencies of an inference run, read from the files LoadGen (and mlbench) leave in the run directory.

LoadGen's ``mlperf_log_detail.txt`` holds ``:::MLLOG {json}`` lines with the run's percentiles
(``result_90.00_percentile_latency_ns``, ...), validity, scenario and the scenario's latency bound (Server:
``effective_target_latency_ns`` at ``effective_target_latency_percentile``). Per-query latencies, when the run
kept them, are read from ``query_latencies_ns.{npy,json,txt}`` (one value per query, nanoseconds), else from
LoadGen's trace (``mlperf_log_trace.json``, written with ``mlbench infer --trace``): each sample event's
``complete_ns`` is its latency from the query's scheduled issue (``issue_start_ns`` is the issue's delay), a
query's latency being its last sample's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_PCT = re.compile(r"^result_(\d+(?:\.\d+)?)_percentile_latency_ns$")
PER_QUERY_FILES = ("query_latencies_ns.npy", "query_latencies_ns.json", "query_latencies_ns.txt")
TRACE_FILE = "mlperf_log_trace.json"
TRACE_MAX_BYTES = 2 << 30  # a longer trace is not read for the report (minutes of parsing)
_TRACE_SAMPLE = re.compile(r'"name":"Sample".*?"ph":"b".*?"query_seq":(\d+).*?"complete_ns":(\d+)')


def find(run_dir: Path, name: str, depth: int = 3) -> Path | None:
    """``name`` in the run directory or up to ``depth`` levels below it (LoadGen logs may sit in a subfolder)."""
    for level in range(depth + 1):
        hits = sorted(run_dir.glob("/".join(["*"] * level + [name])))
        if hits:
            return hits[0]
    return None


def read_detail(path: Path) -> dict[str, Any]:
    """Every ``key: value`` of a LoadGen detail log (the last value wins); bad lines are skipped."""
    out: dict[str, Any] = {}
    with open(path, errors="replace") as fh:
        for line in fh:
            _, sep, payload = line.partition(":::MLLOG")
            if not sep:
                continue
            try:
                rec = json.loads(payload)
            except ValueError:
                continue
            if isinstance(rec, dict) and "key" in rec:
                out[rec["key"]] = rec.get("value")
    return out


def percentiles(detail: dict[str, Any]) -> list[tuple[float, float]]:
    """(percentile, latency in ms) pairs from a detail log, with min (0) and max (100), sorted."""
    pts = []
    for key, value in detail.items():
        m = _PCT.match(key)
        if m and isinstance(value, (int, float)):
            pts.append((float(m.group(1)), value / 1e6))
    for key, pct in (("result_min_latency_ns", 0.0), ("result_max_latency_ns", 100.0)):
        if isinstance(detail.get(key), (int, float)):
            pts.append((pct, detail[key] / 1e6))
    return sorted(pts)


def per_query(run_dir: Path) -> list[float] | None:
    """Per-query latencies in ms when the run kept them, else None."""
    for name in PER_QUERY_FILES:
        path = find(run_dir, name, depth=2)
        if path is None:
            continue
        try:
            if path.suffix == ".npy":
                import numpy as np

                values = np.load(path).astype(float).ravel().tolist()
            elif path.suffix == ".json":
                values = [float(v) for v in json.loads(path.read_text())]
            else:
                values = [float(v) for v in path.read_text().split()]
        except (OSError, ValueError, TypeError):
            return None
        return [v / 1e6 for v in values] or None
    return from_trace(run_dir)


def from_trace(run_dir: Path) -> list[float] | None:
    """Per-query latencies in ms from LoadGen's trace, or None (no trace, too large, or no sample events)."""
    path = find(run_dir, TRACE_FILE, depth=2)
    try:
        if path is None or path.stat().st_size > TRACE_MAX_BYTES:
            return None
        done: dict[int, int] = {}
        with open(path, errors="replace") as fh:
            for line in fh:
                m = _TRACE_SAMPLE.search(line)
                if m:
                    query, latency_ns = map(int, m.groups())
                    done[query] = max(done.get(query, 0), latency_ns)
    except OSError:
        return None
    return [v / 1e6 for v in done.values()] or None


def latency_info(run_dir: Path) -> dict[str, Any] | None:
    """What the report shows for one inference run: percentiles, per-query latencies, validity; None if none."""
    detail_path = find(run_dir, "mlperf_log_detail.txt")
    detail = read_detail(detail_path) if detail_path else {}
    pts = percentiles(detail)
    queries = per_query(run_dir)
    if not pts and not queries:
        return None
    if not pts and queries:
        srt = sorted(queries)
        pts = [(p, srt[min(len(srt) - 1, int(p / 100 * len(srt)))]) for p in (0, 50, 90, 95, 99, 99.9, 100)]
    return {
        "percentiles_ms": pts, "per_query_ms": queries, "source": str(detail_path) if detail_path else None,
        "scenario": detail.get("effective_scenario"), "validity": detail.get("result_validity"),
        "query_count": detail.get("result_query_count"),
        "early_stopping": detail.get("early_stopping_result"),
        "per_query_source": _per_query_source(run_dir) if queries else None,
        **bound(detail),
    }


def bound(detail: dict[str, Any]) -> dict[str, Any]:
    """The scenario's latency bound and metric from a detail log: ``bound_ms`` and ``bound_percentile``
    (Server's target latency; None elsewhere), ``metric_ms`` and ``metric_name`` (SingleStream's p90 and
    MultiStream's p99 early-stopping estimates, Server's p99)."""
    scenario = str(detail.get("effective_scenario") or "")
    target = detail.get("effective_target_latency_ns")
    pct = detail.get("effective_target_latency_percentile")
    out: dict[str, Any] = {"bound_ms": None, "bound_percentile": None, "metric_ms": None, "metric_name": None}
    if scenario == "Server" and isinstance(target, (int, float)) and target > 0:
        out.update(bound_ms=target / 1e6, bound_percentile=100 * float(pct or 0.99))
    for key, name, scen in (("early_stopping_latency_ss", "p90 early-stopping estimate", "SingleStream"),
                            ("early_stopping_latency_ms", "p99 early-stopping estimate", "MultiStream")):
        if scenario == scen and isinstance(detail.get(key), (int, float)):
            out.update(metric_ms=detail[key] / 1e6, metric_name=name)
    if scenario == "Server" and isinstance(detail.get("result_99.00_percentile_latency_ns"), (int, float)):
        out.update(metric_ms=detail["result_99.00_percentile_latency_ns"] / 1e6, metric_name="p99 latency")
    return out


def _per_query_source(run_dir: Path) -> str:
    for name in PER_QUERY_FILES:
        path = find(run_dir, name, depth=2)
        if path is not None:
            return str(path)
    return f"{find(run_dir, TRACE_FILE, depth=2)} (LoadGen's trace)"
