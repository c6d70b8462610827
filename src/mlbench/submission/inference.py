"""``mlbench package inference``: ``mlbench infer --mode submission`` runs into the MLPerf Inference layout.

The layout is the one the round's official submission checker reads (``rounds.py``). From v6.0::

    <out>/<division>/<org>/systems/<system>.json
    <out>/<division>/<org>/src/<bench>/{README.md,run.sh}
    <out>/<division>/<org>/results/<system>/<bench>/<scenario>/
        performance/run_1/{mlperf_log_summary.txt,mlperf_log_detail.txt}
        accuracy/{mlperf_log_summary.txt,mlperf_log_detail.txt,mlperf_log_accuracy.json,accuracy.txt}
        TEST01/{verify_accuracy.txt,verify_performance.txt,accuracy/,performance/run_1/}   (from --compliance)
        TEST04/{verify_performance.txt,performance/run_1/}
        measurements.json, user.conf, README.md

up to v5.1 the measurements and TEST folders sit under ``measurements/`` and ``compliance/`` beside ``results/``,
and the code under ``code/``.

Nothing a run directory says is trusted as a verdict: the scenario, the durations, LoadGen's validity, the seeds
(hence the round) are read from LoadGen's logs; the accuracy is scored again from mlperf_log_accuracy.json with
the benchmark's own metric; TEST01/TEST04 are judged again from their logs and written in the official
scripts' form. Where result.json says otherwise, that is a failure in plain words. Names that become folders
(benchmark, scenario, target) must be names mlbench knows, and every file is written under ``-o``.

The official submission checker (mlcommons/inference tools/submission, not on PyPI) runs with
``--inference-repo``; mlbench's own checks of the written tree report, in its terms, every problem it reports
(``agreement`` fails, naming the line, where one is missed).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbench.definition import Benchmark
from mlbench.errors import ConfigError
from mlbench.inference import verdicts
from mlbench.submission import checks, rounds, system
from mlbench.submission.inference_checks import (
    MAX_ACCURACY_LOG,
    MIN_DURATION_MS,
    PERF_FILES,
    check_tree,
    seeds_of,
)
from mlbench.submission.output import Output
from mlbench.submission.training import commands, nothing_to_package, refuse_unless_forced
from mlbench.submission.untrusted import BadInput, check_name, inside, mllog_events, read_object, read_results

KEEP = 4 * 1024  # truncation keeps this much of the head and of the tail
RESULT_SHAPE = {"kind": str, "benchmark": str, "size": str, "scenario": str, "mode": str, "status": str,
                "config": dict, "accuracy": dict, "compliance": dict, "loadgen": dict, "command": str}


def mlperf_folder(definition: Benchmark, target_name: str | None) -> str:
    """MLPerf Inference's benchmark folder, from the definition (``inference_name``), with the accuracy target
    where MLPerf names it so (the 99% target; "-99.9" with --target 99.9)."""
    name = definition.inference_name or definition.name
    if definition.inference_name_has_target:
        name += "-" + (target_name or "99")
    return name


@dataclass
class InferRun:
    run_dir: Path
    result: dict[str, Any]
    system: dict[str, Any]
    folder: str = ""  # MLPerf's benchmark folder
    perf: dict[str, Any] = field(default_factory=dict)  # the performance detail log, first value per key
    acc: dict[str, Any] = field(default_factory=dict)  # the accuracy run's detail log
    scores: dict[str, Any] | None = None  # the accuracy log scored again
    score_error: str = ""

    @property
    def config(self) -> dict[str, Any]:
        return self.result.get("config") or {}

    @property
    def scenario(self) -> str:
        return self.result["scenario"]

    def log(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)


@dataclass
class Package:
    root: Path  # <out>/<division>/<org>
    round: str = ""
    checks: list[checks.Check] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)
    checked: bool = True

    @property
    def passed(self) -> bool:
        return self.checked and all(c.status != checks.FAIL for c in self.checks) and not self.forced


# ---------------------------------------------------------------------------------------------- reading runs
def collect(run_dirs: list[Path]) -> tuple[list[InferRun], list[str]]:
    """The runs, each validated: names mlbench knows, JSON of the right shape. A run that cannot be read is a
    problem naming its directory, never a traceback."""
    from mlbench import registry

    runs: list[InferRun] = []
    results, problems = read_results(run_dirs, "infer", RESULT_SHAPE)
    for d, result in results:
        bench, size, scen = result.get("benchmark"), result.get("size"), result.get("scenario")
        if bench not in registry.names(hidden=True):
            problems.append(f"{d}: result.json names benchmark {str(bench)[:60]!r}, which mlbench does not know "
                            f"(known: {', '.join(registry.names())})")
            continue
        if size not in registry.sizes(bench):
            problems.append(f"{d}: result.json names size {str(size)[:60]!r}, not a size of {bench}")
            continue
        if scen not in rounds.SCENARIOS:
            problems.append(f"{d}: result.json names scenario {str(scen)[:60]!r}, not an MLPerf scenario "
                            f"({', '.join(rounds.SCENARIOS)})")
            continue
        definition = registry.sizes(bench)[size]
        target = (result.get("accuracy") or {}).get("target_name")
        if target is not None and target not in definition.inference_targets:
            problems.append(f"{d}: result.json names accuracy target {str(target)[:40]!r}, not one of {bench}'s "
                            f"({', '.join(definition.inference_targets) or 'it has one'})")
            continue
        try:
            sysdesc = read_object(d / "system.json", "the run's system") if (d / "system.json").exists() else {}
        except BadInput as exc:
            problems.append(exc.message)
            continue
        r = InferRun(d, result, sysdesc, folder=mlperf_folder(definition, target))
        for name in ("performance", "accuracy"):
            events, bad = mllog_events(d / name / "mlperf_log_detail.txt") \
                if (d / name / "mlperf_log_detail.txt").is_file() else ([], [])
            if bad:
                problems.append(f"{d}/{name}/mlperf_log_detail.txt: line(s) {', '.join(map(str, bad[:5]))} are not "
                                "valid MLLOG (the log was altered or cut)")
            values = {}
            for ev in events:
                values.setdefault(ev["key"], ev.get("value"))
            setattr(r, "perf" if name == "performance" else "acc", values)
        runs.append(r)
    return runs, problems


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def rescore(r: InferRun) -> None:
    """Score the run's accuracy log again with the benchmark's own metric (no model: the dataset's labels)."""
    from mlbench import registry
    from mlbench.errors import MlbenchError
    from mlbench.inference import logs
    from mlbench.inference import task as task_mod
    from mlbench.inference.config import TASK_OPTIONS

    path = r.log("accuracy", "mlperf_log_accuracy.json")
    if not path.is_file():
        r.score_error = "the run has no accuracy log (accuracy/mlperf_log_accuracy.json)"
        return
    cfg = r.config
    max_samples = cfg.get("max_samples")
    extra = {k: cfg[k] for k in TASK_OPTIONS if isinstance(cfg.get(k), (str, int, float))}
    try:
        handle = registry.get(r.result["benchmark"], r.result["size"])
        opts = task_mod.TaskOptions(data_dir=_text(cfg.get("data_dir")), weights=_text(cfg.get("weights")),
                                    offline=True, train_if_missing=False, say=lambda _m: None, extra=extra,
                                    max_samples=max_samples if isinstance(max_samples, int) else None)
        task = task_mod.build(handle, opts)
        store = task.dataset()
        responses = logs.read_accuracy(path)
        if any(not 0 <= i < store.total_count for i in responses):
            r.score_error = f"{path} logs sample indices outside the dataset's 0..{store.total_count - 1}"
            return
        scores = task.accuracy(responses, store)
    except MlbenchError as exc:
        r.score_error = exc.message
        return
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:  # a malformed log's entries
        r.score_error = f"{path} cannot be scored ({type(exc).__name__}: {str(exc)[:200]})"
        return
    value = scores.get(task.metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        r.score_error = f"the accuracy log scores {task.metric} = {value}, not a finite number"
        return
    from mlbench.inference.runner import accuracy_target

    name, target = accuracy_target(handle.definition, (r.result.get("accuracy") or {}).get("target_name"))
    higher = getattr(task, "higher_is_better", True)
    reached = target is not None and (value >= target if higher else value <= target)
    if hasattr(task, "accuracy_checks"):  # several checks (a language model's ROUGEs and length), each must hold
        reached = all(c["ok"] for c in task.accuracy_checks(scores, store))
    r.scores = {"metric": task.metric, "value": float(value), "target": target, "target_name": name,
                "higher_is_better": higher, "scores": scores, "logged": len(responses), "reached": reached}


# ---------------------------------------------------------------------------------------------- refusals
def choose_round(runs: list[InferRun], asked: str | None) -> rounds.Round:
    """The round asked for, else the one whose RNG seeds the runs' LoadGen logged (all must agree), else the
    installed LoadGen's."""
    if asked:
        if asked not in rounds.ROUNDS:
            raise ConfigError(f"invalid value for 'version': {asked!r} (known rounds: {', '.join(rounds.ROUNDS)})",
                              "drop --version to use the round of the runs' LoadGen")
        return rounds.ROUNDS[asked]
    found = {s: rounds.round_of_seeds(s) for s in {seeds_of(r.perf) for r in runs} if s}
    if len(found) > 1:
        raise ConfigError("the runs were made with LoadGens of different rounds (seeds of "
                          + ", ".join(r.name if r else "an unknown round" for r in found.values()) + ")",
                          "package the runs of one LoadGen together")
    if found:
        seeds, rnd = next(iter(found.items()))
        if rnd is None:
            raise ConfigError(f"the runs' LoadGen logged RNG seeds {seeds}, which belong to no round mlbench knows "
                              f"({', '.join(rounds.ROUNDS)})", "give the round with --version")
        return rnd
    rnd = rounds.loadgen_round()
    if rnd is None:
        raise ConfigError("the installed LoadGen's seeds belong to no round mlbench knows",
                          "give the round with --version")
    return rnd


def refusals(runs: list[InferRun], division: str) -> list[str]:
    """Why these runs can never make a valid submission, each reason naming its run; what the logs say wins over
    result.json, and any disagreement between the two is a reason of its own."""
    out = []
    seen: dict[tuple[str, str], Path] = {}
    for r in runs:
        res, cfg, where = r.result, r.config, str(r.run_dir)
        if not r.perf:
            out.append(f"{where}: no performance log (performance/mlperf_log_detail.txt): a submission needs both "
                       "runs of `mlbench infer --mode submission`")
        if not r.acc:
            out.append(f"{where}: no accuracy log (accuracy/mlperf_log_detail.txt): a submission needs both runs "
                       "of `mlbench infer --mode submission`")
        if r.perf:
            if r.perf.get("effective_scenario") != ("Server" if r.scenario == "Interactive" else r.scenario):
                out.append(f"{where}: result.json says scenario {r.scenario} but its performance log ran "
                           f"{r.perf.get('effective_scenario')}")
            if r.perf.get("effective_test_mode") not in (None, "PerformanceOnly"):
                out.append(f"{where}: its performance log is a {r.perf.get('effective_test_mode')} run")
            ms = r.perf.get("effective_min_duration_ms")
            if isinstance(ms, (int, float)) and ms < MIN_DURATION_MS:
                out.append(f"{where}: the performance test ran with a {ms / 1000:g} s minimum duration (a --quick "
                           "run); MLPerf requires 600 s: rerun without --quick")
            if "result_validity" not in r.perf:
                out.append(f"{where}: the performance log has no result: the test did not finish")
            lg_valid = (res.get("loadgen") or {}).get("valid")
            if isinstance(lg_valid, bool) and lg_valid != (r.perf.get("result_validity") == "VALID"):
                out.append(f"{where}: result.json says LoadGen's result was {'VALID' if lg_valid else 'INVALID'} but "
                           f"the performance log says {r.perf.get('result_validity')}")
        if r.acc and r.acc.get("effective_test_mode") not in (None, "AccuracyOnly"):
            out.append(f"{where}: its accuracy log is a {r.acc.get('effective_test_mode')} run")
        if res.get("status") != "success":
            out.append(f"{where}: the run did not finish ({str(res.get('status'))[:40]}: "
                       f"{str(res.get('abort_reason'))[:200]})")
        if cfg.get("backend") == "null" or cfg.get("weights") == "random":
            out.append(f"{where}: no real model ran (null backend or random weights)")
        if division == "closed" and res.get("size") != "reference":
            out.append(f"{where}: size '{res.get('size')}' is not the MLPerf definition (open division): it cannot "
                       "be packaged as closed; use --division open")
        out += _accuracy_disagreement(r) + _compliance_disagreement(r)
        key = (r.folder, r.scenario)
        if key in seen:
            out.append(f"{where}: a second run of {key[0]} {key[1]} (the first is {seen[key]}); give one per "
                       "benchmark and scenario")
        seen.setdefault(key, r.run_dir)
    prints = {str(r.system.get("system_fingerprint"))[:40] for r in runs}
    if len(prints) > 1:
        out.append("the runs were made on different systems (fingerprints " + ", ".join(sorted(prints))
                   + "); one systems JSON describes one system")
    return out


def _accuracy_disagreement(r: InferRun) -> list[str]:
    where = str(r.run_dir)
    claimed = r.result.get("accuracy") or {}
    if r.scores is None:
        return [f"{where}: the accuracy could not be scored again from its log: {r.score_error}"] if r.acc else []
    out = []
    v, got = claimed.get("value"), r.scores["value"]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isclose(v, got, rel_tol=1e-6,
                                                                                  abs_tol=1e-15):
        out.append(f"{where}: result.json says {r.scores['metric']} {v!r} but its accuracy log scores {got:.6g}")
    if isinstance(claimed.get("reached"), bool) and claimed["reached"] != r.scores["reached"]:
        out.append(f"{where}: result.json says the accuracy target was {'' if claimed['reached'] else 'not '}"
                   f"reached, but the log's {r.scores['metric']} {got:.6g} against {r.scores['target']} says otherwise")
    return out


def compliance_verdicts(r: InferRun) -> dict[str, dict[str, str]]:
    """TEST01/TEST04 verify files (name -> text) judged from the run's logs by the official rules."""
    acc_ref = r.log("accuracy", "mlperf_log_accuracy.json")
    if not acc_ref.is_file():
        acc_ref = r.log("compliance", "accuracy_reference", "mlperf_log_accuracy.json")
    out: dict[str, dict[str, str]] = {}
    for test in ("TEST01", "TEST04"):
        src = r.log("compliance", test)
        if not (src / "mlperf_log_detail.txt").is_file():
            continue
        if test == "TEST01":
            out[test] = {
                "verify_performance.txt": verdicts.test01_performance(
                    r.log("performance", "mlperf_log_detail.txt"), src / "mlperf_log_detail.txt",
                    (f"{r.scenario}/performance/run_1/mlperf_log_detail.txt",
                     f"{r.scenario}/{test}/performance/run_1/mlperf_log_detail.txt")),
                "verify_accuracy.txt": verdicts.test01_accuracy(acc_ref, src / "mlperf_log_accuracy.json")}
        else:
            out[test] = {"verify_performance.txt": verdicts.test04_performance(
                r.log("performance", "mlperf_log_summary.txt"), src / "mlperf_log_summary.txt")}
    return out


def _compliance_disagreement(r: InferRun) -> list[str]:
    out = []
    claimed = r.result.get("compliance") or {}
    for test, files in compliance_verdicts(r).items():
        said = claimed.get(test).get("passed") if isinstance(claimed.get(test), dict) else None
        derived = all(verdicts.passed(t) for t in files.values())
        if isinstance(said, bool) and said != derived:
            last = next((t.strip().splitlines()[-1] for t in files.values() if not verdicts.passed(t)), "TEST PASS")
            out.append(f"{r.run_dir}: result.json says {test} {'passed' if said else 'failed'}, but its logs judged by "
                       f"MLPerf's rules say {last!r}")
    return out


# ---------------------------------------------------------------------------------------------- writing
def _truncate(src: Path, dest: Path) -> str:
    """Copy the accuracy log, cut to the head and tail when larger than the checker allows; its sha256."""
    data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_ACCURACY_LOG:
        data = data[:KEEP] + b"\n\n...\n\n" + data[-KEEP:]
    dest.write_bytes(data)
    return digest


def accuracy_text(s: dict[str, Any], digest: str) -> str:
    """accuracy.txt: the score in the line format the checker's pattern for the benchmark reads, then the hash of
    the whole accuracy log (``hash=``, as MLPerf's truncation script writes it)."""
    metric, value, scores = s["metric"], s["value"], s.get("scores") or {}
    n = scores.get("samples")
    if metric == "top1":
        line = f"accuracy={100 * value:.3f}%" + (f", good={round(value * n)}, total={n}" if n else "")
    elif metric == "f1":
        line = json.dumps({"exact_match": scores.get("exact_match", 0.0), "f1": value})
    elif metric in ("mAP", "segm_mAP"):
        line = f"mAP={100 * value:.3f}%" + (f" (mask; box mAP={100 * scores['bbox_mAP']:.3f}%)"
                                            if "bbox_mAP" in scores else "")
    elif metric == "auc":
        line = f"AUC={100 * value:.3f}%"
    elif metric == "rouge1":  # the reference evaluation's printed dict (ROUGE-1/2/L/Lsum, gen_len, gen_num)
        from mlbench.llm import rouge

        line = rouge.checker_text(scores).strip()
    elif metric == "wer":
        line = f"Word Error Rate: {100 * value:.3f}%, accuracy={100 * (1 - value):.3f}%"
    else:
        line = f"{metric}={value}"
    target = s.get("target")
    return (f"{line}\n# mlbench: {metric} {value:.6g} against the target {target} "
            f"({'reached' if s.get('reached') else 'NOT reached'}), scored from the whole accuracy log\n"
            f"hash={digest}\n")


def _user_conf(r: InferRun) -> str:
    if (r.run_dir / "user.conf").is_file():
        return (r.run_dir / "user.conf").read_text(errors="replace")
    s = (r.result.get("loadgen") or {}).get("settings") or {}
    from mlbench import registry

    scen = r.scenario
    definition = registry.sizes(r.result["benchmark"])[r.result["size"]]
    model = definition.loadgen_scenario_models.get(scen) or definition.loadgen_model_name or r.folder
    lines = ["# Generated by mlbench: the run gave no --user-conf; these are the settings it set beyond mlperf.conf."]
    want = {"Offline": "offline", "Server": "server", "Interactive": "server", "SingleStream": "single_stream",
            "MultiStream": "multi_stream"}[scen]
    scen = "Server" if scen == "Interactive" else scen  # LoadGen runs Interactive as Server
    for key, conf in (("offline_expected_qps", "target_qps"), ("server_target_qps", "target_qps"),
                      ("single_stream_expected_latency_ns", "target_latency"),
                      ("multi_stream_expected_latency_ns", "target_latency")):
        v = s.get(key) if isinstance(s, dict) else None
        if key.startswith(want + "_") and isinstance(v, (int, float)):
            lines.append(f"{model}.{scen}.{conf} = {v / 1e6 if conf == 'target_latency' else v:g}")
    ms = r.perf.get("effective_min_duration_ms")
    if isinstance(ms, (int, float)):
        lines.append(f"{model}.{scen}.min_duration = {ms:g}")
    return "\n".join(lines) + "\n"


def _copy(src_dir: Path, dest: Path, names: tuple[str, ...]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        if (src_dir / n).is_file() and not (src_dir / n).is_symlink():
            shutil.copyfile(src_dir / n, dest / n)


def _how(r: InferRun) -> str:
    return (f"# {r.folder} {r.scenario}\n\nMade with mlbench {r.system.get('mlbench_version')} "
            f"(commit {r.system.get('mlbench_commit') or 'unknown'}):\n\n```bash\n{commands([r.result])[0]}\n```\n")


def write_run(r: InferRun, org: Path, system_name: str, rnd: rounds.Round) -> None:
    """One run's files in the round's layout; every path proven to stay under ``org``."""
    res = inside(org, "results", system_name, r.folder, r.scenario)
    if rnd.layout == "v6":
        meas, comp = res, res
        meas_name = "measurements.json"
    else:
        meas = inside(org, "measurements", system_name, r.folder, r.scenario)
        comp = inside(org, "compliance", system_name, r.folder, r.scenario)
        meas_name = f"{system_name}_mlbench_{r.scenario}.json"
    _copy(r.log("performance"), res / "performance" / "run_1", PERF_FILES)
    acc_dir = res / "accuracy"
    _copy(r.log("accuracy"), acc_dir, PERF_FILES)
    if r.log("accuracy", "mlperf_log_accuracy.json").is_file():
        digest = _truncate(r.log("accuracy", "mlperf_log_accuracy.json"), acc_dir / "mlperf_log_accuracy.json")
        if r.scores is not None:
            (acc_dir / "accuracy.txt").write_text(accuracy_text(r.scores, digest))
    _write_compliance(r, comp)
    prec = str(r.config.get("precision", "fp32"))
    measurements = {
        "input_data_types": "fp32" if prec != "int8" else "int8",
        "retraining": "no",
        "starting_weights_filename": str(r.config.get("weights") or f"mlbench {r.result.get('size')} checkpoint "
                                         f"(mlbench train {r.result.get('benchmark')} --size {r.result.get('size')})"),
        "weight_data_types": prec,
        "weight_transformations": "int8 static quantization (onnxruntime QDQ, per-channel)" if prec == "int8"
        else "none",
    }
    meas.mkdir(parents=True, exist_ok=True)
    (meas / meas_name).write_text(json.dumps(measurements, indent=2, sort_keys=True) + "\n")
    (meas / "user.conf").write_text(_user_conf(r))
    (meas / "README.md").write_text(_how(r))
    code = inside(org, rnd.code_dir, r.folder)
    code.mkdir(parents=True, exist_ok=True)
    (code / "README.md").write_text(_how(r).replace(f" {r.scenario}\n", "\n", 1)
                                    + "\nThe code is mlbench at the commit above: check out that commit of the "
                                      "mlbench repository and `pip install -e .`.\n")


def _write_compliance(r: InferRun, comp: Path) -> None:
    """TEST01/TEST04 as MLPerf's run_verification scripts lay them out, verdicts derived here from the logs."""
    for test, files in compliance_verdicts(r).items():
        src, tdir = r.log("compliance", test), comp / test
        _copy(src, tdir / "performance" / "run_1", PERF_FILES)
        for name, text in files.items():
            (tdir / name).write_text(text)
        if test == "TEST01" and (src / "mlperf_log_accuracy.json").is_file():
            (tdir / "accuracy").mkdir(exist_ok=True)
            digest = _truncate(src / "mlperf_log_accuracy.json", tdir / "accuracy" / "mlperf_log_accuracy.json")
            (tdir / "accuracy" / "accuracy.txt").write_text(f"hash={digest}\n")


# ---------------------------------------------------------------------------------------------- packaging
def package(run_dirs: list[Path], *, submitter: str, system_name: str, out: Path, division: str | None = None,
            system_json: Path | None = None, force: bool = False, inference_repo: str | None = None,
            round_: str | None = None, run_checkers: bool = True) -> Package:
    check_name(submitter, "submitter")
    check_name(system_name, "system")
    if division is not None and division not in ("closed", "open"):
        raise ConfigError(f"invalid value for 'division': {division!r}", "closed or open")
    user = system.read_user_fields(system_json)
    target = Output(out, "inference", submitter, system_name)
    target.claim()
    runs, problems = collect(run_dirs)
    if not runs:
        nothing_to_package(problems, "give the run directories that `mlbench infer --mode submission` printed")
    rnd = choose_round(runs, round_)
    for r in runs:
        rescore(r)
    division = division or ("closed" if all(r.result.get("size") == "reference" for r in runs) else "open")
    reasons = problems + refusals(runs, division)
    refuse_unless_forced(reasons, force, "the checks")
    desc = system.describe(runs[0].system, user, submitter=submitter, system_name=system_name, division=division,
                           usage="inference")
    bad = system.problems(desc, "inference")
    if bad:
        tmpl = target.write_template(system.template(desc, "inference"))
        raise ConfigError("the system description is incomplete: " + "; ".join(bad),
                          f"fill in {tmpl} (status: {', '.join(system.INFERENCE_STATUS)}; system_type: "
                          f"{', '.join(system.SYSTEM_TYPES[:3])}; system_type_detail: e.g. workstation; "
                          "host_network_card_count: a number) and pass it with --system-json FILE")
    def fill(stage: Path) -> None:
        org = inside(stage, division, submitter)
        inside(org, "systems").mkdir(parents=True)
        inside(org, "systems", f"{system_name}.json").write_bytes(system.dumps(desc))
        for r in runs:
            write_run(r, org, system_name, rnd)

    target.build(fill, reasons if force else [])
    root = Path(out) / division / submitter
    pkg = Package(root=root, round=rnd.name, forced=reasons if force else [], checked=run_checkers)
    if run_checkers:
        pkg.checks = check_tree(root, system_name, rnd, division)
        if inference_repo:
            from mlbench.submission import official

            pkg.checks += official.run(Path(inference_repo), Path(out), submitter, rnd.name, Path(out) / "checks",
                                       pkg.checks)
    target.finish()
    return pkg

