"""A scaling sweep: one benchmark trained at several sizes, compared against the smallest.

A size is a number of nodes and a number of processes per node. Each size is a full ``mlbench train`` of its
own, so every size starts cold and the same way:

- on this machine (one node), in a fresh process (torchrun for more than one process);
- with ``--slurm``, as a SLURM job written and submitted the way ``mlbench slurm submit`` does it (srun starts
  one torchrun per node, the nodes meet at a rendezvous on the first node). The sweep waits for the job (no
  bound while it is pending; once it runs, its time limit plus a margin, then it is cancelled) and reads the
  job's result.json. Sizes with more than one node need ``--slurm``: one machine cannot start the others.

The sweep's result.json holds, per size, the training throughput (samples/s in training steps, data waits
included, evaluation excluded: the harness's ``throughput/samples_per_s``), the speedup and the scaling efficiency
``thr(p) / (p / p0 * thr(p0))`` against the smallest total process count ``p0``, and the time to train when the
target was reached. Results are written after every size, so an interrupted sweep keeps the sizes done; a size
that failed is a failed point with the reason (for a job: its state and the tail of its output).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlbench import runs
from mlbench.config import TrainConfig, field_of
from mlbench.errors import ConfigError, MlbenchError

TIMED = ("throughput: training samples per second over the training steps of each size (data waits included, "
         "evaluation excluded); scaling efficiency = throughput(p) / (p / p0 x throughput(p0)), p the total "
         "process count (nodes x processes per node), p0 the smallest; time to train: run_start to run_stop "
         "when the target was reached")
WAIT_MARGIN_S = 300  # beyond a running job's time limit: SLURM's kill wait, epilog, a slow shared file system
LOG_TAIL_LINES = 20


@dataclasses.dataclass
class SlurmSweep:
    """The cluster options of ``mlbench scale --slurm``, the same for every size's job."""

    partition: str | None = None
    time: str = "01:00:00"
    account: str | None = None
    gpus_per_node: int = 0  # GPUs on a node; each size asks for one GPU per process
    cpus_per_task: int | None = None
    python: str | None = None

    def job(self, nnodes: int, nproc: int):
        """The SlurmConfig of one size's job."""
        from mlbench.slurm.script import SlurmConfig

        return SlurmConfig(nodes=nnodes, gpus_per_node=nproc if self.gpus_per_node else 0,
                           partition=self.partition, time=self.time, account=self.account,
                           cpus_per_task=self.cpus_per_task, python=self.python)


def parse_sizes(text: str, name: str = "nproc") -> list[int]:
    """``"1,2,4"`` as [1, 2, 4]; ConfigError naming the option and the bad item."""
    what = "process counts" if name == "nproc" else "node counts"
    sizes = []
    for item in text.split(","):
        item = item.strip()
        high = field_of(TrainConfig, name).metadata["max"]
        if not (item.isascii() and item.isdigit()) or not 1 <= int(item) <= high:
            raise ConfigError(f"invalid value for '{name}': {item!r} in {text!r}",
                              f"give {what} from 1 to {high} separated by commas, e.g. --{name} 1,2,4")
        sizes.append(int(item))
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"invalid value for '{name}': {text!r} repeats a size", "list each size once")
    return sorted(sizes)


def plan(nprocs: list[int], nnodes: list[int]) -> list[tuple[int, int]]:
    """Every (nodes, processes per node), smallest total process count first (fewer nodes first on a tie)."""
    return sorted(((m, n) for m in nnodes for n in nprocs), key=lambda s: (s[0] * s[1], s[0]))


def check(cfg: TrainConfig, sizes: list[tuple[int, int]], slurm: SlurmSweep | None) -> None:
    """Sweeps that cannot run, rejected before anything is written or submitted."""
    if slurm is None:
        many = sorted({m for m, _ in sizes if m > 1})
        if many:
            raise ConfigError(
                f"--nnodes {','.join(map(str, many))}: one machine cannot start training on other nodes",
                "add --slurm to run every size as a SLURM job, or start `mlbench train --nnodes M "
                "--rdzv-endpoint FIRST_NODE:PORT` by hand on each node")
        return
    if slurm.gpus_per_node:
        over = sorted({n for _, n in sizes if n > slurm.gpus_per_node})
        if over:
            raise ConfigError(f"--nproc {','.join(map(str, over))} with --gpus-per-node {slurm.gpus_per_node}: "
                              "one process per GPU", f"give --nproc values up to {slurm.gpus_per_node}")
    for m, n in sizes:
        slurm.job(m, n).check(dataclasses.replace(cfg, nproc=n))
    from mlbench.slurm.script import script_text

    # What the job scripts will hold, refused now rather than size after size (a newline would inject a line).
    for what, value in (("'output_dir'", cfg.output_dir), ("'python'", slurm.python)):
        if value is not None:
            script_text(what, value)
    script_text("the command line", runs.command_line())


