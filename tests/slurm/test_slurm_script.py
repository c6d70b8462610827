"""`mlbench slurm submit --dry-run` and the job script; bad cluster options fail before anything is written."""

from __future__ import annotations

import subprocess

import pytest

from mlbench.cli import main
from mlbench.config import TrainConfig
from mlbench.slurm import jobs
from mlbench.slurm.script import SlurmConfig


def test_dry_run_prints_a_readable_script_and_writes_nothing(tmp_path, capsys):
    code = main(["slurm", "submit", "resnet50", "--size", "tiny", "--nodes", "2", "--partition", "gpu",
                 "--time", "00:30:00", "--account", "proj1", "--gpus-per-node", "4", "--runs", "5",
                 "--output-dir", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj1", "#SBATCH --time=00:30:00",
                 "#SBATCH --no-requeue", "srun --ntasks-per-node=1 --kill-on-bad-exit=1",
                 "--nproc 4 --nnodes \"$SLURM_NNODES\" --rdzv-endpoint \"$HEAD_ADDR:$PORT\""):
        assert line in out, line
    assert "-m mlbench train resnet50" in out
    assert list(tmp_path.iterdir()) == []  # dry run: nothing written


def test_script_is_valid_bash(tmp_path):
    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path))
    _, text = jobs.prepare(train, SlurmConfig(nodes=2, requeue=True), "mlbench slurm submit ...", dry_run=True)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --requeue" in text and 'RESUME=(--resume "$RUN_DIR/run_1/checkpoint.pt")' in text


def test_submit_writes_run_dir_with_config_and_script(tmp_path):
    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path), seed=4)
    run_dir, text = jobs.prepare(train, SlurmConfig(nodes=2), "mlbench slurm submit", dry_run=False)
    assert (run_dir / "job.sbatch").read_text() == text
    import json

    saved = json.loads((run_dir / "submit_config.json").read_text())
    assert saved["run_dir"] == str(run_dir) and saved["seed"] == 4 and saved["nnodes"] == 1


@pytest.mark.parametrize("flags, words", [
    (["--time", "soon"], "invalid value for 'time'"),
    (["--partition", "a b"], "invalid value for 'partition'"),
    (["--nodes", "0"], "invalid value for 'nodes'"),
    (["--set", "nnodes=2"], "set by the job script"),
])
def test_bad_cluster_options_fail_with_a_fix(tmp_path, capsys, flags, words):
    code = main(["slurm", "submit", "resnet50", "--size", "tiny", "--output-dir", str(tmp_path), "--dry-run",
                 *flags])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "fix:" in err
    assert list(tmp_path.iterdir()) == []


def test_submit_without_sbatch_says_how_to_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(["slurm", "submit", "resnet50", "--size", "tiny", "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and "`sbatch` not found" in err and "--dry-run" in err


def test_status_and_logs_without_jobs(tmp_path, capsys):
    assert main(["slurm", "status", "--output-dir", str(tmp_path)]) == 0
    assert "no jobs submitted by mlbench" in capsys.readouterr().out
    assert main(["slurm", "logs", "--output-dir", str(tmp_path)]) == 1
    assert "no jobs submitted by mlbench" in capsys.readouterr().err


def test_multinode_train_needs_a_rendezvous(capsys):
    code = main(["train", "resnet50", "--size", "tiny", "--nnodes", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--rdzv-endpoint" in err
    code = main(["train", "resnet50", "--size", "tiny", "--nnodes", "2", "--rdzv-endpoint", "h:1",
                 "--node-rank", "2"])
    assert code == 2 and "node ranks are 0..1" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["slurm", "submit", "--help"], ["slurm", "status", "--help"],
                                 ["slurm", "logs", "--help"], ["scale", "--help"]])
def test_help_renders(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd)
    assert exc.value.code == 0 and "usage: mlbench" in capsys.readouterr().out


@pytest.mark.parametrize("status, interrupted, kept", [("aborted", None, True), ("success", None, True),
                                                      ("aborted", "KeyboardInterrupt", False),
                                                      ("running", None, False)])
def test_a_node_stopped_after_the_final_result_keeps_it(tmp_path, status, interrupted, kept):
    """srun stops the other nodes when rank 0's node exits 1 for a missed target; that must not turn the
    finished (aborted) result into a failed one."""
    import json

    from mlbench import runs
    from mlbench.slurm import launcher

    result = {"status": status, "finished_at": "t" if status != "running" else None, "valid": False,
              "validity_reasons": ["run(s) [1] did not reach the target"]}
    if interrupted:
        result["interrupted"] = interrupted
    runs.write_json(tmp_path / "result.json", result)
    failure = launcher.Failure(exit_code=1, node="n2", node_rank=None, error=launcher.TERMINATED)
    cfg = TrainConfig(benchmark="resnet50", size="tiny", nnodes=2)
    launcher.record_failure(tmp_path, cfg, failure, ".node1")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert (saved["status"] == status) is kept and ("launcher_error" in saved) is kept
    if not kept:
        assert saved["status"] == "failed" and failure.message in saved["validity_reasons"]
    assert (tmp_path / "failure.node1.json").is_file()


def test_wait_bounds_a_running_job_not_a_pending_one(monkeypatch):
    """jobs.wait: pending time is free (and a requeue starts the clock over); running time is bounded, then
    the job is cancelled; an ended job returns at once."""
    clock = [0.0]
    states = iter(["PENDING"] * 5 + ["RUNNING"] * 3 + ["PENDING", "RUNNING", "RUNNING", "RUNNING", "RUNNING"])
    cancelled = []
    monkeypatch.setattr(jobs, "slurm_state", lambda job_id: next(states))
    monkeypatch.setattr(jobs, "cancel", cancelled.append)
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(jobs.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    seen = []
    state, ended = jobs.wait("7", run_limit_s=25, poll_s=10, on_change=seen.append)
    # Clock at each poll: pending 0-40, running 50-70 (20 s), pending 80, running from 90: 30 s > 25 at 120.
    assert (state, ended, cancelled) == ("RUNNING", False, ["7"]) and clock[0] == 120
    assert seen == ["PENDING", "RUNNING", "PENDING", "RUNNING"]
    monkeypatch.setattr(jobs, "slurm_state", lambda job_id: "COMPLETED")
    assert jobs.wait("8", run_limit_s=1) == ("COMPLETED", True)
    assert not jobs.is_active("UNKNOWN (gone from squeue)") and jobs.is_active("UNKNOWN (squeue: timeout)")
