"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external request).

Sections: a summary table of every run (with throughput and MFU); per benchmark, bars of its metric across
systems and software stacks (where there are several to compare); per trained benchmark, its quality against
training samples and against time with the target line and the point where each run reached it; per inference
run, its latency distribution against the scenario's bound; scaling efficiency where a benchmark ran at several
process counts; the system descriptions.
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
h3{font-size:1.1em;margin:1.4em 0 .2em}p.line{margin:2px 0 6px;font-size:14px}.warn{color:#b42318}
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
    heads = ["run", "benchmark", "system | stack | device", "status", "MLPerf-valid", "metric", "quality",
             "samples/s", "MFU", "energy"]
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
        # a metric name breaks after its slashes: "throughput/completed_samples_per_s" would widen the table
        metric = "n/a" if r["metric_value"] is None else (
            f"<td>{escape(str(r['metric_name'])).replace('/', '/<wbr>')} = "
            f"{escape(compare.fmt_value(r['metric_value']))}</td>")
        what = f"{r['benchmark']} {r['size']} ({', '.join(x for x in (r['kind'], r.get('scenario'), r.get('mode')) if x)})"
        lg = res.get("loadgen") if isinstance(res.get("loadgen"), dict) else {}
        status = r["status"] + (f", LoadGen {lg['validity']}" if lg.get("validity") else "")
        thr = fields.efficiency(res)["throughput"]
        out.append([r["run_id"], what, f"{r['system_name']} | {r['stack']} | {r['device']} x{r['world_size']}", status,
                    _valid_cell(r), metric, quality, "-" if thr is None else compare.fmt_value(thr),
                    _mfu_cell(res), energy_text])
    return _table(heads, out, "summary")


def efficiency_text(result: dict[str, Any]) -> str:
    """'912 samples/s, MFU 3.1% (theoretical CPU peak), 45% of the measured kernel peak', or what is known."""
    e = fields.efficiency(result)
    parts = []
    if e["throughput"] is not None:
        parts.append(f"{compare.fmt_value(e['throughput'])} samples/s")
    if e["mfu"] is not None:
        parts.append(f"MFU {fields.percent(e['mfu'])} ({e['peak']})")
    elif e["throughput"] is not None and e["why_no_mfu"]:
        parts.append("no MFU")
    if e["kernel_fraction"] is not None:
        parts.append(f"{fields.percent(e['kernel_fraction'])} of the measured kernel peak")
    return ", ".join(parts)


def _mfu_cell(result: dict[str, Any]) -> str:
    """MFU and, in small print, the peak it divides by and the fraction of the measured kernel peak; a flagged
    figure is red with its flag folding out; no MFU: why folds out."""
    e = fields.efficiency(result)
    small = "; ".join(x for x in (e["peak"], e["kernel_fraction"] is not None
                                  and f"{fields.percent(e['kernel_fraction'])} of the measured kernel peak") if x)
    text = "-" if e["mfu"] is None else fields.percent(e["mfu"])
    if e["mfu"] is None and e["why_no_mfu"]:
        text = "no MFU"
    cell = escape(text) + (f'<br><span class="note">{escape(small)}</span>' if small else "")
    notes = e["flags"] + ([e["why_no_mfu"]] if e["mfu"] is None and e["why_no_mfu"] else [])
    if not notes:
        return f"<td>{cell}</td>"
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    cls, label = (' class="warn"', "flagged") if e["flags"] else ("", "why")
    return f'<td{cls}>{cell}<details><summary>{label}</summary><ul class="note">{items}</ul></details></td>'



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
        if len(by) < 2:  # one system and stack: nothing to compare (the benchmark's own section shows it)
            continue
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
    """Per inference run: its latency percentiles against the scenario's bound (Server: the target latency at
    its percentile, bars above it in red; SingleStream/MultiStream: the early-stopping estimate that is their
    metric; Offline: none), the per-query histogram when the run kept them (or LoadGen's trace has them), and
    the percentile table."""
    out = []
    for n, r in enumerate(rows):
        if r["kind"] == "train":
            continue
        info = latency.latency_info(Path(r["path"]))
        if not info:
            continue
        scenario = r.get("scenario") or info.get("scenario") or "?"
        out.append(f"<h3>{escape(str(r['benchmark']))} {escape(str(r['size']))} {escape(scenario)}: "
                   f"{escape(r['run_id'])}</h3>")
        out.append(f'<p class="line">{escape(_bound_text(info, scenario))}</p>')
        pts = info["percentiles_ms"]
        shown = [(p, v) for p, v in pts if p < 100] or pts  # the max (often one cold query) is in the table
        bound = info.get("bound_ms")
        hline = (bound, f"bound {bound:g} ms at p{info['bound_percentile']:g}") if bound else (
            (info["metric_ms"], f"{info['metric_name']} {info['metric_ms']:.3g} ms") if info.get("metric_ms") else None)
        colors = [("#d62728" if bound and v > bound else None) for _, v in shown]
        out.append(svg.bars(f"latency-pct-{n}", f"latency percentiles: {r['run_id']} ({scenario})",
                            [_pct_name(p) for p, _ in shown], [v for _, v in shown], "latency (ms)",
                            categories=True, hline=hline, colors=colors, log=_spread(shown) > 30))
        if info["per_query_ms"]:
            srt = sorted(info["per_query_ms"])
            marks = [(srt[min(len(srt) - 1, int(p / 100 * len(srt)))], f"p{p:g}") for p in (50, 90, 99)]
            marks = [(v, f"{label} {v:.3g} ms") for v, label in marks]
            if bound:
                marks.append((bound, f"bound {bound:g} ms"))
            upto = max(srt[min(len(srt) - 1, int(0.99 * len(srt)))], 1.1 * (bound or 0.0))  # the tail: in the table
            out.append(svg.histogram(f"latency-hist-{n}", f"per-query latency: {r['run_id']} ({scenario})",
                                     info["per_query_ms"], "latency (ms)", marks=marks, upto=upto))
        table = [[_pct_name(p), f"{v:.4g}"] for p, v in pts]
        if bound:
            table.append([f"bound (p{info['bound_percentile']:g})", f"{bound:.4g}"])
        out.append(_table(["percentile", "latency (ms)"], table))
        per_query = f"; per-query latencies from {info['per_query_source']}" if info["per_query_ms"] else (
            "; run with --trace to see every query's latency")
        out.append(f'<p class="note">LoadGen validity: {escape(str(info.get("validity") or "unknown"))}; '
                   f'{escape(str(info.get("query_count") or "?"))} queries; from {escape(str(info["source"]))}'
                   f'{escape(per_query)}</p>')
    return out


def _spread(points: list[tuple[float, float]]) -> float:
    """How many times the largest latency is the smallest (a log axis above ~30)."""
    values = [v for _, v in points if v > 0]
    return max(values) / min(values) if values else 1.0


def _bound_text(info: dict[str, Any], scenario: str) -> str:
    """The scenario's latency rule in one line, with the run's figure against it."""
    pct = dict(info["percentiles_ms"])
    if info.get("bound_ms"):
        p = info["bound_percentile"]
        got = pct.get(p)
        verdict = "" if got is None else (f": p{p:g} was {got:.4g} ms, " + ("within it" if got <= info["bound_ms"]
                                                                            else "ABOVE it"))
        return f"Server bound: {p:g}% of queries within {info['bound_ms']:g} ms{verdict}"
    if info.get("metric_ms") is not None:
        return (f"{scenario} has no latency bound; its metric is the {info['metric_name']}: "
                f"{info['metric_ms']:.4g} ms")
    if scenario == "Offline":
        return "Offline has no latency bound (its metric is samples/s); the latencies are the samples' completion times"
    return "no latency bound recorded"


def _pct_name(p: float) -> str:
    return "min" if p == 0 else "max" if p == 100 else f"p{p:g}"


def convergence_plots(rows: list[dict[str, Any]]) -> list[str]:
    """Per trained benchmark: its quality against training samples and against seconds since run_start, one
    curve per run, the target as a dashed line and a ring where each run reached it, with a line of text and
    a table per run (what the evaluations the run logged say)."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] == "train":
            groups.setdefault((r["benchmark"], r["size"]), []).append(r)
    for n, ((bench, size), members) in enumerate(sorted(groups.items())):
        by_samples, by_time, marks_s, marks_t, table = [], [], [], [], []
        target, metric, higher = None, "quality", True
        for r in members:
            res = r["result"]
            q = res.get("quality") or {}
            target, metric = q.get("target", target), q.get("metric", metric)
            higher = q.get("higher_is_better", higher) is not False
            for run in res.get("runs") or []:
                evals = [e for e in run.get("evals") or [] if e.get("quality") is not None]
                name = f"{r['run_id'][-4:]}/run {run.get('run')} ({r['device']} x{r['world_size']})"
                reached = run.get("status") == "success" and bool(evals)
                last = evals[-1] if evals else {}
                if evals and all(e.get("samples") is not None for e in evals):
                    by_samples.append((name, [(e["samples"], e["quality"]) for e in evals]))
                    if reached:
                        marks_s.append((last["samples"], last["quality"], f"reached at {last['samples']:,} samples"))
                if evals and all(e.get("elapsed_s") is not None for e in evals):
                    by_time.append((name, [(e["elapsed_s"], e["quality"]) for e in evals]))
                    if reached:
                        marks_t.append((last["elapsed_s"], last["quality"], f"reached at {last['elapsed_s']:.3g} s"))
                m = run.get("metrics") or {}
                table.append([name, run.get("seed"), run.get("status"), len(evals),
                              _num(last.get("quality")),
                              f"{last.get('samples', 0):,} samples, {last.get('elapsed_s', 0):.3g} s" if reached
                              else f"not reached: {run.get('reason') or run.get('status')}",
                              _num(m.get("throughput/samples_per_s")), _mfu_text(m)])
        if not table:
            continue
        rule = f"{metric} {'>=' if higher else '<='} {target}"
        ok = sum(1 for t in table if t[2] == "success")
        out.append(f"<h3>{escape(str(bench))} {escape(str(size))}: target {escape(rule)}</h3>")
        out.append(f'<p class="line">{ok} of {len(table)} run(s) reached the target; {len(members)} result(s); '
                   f"{escape(efficiency_text(members[-1]['result']) or 'no throughput recorded')}</p>")
        hline = (float(target), f"target {target}") if isinstance(target, (int, float)) else None
        few = len(by_samples) <= 4  # more rings than that hide the curves: the table says where
        if by_samples:
            out.append(svg.lines(f"conv-samples-{n}", f"{bench} {size}: {metric} against training samples",
                                 by_samples, "training samples", metric, hline=hline, marks=marks_s if few else []))
        if by_time:
            out.append(svg.lines(f"conv-time-{n}", f"{bench} {size}: {metric} against time (s since run_start)",
                                 by_time, "seconds since run_start", metric, hline=hline,
                                 marks=marks_t if few else []))
        out.append(_table(["run", "seed", "status", "evaluations", f"last {metric}", "target reached at",
                           "samples/s", "MFU"], table))
    return out


def _num(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v:.4g}"


def _mfu_text(metrics: dict[str, Any]) -> str:
    v = metrics.get("compute/mfu")
    return "-" if not isinstance(v, (int, float)) else fields.percent(v)


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


OPTIONAL = ("Benchmarks across systems and stacks", "Scaling efficiency")  # left out when there is nothing to show


def render(rows: list[dict[str, Any]], title: str = "mlbench report") -> str:
    """The whole report as one HTML string."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    kinds = {r["kind"] for r in rows}
    sections = [("Summary", [summary(rows)]), ("Benchmarks across systems and stacks", benchmark_bars(rows)),
                ("Training: quality against samples and time", convergence_plots(rows) if "train" in kinds else None),
                ("Inference: latency against the scenario's bound",
                 latency_plots(rows) if kinds - {"train"} else None),
                ("Scaling efficiency", scaling(rows)), ("Systems", [systems(rows)])]
    sections = [(h, b) for h, b in sections if b is not None and (b or h not in OPTIONAL)]
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
