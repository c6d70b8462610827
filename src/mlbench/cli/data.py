"""``mlbench data prepare BENCHMARK --root DIR``: build a benchmark's data set from its official sources.

A benchmark that needs preparation has a ``prepare`` module with ``PrepareConfig`` (its options) and
``prepare(cfg, say)``; today that is RetinaNet (OpenImages-MLPerf). The flags below are its options.
"""

from __future__ import annotations

import argparse

from mlbench.cli import common

PREPARABLE = {"retinanet": "mlbench.benchmarks.retinanet.prepare"}


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare a benchmark's data set (e.g. OpenImages-MLPerf for retinanet)",
                       description="Data set tools. `mlbench data prepare retinanet --root DIR` builds "
                                   "OpenImages-MLPerf (COCO json + images) from the official OpenImages files; "
                                   "it resumes when run again.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    prep = actions.add_parser("prepare", help="download and convert a benchmark's data set",
                              description="Download and convert BENCHMARK's data set into --root. Downloads are "
                                          "parallel, verified and resumable: run the command again after an "
                                          "interruption or failure.")
    prep.add_argument("benchmark", help=f"benchmark ({', '.join(PREPARABLE)})")
    from mlbench.benchmarks.retinanet.prepare import PrepareConfig  # light: no torch

    common.add_config_flags(prep, PrepareConfig)
    prep.set_defaults(func=main)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def main(args: argparse.Namespace) -> int:
    import importlib

    from mlbench import registry

    if args.benchmark not in PREPARABLE:
        if args.benchmark in registry.names():
            from mlbench.errors import ConfigError

            raise ConfigError(f"{args.benchmark} has no data preparation step",
                              f"its data comes with `mlbench train {args.benchmark}` (see its docs); "
                              f"preparable: {', '.join(PREPARABLE)}")
        raise registry.did_you_mean(args.benchmark, list(PREPARABLE), "benchmark")
    module = importlib.import_module(PREPARABLE[args.benchmark])
    cfg = common.resolve(module.PrepareConfig, args)
    written = module.prepare(cfg, say=lambda m: print(m, flush=True))
    print(f"done: {', '.join(map(str, written))}; train with --data-dir {cfg.root}")
    return 0
