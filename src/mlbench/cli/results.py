"""``mlbench results``: list the runs in the results store (``--json``, ``--csv``); ``results reindex`` rebuilds it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from mlbench import config as cfgmod

# Columns of the listing, in order, with their headings.
LIST_COLUMNS = [("run_id", "run"), ("kind", "kind"), ("benchmark", "benchmark"), ("size", "size"),
                ("scenario", "scenario"), ("device", "device"), ("stack", "stack"), ("world_size", "procs"),
                ("system", "system"), ("status", "status"), ("valid", "valid"), ("metric", "metric")]


def add_filter_args(p: argparse.ArgumentParser) -> None:
    """The run filters shared by ``results``, ``compare`` and ``report``."""
    p.add_argument("--output-dir", default="runs", help="results directory holding the run directories "
                   "and results.db (default: runs)")
    g = p.add_argument_group("filters (all optional; combined with AND)")
    for name in ("kind", "benchmark", "size", "scenario", "mode", "backend", "device", "precision", "status"):
        g.add_argument(f"--{name}", default=None, help=f"only runs with this {name}")
    g.add_argument("--system", default=None, metavar="FINGERPRINT", help="only this system (fingerprint prefix)")
    g.add_argument("--world-size", type=cfgmod.bounded(int, min=1, max=10**6), default=None,
                   help="only runs with this many processes")
    g.add_argument("--valid", dest="valid", action="store_true", default=None, help="only MLPerf-valid runs")
    g.add_argument("--invalid", dest="valid", action="store_false", help="only runs not valid for MLPerf")
    g.add_argument("--since", type=cfgmod.since_arg, default=None, metavar="DATE",
                   help="only runs started at or after DATE: an ISO date or time (local unless it has an "
                        "offset), today, yesterday, or 7d, 24h, 2w ago")
    g.add_argument("--limit", type=cfgmod.bounded(int, min=1, max=10**9), default=None, metavar="N",
                   help="at most this many runs")


def select(args: argparse.Namespace, **extra) -> list[dict]:
    """The store rows matching the command's filters; builds the store first when it does not exist yet."""
    from mlbench.results import store

    out = Path(args.output_dir)
    ensure_store(out)
    keys = ("kind", "benchmark", "size", "scenario", "mode", "backend", "device", "precision", "status",
            "system", "world_size")
    filters = {k: getattr(args, k, None) for k in keys}
    filters.update({k: v for k, v in extra.items() if v is not None})
    return store.query(out, valid=args.valid, since=args.since, limit=args.limit, **filters)


def ensure_store(output_dir: Path) -> None:
    from mlbench.errors import MlbenchError
    from mlbench.results import store

    if store.db_path(output_dir).exists():
        return
    if not output_dir.is_dir():
        raise MlbenchError(f"results directory not found: {output_dir}",
                           "pass --output-dir with the directory your runs were written to")
    n, problems = store.reindex(output_dir)
    print(f"built the results store {store.db_path(output_dir)} from {n} run directories", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "results", help="list recorded runs (filters, --json, --csv); `results reindex` rebuilds the store",
        description="List the runs recorded in the results store <output-dir>/results.db. Every training and "
                    "inference run is recorded when it finishes; the run directories stay the source of truth "
                    "and `mlbench results reindex` rebuilds the store from them.")
    p.add_argument("action", nargs="?", default="list", choices=("list", "reindex"),
                   help="list (default) or reindex")
    add_filter_args(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the matching results as JSON (whole result.json)")
    fmt.add_argument("--csv", action="store_true", help="print the indexed columns as CSV")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench.results import store

    if args.action == "reindex":
        n, problems = store.reindex(args.output_dir)
        for msg in problems:
            print(f"mlbench: warning: {msg}", file=sys.stderr)
        skipped = sum(p.startswith("skipped") for p in problems)
        incomplete = sum(p.startswith("incomplete") for p in problems)
        print(f"indexed {n} runs into {store.db_path(args.output_dir)}"
              + (f"; {incomplete} incomplete (no final result: killed or still running)" if incomplete else "")
              + (f"; skipped {skipped} (see warnings above)" if skipped else ""))
        return 0
    rows = select(args)
    if args.json:
        print(json.dumps([r["result"] for r in rows], indent=2))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(store.COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_table(rows)
    return 0


def metric_text(row: dict) -> str:
    from mlbench.results.compare import fmt_value

    if row.get("metric_value") is None:
        return "n/a"
    return f"{row['metric_name']} {fmt_value(row['metric_value'])}"


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("no runs match (run `mlbench results` without filters to see all)")
        return
    table = []
    for r in rows:
        cells = {**r, "valid": "yes" if r["valid"] else "no", "metric": metric_text(r),
                 "scenario": r.get("scenario") or "-", "system": (r.get("system") or "?")[:8]}
        table.append([str(cells.get(c) if cells.get(c) is not None else "-") for c, _ in LIST_COLUMNS])
    heads = [h for _, h in LIST_COLUMNS]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
    print(f"\n{len(rows)} runs; `mlbench compare RUN RUN ...` compares them, `mlbench report` writes an HTML report")
