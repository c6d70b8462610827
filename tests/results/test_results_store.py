"""The results store: record, query, concurrent writers, a killed writer, reindex, schema versions, CLI."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from results_fixtures import make_infer, make_train

from mlbench.cli import main as cli
from mlbench.errors import MlbenchError
from mlbench.results import store


def test_record_and_query(out: Path):
    a = make_train(out, [1.0, 1.2], device="cpu")
    b = make_infer(out, 250.0)
    store.record(a)
    store.record(b)
    rows = store.query(out)
    assert [r["run_id"] for r in rows] == [a.name, b.name]
    train = rows[0]
    assert train["kind"] == "train" and train["metric_name"] == "time_to_train/minutes"
    assert train["metric_value"] == pytest.approx(1.1)
    assert train["stack"] == "pytorch 2.14.1 fp32" and train["system_name"] == "Test CPU 9000 (2 cores)"
    assert train["result"]["runs"][1]["metrics"]["time_to_train/minutes"] == 1.2  # the whole JSON is kept
    infer = store.query(out, kind="infer")[0]
    assert (infer["scenario"], infer["backend"], infer["metric_value"]) == ("Offline", "onnxruntime", 250.0)
    assert infer["stack"].startswith("onnxruntime 1.20.0")
    assert store.query(out, benchmark="resnet50", kind="train", device="cpu")[0]["run_id"] == a.name
    assert store.query(out, system=train["system"][:4], limit=1)[0]["run_id"] == a.name
    assert store.query(out, valid=True) == []


def test_record_twice_replaces(out: Path):
    run = make_train(out, [1.0])
    store.record(run)
    data = json.loads((run / "result.json").read_text())
    data["status"] = "aborted"
    (run / "result.json").write_text(json.dumps(data))
    store.record(run)
    rows = store.query(out)
    assert len(rows) == 1 and rows[0]["status"] == "aborted"


def test_record_never_raises(out: Path, capsys):
    bad = out / "broken"
    bad.mkdir()
    (bad / "result.json").write_text('{"schema": "mlbench.result/1", "run_')  # killed mid-write
    store.record(bad)
    store.record(out / "missing")
    err = capsys.readouterr().err
    assert "corrupt JSON" in err and "cannot read" in err and "mlbench results reindex" in err


def _writer(out: str, dirs: list[str]) -> None:
    for d in dirs:
        store.add(Path(d), Path(out))


def test_concurrent_writers(out: Path):
    dirs = [str(make_train(out, [1.0 + i / 10])) for i in range(16)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(out), dirs[i::4])) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(r["path"] for r in store.query(out)) == sorted(str(Path(d).resolve()) for d in dirs)


KILL_MID_WRITE = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
con.execute("DELETE FROM runs")
con.execute("INSERT INTO runs (run_id, path, kind, result, indexed_at) VALUES ('half', '/x', 'train', '{', 'now')")
os._exit(9)  # killed before COMMIT
"""


def test_killed_writer_leaves_store_consistent(out: Path):
    run = make_train(out, [1.0])
    store.record(run)
    code = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(store.db_path(out))]).returncode
    assert code == 9
    con = sqlite3.connect(store.db_path(out))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    assert [r["run_id"] for r in store.query(out)] == [run.name]
    store.record(make_train(out, [2.0]))  # the lock was released with the dead process
    assert len(store.query(out)) == 2


def test_reindex_skips_corrupt_and_foreign(out: Path):
    good = [make_train(out, [1.0]), make_infer(out, 10.0)]
    (out / "corrupt").mkdir()
    (out / "corrupt" / "result.json").write_text("{not json")
    (out / "foreign").mkdir()
    (out / "foreign" / "result.json").write_text('{"accuracy": 0.9}')
    (out / "notes").mkdir()  # no result.json: not a run directory, ignored
    n, problems = store.reindex(out)
    assert n == 2 and len(problems) == 2
    assert any("corrupt" in p and "corrupt JSON" in p for p in problems)
    assert any("foreign" in p and "not an mlbench result" in p for p in problems)
    assert {r["run_id"] for r in store.query(out)} == {g.name for g in good}
    # result files inside a run directory are parts of it; runs inside a plain folder (a sweep) are runs
    inner = good[0] / "run_1"
    inner.mkdir()
    (inner / "result.json").write_text(json.dumps({"run": 1, "status": "success"}))
    part = good[1] / "performance"
    part.mkdir()
    (part / "result.json").write_text((good[1] / "result.json").read_text())
    sweep = out / "sweep"
    sweep.mkdir()
    nested = make_train(sweep, [3.0])
    n, problems = store.reindex(out)
    assert n == 3 and len(problems) == 2
    assert {r["path"] for r in store.query(out)} == {str(p.resolve()) for p in (*good, nested)}


def test_reindex_after_deleting_store_and_runs(out: Path):
    a, b = make_train(out, [1.0]), make_train(out, [2.0])
    store.record(a)
    store.record(b)
    import shutil

    shutil.rmtree(a)
    store.db_path(out).unlink()
    assert store.reindex(out)[0] == 1
    assert [r["run_id"] for r in store.query(out)] == [b.name]


def test_schema_migration_from_v1(out: Path):
    path = store.db_path(out)
    con = sqlite3.connect(path)
    for sql in store.MIGRATIONS[0]:
        con.execute(sql)
    con.execute("INSERT INTO runs (run_id, path, kind, result, indexed_at) VALUES ('old', '/x', 'train', '{}', 't')")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    rows = store.query(out)
    assert rows[0]["run_id"] == "old" and rows[0]["energy_joules"] is None
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    con.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(MlbenchError, match="schema version"):
        store.query(out)


def test_unknown_filter_names_the_known_ones(out: Path):
    store.record(make_train(out, [1.0]))
    with pytest.raises(MlbenchError, match="unknown filter 'benchmarks'"):
        store.query(out, benchmarks="resnet50")


def test_cli_list_json_csv(out: Path, capsys):
    a = make_train(out, [1.0])
    make_infer(out, 300.0)
    assert cli(["results", "--output-dir", str(out)]) == 0  # no store yet: built from the directories
    text = capsys.readouterr()
    assert a.name in text.out and "built the results store" in text.err
    assert cli(["results", "--output-dir", str(out), "--kind", "infer", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 1 and data[0]["metrics"]["throughput/samples_per_s"] == 300.0
    assert cli(["results", "--output-dir", str(out), "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("run_id,path,kind") and len(lines) == 3
    assert cli(["results", "reindex", "--output-dir", str(out)]) == 0
    assert "indexed 2 runs" in capsys.readouterr().out
    assert cli(["results", "--output-dir", str(out / "nope")]) == 1
    assert "results directory not found" in capsys.readouterr().err


def test_corrupt_store_file_is_explained(out: Path, capsys):
    run = make_train(out, [1.0])
    store.db_path(out).write_bytes(b"this is not a database" * 100)
    store.record(run)  # a warning, not an exception
    assert "is damaged" in capsys.readouterr().err
    assert cli(["results", "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and "mlbench results reindex" in err
    # reindex alone recovers: the damaged file is kept aside, the store rebuilt from the run directories
    assert cli(["results", "reindex", "--output-dir", str(out)]) == 0
    assert "kept it as" in capsys.readouterr().err
    assert [r["run_id"] for r in store.query(out)] == [run.name]
    aside = list(out.glob("results.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
