"""`mlbench slurm submit --requeue --runs N`: the job script that skips finished runs and resumes the interrupted
one, and the job's result.json over all runs (mlbench.slurm.multirun). No cluster needed: the script runs under
bash with stand-ins for srun and scontrol."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlbench import runs
from mlbench.cli import main
from mlbench.config import TrainConfig
from mlbench.slurm import jobs, multirun
from mlbench.slurm.script import SlurmConfig
from mlbench.training import runner
from mlbench.training.harness import RunOutcome


def test_requeue_with_several_runs_writes_a_run_by_run_script(tmp_path, capsys):
    code = main(["slurm", "submit", "resnet50", "--size", "tiny", "--nodes", "2", "--requeue", "--runs", "3",
                 "--seed", "40", "--output-dir", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    for line in ("#SBATCH --requeue", "RUNS=3", "BASE_SEED=40", 'PART="$RUN_DIR/run_$RUN"',
                 'if "$PYTHON" -m mlbench.slurm.multirun finished "$PART"; then',
                 'RESUME=(--resume "$PART/run_1/checkpoint.pt")',
                 '--runs 1 --seed $((BASE_SEED + RUN - 1)) --run-dir "$PART"',
                 '--nproc 1 --nnodes "$SLURM_NNODES" --rdzv-endpoint "$HEAD_ADDR:$PORT"',
                 '"$PYTHON" -m mlbench.slurm.multirun combine "$RUN_DIR" "$CONFIG" --final'):
        assert line in out, line
    assert list(tmp_path.iterdir()) == []


def test_one_run_keeps_the_one_run_script(tmp_path):
    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path))
    _, text = jobs.prepare(train, SlurmConfig(nodes=2, requeue=True), "mlbench slurm submit", dry_run=True)
    assert 'RESUME=(--resume "$RUN_DIR/run_1/checkpoint.pt")' in text and "multirun" not in text


def test_the_seed_is_fixed_at_submission(tmp_path):
    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path), runs=2)
    run_dir, text = jobs.prepare(train, SlurmConfig(requeue=True), "mlbench slurm submit")
    seed = json.loads((run_dir / "submit_config.json").read_text())["seed"]
    assert isinstance(seed, int) and f"BASE_SEED={seed}\n" in text
    # Without --requeue the runs stay in one `mlbench train --runs N`, which draws its own seed.
    run_dir, text = jobs.prepare(train, SlurmConfig(), "mlbench slurm submit")
    assert json.loads((run_dir / "submit_config.json").read_text())["seed"] is None and "BASE_SEED" not in text


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_restarted_job_skips_finished_runs_and_resumes_the_interrupted_one(tmp_path):
    """The script itself, under bash, on its second start (SLURM_RESTART_COUNT=1): run 1 finished, run 2 was
    interrupted after a checkpoint, run 3 never started."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    # srun: note the command and write a finished result.json where it was asked to run.
    _executable(bin_dir / "srun", f"""#!/bin/bash
echo "srun $*" >> {calls}
while [ $# -gt 0 ]; do
    if [ "$1" = --run-dir ]; then mkdir -p "$2"; echo '{{"status": "success", "finished_at": "t", "runs": [{{}}]}}' > "$2/result.json"; fi
    shift
done
""")
    _executable(bin_dir / "scontrol", "#!/bin/bash\necho 'NodeName=n1 NodeAddr=10.0.0.1 State=IDLE'\n")
    # python: the real one for `multirun finished`, a note for `multirun combine` (tested below on its own).
    fake_python = _executable(bin_dir / "python", f"""#!/bin/bash
if [ "$3" = combine ]; then echo "combine ${{*:4}}" >> {calls}; exit 0; fi
exec {sys.executable} "$@"
""")
    train = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(tmp_path / "runs"), runs=3, seed=7)
    run_dir, _ = jobs.prepare(train, SlurmConfig(requeue=True, python=str(fake_python)), "mlbench slurm submit")
    runs.write_json(run_dir / "run_1" / "result.json", {"status": "aborted", "finished_at": "t", "runs": [{}]})
    (run_dir / "run_2" / "run_1").mkdir(parents=True)
    (run_dir / "run_2" / "run_1" / "checkpoint.pt").write_text("ckpt")
    (run_dir / "run_2" / "run_1" / "mlperf_log.txt").write_text("first attempt")
    runs.write_json(run_dir / "run_2" / "result.json", {"status": "failed", "finished_at": "t", "error": "SIGTERM"})
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_RESTART_COUNT": "1",
           "SLURM_JOB_ID": "4242", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "n1"}
    res = subprocess.run(["bash", str(run_dir / "job.sbatch")], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "run 1/3: finished before restart 1, kept" in res.stdout
    assert f"requeued (restart 1): run 2 resuming from {run_dir}/run_2/run_1/checkpoint.pt" in res.stdout
    srun = [line for line in calls.read_text().splitlines() if line.startswith("srun")]
    assert len(srun) == 2  # runs 2 and 3; run 1 is kept
    assert f"--seed 8 --run-dir {run_dir}/run_2" in srun[0]
    assert f"--resume {run_dir}/run_2/run_1/checkpoint.pt" in srun[0] and "--rdzv-endpoint 10.0.0.1:" in srun[0]
    assert f"--seed 9 --run-dir {run_dir}/run_3" in srun[1] and "--resume" not in srun[1]
    assert (run_dir / "run_2" / "run_1" / "mlperf_log.before-restart-1.txt").read_text() == "first attempt"
    combines = [line for line in calls.read_text().splitlines() if line.startswith("combine")]
    assert combines[-1].endswith("--final") and len(combines) == 3  # after runs 2 and 3, then the final one


# ---- the job's result.json over the runs (mlbench.slurm.multirun.combine) ----

def _part(run_dir: Path, k: int, outcome: RunOutcome, **top) -> None:
    """What `mlbench train --runs 1 --run-dir run_dir/run_k` leaves behind, made by the runner's own record."""
    part = run_dir / f"run_{k}"
    (part / "run_1").mkdir(parents=True)
    (part / "run_1" / "mlperf_log.txt").write_text(":::MLLOG cache_clear skipped\n")
    record = runner.run_record(1, outcome, {"passed": True, "ruleset": "4.0.0", "output": ""})
    runs.write_json(part / "result.json", {
        "schema": runs.RESULT_SCHEMA, "kind": "train", "run_id": part.name, "benchmark": "resnet50",
        "size": "tiny", "status": outcome.status, "finished_at": "2026-01-01T00:00:00+00:00", "world_size": 2,
        "validity_reasons": [], "runs": [record], **top})


def _outcome(seed: int, minutes: float | None, resumed: str | None = None) -> RunOutcome:
    return RunOutcome(seed=seed, status="success" if minutes else "aborted", reason="r", epochs=3, samples=600,
                      quality=0.7 if minutes else 0.3, reached_target=bool(minutes),
                      time_to_train_s=minutes * 60 if minutes else 30.0, init_s=1.0, train_s=2.0, eval_s=0.5,
                      data_wait_s=0.5, evals=[{"epoch": 1, "quality": 0.5, "elapsed_s": 1.0}], resumed_from=resumed,
                      base_lr=0.1, params_in_sync=True, energy={"energy/joules": 12.0})


@pytest.fixture
def job_dir(tmp_path) -> tuple[Path, Path]:
    run_dir = tmp_path / "runs" / "job"
    run_dir.mkdir(parents=True)
    cfg = TrainConfig(benchmark="resnet50", size="tiny", output_dir=str(run_dir.parent), run_dir=str(run_dir),
                      runs=4, seed=1)
    config_file = run_dir / "submit_config.json"
    runs.write_json(config_file, cfg.to_dict())
    return run_dir, config_file


def test_a_record_turns_back_into_the_same_outcome():
    o = _outcome(3, 0.5, resumed="/x/checkpoint.pt")
    record = runner.run_record(2, o, {"passed": True})
    again = runner.outcome_from_record(json.loads(json.dumps(record)))
    assert runner.run_record(2, again, {"passed": True}) == record


def test_the_job_result_scores_all_runs_and_keeps_the_resumed_mark(job_dir):
    run_dir, config_file = job_dir
    _part(run_dir, 1, _outcome(1, 1.0))
    _part(run_dir, 2, _outcome(2, 3.0, resumed=str(run_dir / "run_2/run_1/checkpoint.pt")))
    assert multirun.finished(run_dir / "run_1") and not multirun.finished(run_dir / "run_3")
    partial = multirun.combine(run_dir, config_file)
    assert partial["status"] == "running" and len(partial["runs"]) == 2 and "in progress" in partial["validity_reasons"]
    _part(run_dir, 3, _outcome(3, 2.0))
    _part(run_dir, 4, _outcome(4, 10.0))
    result = multirun.combine(run_dir, config_file, final=True)
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["status"] == result["status"] == "success" and saved["run_id"] == "job"
    assert [r["run"] for r in saved["runs"]] == [1, 2, 3, 4] and [r["seed"] for r in saved["runs"]] == [1, 2, 3, 4]
    # Olympic mean over the four runs: 1, 2, 3, 10 minutes without the fastest and the slowest.
    assert saved["score"]["runs"] == 4 and saved["score"]["time_to_train_minutes"] == pytest.approx(2.5)
    assert saved["runs"][1]["resumed_from"].endswith("run_2/run_1/checkpoint.pt")
    assert saved["valid"] is False and any("resumed from a checkpoint" in r for r in saved["validity_reasons"])
    assert saved["metrics"]["energy/joules"] == 12.0 and saved["world_size"] == 2
    assert saved["run_dirs"][-1] == str(run_dir / "run_4")


def test_a_run_that_did_not_finish_fails_the_job(job_dir, capsys):
    run_dir, config_file = job_dir
    _part(run_dir, 1, _outcome(1, 1.0))
    runs.write_json(run_dir / "run_2" / "result.json", {"status": "failed", "error": "rank 1 died"})
    assert multirun.main(["combine", str(run_dir), str(config_file), "--final"]) == 1
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == "run 2: rank 1 died" and len(saved["runs"]) == 1
    assert "result: resnet50 tiny: failed" in capsys.readouterr().out


def test_missing_runs_fail_the_final_result(job_dir):
    run_dir, config_file = job_dir
    _part(run_dir, 1, _outcome(1, 1.0))
    result = multirun.combine(run_dir, config_file, final=True)
    assert result["status"] == "failed" and result["error"] == "run 2 of 4 did not finish"
