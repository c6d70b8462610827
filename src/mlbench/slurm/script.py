"""The sbatch script that runs one training job on a SLURM cluster.

The script is written into the run directory (which must be on storage every node sees) and kept there, so
what ran can be read and re-submitted by hand. It starts one ``mlbench train`` per node through ``srun``; each
starts torchrun with ``--nproc-per-node`` processes, and the nodes meet at a c10d rendezvous on the first node.
Only the cluster fields are added here; the run's own options are the ``submit_config.json`` beside it.

With ``--requeue`` and ``--runs N`` above 1, the script runs each run as its own ``mlbench train --runs 1`` in
``run_<K>/`` (seed: the first run's plus K-1), so that a job SLURM restarts keeps the runs that finished, resumes
the interrupted run from its checkpoint and goes on with the rest; :mod:`mlbench.slurm.multirun` scores the
runs together in the job's result.json after every run.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mlbench.config import TrainConfig, opt
from mlbench.errors import ConfigError

_TIME = re.compile(r"^(\d+-\d{1,2}(:\d{2}){0,2}|\d+(:\d{2}){0,2})$")  # sbatch --time formats
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # newline, carriage return, tab, escape, ...
_SBATCH_PLAIN = re.compile(r"^[A-Za-z0-9_.,:/@+=%-]+$")  # an #SBATCH value that needs no quoting


def script_text(what: str, value: object) -> str:
    """``value`` as text for the job script, refused when it holds a control character: a newline in a comment
    or an #SBATCH line would start a line of its own (a command), and no quoting keeps it in a comment."""
    text = str(value)
    bad = _CONTROL.search(text)
    if bad:
        shown = repr(text) if len(text) <= 160 else repr(text[max(0, bad.start() - 60): bad.start() + 60])
        raise ConfigError(f"invalid value for {what}: {shown} holds the control character {bad.group()!r}, "
                          "which a job script cannot carry", "remove the newline or other control character")
    return text


def sbatch_quote(text: str) -> str:
    """A value for an #SBATCH line as sbatch reads it: double quotes, with a backslash before each
    backslash, quote and '#' (an unescaped '#' starts a comment there)."""
    if _SBATCH_PLAIN.match(text):
        return text
    return '"' + re.sub(r"""([\\"'#])""", r"\\\1", text) + '"'


@dataclass(kw_only=True)
class SlurmConfig:
    """The cluster side of ``mlbench slurm submit``; saved as slurm_job.json in the run directory."""

    nodes: int = opt(1, "nodes for the job (sbatch --nodes); one torchrun per node", min=1,
                     max=10_000)
    gpus_per_node: int = opt(0, "GPUs per node (sbatch --gpus-per-node); one process per GPU. "
                                "0: CPU nodes, --nproc processes per node", min=0, max=64)
    partition: str | None = opt(None, "partition (sbatch --partition); default: the cluster's default")
    time: str = opt("01:00:00", "time limit (sbatch --time): MM, HH:MM:SS or D-HH[:MM[:SS]]")
    account: str | None = opt(None, "account to charge (sbatch --account)")
    cpus_per_task: int | None = opt(None, "CPUs for each node's torchrun (sbatch --cpus-per-task)", min=1,
                                      max=4096)
    requeue: bool = opt(False, "let SLURM requeue the job (preemption, node failure); a requeued job keeps the "
                               "runs that finished, resumes the interrupted run from its last checkpoint (that "
                               "run is marked resumed) and goes on with the remaining runs")
    rdzv_port: int | None = opt(None, "rendezvous port on the first node; default: 29500 plus the job id modulo 1000",
                                min=1024, max=65535)
    python: str | None = opt(None, "python that runs mlbench on the nodes; default: this one "
                                   "(its environment must be on shared storage)")

    def check(self, train: TrainConfig) -> None:
        """Combinations that cannot run, rejected before anything is written or submitted."""
        if not _TIME.match(self.time):
            raise ConfigError(f"invalid value for 'time': {self.time!r}",
                              "use sbatch's formats: 30, 30:00, 01:30:00 or 1-00:00:00")
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and not _NAME.match(value):
                raise ConfigError(f"invalid value for '{name}': {value!r}",
                                  "letters, digits, '_', '.', '-' only (see `sinfo` / `sacctmgr show assoc`)")
        if train.nnodes != 1 or train.rdzv_endpoint or train.node_rank is not None:
            raise ConfigError("--nnodes/--rdzv-endpoint/--node-rank are set by the job script",
                              "use --nodes for the number of nodes")
        if self.gpus_per_node and train.device == "cpu":
            raise ConfigError("--gpus-per-node with --device cpu", "drop one of them")

    def nproc_per_node(self, train: TrainConfig) -> int:
        return self.gpus_per_node or train.nproc

    def time_limit_s(self) -> int:
        """The time limit in seconds (``check`` has validated the format)."""
        return time_limit_s(self.time)


