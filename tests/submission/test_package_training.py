"""mlbench package training: tiny runs into the MLPerf Training layout, through the official checkers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from submission_helpers import copy_run_dir, edit_json, user_json

from mlbench.cli import main


@pytest.fixture(scope="session")
def five_runs(tmp_path_factory) -> Path:
    """One `mlbench train resnet50 --size tiny --runs 5` (open division, ruleset 4.0.0): the rules' 5 runs."""
    import os

    out = tmp_path_factory.mktemp("train-runs")
    old = {k: os.environ.get(k) for k in ("MLBENCH_SKIP_CACHE_CLEAR", "OMP_NUM_THREADS", "MLBENCH_CACHE")}
    os.environ.update(MLBENCH_SKIP_CACHE_CLEAR="1", OMP_NUM_THREADS="1", MLBENCH_CACHE=str(out / "cache"))
    try:
        code = main(["train", "resnet50", "--size", "tiny", "--runs", "5", "--seed", "7", "--output-dir", str(out)])
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert code == 0
    (run_dir,) = [d for d in out.iterdir() if d.name.endswith(tuple("0123456789abcdef")) and "train" in d.name]
    return run_dir


def package(capsys, *args) -> tuple[int, str]:
    code = main(["package", "training", *map(str, args)])
    text = capsys.readouterr()
    return code, text.out + text.err


def test_open_package_passes_package_checker_and_scores_like_mlbench(five_runs, tmp_path, capsys):
    out = tmp_path / "pkg"
    code, text = package(capsys, five_runs, "--submitter", "ACME", "--system", "cpu_2c", "--system-json",
                         user_json(tmp_path / "user.json"), "-o", out)
    assert code == 0, text
    org = out / "ACME"
    assert sorted(p.name for p in (org / "results" / "cpu_2c" / "resnet").iterdir()) == \
        [f"result_{i}.txt" for i in range(5)]
    assert (org / "benchmarks" / "resnet" / "implementations" / "mlbench" / "README.md").is_file()
    readme = (org / "benchmarks" / "resnet" / "implementations" / "mlbench" / "README.md").read_text()
    assert "`mlbench train resnet50 --size tiny`" in readme and "(commit " in readme
    for name in ("system description", "result files", "compliance", "result_summarizer",
                 "score agrees with mlbench"):
        assert any(ln.split()[:len(name.split()) + 1] == [*name.split(), "pass"] for ln in text.splitlines()), text
    log = (out / "checks" / "package_checker.log").read_text()
    assert "PACKAGE CHECKER FOUND NO ERRORS" in log
    # the official summarizer's score equals mlbench's olympic score for the same runs
    import csv

    with open(out / "checks" / "summary.csv", newline="") as f:
        official = [float(r["resnet"]) for r in csv.DictReader(f) if r.get("resnet")][0]
    result = json.loads((five_runs / "result.json").read_text())
    from mlbench.submission.training import _log_minutes
    from mlbench.training.scoring import olympic_score

    from_logs = olympic_score([_log_minutes(five_runs / f"run_{k}" / "mlperf_log.txt") for k in range(1, 6)], 5)
    assert official == pytest.approx(from_logs.minutes, abs=1e-12)
    # result.json's score uses mlbench's own clock around the same events: equal to the logs' millisecond
    assert official == pytest.approx(result["score"]["time_to_train_minutes"], abs=0.05 / 60)


def test_repackaging_gives_byte_identical_system_json(five_runs, tmp_path, capsys):
    user = user_json(tmp_path / "user.json")
    files = []
    for n in (1, 2):
        code, text = package(capsys, five_runs, "--submitter", "ACME", "--system", "s1", "--system-json", user,
                             "-o", tmp_path / f"p{n}", "--no-check")
        assert code == 0, text
        files.append((tmp_path / f"p{n}" / "ACME" / "systems" / "s1.json").read_bytes())
    assert files[0] == files[1]
    desc = json.loads(files[0])
    assert desc["division"] == "open" and desc["host_processor_model_name"] and "probe_errors" not in desc


