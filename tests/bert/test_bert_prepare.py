"""`mlbench data prepare bert`: found through the registry, builds tiny data, checks a reference folder."""

from __future__ import annotations

from support import mlbench


def test_prepare_tiny_builds_shards_and_the_qa_set(tmp_path):
    p = mlbench("data", "prepare", "bert", "--size", "tiny", env={"MLBENCH_CACHE": str(tmp_path / "cache")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "question answering set (SQuAD v1.1 format)" in p.stdout
    assert list((tmp_path / "cache").rglob("*.hdf5")) and list((tmp_path / "cache").rglob("dev-v1.1.json"))


def test_prepare_reference_checks_the_folder_and_names_what_is_missing(tmp_path):
    p = mlbench("data", "prepare", "bert", "--size", "reference", "--root", str(tmp_path))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "phase-1 checkpoint" in p.stderr and "evaluation set" in p.stderr and "fix:" in p.stderr


def test_prepare_lists_bert_among_preparable_benchmarks():
    p = mlbench("data", "prepare", "--help")
    assert "bert" in p.stdout and "retinanet" in p.stdout
