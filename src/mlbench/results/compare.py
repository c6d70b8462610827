"""Side-by-side comparison of runs: groups of runs, their variance, and ratios against a baseline group.

A ratio is printed only when it means something: the same kind of run of the same benchmark, size, scenario
and mode, measured with the same workload settings, and every run in both groups successful and VALID in the
LoadGen sense. Otherwise the row says, in words, why the two are not comparable.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbench import registry
from mlbench.errors import MlbenchError
from mlbench.results import fields, store

# Must be equal for a ratio to mean anything.
SAME = ("kind", "benchmark", "size", "scenario", "mode")
# Configuration keys that change the measured workload (not the system under test): must be equal too.
WORKLOAD_KEYS = ("lr", "epochs", "resume", "quick", "duration_s", "target_latency_ms", "user_conf", "max_samples")
# What may differ, and is shown: this is what a comparison is usually about.
DESCRIBE = ("system_name", "stack", "device", "precision", "backend", "world_size")


@dataclass
class Group:
    """Runs compared as one entry: one run, or every run a filter matched."""

    label: str
    rows: list[dict[str, Any]]
    values: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why this group has no ratio

    @property
    def metric(self) -> str | None:
        names = {r["metric_name"] for r in self.rows if r.get("metric_name")}
        return names.pop() if len(names) == 1 else None

    def common(self, key: str) -> Any:
        vals = {_key(r, key) for r in self.rows}
        return vals.pop() if len(vals) == 1 else "(mixed)"

    def stats(self) -> dict[str, float | None]:
        v = self.values
        if not v:
            return {"median": None, "min": None, "max": None, "cv": None, "n": 0}
        cv = statistics.stdev(v) / statistics.mean(v) if len(v) > 1 and statistics.mean(v) else None
        return {"median": statistics.median(v), "min": min(v), "max": max(v), "cv": cv, "n": len(v)}


def _key(row: dict[str, Any], key: str) -> Any:
    if key in row:
        return row[key]
    return (row["result"].get("config") or {}).get(key)


def invalid_reason(result: dict[str, Any]) -> str | None:
    """Why this run's number must not be compared (aborted, not converged, LoadGen INVALID), or None."""
    if result.get("status") != "success":
        return f"status is '{result.get('status')}'"
    loadgen = result.get("loadgen") if isinstance(result.get("loadgen"), dict) else {}
    validity = loadgen.get("result_validity") or loadgen.get("validity") or result.get("result_validity")
    if result.get("loadgen_valid") is False or loadgen.get("valid") is False or str(validity).upper() == "INVALID":
        why = loadgen.get("reasons") or loadgen.get("invalid_reasons") or result.get("validity_reasons") or []
        return "LoadGen result is INVALID" + (f" ({'; '.join(map(str, why))})" if why else "")
    return None


def run_values(row: dict[str, Any]) -> list[float]:
    """The measured values of one result: each training run's time to train, else the primary metric."""
    res = row["result"]
    if res.get("kind") == "train" and row.get("metric_name") == "time_to_train/minutes":
        per_run = [(r.get("metrics") or {}).get("time_to_train/minutes") for r in res.get("runs") or []
                   if r.get("status") == "success"]
        per_run = [float(v) for v in per_run if isinstance(v, (int, float))]
        if per_run:
            return per_run
    return [] if row.get("metric_value") is None else [float(row["metric_value"])]


