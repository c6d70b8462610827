"""``mlbench data prepare BENCHMARK [options]``: build a benchmark's data set.

A benchmark that has a preparation step has a ``prepare`` module (found through the registry, no list here)
with ``PrepareConfig`` (a keyword-only dataclass of its options, light to import) and
``prepare(cfg, say) -> list of paths written``. `mlbench data prepare BENCHMARK --help` shows its options.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from mlbench.cli import flags


def preparable() -> dict[str, str]:
    """Benchmark name -> its prepare module, for every registered benchmark that has one."""
    from mlbench import registry

    found = {}
    for name in registry.names():
        module = f"{registry.BENCHMARKS[name]}.prepare"
        if importlib.util.find_spec(module) is not None:
            found[name] = module
    return found


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare a benchmark's data set (the real data sets of the reference sizes)",
                       description="Data set tools. `mlbench data prepare BENCHMARK --root DIR` builds the "
                                   "benchmark's data set (downloads are verified and resumable: run it again "
                                   "after an interruption).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    prep = actions.add_parser(
        "prepare", help="download and convert a benchmark's data set",
        description="Build BENCHMARK's data set into --root. Each benchmark has its own options: "
                    "`mlbench data prepare BENCHMARK --help` lists them.",
        epilog="Benchmarks with a preparation step: " + ", ".join(preparable()))
    prep.add_argument("benchmark", help="benchmark (" + ", ".join(preparable()) + ")")
    prep.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options (see its --help)")
    prep.set_defaults(func=main)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def main(args: argparse.Namespace) -> int:
    from mlbench import registry
    from mlbench.errors import ConfigError

    found = preparable()
    if args.benchmark not in found:
        if args.benchmark in registry.names():
            raise ConfigError(f"{args.benchmark} has no data preparation step",
                              f"its data comes with `mlbench train {args.benchmark}` (see its docs); "
                              f"preparable: {', '.join(found)}")
        raise registry.did_you_mean(args.benchmark, list(found), "benchmark")
    module = importlib.import_module(found[args.benchmark])
    parser = argparse.ArgumentParser(prog=f"mlbench data prepare {args.benchmark}",
                                     description=(module.__doc__ or "").strip().split("\n\n")[0])
    flags.add_config_flags(parser, module.PrepareConfig)
    try:
        opts = parser.parse_args(args.options)
    except SystemExit as exc:  # --help (0) or a bad flag (2, argparse printed why)
        return int(exc.code or 0)
    cfg = flags.resolve(module.PrepareConfig, opts)
    written = module.prepare(cfg, say=lambda m: print(m, flush=True))
    root = getattr(cfg, "root", "")
    print(f"done: {', '.join(map(str, written))}" + (f"; train with --data-dir {root}" if root else ""))
    return 0
