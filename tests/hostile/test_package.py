"""Issue 32: everything ``mlbench package`` reads is untrusted (run directories, their logs, the user's JSON).

Each case starts from a real run directory (the hidden ``dummy`` benchmark: a real LoadGen inference run with
TEST01/TEST04, and a real training run with its MLPerf log), alters what a hostile user could alter, and
asserts: a clear error, exit code 1 or 2, no traceback, nothing valid recorded (no package, or one marked
NOT_FOR_SUBMISSION) and nothing outside the folders the user named touched. The cases run in-process through
``mlbench.cli.main`` (one subprocess case checks the real command line).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlbench.cli import main
from support import mlbench

SYSTEM = {"status": "available", "system_type": "edge", "system_type_detail": "workstation",
          "host_networking": "N/A", "host_network_card_count": "0", "host_processor_frequency": "2.0 GHz",
          "host_processor_caches": "L2 1 MiB", "host_processor_interconnect": "N/A", "host_storage_type": "SSD",
          "host_storage_capacity": "100 GB", "host_networking_topology": "N/A", "host_memory_configuration": "N/A",
          "cooling": "air"}
TRAIN_SYSTEM = {**SYSTEM, "status": "Research, Development, or Internal (RDI)"}


def _env(cache: Path):
    keep = {k: os.environ.get(k) for k in ("MLBENCH_SKIP_CACHE_CLEAR", "OMP_NUM_THREADS", "MLBENCH_CACHE")}
    os.environ.update(MLBENCH_SKIP_CACHE_CLEAR="1", OMP_NUM_THREADS="1", MLBENCH_CACHE=str(cache))
    return keep


def _restore(keep: dict) -> None:
    for k, v in keep.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One dummy inference run (--mode submission --quick --compliance) and one dummy training run."""
    out = tmp_path_factory.mktemp("package-runs")
    keep = _env(out / "cache")
    try:
        assert main(["infer", "dummy", "--size", "tiny", "--mode", "submission", "--quick", "--duration-s", "0.3",
                     "--compliance", "--output-dir", str(out / "infer")]) in (0, 1)
        assert main(["train", "dummy", "--size", "tiny", "--runs", "1", "--seed", "3",
                     "--output-dir", str(out / "train")]) == 0
    finally:
        _restore(keep)
    (infer,) = [d for d in (out / "infer").iterdir() if d.is_dir() and "-infer-" in d.name]
    (train,) = [d for d in (out / "train").iterdir() if d.is_dir() and "-train-" in d.name]
    return {"infer": infer, "train": train, "cache": out / "cache"}


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # "infer" or "train": which run directory the case starts from
    alter: Callable[[Path, Path], list[str] | None]  # (run copy, tmp) -> extra arguments (or None)
    exit_codes: tuple[int, ...]
    error: str  # what the output must say (a regular expression, case-insensitive)
    force: bool = False


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _set(*keys_value):
    *keys, value = keys_value

    def alter(run: Path, _tmp: Path):
        def fn(d):
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value
        _edit(run / "result.json", fn)
    return alter


def _write(rel: str, text: str):
    def alter(run: Path, _tmp: Path):
        (run / rel).write_text(text)
    return alter


def _log_line(rel: str, key: str, fn):
    """Rewrite the first MLLOG event with ``key`` in ``run/rel`` through ``fn(event) -> event or raw text``."""
    def alter(run: Path, _tmp: Path):
        lines = (run / rel).read_text().splitlines()
        for i, ln in enumerate(lines):
            if ln.startswith(":::MLLOG") and f'"key": "{key}"' in ln:
                ev = fn(json.loads(ln[len(":::MLLOG "):]))
                lines[i] = ev if isinstance(ev, str) else ":::MLLOG " + json.dumps(ev)
                break
        (run / rel).write_text("\n".join(lines) + "\n")
    return alter


def _args(*extra: str):
    def alter(run: Path, tmp: Path):
        return [a.replace("{tmp}", str(tmp)) for a in extra]
    return alter


def _both(*alters):
    def alter(run: Path, tmp: Path):
        extra: list[str] = []
        for a in alters:
            extra += a(run, tmp) or []
        return extra
    return alter


def _users_files(run: Path, tmp: Path):
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("mine")


def _other_package(run: Path, tmp: Path):
    (tmp / "out").mkdir()
    (tmp / "out" / ".mlbench-package.json").write_text(json.dumps(
        {"kind": "inference", "submitter": "OTHER", "system": "s1", "entries": ["open"]}))
    (tmp / "out" / "open").mkdir()