def time_limit_s(text: str) -> int:
    """sbatch's --time in seconds: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    if not _TIME.match(text):
        raise ConfigError(f"invalid value for 'time': {text!r}",
                          "use sbatch's formats: 30, 30:00, 01:30:00 or 1-00:00:00")
    days, _, rest = text.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S
        h, m, sec = (parts + [0, 0])[:3]
    else:  # M, M:S, H:M:S
        h, m, sec = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


def _sbatch_lines(s: SlurmConfig, train: TrainConfig, run_dir: Path) -> list[str]:
    q = sbatch_quote
    # In the output file name, '%' starts a replacement symbol (%j: the job id); '%%' is a '%'.
    output = str(run_dir).replace("%", "%%") + "/slurm-%j.out"
    lines = [
        f"--job-name={q(f'mlbench-{train.benchmark}-{train.size}')}",
        f"--nodes={int(s.nodes)}",
        "--ntasks-per-node=1",  # one torchrun per node; it starts the node's processes
        f"--time={q(s.time)}",
        f"--output={q(output)}",
        "--open-mode=append",  # a requeued job appends to the same output file
        "--requeue" if s.requeue else "--no-requeue",
    ]
    if s.gpus_per_node:
        lines.append(f"--gpus-per-node={int(s.gpus_per_node)}")
    if s.cpus_per_task:
        lines.append(f"--cpus-per-task={int(s.cpus_per_task)}")
    if s.partition:
        lines.append(f"--partition={q(s.partition)}")
    if s.account:
        lines.append(f"--account={q(s.account)}")
    return lines


def render(s: SlurmConfig, train: TrainConfig, run_dir: Path, config_file: Path, command: str) -> str:
    """The sbatch script text: readable, self-contained, runnable by hand with ``sbatch``.

    Every value from the user is shell-quoted where bash reads it, sbatch-quoted on #SBATCH lines, and refused
    (ConfigError) when it holds a newline or other control character, comments included.
    """
    q = shlex.quote
    for what, value in (("'output_dir'", train.output_dir), ("'run_dir'", run_dir), ("the config file", config_file), ("'python'", s.python),
                        ("'benchmark'", train.benchmark), ("'size'", train.size),
                        ("'partition'", s.partition), ("'account'", s.account), ("'time'", s.time)):
        if value is not None:
            script_text(what, value)
    command = script_text("the command line", command)  # last: a named option above says more
    python = s.python or sys.executable
    nproc = int(s.nproc_per_node(train))
    port = str(int(s.rdzv_port)) if s.rdzv_port else "$(( 29500 + SLURM_JOB_ID % 1000 ))"
    head = [
        "#!/bin/bash",
        f"# Written by: {command}",
        f"# {train.benchmark} {train.size}: {int(s.nodes)} node(s) x {nproc} process(es), {int(train.runs)} run(s).",
        f"# Results: {run_dir} (must be on storage that every node sees).",
        *[f"#SBATCH {line}" for line in _sbatch_lines(s, train, run_dir)],
        "",
        "set -euo pipefail",
        f"RUN_DIR={q(str(run_dir))}",
        f"CONFIG={q(str(config_file))}",
        f"PYTHON={q(python)}",
        "export PYTHONUNBUFFERED=1",
        "",
        "# The first node hosts the torchrun rendezvous; NodeAddr is how the other nodes reach it.",
        'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'HEAD_ADDR=$(scontrol show node "$HEAD_NODE" | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')',
        'HEAD_ADDR=${HEAD_ADDR:-$HEAD_NODE}',
        f"PORT={port}",
        "",
    ]
    resume = [
        "# A requeued job (preemption, node failure) resumes from the last checkpoint of its run;",
        "# the result is then marked resumed: not valid for time to train.",
        "RESUME=()",
        'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then',
        '    if [ -f "$RUN_DIR/run_1/mlperf_log.txt" ]; then',
        '        mv "$RUN_DIR/run_1/mlperf_log.txt" "$RUN_DIR/run_1/mlperf_log.before-restart-$SLURM_RESTART_COUNT.txt"',
        "    fi",
        '    if [ -f "$RUN_DIR/run_1/checkpoint.pt" ]; then',
        '        echo "requeued (restart $SLURM_RESTART_COUNT): resuming from $RUN_DIR/run_1/checkpoint.pt"',
        '        RESUME=(--resume "$RUN_DIR/run_1/checkpoint.pt")',
        "    else",
        '        echo "requeued (restart $SLURM_RESTART_COUNT): no checkpoint yet, starting over"',
        "    fi",
        "fi",
        "",
    ] if s.requeue else ["RESUME=()", ""]
    if s.requeue and train.runs > 1:
        return "\n".join(head + _run_by_run(train, nproc))
    run = [
        'echo "job $SLURM_JOB_ID: $SLURM_NNODES node(s) ($SLURM_JOB_NODELIST), rendezvous $HEAD_ADDR:$PORT"',
        "# One task per node; --kill-on-bad-exit stops every node when one fails.",
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 \\",
        f'    "$PYTHON" -m mlbench train {q(train.benchmark)} --config "$CONFIG" \\',
        f'    --nproc {nproc} --nnodes "$SLURM_NNODES" --rdzv-endpoint "$HEAD_ADDR:$PORT" \\',
        '    --rdzv-id "mlbench-$SLURM_JOB_ID" "${RESUME[@]}"',
        "",
    ]
    return "\n".join(head + resume + run)


def _run_by_run(train: TrainConfig, nproc: int) -> list[str]:
    """--requeue with several runs: one ``mlbench train --runs 1`` per run, skipping the finished ones."""
    if train.seed is None:
        raise ValueError("the seed of a requeueable multi-run job is fixed at submission (jobs.prepare)")
    return [
        "# Each run is its own `mlbench train --runs 1` in run_<K>/ (its MLPerf log: run_<K>/run_1/mlperf_log.txt).",
        "# A job that SLURM restarts keeps the runs whose result.json says they finished, resumes the",
        "# interrupted run from its checkpoint (that run is marked resumed: not valid for time to train) and",
        "# goes on with the rest. After every run, the job's result.json scores the runs made so far.",
        f"RUNS={int(train.runs)}",
        f"BASE_SEED={int(train.seed)}",
        "RESTART=${SLURM_RESTART_COUNT:-0}",
        'for RUN in $(seq 1 "$RUNS"); do',
        '    PART="$RUN_DIR/run_$RUN"',
        '    if "$PYTHON" -m mlbench.slurm.multirun finished "$PART"; then',
        '        echo "run $RUN/$RUNS: finished before restart $RESTART, kept ($PART/result.json)"',
        "        continue",
        "    fi",
        "    RESUME=()",
        '    if [ "$RESTART" -gt 0 ] && [ -d "$PART" ]; then',
        '        if [ -f "$PART/run_1/mlperf_log.txt" ]; then',
        '            mv "$PART/run_1/mlperf_log.txt" "$PART/run_1/mlperf_log.before-restart-$RESTART.txt"',
        "        fi",
        '        if [ -f "$PART/run_1/checkpoint.pt" ]; then',
        '            echo "requeued (restart $RESTART): run $RUN resuming from $PART/run_1/checkpoint.pt"',
        '            RESUME=(--resume "$PART/run_1/checkpoint.pt")',
        "        else",
        '            echo "requeued (restart $RESTART): run $RUN has no checkpoint yet, starting it over"',
        "        fi",
        "    fi",
        '    echo "job $SLURM_JOB_ID: run $RUN/$RUNS on $SLURM_NNODES node(s) ($SLURM_JOB_NODELIST), '
        'rendezvous $HEAD_ADDR:$PORT"',
        "    # One task per node; --kill-on-bad-exit stops every node when one fails.",
        "    CODE=0",
        "    srun --ntasks-per-node=1 --kill-on-bad-exit=1 \\",
        f'        "$PYTHON" -m mlbench train {shlex.quote(train.benchmark)} --config "$CONFIG" \\',
        '        --runs 1 --seed $((BASE_SEED + RUN - 1)) --run-dir "$PART" \\',
        f'        --nproc {nproc} --nnodes "$SLURM_NNODES" --rdzv-endpoint "$HEAD_ADDR:$PORT" \\',
        '        --rdzv-id "mlbench-$SLURM_JOB_ID-$RUN" "${RESUME[@]}" || CODE=$?',
        '    "$PYTHON" -m mlbench.slurm.multirun combine "$RUN_DIR" "$CONFIG" \\',
        '        || echo "mlbench: warning: $RUN_DIR/result.json not updated after run $RUN"',
        "    # A run that missed the target still counts (MLPerf allows one); a run that crashed stops the job.",
        '    if ! "$PYTHON" -m mlbench.slurm.multirun finished "$PART"; then',
        '        echo "run $RUN/$RUNS did not finish (srun exit code $CODE); no further runs"',
        "        break",
        "    fi",
        "done",
        "# The score over all runs; exit code 0 only when every run reached the target.",
        '"$PYTHON" -m mlbench.slurm.multirun combine "$RUN_DIR" "$CONFIG" --final',
        "",
    ]
