"""``mlbench compare RUN_OR_FILTER ...``: a side-by-side table with ratios against a baseline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlbench.config import bounded


def add_parser(sub) -> None:
    from mlbench import registry

    example = registry.names()[0]
    p = sub.add_parser(
        "compare", help="compare runs side by side: variance, validity, accuracy, ratios against a baseline",
        description="Compare runs side by side. Each argument is one entry: a run id (or a unique prefix), a run "
                    f"directory, or filters such as benchmark={example},device=cpu (every matching run, pooled: "
                    "median, min-max and coefficient of variation; since=DATE as in `mlbench results --since`). Ratios are against the baseline (the first "
                    "entry unless --baseline); when two entries are not comparable (different benchmark, size, "
                    "scenario, mode or workload settings, or an INVALID or aborted run) the table says why "
                    "instead of printing a ratio.",
        epilog="examples: mlbench compare 20261128-1830 20261128-1842;  "
               f"mlbench compare benchmark={example},size=mini --by device")
    p.add_argument("specs", nargs="+", metavar="RUN_OR_FILTER", help="run id, run directory or key=value,...")
    p.add_argument("--output-dir", default="runs", help="results directory (default: runs)")
    p.add_argument("--by", default=None, metavar="FIELD",
                   help="split the matched runs into one entry per value of FIELD (device, stack, system, "
                        "precision, backend, world_size, ...)")
    p.add_argument("--baseline", type=bounded(int, min=1, max=10**6), default=1, metavar="N",
                   help="entry number of the baseline (default 1)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print a markdown table")
    fmt.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench.cli.results import ensure_store
    from mlbench.results import compare

    out = Path(args.output_dir)
    if any("=" in s or not (Path(s) / "result.json").is_file() for s in args.specs):
        ensure_store(out)
    groups = [compare.resolve(s, out) for s in args.specs]
    if args.by:
        groups = [part for g in groups for part in compare.split(g, args.by)]
    if args.baseline > len(groups):
        from mlbench.errors import ConfigError

        entries = f"{len(groups)} entr{'y' if len(groups) == 1 else 'ies'}"
        raise ConfigError(f"invalid value for 'baseline': {args.baseline} (there are {entries})",
                          f"give an entry number from 1 to {len(groups)}")
    rows = compare.compare(groups, baseline=args.baseline - 1)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(compare.render(rows, markdown=args.markdown), end="")
    return 0