def test_missing_system_fields_are_named(five_runs, tmp_path, capsys):
    code, text = package(capsys, five_runs, "--submitter", "ACME", "--system", "s1", "-o", tmp_path / "p")
    assert code == 2
    assert "missing field(s) only you can give" in text and "cooling" in text and "status" in text
    tmpl = json.loads((tmp_path / "p" / "system-fields-to-fill.json").read_text())
    assert "cooling" in tmpl and "host_processor_model_name" not in tmpl


def test_a_field_removed_after_packaging_is_reported_by_the_official_checker_in_words(five_runs, tmp_path, capsys):
    from mlbench.submission import checks

    code, text = package(capsys, five_runs, "--submitter", "ACME", "--system", "s1", "--system-json",
                         user_json(tmp_path / "u.json"), "-o", tmp_path / "p", "--no-check")
    assert code == 0, text
    sys_file = tmp_path / "p" / "ACME" / "systems" / "s1.json"
    desc = json.loads(sys_file.read_text())
    del desc["cooling"]
    sys_file.write_text(json.dumps(desc))
    found, _ = checks.package_checker(tmp_path / "p" / "ACME", "4.0.0", "open", tmp_path / "logs")
    sysc = [c for c in found if c.name == "system description"][0]
    assert sysc.status == checks.FAIL
    assert sysc.findings == ["ACME/systems/s1.json: missing field(s) cooling (give them in --system-json)"]


def test_resumed_and_compliance_failed_runs_are_refused_each_with_its_run(five_runs, tmp_path, capsys):
    d = copy_run_dir(five_runs, tmp_path / "runs" / "copy")
    edit_json(d / "run_2" / "result.json", resumed_from=str(d / "run_2" / "checkpoint.pt"))
    rec = json.loads((d / "run_4" / "result.json").read_text())
    rec["compliance"]["passed"] = False
    (d / "run_4" / "result.json").write_text(json.dumps(rec))
    code, text = package(capsys, d, "--submitter", "ACME", "--system", "s1", "-o", tmp_path / "p")
    assert code == 1
    assert f"{d}/run_2: resumed from the checkpoint" in text
    assert f"{d}/run_4: its MLPerf log failed the official compliance checker" in text
    assert not (tmp_path / "p").exists()  # nothing written


def test_too_few_runs_and_open_as_closed_are_refused(five_runs, tmp_path, capsys):
    d = copy_run_dir(five_runs, tmp_path / "three", keep=[1, 2, 3])
    code, text = package(capsys, d, "--submitter", "ACME", "--system", "s1", "-o", tmp_path / "p",
                         "--division", "closed")
    assert code == 1
    assert "resnet50: 3 run(s) given; MLPerf's rules ask for exactly 5" in text
    assert f"{d}/run_1: an open-division run (size 'tiny' is not the MLPerf definition) cannot be packaged as " \
           "closed" in text


def test_mixed_systems_and_configurations_are_refused(five_runs, tmp_path, capsys):
    a = copy_run_dir(five_runs, tmp_path / "a", keep=[1, 2, 3])
    b = copy_run_dir(five_runs, tmp_path / "b", keep=[4, 5])
    edit_json(b / "config.json", precision="bf16")
    edit_json(b / "system.json", system_fingerprint="0123456789ab")
    code, text = package(capsys, a, b, "--submitter", "ACME", "--system", "s1", "-o", tmp_path / "p")
    assert code == 1
    assert "the runs were made on different systems" in text
    assert "the runs were made with different configurations (they differ in precision)" in text


def test_closed_package_of_tiny_runs_fails_rcp_in_plain_words(five_runs, tmp_path, capsys):
    out = tmp_path / "p"
    code, text = package(capsys, five_runs, "--submitter", "ACME", "--system", "s1", "--system-json",
                         user_json(tmp_path / "u.json"), "-o", out, "--division", "closed", "--force")
    assert code == 1
    assert (out / "NOT_FOR_SUBMISSION.txt").is_file()
    lines = text.splitlines()
    assert any(ln.split()[:2] == ["seeds", "pass"] for ln in lines), text
    assert any(ln.split()[:2] == ["RCP", "FAIL"] for ln in lines), text
    assert "ACME/results/s1/resnet: MLPerf has no Reference Convergence Point for global batch size" in text
