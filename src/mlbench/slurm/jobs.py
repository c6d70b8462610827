"""Submit training jobs to SLURM and follow the ones mlbench submitted.

A submitted job is remembered by its run directory: ``slurm_job.json`` there holds the job id, the script and
the cluster options. ``status`` asks SLURM (squeue, then scontrol or sacct for finished jobs) and reads the
run directory's result.json; ``logs`` prints the job's output file from the run directory.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mlbench import runs
from mlbench.config import TrainConfig
from mlbench.errors import MlbenchError
from mlbench.slurm.script import SlurmConfig, render

JOB_FILE = "slurm_job.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MlbenchError(f"`{name}` not found: this machine is not a SLURM submit host",
                           "run on the cluster's login node (where sbatch/squeue work), or add --dry-run to see "
                           "the job script without submitting")
    return path


def _call(args: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise MlbenchError(f"`{' '.join(args[:2])}` did not answer within {timeout:.0f} s",
                           "check that slurmctld is up (`scontrol ping`)") from exc


def prepare(train: TrainConfig, slurm: SlurmConfig, command: str, dry_run: bool = False
            ) -> tuple[Path, str]:
    """The run directory and the script; written to the run directory unless ``dry_run``."""
    slurm.check(train)
    out = Path(train.output_dir).resolve()
    run_dir = out / runs.new_run_id("train", train.benchmark, train.size) if not train.run_dir \
        else Path(train.run_dir).resolve()
    train = dataclasses.replace(train, run_dir=str(run_dir), output_dir=str(out))
    config_file = run_dir / "submit_config.json"
    text = render(slurm, train, run_dir, config_file, command)
    if not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_json(config_file, train.to_dict())
        (run_dir / "job.sbatch").write_text(text)
    return run_dir, text


def submit(run_dir: Path, slurm: SlurmConfig, benchmark: str, size: str) -> str:
    """sbatch the run directory's job.sbatch; return the job id and remember it in slurm_job.json."""
    script = run_dir / "job.sbatch"
    res = _call([_tool("sbatch"), "--parsable", str(script)])
    if res.returncode != 0:
        raise MlbenchError(f"sbatch refused the job: {res.stderr.strip() or res.stdout.strip()}",
                           f"fix the cluster options (partition, account, time, nodes); the script is {script}")
    job_id = res.stdout.strip().split(";")[0]
    runs.write_json(run_dir / JOB_FILE, {
        "job_id": job_id, "submitted_at": runs.now_iso(), "script": str(script), "benchmark": benchmark,
        "size": size, "slurm": dataclasses.asdict(slurm)})
    return job_id


def known_jobs(output_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, slurm_job.json) of every job mlbench submitted into ``output_dir``, oldest first."""
    base = Path(output_dir)
    found = []
    for path in sorted(base.glob(f"*/{JOB_FILE}")):
        try:
            found.append((path.parent, runs.read_json(path)))
        except (OSError, ValueError):
            continue  # a half-copied directory must not hide the others
    return found


def find(output_dir: str | Path, which: str | None) -> tuple[Path, dict[str, Any]]:
    """One job by id, by run directory, or the latest one."""
    if which and (Path(which) / JOB_FILE).is_file():
        return Path(which), runs.read_json(Path(which) / JOB_FILE)
    jobs = known_jobs(output_dir)
    if not jobs:
        raise MlbenchError(f"no jobs submitted by mlbench in {output_dir}",
                           "pass --output-dir where `mlbench slurm submit` wrote its run directories")
    if which is None:
        return jobs[-1]
    for run_dir, job in jobs:
        if job["job_id"] == which or run_dir.name == which:
            return run_dir, job
    raise MlbenchError(f"no job {which!r} in {output_dir}", "see `mlbench slurm status` for the known jobs")


def slurm_state(job_id: str) -> str:
    """The job's state as SLURM says it (PENDING, RUNNING, COMPLETED, FAILED, ...), or UNKNOWN."""
    if shutil.which("squeue") is None:
        return "UNKNOWN (no squeue here)"
    res = _call(["squeue", "-h", "-j", job_id, "-o", "%T"])
    if res.returncode == 0 and res.stdout.strip():
        return res.stdout.strip().splitlines()[0]
    if res.returncode != 0 and "invalid job id" not in res.stderr.lower():  # not "job gone": SLURM itself
        return f"UNKNOWN (squeue: {(res.stderr.strip().splitlines() or ['failed'])[0][:80]})"
    res = _call(["scontrol", "show", "job", job_id])  # finished jobs stay here for MinJobAge
    for word in res.stdout.split():
        if word.startswith("JobState="):
            return word.split("=", 1)[1]
    if shutil.which("sacct"):
        res = _call(["sacct", "-n", "-X", "-j", job_id, "-o", "State"])
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout.split()[0]
    return "UNKNOWN (gone from squeue)"


def status_rows(output_dir: str | Path) -> list[dict[str, Any]]:
    """One row per known job: id, state, benchmark, result status and validity, run directory."""
    rows = []
    reachable = True
    for run_dir, job in known_jobs(output_dir):
        result_file = run_dir / "result.json"
        result = runs.read_json(result_file) if result_file.is_file() else {}
        state = "UNKNOWN (slurmctld did not answer)"
        if reachable:  # one silent controller costs one timeout, not one per job
            try:
                state = slurm_state(job["job_id"])
            except MlbenchError:
                reachable = False
        rows.append({
            "job_id": job["job_id"], "state": state,
            "benchmark": f"{job['benchmark']} {job['size']}", "nodes": job["slurm"]["nodes"],
            "result": result.get("status", "-"),
            "valid": "-" if not result else ("yes" if result.get("valid") else "no"),
            "run_dir": str(run_dir),
        })
    return rows


def log_files(run_dir: Path, job_id: str) -> list[Path]:
    """The job's output file and the run's console log, those that exist."""
    return [p for p in (run_dir / f"slurm-{job_id}.out", run_dir / "console.log", run_dir / "failure.json")
            if p.is_file()]