def _link_out(run: Path, tmp: Path):
    """A previous package whose folder was replaced by a link to the user's own folder: never followed."""
    (tmp / "mine").mkdir()
    (tmp / "mine" / "data.txt").write_text("mine")
    (tmp / "out").mkdir()
    (tmp / "out" / ".mlbench-package.json").write_text(json.dumps(
        {"kind": "inference", "submitter": "ACME", "system": "s1", "entries": ["open"]}))
    (tmp / "out" / "open").symlink_to(tmp / "mine")


def _append(rel: str, text: str):
    def alter(run: Path, _tmp: Path):
        with open(run / rel, "a") as f:
            f.write(text)
    return alter


def _system_json(text: str):
    def alter(run: Path, tmp: Path):
        (tmp / "given.json").write_text(text)
        return ["--system-json", str(tmp / "given.json")]
    return alter


def _deep(n: int) -> str:
    return "[" * n + "]" * n


INFER = [
    Case("benchmark climbs out", "infer", _set("benchmark", "../../../escape"), (1,), "does not know"),
    Case("benchmark absolute", "infer", _set("benchmark", "/tmp/escape"), (1,), "does not know"),
    Case("scenario climbs out", "infer", _set("scenario", "../../x"), (1,), "not an MLPerf scenario"),
    Case("scenario with newline", "infer", _set("scenario", "Offline\n"), (1,), "not an MLPerf scenario"),
    Case("target name climbs out", "infer", _set("accuracy", "target_name", "../../99"), (1,),
         "accuracy target"),
    Case("size unknown", "infer", _set("size", "huge"), (1,), "not a size of dummy"),
    Case("result.json malformed", "infer", _write("result.json", '{"kind": "infer", '), (1,), "not valid JSON"),
    Case("result.json nested deep", "infer", _write("result.json", _deep(100_000)), (1,), "nests 100000 levels"),
    Case("result.json a list", "infer", _write("result.json", "[1, 2]"), (1,), "not a JSON object"),
    Case("result.json config a list", "infer", _set("config", [1]), (1,), "'config' is a JSON array"),
    Case("result.json NaN", "infer", _write("result.json", '{"kind": NaN}'), (1,), "holds NaN, which JSON does not allow"),
    Case("system.json a string", "infer", _write("system.json", '"x"'), (1,), "not a JSON object"),
    Case("accuracy claimed better", "infer", _set("accuracy", "value", 0.0), (1,),
         r"result\.json says mse .* but its accuracy log scores", force=True),
    Case("accuracy log altered", "infer", _write("accuracy/mlperf_log_accuracy.json", '[{"qsl_idx": 99999, '
                                                 '"data": "00"}]'), (1,), "outside the dataset", force=True),
    Case("accuracy log malformed", "infer", _write("accuracy/mlperf_log_accuracy.json", "[{"), (1,),
         "could not be scored", force=True),
    Case("scenario swapped in the log", "infer",
         _log_line("performance/mlperf_log_detail.txt", "effective_scenario",
                   lambda e: {**e, "value": "Server"}), (1,), "but its performance log ran Server", force=True),
    Case("detail log line altered", "infer",
         _log_line("performance/mlperf_log_detail.txt", "result_validity", lambda e: ":::MLLOG {broken"), (1,),
         "not valid MLLOG", force=True),
    Case("validity claimed", "infer", _set("loadgen", "valid", False), (1,),
         "result.json says LoadGen's result was INVALID", force=True),
    Case("submitter with newline", "infer", _args("--submitter", "ACME\n"), (2,), "invalid value for 'submitter'"),
    Case("system with slash", "infer", _args("--system", "../s1"), (2,), "invalid value for 'system'"),
    Case("system-json nested deep", "infer", _system_json(_deep(100_000)), (2,), "nests 100000 levels"),
    Case("system-json malformed", "infer", _system_json("{"), (2,), "not valid JSON"),
    Case("system-json a list", "infer", _system_json("[]"), (2,), "not a JSON object"),
    Case("system-json field an object", "infer", _system_json('{"cooling": {"a": 1}}'), (2,),
         "not text or a number"),
    Case("output holds the user's files", "infer", _users_files, (2,), "not empty and holds no mlbench package"),
    Case("output holds another package", "infer", _other_package, (2,), "not of ACME"),
    Case("output entry links out", "infer", _link_out, (1,), "NOT a valid submission", force=True),
]
def _move_run_stop(run: Path) -> None:
    log = run / "run_1" / "mlperf_log.txt"
    lines = log.read_text().splitlines()
    start = next(json.loads(ln[9:])["time_ms"] for ln in lines if '"key": "run_start"' in ln)
    _log_line("run_1/mlperf_log.txt", "run_stop", lambda e: {**e, "time_ms": start + 1})(run, run)


