"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external request).

Sections: a summary table of every run; per benchmark, bars of its metric across systems and software
stacks; the latency distribution of each inference run; training convergence curves with the target line;
scaling efficiency where a benchmark ran at several process counts; the system descriptions.
"""

from __future__ import annotations

import datetime
import os
import statistics
from html import escape
from pathlib import Path
from typing import Any

from mlbench.results import compare, fields, latency, svg

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
.yes{color:#17803d;font-weight:600}.no{color:#b42318}ul.note{margin:4px 0;padding-left:16px}.note{color:#555;font-size:13px}
svg.plot{width:100%;max-width:760px;height:auto;display:block;margin:12px 0;background:#fff}
svg text{font-size:11px;fill:#333}svg .ttl{font-size:13px;font-weight:600}
svg .grid{stroke:#e5e5e5}svg .axis{stroke:#555}svg .whisker{stroke:#222;stroke-width:1.5}
svg .target{stroke:#b42318;stroke-dasharray:6 4;stroke-width:1.5}
"""


def _td(v: Any) -> str:
    return f"<td>{escape('-' if v is None or v == '' else str(v))}</td>"


def _table(heads: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(c if str(c).startswith("<td") else _td(c) for c in r) + "</tr>" for r in rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _valid_cell(row: dict[str, Any]) -> str:
    res = row["result"]
    reasons = res.get("validity_reasons") or []
    if row["valid"]:
        return '<td class="yes">yes</td>'
    items = "".join(f"<li>{escape(str(r))}</li>" for r in reasons) or "<li>not valid</li>"
    return (f'<td class="no"><details><summary>no ({len(reasons) or 1} reason{"s" if len(reasons) > 1 else ""})'
            f'</summary><ul class="note">{items}</ul></details></td>')


def summary(rows: list[dict[str, Any]]) -> str:
    heads = ["run", "kind", "benchmark", "size", "scenario / mode", "system", "stack", "device", "procs",
             "status", "MLPerf-valid", "metric", "quality", "energy"]
    out = []
    for r in rows:
        res = r["result"]
        q = res.get("quality") if isinstance(res.get("quality"), dict) else {}
        quality = "-" if r["quality_value"] is None else (
            f"{q.get('metric', '')} {r['quality_value']:.4g} (target {q.get('target', '?')})")
        metrics = res.get("metrics") or {}
        energy = metrics.get("energy/joules")
        if isinstance(energy, (int, float)):
            energy_text = f"{energy:.4g} J, {metrics.get('power/mean_watts') or 0:.3g} W ({metrics.get('energy/source')})"
        elif metrics.get("energy/note"):  # "not available: why" folds out
            energy_text = (f'<td><details><summary>not available</summary><span class="note">'
                           f'{escape(str(metrics["energy/note"]))}</span></details></td>')
        else:
            energy_text = "not measured"
        metric = "n/a" if r["metric_value"] is None else f"{r['metric_name']} = {compare.fmt_value(r['metric_value'])}"
        scen = " / ".join(x for x in (r.get("scenario"), r.get("mode")) if x) or "-"
        lg = res.get("loadgen") if isinstance(res.get("loadgen"), dict) else {}
        status = r["status"] + (f", LoadGen {lg['validity']}" if lg.get("validity") else "")
        out.append([r["run_id"], r["kind"], r["benchmark"], r["size"], scen, r["system_name"], r["stack"],
                    r["device"], r["world_size"], status, _valid_cell(r), metric, quality, energy_text])
    return _table(heads, out, "summary")


def _key(r: dict[str, Any]) -> tuple:
    return (r["kind"], r["benchmark"], r["size"], r.get("scenario") or "", r.get("mode") or "")


def benchmark_bars(rows: list[dict[str, Any]]) -> list[str]:
    """Per benchmark (kind, size, scenario, mode): the metric's median across systems and stacks."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    for n, (key, members) in enumerate(sorted(groups.items())):
        usable = [r for r in members if compare.invalid_reason(r["result"]) is None and r["metric_value"] is not None]
        if not usable:
            continue
        by: dict[str, list[float]] = {}
        for r in usable:
            label = f"{r['system_name']} | {r['stack']} | {r['device']} x{r['world_size']}"
            by.setdefault(label, []).extend(compare.run_values(r))
        metric = usable[0]["metric_name"]
        better = "lower" if fields.lower_is_better(metric) else "higher"
        labels = list(by)
        title = f"{' '.join(k for k in key[1:] if k)} ({key[0]}): median {metric} ({better} is better)"
        out.append(svg.bars(f"bars-{n}", title, labels, [statistics.median(by[k]) for k in labels], metric,
                            [(min(by[k]), max(by[k])) if len(by[k]) > 1 else None for k in labels]))
        skipped = len(members) - len(usable)
        if skipped:
            out.append(f'<p class="note">{skipped} run(s) left out: aborted, not converged or INVALID.</p>')
    return out


def latency_plots(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for n, r in enumerate(rows):
        if r["kind"] == "train":
            continue
        info = latency.latency_info(Path(r["path"]))
        if not info:
            continue
        name = f"{r['run_id']} ({r.get('scenario') or info.get('scenario') or '?'})"
        pts = info["percentiles_ms"]
        shown = [(p, v) for p, v in pts if p < 100] or pts  # the max (often one cold query) is in the table
        out.append(svg.bars(f"latency-pct-{n}", f"latency percentiles: {name}", [_pct_name(p) for p, _ in shown],
                            [v for _, v in shown], "latency (ms)", categories=True))
        if info["per_query_ms"]:
            srt = sorted(info["per_query_ms"])
            marks = [(srt[min(len(srt) - 1, int(p / 100 * len(srt)))], f"p{p:g}") for p in (50, 90, 99)]
            marks = [(v, f"{label} {v:.3g} ms") for v, label in marks]
            out.append(svg.histogram(f"latency-hist-{n}", f"per-query latency: {name}", info["per_query_ms"],
                                     "latency (ms)", marks=marks))
        table = [[_pct_name(p), f"{v:.4g}"] for p, v in pts]
        out.append(_table(["percentile", "latency (ms)"], table))
        out.append(f'<p class="note">LoadGen validity: {escape(str(info.get("validity") or "unknown"))}; '
                   f'{escape(str(info.get("query_count") or "?"))} queries; from {escape(str(info["source"]))}</p>')
    return out


def _pct_name(p: float) -> str:
    return "min" if p == 0 else "max" if p == 100 else f"p{p:g}"


def convergence_plots(rows: list[dict[str, Any]]) -> list[str]:
    """Quality against time and against epochs, one curve per training run, with the target line."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] == "train":
            groups.setdefault((r["benchmark"], r["size"]), []).append(r)
    for n, ((bench, size), members) in enumerate(sorted(groups.items())):
        by_time, by_epoch = [], []
        target, metric = None, "quality"
        for r in members:
            res = r["result"]
            q = res.get("quality") or {}
            target, metric = q.get("target", target), q.get("metric", metric)
            for run in res.get("runs") or []:
                evals = [e for e in run.get("evals") or [] if e.get("quality") is not None]
                if not evals:
                    continue
                name = f"{r['run_id'][-4:]}/run {run.get('run')} ({r['device']} x{r['world_size']})"
                by_time.append((name, [(e["elapsed_s"], e["quality"]) for e in evals]))
                by_epoch.append((name, [(e["epoch"], e["quality"]) for e in evals]))
        if not by_time:
            continue
        hline = (float(target), f"target {target}") if isinstance(target, (int, float)) else None
        out.append(svg.lines(f"conv-time-{n}", f"{bench} {size}: {metric} against time (s since run_start)",
                             by_time, "seconds since run_start", metric, hline=hline))
        out.append(svg.lines(f"conv-epoch-{n}", f"{bench} {size}: {metric} against epochs", by_epoch,
                             "epoch", metric, hline=hline))
    return out


def scaling(rows: list[dict[str, Any]]) -> list[str]:
    """Throughput and efficiency against process count, where one benchmark/system/stack ran at several."""
    out = []
    groups: dict[tuple, dict[int, list[float]]] = {}
    for r in rows:
        thr = (r["result"].get("metrics") or {}).get("throughput/samples_per_s")
        if r["kind"] == "train" and isinstance(thr, (int, float)) and r["status"] == "success":
            key = (r["benchmark"], r["size"], r["system_name"], r["stack"])
            groups.setdefault(key, {}).setdefault(int(r["world_size"] or 1), []).append(float(thr))
    for n, (key, by_ws) in enumerate(sorted(groups.items())):
        if len(by_ws) < 2:
            continue
        base_ws = min(by_ws)
        base = statistics.median(by_ws[base_ws]) / base_ws
        pts = [(ws, statistics.median(v)) for ws, v in sorted(by_ws.items())]
        ideal = [(ws, base * ws) for ws, _ in pts]
        out.append(svg.lines(f"scaling-{n}", f"{key[0]} {key[1]} scaling on {key[2]} | {key[3]}",
                             [("measured", pts), ("ideal (linear)", ideal)], "processes", "samples/s", ylo=0.0))
        out.append(_table(["processes", "samples/s (median)", f"efficiency vs {base_ws} process(es)"],
                          [[ws, f"{t:.4g}", f"{100 * t / (base * ws):.1f}%"] for ws, t in pts]))
    return out


SYSTEM_FIELDS = ("host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
                 "host_memory_capacity", "accelerators_per_node", "accelerator_model_name",
                 "accelerator_memory_capacity", "number_of_nodes", "operating_system", "framework",
                 "mlbench_version", "mlbench_commit")


def systems(rows: list[dict[str, Any]]) -> str:
    seen: dict[str, dict] = {}
    for r in rows:
        if r["system"] and r["system"] not in seen:
            seen[r["system"]] = fields.system_json(Path(r["path"]))
    if not seen:
        return '<p class="note">No system descriptions (system.json) found.</p>'
    fps = list(seen)
    table = [[f] + [seen[fp].get(f) for fp in fps] for f in SYSTEM_FIELDS]
    libs = sorted({k for d in seen.values() for k in (d.get("other_software_stack") or {})})
    table += [[lib] + [(seen[fp].get("other_software_stack") or {}).get(lib) for fp in fps] for lib in libs]
    return _table(["field", *fps], table, "systems")


def render(rows: list[dict[str, Any]], title: str = "mlbench report") -> str:
    """The whole report as one HTML string."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sections = [("Summary", [summary(rows)]), ("Benchmarks across systems and stacks", benchmark_bars(rows)),
                ("Latency distributions (inference)", latency_plots(rows)),
                ("Training convergence", convergence_plots(rows)), ("Scaling efficiency", scaling(rows)),
                ("Systems", [systems(rows)])]
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
             f'<p class="note">{len(rows)} runs; generated {now}. A run is MLPerf-valid only when it follows the '
             "MLPerf rules (reference size, full duration, required run count); quick and mini/tiny runs compare "
             "only with mlbench runs of the same size. Energy figures are informative.</p>"]
    for heading, body in sections:
        parts.append(f"<h2>{escape(heading)}</h2>")
        parts += body or ['<p class="note">Nothing to show for these runs.</p>']
    parts.append("</body></html>\n")
    return "".join(parts)


def report_for_runs(output_dir: str | Path, run_ids: list[str | None], title: str = "mlbench run") -> Path | None:
    """Write ``<output_dir>/<stamp>-suite-report-<hex>.html`` for these runs and print its path.

    Used at the end of ``mlbench run``; never raises (the runs themselves are what matters).
    """
    from mlbench import runs
    from mlbench.results import store

    try:
        out = Path(output_dir)
        wanted = [r for r in run_ids if r]
        rows = [row for rid in wanted for row in store.query(out, run_id=rid) if row["run_id"] == rid]
        if len(rows) < len(wanted):  # a run the store missed (it warned): index the directories again
            store.reindex(out)
            rows = [row for rid in wanted for row in store.query(out, run_id=rid) if row["run_id"] == rid]
        if not rows:
            return None
        path = write(rows, out / (runs.new_run_id("suite-report") + ".html"), title=title)
    except Exception as exc:  # noqa: BLE001 - a report failure must not fail the suite
        print(f"mlbench: warning: no HTML report written ({exc}); try `mlbench report --output-dir {output_dir}`",
              flush=True)
        return None
    print(f"report: {path} (open it in a browser; `mlbench compare` and `mlbench report` work on all runs)",
          flush=True)
    return path


def write(rows: list[dict[str, Any]], path: str | Path, title: str = "mlbench report") -> Path:
    """Write the report atomically; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(rows, title))
    os.replace(tmp, path)
    return path
