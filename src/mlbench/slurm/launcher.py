"""Start torchrun on this node and report a failed job by rank and node.

``mlbench train --nproc N [--nnodes M --rdzv-endpoint HOST:PORT]`` lands here. torchrun runs ``mlbench train``
in every process; when one process dies, torchrun stops the others and prints a "Root Cause" block. We keep
torchrun's output flowing to the console, read that block, and turn it into one message naming the rank,
the node and how it ended. The run directory keeps everything already written (checkpoints, logs, finished
runs); ``failure.json`` records the cause and ``result.json`` says "failed", never valid.

A rank that hangs instead of dying is caught by the collective timeout (``--dist-timeout-s``): the ranks
waiting for it fail, and torchrun stops the hung one, so the job ends within that timeout plus torchrun's
grace period (30 s) for stopping processes.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlbench import runs, signals
from mlbench.config import TrainConfig
from mlbench.errors import ConfigError, RunAborted

TAIL_LINES = 400  # torchrun output kept for reading the failure (the console shows all of it)


@dataclass
class Failure:
    """Why a torchrun job failed, as far as this node saw it."""

    exit_code: int
    node: str  # the node that reports (this machine)
    node_rank: int | None
    rank: int | None = None  # the first rank that failed (torchrun's root cause)
    local_rank: int | None = None
    host: str | None = None  # the host of that rank
    rank_exit: str | None = None  # e.g. "-9 (SIGKILL)" or "1"
    error: str | None = None  # the last error line a rank printed

    @property
    def message(self) -> str:
        if self.rank is None:
            where = f"torchrun on node {self.node} exited with code {self.exit_code}"
        else:
            where = (f"rank {self.rank} (local rank {self.local_rank}) on node {self.host} failed first "
                     f"({_exit_words(self.rank_exit)})")
        text = f"training job failed: {where}"
        if self.error:
            text += f"; last error: {self.error}"
        if self.error and re.search(r"timed out|timeout|connection closed|connection reset|peer", self.error, re.I):
            text += (" (a collective timeout or a lost connection means another rank hung or died first; "
                     "see that rank's node)")
        return text


def _exit_words(rank_exit: str | None) -> str:
    if not rank_exit:
        return "unknown exit"
    sig = re.search(r"\((SIG\w+)\)", rank_exit)
    if sig:
        return f"killed by {sig.group(1)}"
    code = rank_exit.split()[0]
    if re.fullmatch(r"-\d+", code):  # older torchrun prints the bare negated signal number
        try:
            return f"killed by {signal.Signals(-int(code)).name}"
        except ValueError:
            pass
    return f"exit code {code}"


def check(cfg: TrainConfig) -> None:
    """Multi-node options that cannot work, rejected before anything starts."""
    if cfg.nnodes > 1 and not cfg.rdzv_endpoint:
        raise ConfigError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT",
                          "start `mlbench train ... --nnodes M --rdzv-endpoint FIRST_NODE:29500` on every node, "
                          "or use `mlbench slurm submit` which sets it")
    if cfg.rdzv_endpoint and not re.fullmatch(r"[\w.\-\[\]:]+:\d+", cfg.rdzv_endpoint):
        raise ConfigError(f"invalid value for 'rdzv_endpoint': {cfg.rdzv_endpoint!r}",
                          "use HOST:PORT, e.g. node01:29500 (the first node's address and a free port)")
    if cfg.node_rank is not None and cfg.node_rank >= cfg.nnodes:
        raise ConfigError(f"invalid value for 'node_rank': {cfg.node_rank} with --nnodes {cfg.nnodes}",
                          f"node ranks are 0..{cfg.nnodes - 1}")


def launch_train(cfg: TrainConfig) -> int:
    """Run ``mlbench train`` under torchrun on this node; raise RunAborted naming the failed rank."""
    from mlbench.training import distributed

    check(cfg)
    run_dir: Path | None = Path(cfg.run_dir) if cfg.run_dir else None
    if run_dir is None and cfg.nnodes == 1:
        run_dir = runs.create_run_dir(cfg.output_dir, "train", cfg.benchmark, cfg.size)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.run_dir = str(run_dir)
    # Every node writes its own launch file: the nodes of a job share the run directory.
    node = cfg.node_rank if cfg.node_rank is not None else os.environ.get("SLURM_NODEID", os.getpid())
    tag = "" if cfg.nnodes == 1 else f".node{node}"
    folder = run_dir if run_dir is not None else Path(tempfile.mkdtemp(prefix="mlbench-launch-"))
    launch_file = folder / f"launch_config{tag}.json"
    runs.write_json(launch_file, cfg.to_dict())
    where = "" if cfg.nnodes == 1 else (f" on each of {cfg.nnodes} nodes (this node's rank: "
                                         f"{'by rendezvous' if cfg.node_rank is None else cfg.node_rank}, "
                                         f"rendezvous {cfg.rdzv_endpoint})")
    print(f"starting torchrun with {cfg.nproc} processes{where}; run directory "
          f"{run_dir if run_dir is not None else '(named by rank 0)'}", flush=True)
    cmd = distributed.torchrun_command(
        cfg.nproc, ["train", cfg.benchmark, "--config", str(launch_file)], nnodes=cfg.nnodes,
        rdzv_endpoint=cfg.rdzv_endpoint, rdzv_id=cfg.rdzv_id, node_rank=cfg.node_rank)
    if cfg.node_rank is not None and cfg.nnodes > 1:
        # c10d hands out node ranks itself and ignores --node-rank; a fixed rank needs the static rendezvous.
        cmd = [("--rdzv-backend=static" if a == "--rdzv-backend=c10d" else a) for a in cmd]
    code, tail = run_streaming(cmd, torchrun_env(cfg.nproc))
    if code == 0:
        return 0
    if run_dir is None:
        run_dir = _announced_run_dir(tail)
    failure = read_failure(code, tail, node_rank=cfg.node_rank)
    stop = next((sig for sig, line in STOP_LINES.items() if tail and tail[-1] == line), None)
    if stop is not None:
        # SIGTERM/SIGHUP: the ranks got it too and rank 0 wrote an aborted result saying why; keep it so.
        failure.error = STOP_LINES[stop].removeprefix("mlbench: error: ")
        if run_dir is not None:
            record_failure(run_dir, cfg, failure, tag, stopped=signals.describe(signals.Stopped(stop)))
        print(f"mlbench: {failure.error}", file=sys.stderr, flush=True)
        raise signals.Stopped(stop)
    if run_dir is not None and _finished_without_target(run_dir, failure):
        return code  # a complete result that missed the target: the summary above says so
    if run_dir is not None:
        record_failure(run_dir, cfg, failure, tag)
    kept = f"partial results and logs are kept in {run_dir}" if run_dir else "see the console output above"
    raise RunAborted(failure.message, f"{kept} (failure.json says what failed)" if run_dir else kept)


def torchrun_env(nproc: int) -> dict[str, str]:
    env = dict(os.environ)
    # One process per core on CPU: keep each rank's intra-op threads from oversubscribing the machine.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.setdefault("PYTHONUNBUFFERED", "1")  # rank output reaches the console (and our tail) as it happens
    return env


def run_streaming(cmd: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``cmd``, copying its output to our stdout line by line; return (exit code, last lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, errors="replace", preexec_fn=_die_with_parent) as proc:
        assert proc.stdout is not None
        previous = _on_sigterm_raise()
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                tail.append(line.rstrip("\n"))
        except (_Terminated, signals.Stopped) as exc:
            # SIGTERM (SLURM's time limit, scancel or preemption) or SIGHUP: pass it on to torchrun, which
            # passes it on to its ranks; they write what they made and say why.
            proc.send_signal(exc.signum)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            tail.append(STOP_LINES[exc.signum])
        except KeyboardInterrupt:
            # torchrun got the same Ctrl-C: let it stop its ranks, then report as interrupted.
            proc.wait()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        code = proc.wait()
    return code, list(tail)


TERMINATED = "mlbench: error: the launcher got SIGTERM (SLURM time limit, scancel or preemption) and stopped"
STOP_LINES = {signal.SIGTERM: TERMINATED,
              signal.SIGHUP: "mlbench: error: the launcher got SIGHUP (terminal or session closed) and stopped"}


class _Terminated(Exception):
    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


def _on_sigterm_raise():
    """Turn SIGTERM into an exception in the main thread, so the job is recorded as stopped, not lost."""
    def handler(signum, frame):
        raise _Terminated(signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _die_with_parent() -> None:
    """In the torchrun child: get SIGTERM when this launcher dies. A launcher killed by SLURM (srun
    --kill-on-bad-exit, scancel) must not leave torchrun behind holding the rendezvous port."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


