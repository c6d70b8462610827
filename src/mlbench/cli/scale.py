"""``mlbench scale BENCHMARK --nproc 1,2,4``: the same training at several process counts, compared."""

from __future__ import annotations

import argparse

from mlbench.cli import common
from mlbench.config import TrainConfig

# The sweep sets these per size.
_SWEEP_FIELDS = ("benchmark", "nproc", "run_dir", "nnodes", "rdzv_endpoint", "rdzv_id", "node_rank")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "scale", help="train at several process counts; throughput, scaling efficiency, time to train",
        description="Train BENCHMARK once per process count in --nproc (torchrun for more than one), each in "
                    "a fresh process, and report training throughput (samples/s), scaling efficiency against "
                    "the smallest count and time to train where the target was reached. Other options are "
                    "those of `mlbench train` and apply to every size. Exit code 0 when every size ran.")
    p.add_argument("benchmark", help="benchmark name (see `mlbench list`)")
    p.add_argument("--nproc", dest="sizes", default="1,2", metavar="N,N,...",
                   help="process counts on this machine, comma-separated (default: 1,2)")
    common.add_config_flags(p, TrainConfig, skip=_SWEEP_FIELDS)
    common.add_layer_flags(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench import registry
    from mlbench.slurm import scale

    sizes = scale.parse_sizes(args.sizes)
    cfg = common.resolve(TrainConfig, args, benchmark=args.benchmark)
    registry.get(cfg.benchmark, cfg.size)  # unknown names fail before anything runs
    result = scale.sweep(cfg, sizes)
    print_table(result)
    return 0 if result["status"] == "success" else 1


def print_table(result: dict) -> None:
    heads = ["processes", "status", "samples/s", "speedup", "efficiency", "time to train", "quality"]
    rows = []
    for p in result["points"]:
        thr, ttt, q = p.get("throughput/samples_per_s"), p.get("time_to_train/minutes"), p.get("quality")
        rows.append([str(p["nproc"]), str(p["status"]), "n/a" if thr is None else f"{thr:.1f}",
                     "n/a" if p.get("speedup") is None else f"{p['speedup']:.2f}x",
                     "n/a" if p.get("scaling_efficiency") is None else f"{p['scaling_efficiency']:.0%}",
                     "not reached" if ttt is None else f"{ttt:.3f} min", "n/a" if q is None else f"{q:.4f}"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    print(f"\nscaling: {result['benchmark']} {result['size']} ({result['status']}); efficiency = "
          "throughput(n) / (n / n0 x throughput(n0)), n0 the smallest size")
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    for note in result.get("notes", []):
        print(f"note: {note}")
    print(f"timed: {result['timed']}")
    print(f"result: {result['run_dir']}/result.json (not an MLPerf result: a comparison on this system)")