def _last_eval(value: float):
    def alter(run: Path, _tmp: Path):
        log = run / "run_1" / "mlperf_log.txt"
        lines = log.read_text().splitlines()
        i = max(k for k, ln in enumerate(lines) if '"key": "eval_accuracy"' in ln)
        ev = json.loads(lines[i][9:])
        ev["value"] = value
        lines[i] = ":::MLLOG " + json.dumps(ev)
        log.write_text("\n".join(lines) + "\n")
    return alter


TRAIN = [
    Case("run_stop moved next to run_start", "train", lambda run, tmp: _move_run_stop(run), (1,),
         "does not run forward", force=True),
    Case("log says aborted, result.json success", "train",
         _log_line("run_1/mlperf_log.txt", "run_stop", lambda e: {**e, "metadata": {**e["metadata"],
                                                                                   "status": "aborted"}}),
         (1,), "result.json says 'success' but its MLPerf log's run_stop says 'aborted'", force=True),
    Case("success without reaching the target", "train", _last_eval(9.0), (1,), "does not reach the target",
         force=True),
    Case("submission_benchmark climbs out", "train",
         _log_line("run_1/mlperf_log.txt", "submission_benchmark", lambda e: {**e, "value": "../../../escape"}),
         (1,), "logs submission_benchmark", force=True),
    Case("benchmark climbs out", "train", _set("benchmark", "../escape"), (1,), "does not know"),
    Case("run number a path", "train", _set("runs", [{"run": "../../x"}]), (1,), "has no run number"),
    Case("log line nested deep", "train", _append("run_1/mlperf_log.txt", ":::MLLOG " + _deep(100_000) + "\n"),
         (1,), "not valid MLLOG", force=True),
    Case("time to train edited", "train",
         lambda run, tmp: _edit(run / "run_1" / "result.json",
                                lambda d: d["metrics"].__setitem__("time_to_train/minutes", 5.0)),
         (1,), "result.json says a time to train", force=True),
]


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if p == skip or skip in p.parents or (p.is_symlink() and p.parent == skip):
            continue
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("case", INFER + TRAIN, ids=lambda c: c.id)
def test_hostile_package_input(case: Case, runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[case.kind], run, ignore=shutil.ignore_patterns("checkpoint.pt", "mlperf_log_trace.json"))
    extra = case.alter(run, tmp_path) or []
    user = tmp_path / "user.json"
    user.write_text(json.dumps(SYSTEM if case.kind == "infer" else TRAIN_SYSTEM))
    out = tmp_path / "out"
    args = {"--submitter": "ACME", "--system": "s1", "--system-json": str(user), "-o": str(out)}
    for k, v in zip(extra[::2], extra[1::2]):
        args[k] = v
    argv = ["package", "inference" if case.kind == "infer" else "training", str(run),
            *[x for kv in args.items() for x in kv]]
    argv += ["--force", "--no-check"] if case.force and case.kind == "train" else ["--force"] if case.force else []
    before = _snapshot(tmp_path, out)
    keep = _env(runs["cache"])
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    finally:
        _restore(keep)
    text = capsys.readouterr()
    said = text.out + text.err
    assert "Traceback" not in said, said
    assert code in case.exit_codes, f"exit {code}\n{said}"
    assert re.search(case.error, said, re.IGNORECASE | re.DOTALL), f"message lacks {case.error!r}:\n{said}"
    assert _snapshot(tmp_path, out) == before, "files outside -o changed"
    assert not (tmp_path.parent / "escape").exists() and not Path("/tmp/escape").exists()
    if out.is_dir() and any(out.glob("*/*")):  # a package was written: it says it is not for submission
        assert (out / "NOT_FOR_SUBMISSION.txt").is_file(), sorted(p.name for p in out.iterdir())


def test_the_command_line_says_it_in_one_line(runs, tmp_path):
    """The same refusal through the real command line: one error line and its fix, exit 1, no traceback."""
    run = tmp_path / "run"
    shutil.copytree(runs["infer"], run, ignore=shutil.ignore_patterns("mlperf_log_trace.json"))
    (run / "result.json").write_text(_deep(100_000))
    proc = mlbench("package", "inference", str(run), "--submitter", "ACME", "--system", "s1", "-o",
                   str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "nests 100000 levels" in proc.stderr
    assert not (tmp_path / "out").exists()
