"""``mlbench package inference``: ``mlbench infer --mode submission`` runs into the MLPerf Inference layout.

::

    <out>/<division>/<org>/systems/<system>.json
    <out>/<division>/<org>/code/<bench>/README.md
    <out>/<division>/<org>/results/<system>/<bench>/<scenario>/
        performance/run_1/{mlperf_log_summary.txt,mlperf_log_detail.txt}
        accuracy/{mlperf_log_summary.txt,mlperf_log_detail.txt,mlperf_log_accuracy.json,accuracy.txt}
        TEST01/{verify_accuracy.txt,verify_performance.txt,performance/run_1/...}   (from --compliance)
        TEST04/{verify_performance.txt,performance/run_1/...}
        measurements.json, user.conf, README.md

The official submission checker lives in mlcommons/inference (tools/submission), not on PyPI, so mlbench checks
the structure itself (every file that checker reads, LoadGen VALID, duration and query counts, accuracy on
target, compliance passed); with ``--inference-repo`` it also runs the official one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbench import registry
from mlbench.errors import UnknownNameError
from mlbench.submission import checks, system
from mlbench.submission.training import (
    ask_for_system_fields,
    check_name,
    mark_forced,
    nothing_to_package,
    refuse_unless_forced,
)

MAX_ACCURACY_LOG = 10 * 1024  # the checker's MAX_ACCURACY_LOG_SIZE
KEEP = 4 * 1024  # truncation keeps this much of the head and of the tail
MIN_DURATION_MS = 600_000
PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACC_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json", "accuracy.txt")
MEASURE_FILES = ("measurements.json", "user.conf", "README.md")
MEASUREMENT_KEYS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                    "weight_transformations")


@dataclass
class InferRun:
    run_dir: Path
    result: dict[str, Any]
    system: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.result.get("config") or {}

    @property
    def mlperf_name(self) -> str:
        """MLPerf Inference's benchmark folder, from the definition (``inference_name``), with the accuracy target
        where MLPerf names it so (the 99% target; "-99.9" with --target 99.9)."""
        name = str(self.result.get("benchmark"))
        try:
            bench = next(iter(registry.sizes(name).values()))
        except UnknownNameError:  # a benchmark this mlbench no longer has: its own name
            return name
        if bench.inference_name:
            name = bench.inference_name
        if bench.inference_name_has_target:
            name += "-" + str((self.result.get("accuracy") or {}).get("target_name") or "99")
        return name


@dataclass
class Package:
    root: Path  # <out>/<division>/<org>
    checks: list[checks.Check] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != checks.FAIL for c in self.checks) and not self.forced


def collect(run_dirs: list[Path]) -> tuple[list[InferRun], list[str]]:
    runs, problems = [], []
    for d in run_dirs:
        d = Path(d)
        try:
            result = json.loads((d / "result.json").read_text())
        except (OSError, ValueError):
            problems.append(f"{d}: no readable result.json: not an mlbench run directory")
            continue
        if result.get("kind") != "infer":
            problems.append(f"{d}: a '{result.get('kind')}' run, not an inference run (mlbench infer)")
            continue
        try:
            sysdesc = json.loads((d / "system.json").read_text())
        except (OSError, ValueError):
            sysdesc = {}
        runs.append(InferRun(d, result, sysdesc))
    return runs, problems


def refusals(runs: list[InferRun], division: str) -> list[str]:
    out = []
    seen: dict[tuple[str, str], Path] = {}
    for r in runs:
        res, cfg = r.result, r.config
        where = str(r.run_dir)
        if cfg.get("quick"):
            out.append(f"{where}: a --quick run ({cfg.get('duration_s')} s instead of MLPerf's 600 s minimum): "
                       "rerun without --quick")
        if res.get("mode") != "submission":
            out.append(f"{where}: --mode {res.get('mode')}: a submission needs both the performance and the accuracy "
                       "run of one command (--mode submission)")
        if res.get("status") != "success":
            out.append(f"{where}: the run did not finish ({res.get('status')}: {res.get('abort_reason')})")
        if cfg.get("backend") == "null" or cfg.get("weights") == "random":
            out.append(f"{where}: no real model ran (null backend or random weights)")
        if division == "closed" and res.get("size") != "reference":
            out.append(f"{where}: size '{res.get('size')}' is not the MLPerf definition (open division): it cannot "
                       "be packaged as closed; use --division open")
        key = (r.mlperf_name, str(res.get("scenario")))
        if key in seen:
            out.append(f"{where}: a second run of {key[0]} {key[1]} (the first is {seen[key]}); give one per "
                       "benchmark and scenario")
        seen.setdefault(key, r.run_dir)
    prints = {r.system.get("system_fingerprint") for r in runs}
    if len(prints) > 1:
        out.append("the runs were made on different systems (fingerprints " + ", ".join(sorted(map(str, prints)))
                   + "); one systems JSON describes one system")
    return out


def _truncate(src: Path, dest: Path) -> str:
    """Copy the accuracy log, cut to the head and tail when larger than the checker allows; its sha256."""
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_ACCURACY_LOG:
        data = data[:KEEP] + b"\n...\n" + data[-KEEP:]
    dest.write_bytes(data)
    return digest


def _accuracy_txt(acc: dict[str, Any], digest: str) -> str:
    metric, value = acc.get("metric"), acc.get("value")
    lines = []
    if metric == "top1" and value is not None:  # the checker's "acc" pattern: accuracy=<percent>%
        total = (acc.get("scores") or {}).get("samples")
        good = round(value * total) if total else None
        lines.append(f"accuracy={100 * value:.3f}%" + (f", good={good}, total={total}" if total else ""))
    lines.append(f"{metric}={value}")
    lines.append(f"target={acc.get('target')} ({'reached' if acc.get('reached') else 'NOT reached'}; "
                 f"{acc.get('source', '')})")
    lines.append(f"hash={digest}")
    return "\n".join(lines) + "\n"


def _user_conf(r: InferRun) -> str:
    if (r.run_dir / "user.conf").is_file():
        return (r.run_dir / "user.conf").read_text()
    s = (r.result.get("loadgen") or {}).get("settings") or {}
    model, scen = r.mlperf_name, r.result.get("scenario")
    lines = ["# Generated by mlbench: the run gave no --user-conf; these are the settings it set beyond mlperf.conf."]
    for key, conf in (("offline_expected_qps", "target_qps"), ("server_target_qps", "target_qps"),
                      ("single_stream_expected_latency_ns", "target_latency"),
                      ("multi_stream_expected_latency_ns", "target_latency")):
        want = {"Offline": "offline", "Server": "server", "SingleStream": "single_stream",
                "MultiStream": "multi_stream"}.get(str(scen), "")
        if key.startswith(want + "_") and s.get(key) is not None:
            v = s[key] / 1e6 if conf == "target_latency" else s[key]
            lines.append(f"{model}.{scen}.{conf} = {v:g}")
    return "\n".join(lines) + "\n"


def _summary_flags(text: str) -> dict[str, str]:
    flags = {}
    for line in text.splitlines():
        if m := re.match(r"\s*(Result is|Min duration satisfied|Min queries satisfied|Early stopping satisfied)\s*:"
                         r"\s*(\S+)", line):
            flags[m.group(1)] = m.group(2)
    return flags


def _copy_logs(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        if (src / n).is_file():
            shutil.copyfile(src / n, dest / n)


def write_run(r: InferRun, results: Path, code: Path) -> Path:
    scen_dir = results / r.mlperf_name / str(r.result.get("scenario"))
    if scen_dir.exists():
        shutil.rmtree(scen_dir)
    _copy_logs(r.run_dir / "performance", scen_dir / "performance" / "run_1", PERF_FILES)
    acc_dir = scen_dir / "accuracy"
    _copy_logs(r.run_dir / "accuracy", acc_dir, PERF_FILES)
    if (r.run_dir / "accuracy" / "mlperf_log_accuracy.json").is_file():
        digest = _truncate(r.run_dir / "accuracy" / "mlperf_log_accuracy.json", acc_dir / "mlperf_log_accuracy.json")
        if r.result.get("accuracy"):
            (acc_dir / "accuracy.txt").write_text(_accuracy_txt(r.result["accuracy"], digest))
    comp = r.result.get("compliance") or {}
    for test in ("TEST01", "TEST04"):
        src = r.run_dir / "compliance" / test
        if not src.is_dir():
            continue
        t = comp.get(test) or {}
        tdir = scen_dir / test
        _copy_logs(src, tdir / "performance" / "run_1", PERF_FILES)
        verdict = "TEST PASS" if t.get("passed") else "TEST FAIL"
        (tdir / "verify_performance.txt").write_text(
            f"# written by mlbench from its own {test} check (not the official verify script)\n"
            f"reference score = {t.get('reference')}\ntest score = {t.get('test')}\n{t.get('detail', '')}\n"
            f"{verdict}\n")
        if test == "TEST01":
            a = t.get("accuracy") or {}
            (tdir / "verify_accuracy.txt").write_text(
                "# written by mlbench from its own TEST01 check (not the official verify script)\n"
                f"responses compared: {a.get('compared')}, mismatched: {a.get('mismatched')}\n"
                f"{'TEST PASS' if a.get('passed') else 'TEST FAIL'}\n")
            if (src / "mlperf_log_accuracy.json").is_file():
                _truncate(src / "mlperf_log_accuracy.json", tdir / "mlperf_log_accuracy.json")
    cfg = r.config
    prec = str(cfg.get("precision", "fp32"))
    measurements = {
        "input_data_types": "fp32" if prec != "int8" else "int8",
        "retraining": "no",
        "starting_weights_filename": str(cfg.get("weights") or f"mlbench {r.result.get('size')} checkpoint "
                                         f"(mlbench train {r.result.get('benchmark')} --size {r.result.get('size')})"),
        "weight_data_types": prec,
        "weight_transformations": "int8 static quantization (onnxruntime QDQ, per-channel)" if prec == "int8"
        else "none",
    }
    (scen_dir / "measurements.json").write_text(json.dumps(measurements, indent=2, sort_keys=True) + "\n")
    (scen_dir / "user.conf").write_text(_user_conf(r))
    how = (f"# {r.mlperf_name} {r.result.get('scenario')}\n\nMade with mlbench {r.system.get('mlbench_version')} "
           f"(commit {r.system.get('mlbench_commit') or 'unknown'}):\n\n```bash\n{r.result.get('command')}\n```\n")
    (scen_dir / "README.md").write_text(how)
    code_dir = code / r.mlperf_name
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "README.md").write_text(how.replace(f" {r.result.get('scenario')}\n", "\n", 1))
    return scen_dir


def structural_checks(runs: list[InferRun], root: Path, system_name: str) -> list[checks.Check]:
    files = checks.Check("files", detail="every file the official submission checker reads")
    valid = checks.Check("LoadGen VALID", detail="performance run: Result is VALID in its summary")
    dur = checks.Check("duration and queries", detail="min duration 600 s and LoadGen's query counts satisfied")
    acc = checks.Check("accuracy", detail="accuracy run at or above the target; accuracy log within 10 KiB")
    comp = checks.Check("compliance", detail="TEST01 and TEST04 present and passed")
    sysc = checks.Check("system description", detail=f"systems/{system_name}.json: the checker's required fields")
    try:
        desc = json.loads((root / "systems" / f"{system_name}.json").read_text())
        for p in system.problems(desc, "inference"):
            sysc.fail(f"{root.name}/systems/{system_name}.json: {p}")
    except (OSError, ValueError) as exc:
        sysc.fail(f"systems/{system_name}.json: unreadable ({exc})")
    for r in runs:
        scen = root / "results" / system_name / r.mlperf_name / str(r.result.get("scenario"))
        rel = scen.relative_to(root.parent.parent)
        need = [scen / "performance" / "run_1" / n for n in PERF_FILES] + [scen / "accuracy" / n for n in ACC_FILES]
        need += [scen / n for n in MEASURE_FILES]
        for p in need:
            if not p.is_file():
                files.fail(f"{p.relative_to(root.parent.parent)}: missing")
        if (scen / "measurements.json").is_file():
            m = json.loads((scen / "measurements.json").read_text())
            missing = [k for k in MEASUREMENT_KEYS if k not in m]
            if missing:
                files.fail(f"{rel}/measurements.json: missing {', '.join(missing)}")
        summary = scen / "performance" / "run_1" / "mlperf_log_summary.txt"
        flags = _summary_flags(summary.read_text()) if summary.is_file() else {}
        if flags.get("Result is") != "VALID":
            reasons = (r.result.get("loadgen") or {}).get("reasons") or []
            valid.fail(f"{rel}/performance/run_1: LoadGen says {flags.get('Result is', 'nothing')}"
                       + (f": {'; '.join(reasons)}" if reasons else ""))
        min_ms = ((r.result.get("loadgen") or {}).get("settings") or {}).get("min_duration_ms")
        if min_ms is not None and min_ms < MIN_DURATION_MS:
            dur.fail(f"{rel}/performance/run_1: the test ran with a {min_ms / 1000:g} s minimum duration; MLPerf "
                     "requires 600 s (a --quick run)")
        for flag in ("Min duration satisfied", "Min queries satisfied", "Early stopping satisfied"):
            if flags.get(flag, "Yes") != "Yes":
                dur.fail(f"{rel}/performance/run_1: LoadGen says '{flag}: {flags[flag]}'")
        a = r.result.get("accuracy")
        if not a:
            acc.fail(f"{rel}/accuracy: no accuracy result (run with --mode submission)")
        elif not a.get("reached"):
            acc.fail(f"{rel}/accuracy: {a['metric']} {a['value']:.4f} is below the target {a['target']:.4f}")
        log = scen / "accuracy" / "mlperf_log_accuracy.json"
        if log.is_file() and log.stat().st_size > MAX_ACCURACY_LOG:
            acc.fail(f"{rel}/accuracy/mlperf_log_accuracy.json: {log.stat().st_size} bytes, over the 10 KiB limit")
        c = r.result.get("compliance") or {}
        for test in ("TEST01", "TEST04"):
            t = c.get(test)
            if t is None or not (scen / test).is_dir():
                comp.fail(f"{rel}/{test}: missing (run mlbench infer with --compliance)")
            elif not t.get("passed"):
                comp.fail(f"{rel}/{test}: failed: {t.get('detail')}"
                          + ("" if (t.get("accuracy") or {}).get("passed", True) else "; responses differ"))
    return [sysc, files, valid, dur, acc, comp]


def official_checker(repo: Path, out: Path, submitter: str, round_: str, log_dir: Path) -> checks.Check:
    """mlcommons/inference's submission checker, where the user has a clone (its entry point moved over rounds)."""
    c = checks.Check("official submission checker", detail=f"mlcommons/inference tools/submission ({round_})")
    tools = Path(repo) / "tools" / "submission"
    if (tools / "submission_checker" / "main.py").is_file():
        cmd = [sys.executable, "-m", "submission_checker.main"]
    elif (tools / "submission_checker.py").is_file():
        cmd = [sys.executable, "submission_checker.py"]
    else:
        c.fail(f"{repo}: no tools/submission/submission_checker in it: give a clone of mlcommons/inference")
        return c
    cmd += ["--input", str(out.resolve()), "--submitter", submitter, "--version", round_]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=tools, timeout=1800)
        text, rc = p.stdout + p.stderr, p.returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        c.fail(f"the official checker did not run: {exc}")
        return c
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "submission_checker.log").write_text(text)
    for line in text.splitlines():
        if " ERROR " in line or line.startswith("ERROR"):
            c.fail(line.split("ERROR", 1)[1].strip(" :-"))
    if rc != 0 and c.status != checks.FAIL:
        c.fail(f"exit code {rc}; see {log_dir / 'submission_checker.log'}")
    c.detail += f"; its log: {log_dir / 'submission_checker.log'}"
    return c


