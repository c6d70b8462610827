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
            out.append({"benchmark": name, "size": size, "division": b.division, "task": b.task,
                        "dataset": b.dataset, "metric": b.metric, "target": b.target,
                        "target_source": b.target_source, "eval_every_epochs": b.eval_every_epochs,
                        "runs_required": b.runs_required, "mlperf_name": b.mlperf_name, "ruleset": b.ruleset,
                        "inference_target": b.inference_target})
    return out


def main(args: argparse.Namespace) -> int:
    data = rows()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    cols = ["benchmark", "size", "division", "metric", "target", "eval_every_epochs", "runs_required", "dataset"]
    heads = ["benchmark", "size", "division", "metric", "target", "eval every", "runs", "dataset"]
    table = [[str(r[c]) for c in cols] for r in data]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    print("\ntargets: " + "; ".join(f"{r['benchmark']}/{r['size']}: {r['target_source']}" for r in data))
    return 0
