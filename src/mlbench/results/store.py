"""The results store: one SQLite file (``<output_dir>/results.db``) indexing every run directory in it.

Run directories are the source of truth: the store keeps the indexed columns and the whole result.json of
each run, and :func:`reindex` rebuilds it from the directories at any time, even from a damaged store (kept
aside as ``results.db.corrupt-<time>``). A run directory without a final result (killed by SIGKILL, out of
memory, power loss, or still running) is indexed as ``incomplete``: never valid, never silently left out. Each write is one transaction
(``BEGIN IMMEDIATE`` with a busy timeout), so concurrent writers queue instead of failing and a process
killed mid-write leaves the previous, consistent state. The schema is versioned with ``PRAGMA user_version``;
opening an older store applies the missing migrations in order.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlbench.errors import MlbenchError
from mlbench.results import fields

DB_NAME = "results.db"
INCOMPLETE = "incomplete"
# Files that make a folder a run directory even before its result.json is written.
RUN_MARKERS = ("config.json", "console.log", "launch_config.json", "submit_config.json", "job.sbatch", "system.json")

# Migration N takes a store from version N-1 to N. Never edit a released step: append a new one.
MIGRATIONS: list[list[str]] = [
    [  # 1: the runs table and its indexes
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, benchmark TEXT, size TEXT,
            scenario TEXT, mode TEXT, backend TEXT, device TEXT, precision TEXT, world_size INTEGER,
            system TEXT, system_name TEXT, stack TEXT, stack_fp TEXT, status TEXT, valid INTEGER,
            started_at TEXT, finished_at TEXT, metric_name TEXT, metric_value REAL, quality_value REAL,
            result TEXT NOT NULL, indexed_at TEXT NOT NULL)""",
        "CREATE INDEX runs_bench ON runs (benchmark, size, kind, scenario, mode)",
        "CREATE INDEX runs_system ON runs (system, stack_fp)",
        "CREATE INDEX runs_time ON runs (started_at)",
    ],
    [  # 2: energy measured during the timed part (informative)
        "ALTER TABLE runs ADD COLUMN energy_joules REAL",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = ("run_id", "path", "kind", "benchmark", "size", "scenario", "mode", "backend", "device", "precision",
           "world_size", "system", "system_name", "stack", "stack_fp", "status", "valid", "started_at",
           "finished_at", "metric_name", "metric_value", "quality_value", "energy_joules")

# Filters a user can give (``--benchmark resnet50``): exact matches, except the prefix ones.
FILTERS = ("kind", "benchmark", "size", "scenario", "mode", "backend", "device", "precision", "status",
           "system", "stack_fp", "world_size", "run_id")
PREFIX_FILTERS = ("system", "stack_fp", "run_id")


def db_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / DB_NAME


def connect(path: Path, timeout: float = 60.0) -> sqlite3.Connection:
    """Open (creating or migrating) the store at ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise MlbenchError(f"cannot open the results store {path}: {exc}",
                           "check that the results directory exists and is writable") from exc
    con.row_factory = sqlite3.Row
    try:
        _migrate(con, path)
    except sqlite3.DatabaseError as exc:
        con.close()
        raise damaged(path, exc) from exc
    except BaseException:
        con.close()
        raise
    return con


def damaged(path: Path, exc: Exception) -> MlbenchError:
    """The error for a results store SQLite cannot read: what is wrong and the one command that fixes it."""
    return MlbenchError(f"the results store {path} is damaged: {exc}",
                        f"rebuild it from the run directories with `mlbench results reindex --output-dir "
                        f"{path.parent}` (the damaged file is kept aside)")


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise MlbenchError(f"the results store {path} has schema version {version}; this mlbench knows "
                           f"{SCHEMA_VERSION}", "upgrade mlbench, or rebuild the store: mlbench results reindex")
    if version == SCHEMA_VERSION:
        return
    with _transaction(con):
        version = con.execute("PRAGMA user_version").fetchone()[0]  # another writer may have migrated
        for step in range(version, SCHEMA_VERSION):
            for sql in MIGRATIONS[step]:
                con.execute(sql)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    con.execute("BEGIN IMMEDIATE")  # take the write lock now: concurrent writers wait (busy timeout)
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def load_result(run_dir: Path) -> dict[str, Any]:
    """The run's result.json; MlbenchError saying why when it is missing, corrupt or not an mlbench result."""
    path = run_dir / "result.json"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise MlbenchError(f"{path}: cannot read ({exc.strerror})", "is this a run directory?") from exc
    except ValueError as exc:
        raise MlbenchError(f"{path}: corrupt JSON ({exc})", "the run was probably killed while writing; "
                           "re-run it or delete the directory") from exc
    if not fields.is_result(data):
        raise MlbenchError(f"{path}: not an mlbench result (no schema 'mlbench.result/N' with run_id and kind)",
                           "leave only mlbench run directories in the results directory")
    return data


def _upsert(con: sqlite3.Connection, run_dir: Path, result: dict[str, Any]) -> None:
    row = fields.index_row(run_dir, result)
    row["result"] = json.dumps(result)
    row["indexed_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    cols = ", ".join(row)
    marks = ", ".join(f":{c}" for c in row)
    con.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", row)


def add(run_dir: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Index one run directory (raises MlbenchError on a bad result); returns the result."""
    run_dir = Path(run_dir)
    result = load_result(run_dir)
    con = connect(db_path(output_dir if output_dir is not None else run_dir.parent))
    try:
        with _transaction(con):
            _upsert(con, run_dir, result)
    finally:
        con.close()
    return result


def record(run_dir: Path) -> None:
    """Index a finished run into ``<run_dir>/../results.db``. Never raises: a failure is a printed warning."""
    try:
        add(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run's own files are what matter; the index can be rebuilt
        print(f"mlbench: warning: run not added to the results store ({exc}); "
              f"rebuild it later with `mlbench results reindex --output-dir {Path(run_dir).parent}`",
              file=sys.stderr, flush=True)


def find_run_dirs(output_dir: Path) -> list[Path]:
    """Run directories under ``output_dir``: one level down, or two inside a folder that is not a run itself
    (a sweep's folder). Result files inside a run directory (``run_N/``, ``performance/``) are its parts."""
    found = [p.parent for p in sorted(output_dir.glob("*/result.json"))]
    runs = set(found)
    found += [p.parent for p in sorted(output_dir.glob("*/*/result.json")) if p.parent.parent not in runs]
    return found


def find_incomplete_dirs(output_dir: Path) -> list[Path]:
    """Run directories without a result.json (a run killed before writing one, or one still starting): a
    folder holding a run's first files (config.json, console.log, a job script), one level down, or two
    inside a folder that is not a run itself."""
    def is_run(p: Path) -> bool:
        return (p / "result.json").exists() or any((p / m).exists() for m in RUN_MARKERS)

    found = []
    for d in sorted(p for p in output_dir.iterdir() if p.is_dir()):
        if (d / "result.json").exists():
            continue
        if is_run(d):
            found.append(d)
        else:  # a plain folder (a sweep's): its runs
            found += [n for n in sorted(d.iterdir()) if n.is_dir() and not (n / "result.json").exists()
                      and any((n / m).exists() for m in RUN_MARKERS)]
    return found


def incomplete_result(run_dir: Path, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored record of a run that has no final result: status ``incomplete``, never valid."""
    if result is None:
        try:
            cfg = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        cfg = cfg if isinstance(cfg, dict) else {}
        kind = "infer" if "scenario" in cfg else "train"
        result = {"schema": "mlbench.result/1", "kind": kind, "run_id": run_dir.name,
                  "benchmark": cfg.get("benchmark"), "size": cfg.get("size"), "config": cfg,
                  "precision": cfg.get("precision"), "device": cfg.get("device"), "started_at": None,
                  "finished_at": None, "metrics": {}, "validity_reasons": []}
        why = "no result.json: the run was killed before it wrote one (SIGKILL, out of memory, power loss), " \
              "or it is still starting"
    else:
        why = f"result.json is not final (status {result.get('status')!r}): the run was killed (SIGKILL, out of " \
              "memory, power loss) before it finished, or it is still running"
    return {**result, "status": INCOMPLETE, "valid": False,
            "validity_reasons": [*[r for r in result.get("validity_reasons") or [] if r != "in progress"], why]}


def _final(result: dict[str, Any]) -> bool:
    """A result.json that its run finished writing (not the one written after each of several runs)."""
    return bool(result.get("finished_at")) or result.get("status") not in ("running", None)


def reindex(output_dir: str | Path) -> tuple[int, list[str]]:
    """Rebuild the store from the run directories; returns (runs indexed, warnings: skipped directories,
    incomplete runs, a damaged store kept aside). A run without a final result is indexed as incomplete."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise MlbenchError(f"results directory not found: {output_dir}", "pass --output-dir with your runs")
    loaded, problems = [], []
    for run_dir in find_run_dirs(output_dir):
        try:
            result = load_result(run_dir)
        except MlbenchError as exc:
            if run_dir.parent == output_dir:  # nested foreign files are not ours to report
                problems.append(f"skipped {exc}")
            continue
        if not _final(result):
            result = incomplete_result(run_dir, result)
        loaded.append((run_dir, result))
    loaded += [(d, incomplete_result(d)) for d in find_incomplete_dirs(output_dir)]
    problems += [f"incomplete: {d} ({r['validity_reasons'][-1].split(':')[0]}): indexed as incomplete, not valid"
                 for d, r in loaded if r["status"] == INCOMPLETE]
    path = db_path(output_dir)
    for attempt in (1, 2):
        try:
            con = connect(path)
            try:
                with _transaction(con):
                    con.execute("DELETE FROM runs")
                    for run_dir, result in loaded:
                        _upsert(con, run_dir, result)
            finally:
                con.close()
            break
        except (MlbenchError, sqlite3.DatabaseError) as exc:
            if attempt == 2 or not path.exists() or (isinstance(exc, MlbenchError) and "cannot open" in str(exc)):
                raise  # a folder that cannot be written to: setting the file aside would not help
            problems.append(f"the results store was damaged ({exc.__cause__ or exc}); kept it as "
                            f"{_set_aside(path)} and rebuilt it")
    return len(loaded), problems


def _set_aside(path: Path) -> Path:
    """Move a damaged store (and its journal files) aside as results.db.corrupt-<time>; returns the new name."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.replace(aside)
    for suffix in ("-wal", "-shm", "-journal"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.replace(aside.with_name(aside.name + suffix))
    return aside


def query(output_dir: str | Path, valid: bool | None = None, since: str | None = None,
          limit: int | None = None, **filters: Any) -> list[dict[str, Any]]:
    """Indexed rows matching the filters (None values are ignored), oldest first; each with its result."""
    where, params = [], []
    for key, value in filters.items():
        if value is None:
            continue
        if key not in FILTERS:
            from mlbench.registry import did_you_mean

            raise did_you_mean(key, FILTERS, "filter")
        if key in PREFIX_FILTERS:
            where.append(f"{key} LIKE ?")
            params.append(f"{value}%")
        else:
            where.append(f"lower({key}) = lower(?)" if key != "world_size" else f"{key} = ?")
            params.append(value)
    if valid is not None:
        where.append("valid = ?")
        params.append(1 if valid else 0)
    if since:
        where.append("started_at >= ?")
        params.append(since)
    sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY started_at, run_id" + (f" LIMIT {int(limit)}" if limit else "")
    con = connect(db_path(output_dir))
    try:
        rows = [dict(r) for r in con.execute(sql, params)]
    except sqlite3.DatabaseError as exc:  # damage past the header shows only when the rows are read
        raise damaged(db_path(output_dir), exc) from exc
    finally:
        con.close()
    for r in rows:
        r["result"] = json.loads(r["result"])
    return rows