_FIELD = re.compile(r"^\s*(host|rank|exitcode)\s*:\s*(.*)$")
_ERROR = re.compile(r"^(mlbench: error: .*|[\w.]*(Error|Exception)(\[.*\])?(: .+)?)$")


def read_failure(code: int, lines: list[str], node_rank: int | None = None) -> Failure:
    """The root cause torchrun printed (first failed rank, its host and exit) and the last error line."""
    failure = Failure(exit_code=code, node=socket.gethostname(), node_rank=node_rank)
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Root Cause")), None)
    if start is not None:
        for line in lines[start + 1:]:
            m = _FIELD.match(line)
            if not m:
                continue
            key, value = m.groups()
            if key == "host":  # this node's agent reports its own ranks: name the machine, not "localhost"
                failure.host = failure.node if value.strip() in ("localhost", "127.0.0.1") else value.strip()
            elif key == "rank":
                r = re.match(r"(\d+)\s*\(local_rank:\s*(\d+)\)", value)
                if r:
                    failure.rank, failure.local_rank = int(r.group(1)), int(r.group(2))
            elif key == "exitcode":
                failure.rank_exit = re.sub(r"\s*\(pid: \d+\)", "", value).strip()
                break
    end = next((i for i, line in enumerate(lines) if "ChildFailedError" in line or "FAILED" in line), len(lines))
    for line in reversed(lines[:end]):
        m = _ERROR.match(line.strip())
        if m and "ChildFailedError" not in line:
            failure.error = m.group(1)[:300]
            break
    return failure


