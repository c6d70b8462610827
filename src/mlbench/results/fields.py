"""What the store indexes from one result.json: the common keys, the software stack and the primary metric.

Every kind of run (train, infer, and kinds added later) shares the ``mlbench.result/1`` keys; anything else
is read when present and left empty when not, so a new kind of result is indexed without a change here.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from mlbench.runs import RESULT_SCHEMA

# Keys whose smaller value is better (time to train, latencies); everything else is "higher is better".
_LOWER_IS_BETTER = re.compile(r"(latency|time_to_train|minutes|_ms$|_ns$|/s$|seconds|/joules)")

# The scenario metric MLPerf reports for an inference run, as candidate key fragments in order of preference.
_SCENARIO_METRICS = {
    "offline": ("samples_per_s",),
    "server": ("qps",),
    "singlestream": ("p90", "90.00_percentile", "latency"),
    "multistream": ("p99", "99.00_percentile", "latency"),
}

# Libraries that make up the software stack of a run (from system.json's other_software_stack).
STACK_PACKAGES = ("torch", "onnxruntime", "mlcommons-loadgen")


def is_result(data: Any) -> bool:
    """True for an mlbench result of any kind (schema mlbench.result/N with a run_id)."""
    return (isinstance(data, dict) and str(data.get("schema", "")).split("/")[0] == RESULT_SCHEMA.split("/")[0]
            and isinstance(data.get("run_id"), str) and bool(data.get("kind")))


def lower_is_better(metric: str) -> bool:
    return bool(_LOWER_IS_BETTER.search(metric)) and "per_s" not in metric and "qps" not in metric


def primary_metric(result: dict[str, Any]) -> tuple[str | None, float | None]:
    """The one number a run is compared by: its ``primary_metric`` when it names one, else by kind/scenario.

    train: MLPerf time to train (minutes); infer: the scenario's metric (Offline samples/s, Server QPS,
    SingleStream p90 latency, MultiStream p99 latency); otherwise throughput when present.
    """
    metrics = result.get("metrics") or {}
    named = result.get("primary_metric") or metrics.get("scenario_metric")  # infer names its scenario metric
    if isinstance(named, dict) and named.get("name"):
        return named["name"], _num(named.get("value", metrics.get(named["name"])))
    if isinstance(named, str) and named in metrics:
        return named, _num(metrics[named])
    if result.get("kind") == "train" and "time_to_train/minutes" in metrics:
        return "time_to_train/minutes", _num(metrics["time_to_train/minutes"])
    quality = result.get("quality") if isinstance(result.get("quality"), dict) else {}
    if result.get("mode") == "accuracy" and quality.get("metric"):
        return f"accuracy/{quality['metric']}", _num(quality.get("value"))
    scenario = str(result.get("scenario") or "").lower()
    for fragment in _SCENARIO_METRICS.get(scenario, ()):
        for key, value in metrics.items():
            if fragment in key.lower() and _num(value) is not None:
                return key, _num(value)
    if "throughput/samples_per_s" in metrics:
        return "throughput/samples_per_s", _num(metrics["throughput/samples_per_s"])
    return None, None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def backend_of(result: dict[str, Any]) -> tuple[str, str | None]:
    """(name, version) of the backend: infer results hold a dict (``{"backend"|"name", "version"}``)."""
    b = result.get("backend")
    if isinstance(b, dict):
        return str(b.get("backend") or b.get("name") or "?"), b.get("version")
    return str(b or (result.get("config") or {}).get("backend") or "pytorch"), None


def system_json(run_dir: Path) -> dict[str, Any]:
    """The run's system.json, or {} when it is missing or unreadable."""
    try:
        data = json.loads((run_dir / "system.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def system_name(result: dict[str, Any], system: dict[str, Any]) -> str:
    """A short human name of the hardware: CPU model and core count, plus accelerators when present."""
    sysr = result.get("system") or {}
    cpu = system.get("host_processor_model_name") or sysr.get("host_processor_model_name") or "unknown CPU"
    cores = system.get("host_processor_core_count")
    name = f"{cpu} ({cores} cores)" if cores else str(cpu)
    acc = system.get("accelerator_model_name") or sysr.get("accelerator_model_name")
    if acc:
        n = system.get("accelerators_per_node") or 1
        name += f" + {n}x {acc}"
    nodes = system.get("number_of_nodes") or 1
    return f"{nodes} nodes x {name}" if isinstance(nodes, int) and nodes > 1 else name


def stack(result: dict[str, Any], system: dict[str, Any]) -> tuple[str, str]:
    """(human description, fingerprint) of the software stack: backend, precision, compile, library versions."""
    cfg = result.get("config") or {}
    versions = (system.get("other_software_stack") or {}) if isinstance(system, dict) else {}
    backend, version = backend_of(result)
    parts = {
        "backend": backend,
        "precision": result.get("precision") or cfg.get("precision"),
        # torch-only options: meaningless (and not shown) for onnxruntime or null
        "compile": backend == "pytorch" and bool(cfg.get("compile")),
        "channels_last": backend == "pytorch" and bool(cfg.get("channels_last")),
        **{p: versions.get(p) for p in STACK_PACKAGES},
    }
    lib = "torch" if backend == "pytorch" else backend
    text = f"{backend} {version or versions.get(lib, '')}".strip() + f" {parts['precision'] or '?'}"
    if parts["compile"]:
        text += " compiled"
    if parts["channels_last"]:
        text += " channels_last"
    fp = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return text, fp


def index_row(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The indexed columns of one result (the whole JSON is stored beside them)."""
    cfg = result.get("config") or {}
    system = system_json(run_dir)
    stack_text, stack_fp = stack(result, system)
    metric, value = primary_metric(result)
    quality = result.get("quality") or {}
    sysr = result.get("system") or {}
    return {
        "run_id": result["run_id"], "path": str(run_dir.resolve()), "kind": str(result.get("kind")),
        "benchmark": result.get("benchmark"), "size": result.get("size"),
        "scenario": result.get("scenario") or cfg.get("scenario"), "mode": result.get("mode") or cfg.get("mode"),
        "backend": backend_of(result)[0],
        "device": result.get("device"), "precision": result.get("precision") or cfg.get("precision"),
        "world_size": result.get("world_size") or 1,
        "system": sysr.get("fingerprint") or system.get("system_fingerprint"),
        "system_name": system_name(result, system), "stack": stack_text, "stack_fp": stack_fp,
        "status": result.get("status"), "valid": 1 if result.get("valid") is True else 0,
        "started_at": result.get("started_at"), "finished_at": result.get("finished_at"),
        "metric_name": metric, "metric_value": value,
        "quality_value": _num(quality.get("value")) if isinstance(quality, dict) else None,
        "energy_joules": _num((result.get("metrics") or {}).get("energy/joules")),
    }


def efficiency(result: dict[str, Any]) -> dict[str, Any]:
    """Throughput and MFU of a result as the report and ``compare`` show them: ``throughput`` (samples/s),
    ``mfu`` (over the hardware peak), ``peak`` (which peak, in words), ``kernel_fraction`` (of the measured
    kernel peak), ``flags`` (fractions above 1 and their likely cause) and ``why_no_mfu``."""
    metrics = result.get("metrics") or {}
    compute = result.get("compute") if isinstance(result.get("compute"), dict) else {}
    peak = compute.get("peak") if isinstance(compute.get("peak"), dict) else {}
    kind = peak.get("kind")
    described = {"datasheet": f"{peak.get('accelerator')} {peak.get('math')} datasheet",
                 "theoretical": "theoretical CPU peak", "user": "user-given peak"}.get(str(kind), "")
    return {"throughput": _num(metrics.get("throughput/samples_per_s")), "mfu": _num(metrics.get("compute/mfu")),
            "peak": described, "kernel_fraction": _num(metrics.get("compute/kernel_peak_fraction")),
            "flags": [str(f) for f in compute.get("flags") or []], "why_no_mfu": peak.get("why")}


def percent(fraction: float) -> str:
    """A fraction as a percentage with 3 significant digits: 0.41 -> '41%', 0.00183 -> '0.183%'."""
    return f"{100 * fraction:.3g}%"