def label(nnodes: int, nproc: int) -> str:
    """A size's name: its run directory and its metrics' prefix (``nproc_2``, ``nnodes_2_nproc_1``)."""
    return f"nproc_{nproc}" if nnodes == 1 else f"nnodes_{nnodes}_nproc_{nproc}"


def threads_for(nproc: int) -> str:
    """Intra-op threads per process: the user's OMP_NUM_THREADS, else the cores shared among the processes."""
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))


def _from_result(point: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The point with what the size's result.json says; None when it has none."""
    result = runs.read_json(run_dir / "result.json")
    ttt = result.get("score", {}).get("time_to_train_minutes") if result.get("status") == "success" else None
    return {**point, "status": result.get("status"), "world_size": result.get("world_size"),
            "throughput/samples_per_s": result.get("metrics", {}).get("throughput/samples_per_s"),
            "time_to_train/minutes": ttt, "quality": result.get("quality", {}).get("value"),
            "error": result.get("error")}


def run_size(cfg: TrainConfig, sweep_dir: Path, nproc: int) -> dict[str, Any]:
    """Train at ``nproc`` processes on this machine in a fresh process; the point for the sweep's result."""
    name = label(1, nproc)
    run_dir = sweep_dir / name
    size_cfg = dataclasses.replace(cfg, nproc=nproc, run_dir=str(run_dir), output_dir=str(sweep_dir))
    config_file = sweep_dir / f"{name}.config.json"
    runs.write_json(config_file, size_cfg.to_dict())
    env = {**os.environ, "OMP_NUM_THREADS": threads_for(nproc)}
    print(f"\n=== {cfg.benchmark} {cfg.size}: {nproc} process(es), {env['OMP_NUM_THREADS']} thread(s) each ===",
          flush=True)
    code = subprocess.call([sys.executable, "-m", "mlbench", "train", cfg.benchmark, "--config", str(config_file)],
                           env=env)
    point: dict[str, Any] = {"nnodes": 1, "nproc": nproc, "processes": nproc, "job_id": None,
                             "threads_per_process": int(env["OMP_NUM_THREADS"]), "exit_code": code,
                             "run_dir": str(run_dir)}
    if not (run_dir / "result.json").is_file():
        return {**point, "status": "failed", "error": f"no result.json (mlbench train exited with {code})"}
    return _from_result(point, run_dir)


def run_job(cfg: TrainConfig, sweep_dir: Path, nnodes: int, nproc: int, slurm: SlurmSweep) -> dict[str, Any]:
    """Train at ``nnodes`` x ``nproc`` as a SLURM job, wait for it; the point for the sweep's result."""
    from mlbench.slurm import jobs

    run_dir = sweep_dir / label(nnodes, nproc)
    job = slurm.job(nnodes, nproc)
    size_cfg = dataclasses.replace(cfg, nproc=nproc, run_dir=str(run_dir), output_dir=str(sweep_dir))
    point: dict[str, Any] = {"nnodes": nnodes, "nproc": nproc, "processes": nnodes * nproc, "job_id": None,
                             "threads_per_process": int(os.environ["OMP_NUM_THREADS"])
                             if os.environ.get("OMP_NUM_THREADS") else None, "run_dir": str(run_dir)}
    print(f"\n=== {cfg.benchmark} {cfg.size}: {nnodes} node(s) x {nproc} process(es), SLURM job ===", flush=True)
    try:
        jobs.prepare(size_cfg, job, runs.command_line())
        job_id = jobs.submit(run_dir, job, cfg.benchmark, cfg.size)
    except MlbenchError as exc:  # sbatch refused this size (too many nodes for the partition, ...)
        return {**point, "status": "failed", "error": f"not submitted: {exc.message}"}
    point["job_id"] = job_id
    print(f"submitted job {job_id} (script {run_dir / 'job.sbatch'}); waiting for it to end", flush=True)
    try:
        state, ended = jobs.wait(job_id, run_limit_s=job.time_limit_s() + WAIT_MARGIN_S,
                                 on_change=lambda s: print(f"job {job_id}: {s}", flush=True))
    except KeyboardInterrupt:
        jobs.cancel(job_id)
        print(f"interrupted: job {job_id} cancelled", flush=True)
        raise
    point["job_state"] = state
    tail = jobs.log_tail(run_dir, job_id, LOG_TAIL_LINES)
    if not ended:
        why = (f"job {job_id} was still {state} after its time limit ({job.time}) plus {WAIT_MARGIN_S} s: "
               "cancelled" if not state.startswith("UNKNOWN") else f"SLURM stopped answering about job {job_id}")
        return {**point, "status": "failed", "error": why, "log_tail": tail}
    if (run_dir / "result.json").is_file():
        done = _from_result(point, run_dir)
        finished = runs.read_json(run_dir / "result.json").get("finished_at")
        if done["status"] in ("success", "aborted") and finished:
            return done  # aborted: the run ended without reaching the target (the job then exits 1)
        why = f"job {job_id} ended {state}: {done.get('error') or 'result ' + str(done['status'])}"
        return {**done, "status": "failed", "error": why, "log_tail": tail}
    return {**point, "status": "failed", "error": f"job {job_id} ended {state} without a result.json",
            "log_tail": tail}


def efficiencies(points: list[dict[str, Any]]) -> None:
    """Add ``speedup`` and ``scaling_efficiency`` to each point with a rate, against the one with the smallest
    total process count (fewest nodes on a tie)."""
    rated = [p for p in points if p.get("throughput/samples_per_s")]
    if not rated:
        return
    base = min(rated, key=lambda p: (_total(p), p.get("nnodes", 1)))
    for p in rated:
        speedup = p["throughput/samples_per_s"] / base["throughput/samples_per_s"]
        p["speedup"] = speedup
        p["scaling_efficiency"] = speedup / (_total(p) / _total(base))


def _total(point: dict[str, Any]) -> int:
    return point.get("processes") or point["nproc"] * point.get("nnodes", 1)


def sweep(cfg: TrainConfig, nprocs: list[int], nnodes: list[int] | None = None,
          slurm: SlurmSweep | None = None) -> dict[str, Any]:
    """Run every size; write the sweep's result.json after each and return it."""
    sizes = plan(nprocs, nnodes or [1])
    check(cfg, sizes, slurm)
    output_dir = Path(cfg.output_dir)
    if slurm is not None:
        from mlbench.slurm import jobs

        jobs.tool("sbatch")  # not a submit host: say so before anything is written
        output_dir = output_dir.resolve()  # the job scripts name it on every node
        cfg = dataclasses.replace(cfg, output_dir=str(output_dir))
    sweep_dir = runs.create_run_dir(output_dir, "scale", cfg.benchmark, cfg.size)
    result: dict[str, Any] = {
        "schema": runs.RESULT_SCHEMA, "kind": "scale", "run_id": sweep_dir.name, "benchmark": cfg.benchmark,
        "size": cfg.size, "status": "running", "valid": False,
        "validity_reasons": ["a scaling sweep compares sizes on this system; it is not an MLPerf result "
                             "(each size's own result.json says whether that run is valid)"],
        "started_at": runs.now_iso(), "finished_at": None, "command": runs.command_line(), "device": cfg.device,
        "precision": cfg.precision, "timed": TIMED, "sizes": nprocs, "nnodes": sorted(nnodes or [1]),
        "plan": [{"nnodes": m, "nproc": n} for m, n in sizes], "launcher": "slurm" if slurm else "local",
        "slurm": dataclasses.asdict(slurm) if slurm else None, "points": [], "metrics": {},
        "quality": {}, "config": cfg.to_dict(), "notes": [],
        "load_average_1m_at_start": os.getloadavg()[0],  # other work on the machine skews every size
    }
    where = "as SLURM jobs" if slurm else "on this machine"
    print(f"scaling sweep of {cfg.benchmark} {cfg.size} at {len(sizes)} size(s) (nodes x processes per node: "
          f"{', '.join(f'{m}x{n}' for m, n in sizes)}) {where}; results in {sweep_dir}", flush=True)
    try:
        for m, n in sizes:
            point = run_job(cfg, sweep_dir, m, n, slurm) if slurm else run_size(cfg, sweep_dir, n)
            result["points"].append(point)
            _summarise(result)
            runs.write_json(sweep_dir / "result.json", result)
    finally:
        done = len(result["points"]) == len(sizes)
        ok = done and all(p["status"] in ("success", "aborted") for p in result["points"])
        result["status"] = "success" if ok else "failed" if done else "interrupted"
        result["finished_at"] = runs.now_iso()
        _summarise(result)
        runs.write_json(sweep_dir / "result.json", result)
    result["run_dir"] = str(sweep_dir)
    return result


def _summarise(result: dict[str, Any]) -> None:
    efficiencies(result["points"])
    metrics: dict[str, Any] = {}
    for p in result["points"]:
        for key in ("throughput/samples_per_s", "scaling_efficiency", "speedup", "time_to_train/minutes"):
            metrics[f"{label(p.get('nnodes', 1), p['nproc'])}/{key}"] = p.get(key)
    result["metrics"] = metrics
    reached = [p for p in result["points"] if p.get("time_to_train/minutes") is not None]
    result["quality"] = {"reached_at": [label(p.get("nnodes", 1), p["nproc"]) for p in reached]}
    odd = [label(p.get("nnodes", 1), p["nproc"]) for p in result["points"]
           if (p.get("scaling_efficiency") or 0) > 1.2]
    result["notes"] = [
        f"superlinear scaling at {odd}: the smaller size was probably slowed down (its threads contending "
        "with other load on the machine, or cache effects); check the load and rerun"] if odd else []