def _finished_without_target(run_dir: Path, failure: Failure) -> bool:
    """Rank 0 exited 1 after writing a final result: the runs ended (target missed), nothing crashed."""
    path = run_dir / "result.json"
    if failure.rank != 0 or failure.rank_exit is None or failure.rank_exit.split()[0] != "1" or not path.is_file():
        return False
    result = runs.read_json(path)
    return bool(result.get("finished_at")) and result.get("status") in ("success", "aborted")


def _announced_run_dir(lines: list[str]) -> Path | None:
    """The run directory rank 0 announced (multi-node runs without --run-dir name it there)."""
    for line in lines:
        m = re.search(r"; run directory (\S+)$", line)
        if m and Path(m.group(1)).is_dir():
            return Path(m.group(1))
    return None


def record_failure(run_dir: Path, cfg: TrainConfig, failure: Failure, tag: str = "",
                   stopped: str | None = None) -> None:
    """Write failure.json and mark result.json failed; finished runs and their files stay as they are.

    ``stopped`` (e.g. "terminated by SIGTERM"): the job was stopped from outside, not broken; result.json
    says aborted and why, as rank 0 wrote it when it could. With several nodes each writes
    failure.node<N>.json; failure.json is the first node's to report.
    """
    record = {**asdict(failure), "message": failure.message, "recorded_at": runs.now_iso()}
    if tag:
        runs.write_json(run_dir / f"failure{tag}.json", record)
    if not tag or not (run_dir / "failure.json").exists():
        runs.write_json(run_dir / "failure.json", record)
    path = run_dir / "result.json"
    result: dict[str, Any] = runs.read_json(path) if path.is_file() else _empty_result(run_dir, cfg)
    if runs_ended(result):
        # Every run ended (target reached or not) and rank 0 wrote the final result; the failure came after,
        # e.g. srun stopping this node because rank 0's node exited 1 for a missed target.
        result["launcher_error"] = failure.message
    elif stopped:
        why = f"{stopped} before all runs finished"
        if result.get("interrupted") is None:  # rank 0 could not write it: say so here
            result["interrupted"] = stopped
            reasons = [r for r in result.get("validity_reasons", []) if r != "in progress"]
            result["validity_reasons"] = [*reasons, why]
        result["status"] = "aborted" if result.get("status") != "failed" or not result.get("error") else "failed"
        result["valid"] = False
        result["finished_at"] = result.get("finished_at") or runs.now_iso()
        result["launcher_error"] = failure.message
    else:
        result["status"] = "failed"
        result["valid"] = False
        reasons = [r for r in result.get("validity_reasons", []) if r not in ("in progress", failure.message)]
        result["validity_reasons"] = [*reasons, failure.message]
        result["finished_at"] = runs.now_iso()
        result["error"] = failure.message
    runs.write_json(path, result)


def runs_ended(result: dict[str, Any]) -> bool:
    """A final result of runs that all ended (success, or aborted: target missed), without error or Ctrl-C."""
    return (bool(result.get("finished_at")) and result.get("status") in ("success", "aborted")
            and not result.get("error") and result.get("interrupted") is None)


def _empty_result(run_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    """A result.json for a job that failed before rank 0 wrote one."""
    from mlbench import registry

    bench = registry.get(cfg.benchmark, cfg.size).definition
    return {
        "schema": runs.RESULT_SCHEMA, "kind": "train", "run_id": run_dir.name, "benchmark": bench.name,
        "size": bench.size, "status": "failed", "valid": False, "validity_reasons": [],
        "started_at": None, "finished_at": None, "command": runs.command_line(), "device": cfg.device,
        "precision": cfg.precision, "world_size": cfg.nproc * cfg.nnodes, "metrics": {},
        "quality": {"metric": bench.metric, "value": None, "target": bench.target, "reached": False},
        "config": cfg.to_dict(), "runs": [],
    }
