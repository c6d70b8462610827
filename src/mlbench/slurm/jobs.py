"""Submit training jobs to SLURM and follow the ones mlbench submitted.

A submitted job is remembered by its run directory: ``slurm_job.json`` there holds the job id, the script and
the cluster options. ``status`` asks SLURM (squeue, then scontrol or sacct for finished jobs) and reads the
run directory's result.json; ``logs`` prints the job's output file from the run directory.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from mlbench import runs
from mlbench.config import TrainConfig
from mlbench.errors import MlbenchError
from mlbench.slurm.script import SlurmConfig, render

JOB_FILE = "slurm_job.json"
# States of a job that has not ended yet (squeue/scontrol/sacct spelling).
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING")


def tool(name: str) -> str:
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
    if slurm.requeue and train.runs > 1 and train.seed is None:
        # Run K is started on its own (seed + K - 1) and possibly again after a requeue: fix the seed now.
        train = dataclasses.replace(train, seed=secrets.randbelow(2**31))
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
    res = _call([tool("sbatch"), "--parsable", str(script)])
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


def is_active(state: str) -> bool:
    """Whether ``slurm_state``'s answer means the job has not ended. An unanswered query counts as active
    (the controller may be busy); a job SLURM no longer knows has ended."""
    word = state.split()[0] if state.strip() else "UNKNOWN"
    return word in ACTIVE or (word == "UNKNOWN" and "gone" not in state and "no squeue" not in state)


def wait(job_id: str, run_limit_s: float | None = None, poll_s: float = 2.0, on_change=None,
         unknown_limit_s: float = 300.0) -> tuple[str, bool]:
    """Wait until the job ends; return (its last state, whether it ended).

    A pending job is waited for without a bound (a busy cluster may keep it queued; a requeued job pends
    again and its clock starts over). Once it runs, at most ``run_limit_s`` seconds are waited (None: no
    bound); past that the job is cancelled (``scancel``) and ``(state, False)`` returned. So is a job whose
    state SLURM has not given for ``unknown_limit_s`` seconds in a row (it is then left alone).
    ``on_change(state)`` is called whenever the state changes.
    """
    started: float | None = None
    unknown_since: float | None = None
    last = ""
    while True:
        try:
            state = slurm_state(job_id)
        except MlbenchError as exc:  # the controller did not answer this time
            state = f"UNKNOWN ({exc.message})"
        if state != last and on_change is not None:
            on_change(state)
        last = state
        if not is_active(state):
            return state, True
        now = time.monotonic()
        word = state.split()[0]
        if word == "UNKNOWN":
            unknown_since = now if unknown_since is None else unknown_since
            if now - unknown_since > unknown_limit_s:
                return state, False
        else:
            unknown_since = None
        if word in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
            started = None
        elif started is None:
            started = now
        if run_limit_s is not None and started is not None and now - started > run_limit_s:
            cancel(job_id)
            return state, False
        time.sleep(poll_s)


def cancel(job_id: str) -> None:
    """scancel the job; a failure to do so is ignored (the caller reports the job's state)."""
    if shutil.which("scancel"):
        try:
            _call(["scancel", job_id])
        except MlbenchError:
            pass


def log_tail(run_dir: Path, job_id: str, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of the job's output file (empty when there is none)."""
    path = run_dir / f"slurm-{job_id}.out"
    if not path.is_file():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]