def package(run_dirs: list[Path], *, submitter: str, system_name: str, out: Path, division: str | None = None,
            system_json: Path | None = None, force: bool = False, inference_repo: str | None = None,
            round_: str = "v5.1", run_checkers: bool = True) -> Package:
    check_name(submitter, "submitter")
    check_name(system_name, "system")
    runs, problems = collect(run_dirs)
    if not runs:
        nothing_to_package(problems, "give the run directories that `mlbench infer --mode submission` printed")
    division = division or ("closed" if all(r.result.get("size") == "reference" for r in runs) else "open")
    reasons = problems + refusals(runs, division)
    refuse_unless_forced(reasons, force, "the checks")
    user = system.read_user_fields(system_json)
    desc = system.describe(runs[0].system, user, submitter=submitter, system_name=system_name, division=division,
                           usage="inference")
    bad = system.problems(desc, "inference")
    if bad:
        ask_for_system_fields(out, bad, system.template(desc, "inference"),
                              f"status: {', '.join(system.INFERENCE_STATUS)}; system_type: "
                              f"{', '.join(system.SYSTEM_TYPES)}")
    root = out / division / submitter
    (root / "systems").mkdir(parents=True, exist_ok=True)
    (root / "systems" / f"{system_name}.json").write_bytes(system.dumps(desc))
    for r in runs:
        write_run(r, root / "results" / system_name, root / "code")
    pkg = Package(root=root, forced=reasons if force else [])
    mark_forced(out, reasons if force else [])
    if run_checkers:
        pkg.checks = structural_checks(runs, root, system_name)
        if inference_repo:
            pkg.checks.append(official_checker(Path(inference_repo), out, submitter, round_, out / "checks"))
    return pkg
