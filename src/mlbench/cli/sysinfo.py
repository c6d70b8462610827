"""``mlbench sysinfo``: the system description recorded with every run."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("sysinfo", help="print the system description (MLPerf systems-JSON fields)",
                       description="Print the system description that every run records: CPU, memory, GPUs, "
                                   "OS, library versions, mlbench version and commit. No hostname is recorded.")
    p.add_argument("-o", "--output", metavar="FILE", help="also write it to FILE")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench import runs, sysinfo

    info = sysinfo.describe()
    print(json.dumps(info, indent=2))
    if args.output:
        from pathlib import Path

        runs.write_json(Path(args.output), info)
    return 0
