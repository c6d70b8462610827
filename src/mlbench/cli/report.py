"""``mlbench report``: one self-contained HTML report (tables and plots) of the recorded runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    from mlbench.cli.results import add_filter_args

    p = sub.add_parser(
        "report", help="write one self-contained HTML report (tables, plots) of the recorded runs",
        description="Write one HTML file that opens offline: a summary table; per benchmark, bars across systems "
                    "and software stacks; latency distributions of inference runs (from LoadGen's detail log); "
                    "training convergence curves with the target; scaling efficiency; the system descriptions.")
    add_filter_args(p)
    p.add_argument("-o", "--out", default=None, metavar="FILE",
                   help="where to write the report (default: <output-dir>/report.html)")
    p.add_argument("--title", default="mlbench report", help="the report's title")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench.cli.results import select
    from mlbench.errors import MlbenchError
    from mlbench.results import report

    rows = select(args)
    if not rows:
        raise MlbenchError(f"no runs match in {args.output_dir}", "run `mlbench results` to see what is recorded")
    path = report.write(rows, args.out or Path(args.output_dir) / "report.html", title=args.title)
    print(f"wrote {path} ({len(rows)} runs); open it in a browser (it works offline)")
    return 0
