"""``mlbench slurm submit|status|logs``: training jobs on a SLURM cluster."""

from __future__ import annotations

import argparse

from mlbench.cli import flags
from mlbench.config import TrainConfig, bounded

# Set by the job script on each node, not by the user.
_CLUSTER_FIELDS = ("benchmark", "nnodes", "rdzv_endpoint", "rdzv_id", "node_rank")


def add_parser(sub) -> None:
    p = sub.add_parser("slurm", help="train on a SLURM cluster: submit, status, logs",
                       description="Submit mlbench training jobs to SLURM and follow them.")
    ssub = p.add_subparsers(dest="slurm_command", metavar="ACTION", required=True)

    s = ssub.add_parser(
        "submit", help="write an sbatch script into a new run directory and submit it",
        description="Write a readable sbatch script (job.sbatch) into a new run directory and submit it with "
                    "sbatch. Each node runs one torchrun through srun; the nodes meet at a c10d rendezvous "
                    "on the first node. The run directory must be on storage every node sees. With --requeue "
                    "and --runs N above 1, each run is its own `mlbench train` in run_K/, so that a requeued "
                    "job keeps the runs that finished and resumes the interrupted one from its checkpoint. "
                    "Train options are those of `mlbench train`.")
    s.add_argument("benchmark", help="benchmark name (see `mlbench list`)")
    from mlbench.slurm.script import SlurmConfig

    flags.add_config_flags(s, SlurmConfig)
    flags.add_config_flags(s, TrainConfig, skip=_CLUSTER_FIELDS)
    flags.add_layer_flags(s)
    s.add_argument("--dry-run", action="store_true", help="print the script; write and submit nothing")
    s.add_argument("--wait", action="store_true",
                   help="wait for the job to end, then print its result (exit code 0 when it succeeded)")
    s.set_defaults(func=main_submit)

    st = ssub.add_parser("status", help="the jobs mlbench submitted into --output-dir, with their results")
    st.add_argument("--output-dir", default="runs", help="where the run directories are (default: runs)")
    st.set_defaults(func=main_status)

    lg = ssub.add_parser("logs", help="print a job's output (default: the latest job)")
    lg.add_argument("job", nargs="?", help="job id, run directory or its name (default: the latest)")
    lg.add_argument("--output-dir", default="runs", help="where the run directories are (default: runs)")
    lg.add_argument("--tail", type=bounded(int, min=1, max=10**9), default=None, metavar="N",
                    help="only the last N lines of each file")
    lg.set_defaults(func=main_logs)


def main_submit(args: argparse.Namespace) -> int:
    import dataclasses

    from mlbench import config, registry, runs
    from mlbench.slurm import jobs
    from mlbench.slurm.script import SlurmConfig

    cluster_names = {f.name for f in dataclasses.fields(SlurmConfig)}
    slurm = config.build(SlurmConfig, {k: v for k, v in vars(args).items() if k in cluster_names and v is not None})
    train = flags.resolve(TrainConfig, args, benchmark=args.benchmark)
    registry.get(train.benchmark, train.size)  # unknown names fail before anything is written
    from mlbench.training.runner import check_run_dir

    check_run_dir(train)  # --run-dir never overwrites a result
    if not args.dry_run:
        jobs.tool("sbatch")  # not a submit host: say so before a run directory is made
    run_dir, text = jobs.prepare(train, slurm, runs.command_line(), dry_run=args.dry_run)
    if args.dry_run:
        print(text)
        print(f"# dry run: nothing written or submitted (the run directory would be {run_dir})")
        return 0
    job_id = jobs.submit(run_dir, slurm, train.benchmark, train.size)
    print(f"submitted job {job_id}: {train.benchmark} {train.size} on {slurm.nodes} node(s)")
    print(f"  script: {run_dir / 'job.sbatch'}")
    print(f"  follow: mlbench slurm status --output-dir {run_dir.parent}; "
          f"mlbench slurm logs {job_id} --output-dir {run_dir.parent}")
    if not args.wait:
        return 0
    return _wait(job_id, run_dir)


def _wait(job_id: str, run_dir) -> int:
    from mlbench import runs
    from mlbench.slurm import jobs

    state, _ = jobs.wait(job_id)
    result_file = run_dir / "result.json"
    result = runs.read_json(result_file) if result_file.is_file() else None
    print(f"job {job_id} ended: {state}")
    if result is None:
        print(f"  no result.json: see {run_dir}/slurm-{job_id}.out")
        return 1
    print(f"  result: {result.get('status')} (world size {result.get('world_size')}), valid for MLPerf "
          f"submission: {'yes' if result.get('valid') else 'no'}")
    for reason in result.get("validity_reasons", []):
        print(f"    - {reason}")
    print(f"  run directory: {run_dir}")
    return 0 if result.get("status") == "success" and state.startswith("COMPLETED") else 1


def main_status(args: argparse.Namespace) -> int:
    from mlbench.slurm import jobs

    rows = jobs.status_rows(args.output_dir)
    if not rows:
        print(f"no jobs submitted by mlbench in {args.output_dir}")
        return 0
    heads = ["job_id", "state", "benchmark", "nodes", "result", "valid", "run_dir"]
    cells = [[str(r[h]) for h in heads] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
    return 0


def main_logs(args: argparse.Namespace) -> int:
    from mlbench.slurm import jobs

    run_dir, job = jobs.find(args.output_dir, args.job)
    files = jobs.log_files(run_dir, job["job_id"])
    if not files:
        print(f"job {job['job_id']}: no output yet in {run_dir} (state {jobs.slurm_state(job['job_id'])})")
        return 0
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        if args.tail:
            lines = lines[-args.tail:]
        print(f"==> {path} <==")
        print("\n".join(lines))
    return 0
