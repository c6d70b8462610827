"""Issue 10, points 6 and 10: a run directory is never overwritten, and recovery is one command.

A ``--run-dir`` that already holds a result is refused (``--resume`` continues it, keeping the finished runs);
a damaged results.db is explained by every command that opens it and rebuilt by ``mlbench results reindex``;
a run directory without result.json is indexed as ``incomplete``; an empty ``--benchmarks`` list and a
``slurm submit`` on a machine without SLURM say what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalogue import Case, assert_no_valid_result, check

from support import mlbench

RUN = "20260101-000000-train-resnet50-tiny-abcd"
CORRUPT_DB = b"SQLite format 3\x00" + b"\x00\xff" * 2000  # a header, then nothing SQLite can read


def _finished_run(tmp: Path, name: str = "done") -> Path:
    """A run directory whose one run finished (target missed: a final result that is not valid)."""
    run = tmp / name
    (run / "run_1").mkdir(parents=True)
    record = {"run": 1, "seed": 7, "status": "aborted", "reason": "the epoch budget ran out", "quality": 0.1,
              "reached_target": False, "epochs": 1, "samples": 64, "evals": [], "resumed_from": None,
              "metrics": {}, "compliance": {"passed": True, "ruleset": "4.0.0", "output": ""}}
    (run / "run_1" / "result.json").write_text(json.dumps(record))
    (run / "result.json").write_text(json.dumps({
        "schema": "mlbench.result/1", "kind": "train", "run_id": name, "benchmark": "resnet50", "size": "tiny",
        "status": "aborted", "valid": False, "validity_reasons": ["run(s) [1] did not reach the target"],
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:01:00+00:00", "metrics": {},
        "quality": {}, "config": {}, "runs": [record]}))
    return run


def _store_with_run(tmp: Path) -> Path:
    out = tmp / "runs"
    _finished_run(out, RUN)
    return out


def _corrupt_store(tmp: Path) -> None:
    (_store_with_run(tmp) / "results.db").write_bytes(CORRUPT_DB)


def _killed_run(tmp: Path) -> None:
    """What SIGKILL leaves: the run's first files, no result.json."""
    run = _store_with_run(tmp) / "20260101-000100-train-resnet50-tiny-dead"
    (run / "run_1").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"benchmark": "resnet50", "size": "tiny"}))
    (run / "console.log").write_text("--- run 1/1 (seed 3) ---\n")


def _no_sbatch(tmp: Path) -> None:
    (tmp / "emptybin").mkdir()


CASES = [
    Case("train --run-dir holding a result", ("train", "resnet50", "--size", "tiny", "--run-dir", "{tmp}/done"),
         2, "invalid value for 'run_dir'", setup=_finished_run),
    Case("train --nproc 2 --run-dir holding a result",
         ("train", "resnet50", "--size", "tiny", "--nproc", "2", "--run-dir", "{tmp}/done"),
         2, "already holds a result", setup=_finished_run),
    Case("slurm submit --run-dir holding a result",
         ("slurm", "submit", "resnet50", "--size", "tiny", "--run-dir", "{tmp}/done", "--dry-run"),
         2, "already holds a result", setup=_finished_run),
    Case("results on a damaged results.db", ("results", "--output-dir", "{tmp}/runs"),
         1, "is damaged", setup=_corrupt_store),
    Case("compare on a damaged results.db", ("compare", RUN, "--output-dir", "{tmp}/runs"),
         1, "is damaged", setup=_corrupt_store),
    Case("report on a damaged results.db", ("report", "--output-dir", "{tmp}/runs"),
         1, "is damaged", setup=_corrupt_store),
    Case("reindex a damaged results.db", ("results", "reindex", "--output-dir", "{tmp}/runs"),
         0, "kept it as", setup=_corrupt_store),
    Case("reindex a run killed before its result", ("results", "reindex", "--output-dir", "{tmp}/runs"),
         0, "1 incomplete", setup=_killed_run),
    Case("run --benchmarks ,", ("run", "--size", "tiny", "--benchmarks", ",", "--output-dir", "{tmp}/runs"),
         2, "names no benchmark"),
    Case("run --benchmarks ''", ("run", "--size", "tiny", "--benchmarks", "", "--output-dir", "{tmp}/runs"),
         2, "names no benchmark"),
    Case("slurm submit without SLURM", ("slurm", "submit", "resnet50", "--size", "tiny", "--output-dir",
                                        "{tmp}/runs"),
         1, "`sbatch` not found", setup=_no_sbatch, env={"PATH": "/nonexistent-mlbench-test"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, tmp_path: Path):
    check(case, tmp_path)


def test_refused_run_dir_is_left_as_it_was(tmp_path):
    run = _finished_run(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = mlbench("train", "resnet50", "--size", "tiny", "--run-dir", str(run), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "--resume" in proc.stderr, proc.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_continues_without_rewriting_finished_runs(tmp_path):
    run = tmp_path / "r"
    first = mlbench("train", "resnet50", "--size", "tiny", "--runs", "1", "--seed", "4", "--run-dir", str(run),
                    cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    kept = (run / "run_1" / "result.json").read_bytes()
    log = (run / "run_1" / "mlperf_log.txt").read_bytes()
    proc = mlbench("train", "resnet50", "--size", "tiny", "--runs", "2", "--run-dir", str(run),
                   "--resume", str(run / "run_1" / "checkpoint.pt"), cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "run 1: finished before" in out, out[-3000:]
    assert (run / "run_1" / "result.json").read_bytes() == kept
    assert (run / "run_1" / "mlperf_log.txt").read_bytes() == log
    result = json.loads((run / "result.json").read_text())
    assert [r["run"] for r in result["runs"]] == [1, 2]
    assert [r["seed"] for r in result["runs"]] == [4, 5]  # run 2's seed follows run 1's
    assert result["runs"][1]["resumed_from"] and not result["runs"][0]["resumed_from"]
    assert result["valid"] is False


def test_reindex_lists_a_killed_run_as_incomplete(tmp_path):
    _killed_run(tmp_path)
    out = tmp_path / "runs"
    proc = mlbench("results", "reindex", "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0 and "indexed 2 runs" in proc.stdout, proc.stdout + proc.stderr
    assert "incomplete" in proc.stderr and "-dead" in proc.stderr
    listing = mlbench("results", "--output-dir", str(out), "--json", cwd=tmp_path)
    rows = {r["run_id"]: r for r in json.loads(listing.stdout)}
    dead = rows["20260101-000100-train-resnet50-tiny-dead"]
    assert dead["status"] == "incomplete" and dead["valid"] is False and dead["benchmark"] == "resnet50"
    assert "incomplete" in mlbench("results", "--output-dir", str(out), "--status", "incomplete",
                                   cwd=tmp_path).stdout
    assert_no_valid_result(tmp_path)


def test_reindex_rebuilds_a_damaged_store(tmp_path):
    _corrupt_store(tmp_path)
    out = tmp_path / "runs"
    proc = mlbench("results", "reindex", "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    aside = list(out.glob("results.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == CORRUPT_DB
    listing = mlbench("results", "--output-dir", str(out), cwd=tmp_path)
    assert listing.returncode == 0 and RUN in listing.stdout


def test_slurm_submit_without_slurm_writes_nothing(tmp_path):
    check(CASES[-1], tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