def resolve(spec: str, output_dir: Path) -> Group:
    """A group from a run id (or unique prefix), a run directory path, or filters ``key=value,key=value``."""
    path = Path(spec)
    if (path / "result.json").is_file():
        result = store.load_result(path)
        row = {**fields.index_row(path, result), "result": result}
        return _fill(Group(path.name, [row]))
    if "=" in spec:
        filters: dict[str, Any] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if key == "valid":
                filters["valid"] = value.strip().lower() in ("1", "yes", "true")
            elif key == "since":
                from mlbench.config import parse_since

                filters["since"] = parse_since(value)
            else:
                filters[key] = int(value) if key == "world_size" and value.strip().isdigit() else value.strip()
        rows = store.query(output_dir, **filters)
    else:
        rows = store.query(output_dir, run_id=spec)
        exact = [r for r in rows if r["run_id"] == spec]
        rows = exact or rows
        if len(rows) > 1:
            raise MlbenchError(f"'{spec}' matches {len(rows)} runs", "give more of the run id, or a filter "
                               f"such as benchmark={rows[0]['benchmark']},device=cpu to compare them as one group")
    if not rows:
        raise MlbenchError(f"no run matches '{spec}' in {store.db_path(output_dir)}",
                           f"list the runs with `mlbench results`; filters look like benchmark={registry.names()[0]},"
                           "size=tiny")
    return _fill(Group(spec if len(spec) <= 48 else spec[:45] + "...", rows))


def split(group: Group, by: str) -> list[Group]:
    """One group per distinct value of ``by`` (a column such as device, stack, system or world_size)."""
    if not any(by in r or by in (r["result"].get("config") or {}) for r in group.rows):
        from mlbench.registry import did_you_mean

        known = sorted({k for k in store.COLUMNS if k not in ("result", "path")}
                       | {k for r in group.rows for k in (r["result"].get("config") or {})})
        raise did_you_mean(by, known, "field for --by")
    out: dict[str, list[dict]] = {}
    for r in group.rows:
        out.setdefault(f"{by}={_key(r, by)}", []).append(r)
    return [_fill(Group(k, v)) for k, v in out.items()]


def _fill(group: Group) -> Group:
    group.values = [v for r in group.rows for v in run_values(r)]
    for r in group.rows:
        why = invalid_reason(r["result"])
        if why:
            group.problems.append(f"run {r['run_id']} {why}")
    for key in SAME:
        if group.common(key) == "(mixed)":
            group.problems.append(f"its runs mix different {key}s")
    return group


def comparable(group: Group, base: Group) -> list[str]:
    """Why ``group`` cannot be compared with ``base`` (empty when it can)."""
    reasons = list(group.problems) + [f"baseline: {p}" for p in base.problems]
    for key in SAME:
        a, b = group.common(key), base.common(key)
        if a != b:
            reasons.append(f"different {key} ({a} vs baseline {b})")
    for key in WORKLOAD_KEYS:
        a, b = group.common(key), base.common(key)
        if a != b:
            reasons.append(f"different settings: {key}={a} vs baseline {key}={b}")
    if group.metric != base.metric and not reasons:
        reasons.append(f"different metrics ({group.metric} vs baseline {base.metric})")
    if not group.values or not base.values:
        reasons.append("no measured value")
    return reasons


def compare(groups: list[Group], baseline: int = 0) -> list[dict[str, Any]]:
    """One row per group: stats, validity, accuracy, what differs from the baseline, and the speedup."""
    if not 0 <= baseline < len(groups):
        raise MlbenchError(f"--baseline {baseline + 1} is out of range", f"choose 1..{len(groups)}")
    base = groups[baseline]
    base_med = base.stats()["median"]
    rows = []
    for i, g in enumerate(groups):
        st = g.stats()
        reasons = [] if i == baseline else comparable(g, base)
        speedup = None
        if i != baseline and not reasons and base_med and st["median"]:
            ratio = st["median"] / base_med
            speedup = 1 / ratio if fields.lower_is_better(g.metric or "") else ratio
        quality = [r["quality_value"] for r in g.rows if r.get("quality_value") is not None]
        eff = [fields.efficiency(r["result"]) for r in g.rows]
        thr = [e["throughput"] for e in eff if e["throughput"] is not None]
        mfu = [e["mfu"] for e in eff if e["mfu"] is not None]
        peaks = {e["peak"] for e in eff if e["mfu"] is not None}
        rows.append({
            "label": g.label, "baseline": i == baseline, "metric": g.metric, **st,
            "lower_is_better": fields.lower_is_better(g.metric or ""), "speedup": speedup,
            "not_comparable": reasons, "problems": g.problems,
            "results": len(g.rows), "valid": sum(1 for r in g.rows if r["valid"]),
            "quality": statistics.median(quality) if quality else None,
            "throughput": statistics.median(thr) if thr else None, "mfu": statistics.median(mfu) if mfu else None,
            "mfu_peak": peaks.pop() if len(peaks) == 1 else "mixed peaks" if peaks else None,
            "flags": [f for e in eff for f in e["flags"]],
            "differs": {k: g.common(k) for k in DESCRIBE if i != baseline and g.common(k) != base.common(k)},
            **{k: g.common(k) for k in (*SAME, *DESCRIBE)},
        })
    return rows


