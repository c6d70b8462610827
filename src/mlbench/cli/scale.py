"""``mlbench scale BENCHMARK --nproc 1,2,4 [--nnodes 1,2 --slurm]``: the same training at several sizes, compared."""

from __future__ import annotations

import argparse

from mlbench.cli import flags
from mlbench.config import TrainConfig

# The sweep sets these per size.
_SWEEP_FIELDS = ("benchmark", "nproc", "run_dir", "nnodes", "rdzv_endpoint", "rdzv_id", "node_rank")
# The cluster options, used with --slurm only.
_SLURM_FLAGS = ("partition", "time", "account", "gpus_per_node", "cpus_per_task", "python")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "scale", help="train at several sizes (nodes x processes); throughput, scaling efficiency, time to train",
        description="Train BENCHMARK once per size, each in a fresh process, and report training throughput "
                    "(samples/s), speedup and scaling efficiency against the smallest total process count, and "
                    "time to train where the target was reached. The sizes are every combination of --nnodes "
                    "and --nproc. Without --slurm every size runs on this machine (torchrun for more than one "
                    "process), so --nnodes must be 1. With --slurm every size is a SLURM job, written and "
                    "submitted like `mlbench slurm submit` (one torchrun per node through srun); the sweep "
                    "waits for each job and reads its result.json, and --output-dir must be on storage every "
                    "node sees. Other options are those of `mlbench train` and apply to every size. The "
                    "sweep's result.json is written after every size. Exit code 0 when every size ran, 1 when "
                    "one failed, 2 for invalid options.")
    p.add_argument("benchmark", help="benchmark name (see `mlbench list`)")
    p.add_argument("--nproc", dest="sizes", default="1,2", metavar="N,N,...",
                   help="processes per node, comma-separated (default: 1,2)")
    p.add_argument("--nnodes", dest="node_counts", default="1", metavar="M,M,...",
                   help="nodes, comma-separated (default: 1); more than one needs --slurm")
    s = p.add_argument_group("SLURM (with --slurm)")
    s.add_argument("--slurm", action="store_true",
                   help="run every size as a SLURM job (sbatch) and wait for it; needed for --nnodes above 1")
    s.add_argument("--partition", help="partition of every job (sbatch --partition); default: the cluster's")
    s.add_argument("--time", help="time limit of every job (sbatch --time: MM, HH:MM:SS or D-HH[:MM[:SS]]); "
                                  "the sweep waits at most this plus 5 minutes once a job runs, then cancels it "
                                  "(default: 01:00:00)")
    s.add_argument("--account", help="account to charge (sbatch --account)")
    s.add_argument("--gpus-per-node", type=int, metavar="G",
                   help="GPU nodes with G GPUs each: every size asks for one GPU per process "
                        "(sbatch --gpus-per-node=N for N processes per node); --nproc values above G are rejected "
                        "(default: 0, CPU nodes)")
    s.add_argument("--cpus-per-task", type=int, metavar="C",
                   help="CPUs for each node's torchrun (sbatch --cpus-per-task)")
    s.add_argument("--python", help="python that runs mlbench on the nodes; default: this one (its environment "
                                    "must be on shared storage)")
    flags.add_config_flags(p, TrainConfig, skip=_SWEEP_FIELDS)
    flags.add_layer_flags(p)
    p.set_defaults(func=main)


def slurm_options(args: argparse.Namespace):
    """The cluster options as a SlurmSweep with --slurm, else None; cluster flags without --slurm are an error."""
    from mlbench.errors import ConfigError
    from mlbench.slurm.scale import SlurmSweep

    given = {k: getattr(args, k) for k in _SLURM_FLAGS if getattr(args, k) is not None}
    if not args.slurm:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigError(f"{flags} {verb} only to SLURM jobs (--slurm)", "add --slurm, or drop them")
        return None
    from mlbench.config import check_value, field_of
    from mlbench.slurm.script import SlurmConfig

    for name in ("gpus_per_node", "cpus_per_task"):  # the limits of `slurm submit`'s options
        if name in given:
            check_value(field_of(SlurmConfig, name), given[name])
    return SlurmSweep(**given)


def main(args: argparse.Namespace) -> int:
    from mlbench import registry
    from mlbench.slurm import scale

    nprocs = scale.parse_sizes(args.sizes, "nproc")
    nnodes = scale.parse_sizes(args.node_counts, "nnodes")
    slurm = slurm_options(args)
    cfg = flags.resolve(TrainConfig, args, benchmark=args.benchmark)
    registry.get(cfg.benchmark, cfg.size)  # unknown names fail before anything runs
    result = scale.sweep(cfg, nprocs, nnodes, slurm)
    print_table(result)
    return 0 if result["status"] == "success" else 1


def print_table(result: dict) -> None:
    heads = ["nodes", "per node", "processes", "status", "samples/s", "speedup", "efficiency", "time to train",
             "quality"]
    with_jobs = any(p.get("job_id") for p in result["points"])
    if with_jobs:
        heads.insert(3, "job")
    rows = []
    for p in result["points"]:
        thr, ttt, q = p.get("throughput/samples_per_s"), p.get("time_to_train/minutes"), p.get("quality")
        row = [str(p.get("nnodes", 1)), str(p["nproc"]), str(p.get("processes", p["nproc"])), str(p["status"]),
               "n/a" if thr is None else f"{thr:.1f}",
               "n/a" if p.get("speedup") is None else f"{p['speedup']:.2f}x",
               "n/a" if p.get("scaling_efficiency") is None else f"{p['scaling_efficiency']:.0%}",
               "not reached" if ttt is None else f"{ttt:.3f} min", "n/a" if q is None else f"{q:.4f}"]
        if with_jobs:
            row.insert(3, str(p.get("job_id") or "-"))
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    print(f"\nscaling: {result['benchmark']} {result['size']} ({result['status']}); efficiency = "
          "throughput(p) / (p / p0 x throughput(p0)), p the processes, p0 the smallest")
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    for p in result["points"]:
        if p["status"] == "failed":
            print(f"failed: {p.get('nnodes', 1)} node(s) x {p['nproc']}: {p.get('error')}")
            for line in p.get("log_tail") or []:
                print(f"    | {line}")
    for note in result.get("notes", []):
        print(f"note: {note}")
    print(f"timed: {result['timed']}")
    print(f"result: {result['run_dir']}/result.json (not an MLPerf result: a comparison on this system)")
