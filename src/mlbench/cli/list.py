"""``mlbench list``: the benchmarks, their sizes, datasets, metrics and targets."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list benchmarks, sizes, datasets, metrics and targets",
                       description="List every benchmark at every size with its dataset, metric and target.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)


def rows() -> list[dict]:
    from mlbench import registry

    out = []
    for name in registry.names():
        for size, b in registry.sizes(name).items():
            cadence = (f"{b.eval_every_samples} samples" if b.eval_every_samples
                       else f"{b.eval_every_epochs} epoch{'s' if b.eval_every_epochs > 1 else ''}")
            out.append({"benchmark": name, "size": size, "division": b.division, "task": b.task,
                        "dataset": b.dataset, "metric": b.metric,
                        "target": b.target, "higher_is_better": b.higher_is_better,
                        "target_text": f"{'>=' if b.higher_is_better else '<='} {b.target:g}",
                        "target_source": b.target_source, "eval_every": cadence,
                        "eval_every_epochs": b.eval_every_epochs, "eval_every_samples": b.eval_every_samples,
                        "runs_required": b.runs_required, "mlperf_name": b.mlperf_name, "ruleset": b.ruleset,
                        "inference_metric": b.inference_metric or b.metric,
                        "inference_target": b.inference_target, "inference_targets": dict(b.inference_targets),
                        "inference_name": b.inference_name,
                        "notes": b.notes})
    return out


def main(args: argparse.Namespace) -> int:
    data = rows()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    cols = ["benchmark", "size", "division", "metric", "target_text", "eval_every", "runs_required", "dataset"]
    heads = ["benchmark", "size", "division", "metric", "target", "eval every", "runs", "dataset"]
    table = [[str(r[c]) for c in cols] for r in data]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    print("\ntargets: " + "; ".join(f"{r['benchmark']}/{r['size']}: {r['target_source']}" for r in data))
    named = [f"{r['benchmark']}/{r['size']}: " + ", ".join(f"{k} -> {r['inference_metric']} {v:g}"
                                                           for k, v in r["inference_targets"].items())
             for r in data if r["inference_targets"]]
    if named:
        print("inference accuracy targets (mlbench infer --target NAME): " + "; ".join(named))
    aliases = [f"{r['inference_name']} ({r['benchmark']})" for r in data if r["size"] == "reference"
               and r["inference_name"] and r["inference_name"] != r["benchmark"]]
    if aliases:
        print("MLPerf Inference names that `mlbench infer` also accepts: " + ", ".join(aliases))
    rounds = {r["benchmark"]: r["notes"] for r in data if r["size"] == "reference" and "retired" in r["notes"]}
    for name, note in rounds.items():
        print(f"{name}: {note}")
    return 0
