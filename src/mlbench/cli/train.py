"""``mlbench train BENCHMARK``: train to the quality target under MLPerf timing and logging."""

from __future__ import annotations

import argparse
import os

from mlbench.cli import flags
from mlbench.config import TrainConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a benchmark to its quality target (MLPerf time to train)",
        description="Train BENCHMARK at SIZE until it reaches its quality target, with MLPerf timing, an mllog "
                    "log checked by the official compliance checker, and a result.json in the run directory. "
                    "Exit code 0 when every run reached the target, 1 when one did not, 2 for invalid options, "
                    "130/143/129 when stopped by Ctrl-C/SIGTERM/SIGHUP (result.json says aborted and which runs "
                    "finished). A --run-dir that already holds a result is refused unless --resume continues it.",
    )
    p.add_argument("benchmark", help="benchmark name (see `mlbench list`)")
    flags.add_config_flags(p, TrainConfig, skip=("benchmark", "hparams"))
    p.add_argument("--hparam", dest="hparam_items", action="append", metavar="KEY=VALUE",
                   help="change a tunable hyper-parameter of the benchmark, e.g. --hparam NAME=0.1 (repeatable; "
                        "the run becomes open division; `mlbench list --json` shows each benchmark's tunable ones)")
    flags.add_layer_flags(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench import registry

    fixed = {"benchmark": args.benchmark}
    if args.hparam_items:
        fixed["hparams"] = parse_hparams(args.hparam_items)
    cfg = flags.resolve(TrainConfig, args, **fixed)
    registry.get(cfg.benchmark, cfg.size, cfg.hparams)  # unknown names and bad values fail here, before anything
    return train(cfg)


def parse_hparams(items: list[str]) -> dict:
    """``["rank=8", "dropout=0.05"]`` as numbers ("nan" stays a float, refused by the definition)."""
    from mlbench.errors import ConfigError

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--hparam expects KEY=VALUE, got {item!r}", "for example: --hparam NAME=8")
        try:
            value = int(text) if text.strip().lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise ConfigError(f"invalid --hparam {key.strip()}={text!r}: not a number", "give a number") from None
        out[key.strip()] = value
    return out


def train(cfg: TrainConfig) -> int:
    """Train in this process, or start torchrun with ``cfg.nproc`` processes."""
    from mlbench.training import distributed, runner

    runner.check_run_dir(cfg)  # before torchrun starts: a refused --run-dir must not be marked failed
    if (cfg.nproc > 1 or cfg.nnodes > 1) and "WORLD_SIZE" not in os.environ:
        # torchrun on this node; a failed rank is reported by rank and node (mlbench.slurm.launcher).
        from mlbench.slurm import launcher

        return launcher.launch_train(cfg)
    try:
        result = runner.execute(cfg)
    finally:
        distributed.shutdown()
    if not distributed.env_info().is_main:
        return 0  # rank 0 alone writes and judges the result; the other ranks finished their part
    runner.print_summary(result)
    return 0 if result.get("status") == "success" else 1


