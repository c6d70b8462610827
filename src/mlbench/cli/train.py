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
    flags.add_config_flags(p, TrainConfig, skip=("benchmark",))
    flags.add_layer_flags(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench import registry

    cfg = flags.resolve(TrainConfig, args, benchmark=args.benchmark)
    registry.get(cfg.benchmark, cfg.size)  # unknown names fail here, before anything runs
    return train(cfg)


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