def fmt_value(v: float | None) -> str:
    if v is None:
        return "n/a"
    a = abs(v)
    return f"{v:.3g}" if a < 10 else f"{v:.1f}" if a < 1000 else f"{v:,.0f}"


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """(headings, cells, footnotes) for the terminal or markdown."""
    metrics = {r["metric"] for r in rows if r["metric"]}
    mixed = len(metrics) > 1
    heads = ["#", "runs", "benchmark", "size", "system / stack",
             "median" if mixed or not metrics else f"{metrics.pop()} median", "min-max", "CV",
             "samples/s", "MFU", "accuracy", "MLPerf-valid results", "vs baseline"]
    cells, notes = [], []
    for i, r in enumerate(rows):
        if r["baseline"]:
            vs = "baseline"
        elif r["speedup"] is not None:
            vs = f"{r['speedup']:.2f}x " + ("faster" if r["lower_is_better"] else "higher") if r["speedup"] >= 1 \
                else f"{r['speedup']:.2f}x ({1 / r['speedup']:.2f}x " + ("slower)" if r["lower_is_better"] else "lower)")
        else:
            vs = f"not comparable [{i + 1}]"
            notes.append(f"[{i + 1}] {r['label']}: not comparable: " + "; ".join(r["not_comparable"]))
        spread = "-" if r["n"] < 2 else f"{fmt_value(r['min'])}-{fmt_value(r['max'])}"
        cv = "-" if r["cv"] is None else f"{100 * r['cv']:.1f}%"
        cells.append([f"{i + 1} {r['label']}", str(r["n"]), str(r["benchmark"]), str(r["size"]),
                      f"{r['system_name']} / {r['stack']}",
                      fmt_value(r["median"]) + (f" {r['metric']}" if mixed and r["metric"] else ""), spread, cv,
                      fmt_value(r["throughput"]), _mfu_cell(r, i, notes), fmt_value(r["quality"]),
                      f"{r['valid']}/{r['results']}", vs])
    better = {"lower" if r["lower_is_better"] else "higher" for r in rows if r["metric"]}
    notes.append(f"median over runs ({'/'.join(sorted(better)) or 'higher'} is better); CV = coefficient of variation; "
                 "runs = measurements (each training run of a result counts); MLPerf-valid results are valid for "
                 "submission (mini/tiny sizes, open division, never are); samples/s and MFU (model FLOP/s over the "
                 "datasheet, theoretical CPU or user-given peak) are medians over the entry's results")
    return heads, cells, notes


def _mfu_cell(row: dict[str, Any], i: int, notes: list[str]) -> str:
    """MFU with the peak it divides by; a flagged figure (above 1) gets a footnote with the likely cause."""
    if row["mfu"] is None:
        return "n/a"
    text = f"{fields.percent(row['mfu'])} ({row['mfu_peak']})"
    if row["flags"]:
        notes.append(f"[{i + 1}] {row['label']}: flagged: " + "; ".join(dict.fromkeys(row["flags"])))
        text += f" [{i + 1}]"
    return text


def render(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    heads, cells, notes = table(rows)
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in cells]
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in esc]
        return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines + [""] + notes) + "\n"
