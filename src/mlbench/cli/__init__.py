"""The ``mlbench`` command line.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``main(args) -> int``;
modules import torch and friends only inside ``main``, so ``mlbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mlbench import __version__, errors, signals
from mlbench.errors import MlbenchError

# Sub-command modules, in the order --help lists them. Add a command by adding its module here.
COMMANDS = ["run", "train", "infer", "list", "sysinfo", "data", "results", "compare", "report", "slurm", "scale",
            "package"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbench",
        description="MLPerf-style training and inference benchmarks on one machine or a SLURM cluster.",
        epilog="Run `mlbench COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mlbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mlbench.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    signals.install()  # SIGTERM and SIGHUP stop a command like Ctrl-C: what was made is kept
    try:
        try:
            return int(args.func(args) or 0)
        except ModuleNotFoundError as exc:  # an optional package: say which and how to install it
            known = errors.explain(exc)
            if known is exc:
                raise
            raise known from exc
    except MlbenchError as exc:
        print(f"mlbench: error: {exc}", file=sys.stderr)
        return signals.exit_code() if signals.received() else exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"mlbench: {signals.describe(exc)}; the results made so far are kept in the run directory",
              file=sys.stderr)
        return signals.exit_code(exc)
