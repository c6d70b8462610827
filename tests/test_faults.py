"""A rank that dies or hangs: the torchrun job fails within a bounded time, names the rank and node, and
keeps what was already written. Real torchrun, real gloo, real signals; no fault hooks in the code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mlbench.slurm import launcher

pytestmark = pytest.mark.serial  # each test bounds how long a failure takes to surface

ROOT_CAUSE = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
mlbench FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-28_18:31:52
  host      : node07
  rank      : 3 (local_rank: 1)
  exitcode  : -9 (pid: 8291)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 8291
============================================================"""


def test_read_failure_names_rank_and_node():
    lines = ["RuntimeError: [gloo] Timed out waiting 10000ms for recv operation to complete",
             "Traceback (most recent call last):", *ROOT_CAUSE.splitlines()]
    f = launcher.read_failure(1, lines)
    assert (f.rank, f.local_rank, f.host) == (3, 1, "node07")
    assert "rank 3 (local rank 1) on node node07" in f.message
    assert "killed by SIGKILL" in f.message
    assert "Timed out" in f.message and "another rank hung or died" in f.message


def test_read_failure_names_the_signal_older_torchrun_leaves_out():
    # older torchrun (2.11, as on our GPU machines) prints the negated signal number alone: "exitcode  : -9 (pid: 8291)"
    lines = ROOT_CAUSE.replace("(pid: 8291)  (SIGKILL)", "(pid: 8291)").splitlines()
    f = launcher.read_failure(1, lines)
    assert f.rank_exit == "-9" and "killed by SIGKILL" in f.message
    f = launcher.read_failure(1, ROOT_CAUSE.replace("-9 (pid: 8291)  (SIGKILL)", "3 (pid: 8291)").splitlines())
    assert "exit code 3" in f.message


def test_read_failure_without_root_cause_names_this_node():
    f = launcher.read_failure(2, ["torch.distributed.DistNetworkError: connection refused"])
    assert f.rank is None
    assert f"on node {f.node}" in f.message and "exited with code 2" in f.message


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLBENCH_SKIP_CACHE_CLEAR": "1"}
    # --lr 0: the model never reaches the target, so training goes on until the fault.
    cmd = [sys.executable, "-m", "mlbench", "train", "resnet50", "--size", "tiny", "--nproc", "2", "--lr", "0",
           "--epochs", "1000", "--seed", "3", "--output-dir", str(tmp_path), "--log-every", "1000", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rank_process(proc: subprocess.Popen, rank: int, timeout: float = 60) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank) and "mlbench" in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise AssertionError(f"rank {rank} did not start within {timeout} s")


def _wait_for(path_glob: str, base: Path, proc: subprocess.Popen, timeout: float = 90) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(base.glob(path_glob))
        if found:
            return found[0]
        assert proc.poll() is None, "training ended before the fault could be injected"
        time.sleep(0.2)
    raise AssertionError(f"{path_glob} did not appear within {timeout} s")


def _fault(tmp_path: Path, sig: int, bound_s: float, *extra: str) -> tuple[str, Path, float]:
    """Start 2 ranks, send ``sig`` to rank 1 after the first checkpoint; return output, run dir, seconds."""
    proc = _start(tmp_path, *extra)
    victim = None
    try:
        checkpoint = _wait_for("*/run_1/checkpoint.pt", tmp_path, proc)
        victim = _rank_process(proc, 1)
        t0 = time.monotonic()
        victim.send_signal(sig)
        out, _ = proc.communicate(timeout=bound_s)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if victim is not None and victim.is_running():
            victim.kill()  # the rank we stopped, should torchrun not have
    assert proc.returncode != 0
    return out, checkpoint.parent.parent, elapsed


def _check_kept(run_dir: Path, status: str = "failed") -> dict:
    for name in ("config.json", "console.log", "run_1/mlperf_log.txt", "run_1/checkpoint.pt", "failure.json"):
        assert (run_dir / name).is_file(), f"{name} was not kept"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == status and result["valid"] is False
    return json.loads((run_dir / "failure.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_rank_fails_the_job_naming_rank_and_node(tmp_path):
    out, run_dir, elapsed = _fault(tmp_path, signal.SIGKILL, 60)
    assert elapsed < 60
    assert "mlbench: error: training job failed: rank 1 (local rank 1) on node" in out
    assert "killed by SIGKILL" in out
    failure = _check_kept(run_dir)
    assert failure["rank"] == 1 and failure["host"]
    result = json.loads((run_dir / "result.json").read_text())
    assert "rank 1" in result["error"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_hung_rank_fails_the_job_within_the_collective_timeout(tmp_path):
    # SIGSTOP: rank 1 stays alive but stops answering. Rank 0's collective times out after 10 s; torchrun
    # then stops rank 1 (SIGTERM, SIGKILL after its 30 s grace), so the bound is 10 + 30 s plus start-up.
    out, run_dir, elapsed = _fault(tmp_path, signal.SIGSTOP, 120, "--dist-timeout-s", "10")
    assert elapsed < 90, f"a hung rank took {elapsed:.0f} s to fail the job"
    assert "mlbench: error: training job failed: rank" in out and "on node" in out
    failure = _check_kept(run_dir)
    assert failure["rank"] in (0, 1)


def test_read_failure_keeps_an_error_without_message():
    lines = ["torch.distributed.elastic.rendezvous.api.RendezvousClosedError"]
    assert launcher.read_failure(1, lines).error == lines[0]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_terminated_launcher_records_an_aborted_result(tmp_path):
    # What SLURM does at the time limit or on scancel: SIGTERM to the launcher. The job was stopped, not
    # broken: the result says aborted and why (issue 10), the exit code is 143, failure.json says who stopped.
    proc = _start(tmp_path)
    try:
        checkpoint = _wait_for("*/run_1/checkpoint.pt", tmp_path, proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert "launcher got SIGTERM" in out
    failure = _check_kept(checkpoint.parent.parent, status="aborted")
    assert "SIGTERM" in failure["message"]
