"""A real two-node SLURM cluster on 127.0.0.1 for the tests.

The fixture writes a slurm.conf into a temporary directory and starts munged (its own key and socket),
slurmctld and two slurmd daemons (nodes n1 and n2 on distinct ports, ``slurmd -N``), with proctrack/linuxproc
and task/none so that no cgroups are needed. It stops every daemon it started, by the PID each wrote.
Debian's slurm-wlm and munge must be installed (``scripts/setup.sh --test``) and the tests must run as root
(slurmd starts job steps as their user); otherwise the tests skip and say so.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo")
NODES = ("n1", "n2")


@dataclass
class Cluster:
    root: Path
    conf: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(root: Path, cpus: int) -> str:
    node_lines = "\n".join(
        f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} Port={_free_port()} "
        f"CPUs={cpus} State=UNKNOWN" for n in NODES)
    return f"""\
ClusterName=mlbenchtest
FirstJobId={random.randint(1000, 60000)}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/pids/slurmctld.pid
SlurmdPidFile={root}/pids/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=600
{node_lines}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _wait(check, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*")) if p.is_file())
    raise RuntimeError(f"{what} within {timeout:.0f} s\n{tails}")


def _stop(pid_files: list[Path]) -> None:
    """SIGTERM every daemon we started (by the PID it wrote), then SIGKILL those still alive after 10 s."""
    pids = []
    for f in pid_files:
        try:
            pids.append(int(f.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Cluster:
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.skip(f"SLURM is not installed (missing {', '.join(missing)}): install Debian's slurm-wlm and "
                    "munge, e.g. `scripts/setup.sh --test`, to run the cluster tests")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (slurmd starts job steps as their user); run as root")
    root = tmp_path_factory.mktemp("slurm")
    for d in ("munge", "state", "spool", "pids", "log"):
        (root / d).mkdir()
    (root / "munge").chmod(0o755)  # clients must reach the socket
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pid_files = [root / "pids" / "munged.pid", root / "pids" / "slurmctld.pid",
                 *[root / "pids" / f"slurmd-{n}.pid" for n in NODES]]
    cluster = Cluster(root=root, conf=conf, env=env)
    try:
        subprocess.run(["munged", "--force", f"--socket={root}/munge/munge.socket", f"--key-file={key}",
                        f"--log-file={root}/log/munged.log", f"--pid-file={pid_files[0]}",
                        f"--seed-file={root}/munge/seed"], check=True, env=env, timeout=30)
        subprocess.run(["slurmctld", "-f", str(conf), "-i"], check=True, env=env, timeout=30)
        for n in NODES:
            subprocess.run(["slurmd", "-f", str(conf), "-N", n], check=True, env=env, timeout=30)

        def idle() -> bool:
            res = cluster.run("sinfo", "-h", "-N", "-o", "%N %t")
            states = dict(line.split() for line in res.stdout.splitlines() if line.strip())
            return all(states.get(n, "").startswith("idle") for n in NODES)

        _wait(idle, 60, "the two slurmd nodes did not become idle", root / "log")
        yield cluster
    finally:
        if shutil.which("scancel"):
            subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=30)
            _wait_quietly(lambda: not cluster.run("squeue", "-h").stdout.strip(), 20)
        _stop(list(reversed(pid_files)))
        _kill_leftovers(conf)


def _wait_quietly(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, subprocess.SubprocessError):
            return
        time.sleep(0.5)


def _kill_leftovers(conf: Path) -> None:
    """Job steps (slurmstepd, srun, tasks) of our cluster that outlived it: they carry our SLURM_CONF."""
    import psutil

    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("SLURM_CONF") == str(conf):
                proc.kill()  # torchrun renames itself (pt_elastic): match by our conf, not by name
        except psutil.Error:
            continue
