"""mlbench's checks of a written MLPerf Inference package, against the rules of one round (``rounds.py``).

They read the tree alone, as the official submission checker does, and tag each finding with the kind of problem
and the benchmark/scenario it concerns (``Check.tags``), the tags ``official.py`` gives the checker's own lines,
so that ``agreement`` can tell when the checker reports something these checks did not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlbench.inference import verdicts
from mlbench.submission import checks, rounds, system
from mlbench.submission.untrusted import BadInput, read_object

MAX_ACCURACY_LOG = 10 * 1024  # the checker's MAX_ACCURACY_LOG_SIZE
MIN_DURATION_MS = 600_000
PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACC_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json", "accuracy.txt")
MEASUREMENT_KEYS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                    "weight_transformations")


def seeds_of(d: dict[str, Any]) -> tuple[int, int, int] | None:
    """LoadGen's three RNG seeds as a detail log records them."""
    s = tuple(d.get(k) for k in ("effective_qsl_rng_seed", "effective_sample_index_rng_seed",
                                 "effective_schedule_rng_seed"))
    return s if all(isinstance(x, int) for x in s) else None  # type: ignore[return-value]


def _tag(c: checks.Check, finding: str, kind: str, scope: str) -> None:
    c.fail(finding)
    c.tags.setdefault(finding, set()).add((kind, scope))


def _meas_json(meas_dir: Path, system_name: str, scenario: str, rnd: rounds.Round) -> Path | None:
    if rnd.layout == "v6":
        return meas_dir / "measurements.json"
    if not meas_dir.is_dir():
        return None
    files = sorted(p.name for p in meas_dir.iterdir() if p.is_file())
    pick = next((f for f in files if f.startswith(system_name) and f.endswith(f"_{scenario}.json")), None) or \
        next((f for f in files if f.startswith(system_name) and f.endswith(".json")), None)
    return meas_dir / pick if pick else None


def check_tree(org: Path, system_name: str, rnd: rounds.Round, division: str) -> list[checks.Check]:
    """The written tree against what the round's official submission checker requires, read from the tree alone."""
    base = org.parent.parent
    sysc = checks.Check("system description", detail=f"systems/{system_name}.json: the fields the {rnd.name} "
                                                      "checker requires")
    files = checks.Check("files", detail=f"every file the {rnd.name} checker reads ({rnd.code_dir}/, measurements, "
                                         "logs)")
    rnd_c = checks.Check("round", detail=f"MLPerf Inference {rnd.name}: its benchmarks, LoadGen seeds and "
                                         "required scenarios")
    valid = checks.Check("LoadGen VALID", detail="performance run: LoadGen's verdict in its detail log")
    dur = checks.Check("duration and samples", detail="600 s minimum duration, performance sample count, early "
                                                      "stopping, latency bound")
    acc = checks.Check("accuracy", detail="accuracy.txt against the round's target and pattern, the whole dataset "
                                          "covered, the log within 10 KiB")
    comp = checks.Check("compliance", detail="TEST01 and TEST04 where the round asks for them, passed")
    sys_path = org / "systems" / f"{system_name}.json"
    desc: dict[str, Any] = {}
    try:
        desc = read_object(sys_path, "systems JSON")
    except BadInput as exc:
        _tag(sysc, exc.message, "system", "system")
    for p in system.problems(desc, "inference") if desc else []:
        _tag(sysc, f"{org.name}/systems/{system_name}.json: {p}", "system", "system")
    if desc and str(desc.get("submitter", "")).lower() != org.name.lower():
        _tag(sysc, f"systems/{system_name}.json names submitter {desc.get('submitter')!r}, the folder {org.name}",
             "system", "system")
    if desc and str(desc.get("division", "")).lower() != division:
        _tag(sysc, f"systems/{system_name}.json names division {desc.get('division')!r}, the folder {division}",
             "system", "system")
    if not (org / rnd.code_dir).is_dir():
        _tag(files, f"{org.name}/{rnd.code_dir}: missing (the {rnd.name} checker wants the code there)", "files",
             "src")
    results = org / "results" / system_name
    stype = str(desc.get("system_type", ""))
    for bench_dir in sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []:
        folder = bench_dir.name
        rules = rnd.benchmarks.get(folder)
        scenarios = sorted(p.name for p in bench_dir.iterdir() if p.is_dir())
        if rules is None:
            have = rounds.rounds_with(folder)
            _tag(rnd_c, f"{folder}: not a benchmark of MLPerf Inference {rnd.name}"
                        + (f" (rounds that have it: {', '.join(have)})" if have else " (nor of any round since v5.0)")
                        + "; the official checker cannot check it", "unknown-benchmark", f"{folder}/*")
        elif division == "closed":
            need = rules.required.get(stype)
            if need is None:
                msg = f"{folder}: not part of the {stype or '?'} suite in {rnd.name}; the official checker cannot check it"
                _tag(rnd_c, msg, "scenarios", f"{folder}/*")
                rnd_c.tags[msg].add(("not-in-suite", f"{folder}/*"))  # the checker crashes on it (closed division)
            else:
                if set(need) - set(scenarios):
                    _tag(rnd_c, f"{folder}: a closed {stype} submission needs the scenarios {', '.join(need)}; "
                                f"missing {', '.join(sorted(set(need) - set(scenarios)))}", "scenarios", f"{folder}/*")
                if set(scenarios) - set(need):
                    _tag(rnd_c, f"{folder}: {', '.join(sorted(set(scenarios) - set(need)))} is not a scenario of the "
                                f"{stype} suite in {rnd.name}", "scenarios", f"{folder}/*")
        for scen in scenarios:
            scope = f"{folder}/{scen}"
            _check_scenario(org, base, system_name, folder, scen, rules, rnd, division, scope,
                            files, rnd_c, valid, dur, acc, comp)
    return [sysc, files, rnd_c, valid, dur, acc, comp]


def _check_scenario(org, base, system_name, folder, scen, rules, rnd, division, scope, files, rnd_c, valid, dur,
                    acc, comp) -> None:
    res = org / "results" / system_name / folder / scen
    rel = res.relative_to(base)
    if rnd.layout == "v6":
        meas_dir, comp_dir = res, res
    else:
        meas_dir = org / "measurements" / system_name / folder / scen
        comp_dir = org / "compliance" / system_name / folder / scen
    for p in [res / "performance" / "run_1" / n for n in PERF_FILES] + [res / "accuracy" / n for n in ACC_FILES]:
        if not p.is_file():
            _tag(files, f"{p.relative_to(base)}: missing", "files", scope)
    meas = _meas_json(meas_dir, system_name, scen, rnd)
    if meas is None or not meas.is_file():
        _tag(files, f"{(meas or meas_dir).relative_to(base)}: the measurements JSON is missing", "files", scope)
    else:
        try:
            m = read_object(meas, "measurements")
            gaps = [k for k in MEASUREMENT_KEYS if not m.get(k)]
            if gaps:
                _tag(files, f"{meas.relative_to(base)}: missing or empty {', '.join(gaps)}", "measurements", scope)
        except BadInput as exc:
            _tag(files, exc.message, "files", scope)
    for n in ("user.conf", "README.md"):
        p = meas_dir / n
        if not p.is_file() or p.stat().st_size == 0:
            _tag(files, f"{p.relative_to(base)}: missing or empty", "files", scope)
    perf = verdicts.first_values(res / "performance" / "run_1" / "mlperf_log_detail.txt")
    if perf:
        _check_performance(perf, f"{rel}/performance/run_1", scen, rules, rnd, division, scope, rnd_c, dur)
        if perf.get("result_validity") != "VALID":
            valid.fail(f"{rel}/performance/run_1: LoadGen says {perf.get('result_validity', 'nothing')}")
    accd = verdicts.first_values(res / "accuracy" / "mlperf_log_detail.txt")
    if rules is not None and accd:
        n = accd.get("effective_accuracy_sample_count", accd.get("qsl_reported_total_count"))
        if n != rules.dataset_size:
            _tag(acc, f"{rel}/accuracy: the accuracy run covered {n} samples; {rnd.name} asks for the whole "
                      f"dataset of {rules.dataset_size}", "dataset-size", scope)
    if accd.get("_errors"):
        _tag(acc, f"{rel}/accuracy: LoadGen logged errors: {'; '.join(accd['_errors'][:3])}", "loadgen-errors", scope)
    txt = res / "accuracy" / "accuracy.txt"
    if txt.is_file() and rules is not None:
        _check_accuracy_txt(txt.read_text(errors="replace"), f"{rel}/accuracy/accuracy.txt", rules, division, scope,
                            acc)
    log = res / "accuracy" / "mlperf_log_accuracy.json"
    if log.is_file() and log.stat().st_size > MAX_ACCURACY_LOG:
        _tag(acc, f"{rel}/accuracy/mlperf_log_accuracy.json: {log.stat().st_size} bytes, over the 10 KiB limit",
             "accuracy-log-size", scope)
    tests = rules.tests if rules is not None else ("TEST01", "TEST04")
    for test in tests:
        _check_test(comp_dir / test, test, base, rules, rnd, division, scope, scen, comp)


def _check_performance(perf, where, scen, rules, rnd, division, scope, rnd_c, dur) -> None:
    seeds = seeds_of(perf)
    if seeds != rnd.seeds:
        made = rounds.round_of_seeds(seeds) if seeds else None
        _tag(rnd_c, f"{where}: LoadGen's RNG seeds are not {rnd.name}'s"
                    + (f" (they are {made.name}'s: the run was made with that round's LoadGen)" if made else ""),
             "seeds", scope)
    ms = perf.get("effective_min_duration_ms")
    if not isinstance(ms, (int, float)) or ms < MIN_DURATION_MS:
        _tag(dur, f"{where}: the test ran with a {ms / 1000 if isinstance(ms, (int, float)) else '?'} s minimum "
                  "duration; MLPerf requires 600 s", "min-duration", scope)
    if rules is not None:
        psc = perf.get("effective_performance_sample_count")
        if not isinstance(psc, int) or psc < rules.performance_sample_count:
            _tag(dur, f"{where}: {psc} performance samples; {rnd.name} asks for at least "
                      f"{rules.performance_sample_count}", "performance-sample-count", scope)
        spq = perf.get("effective_samples_per_query")
        if scen == "Offline" and division == "closed" and (not isinstance(spq, int)
                                                            or spq < rules.offline_min_samples_per_query):
            _tag(dur, f"{where}: {spq} samples in the Offline query; closed {rnd.name} asks for at least "
                      f"{rules.offline_min_samples_per_query}", "samples-per-query", scope)
        lat = perf.get("effective_target_latency_ns")
        if scen == "Server" and rules.server_latency_ns and isinstance(lat, (int, float)) \
                and lat > rules.server_latency_ns:
            _tag(dur, f"{where}: the Server latency bound was {lat / 1e6:g} ms; {rnd.name} allows "
                      f"{rules.server_latency_ns / 1e6:g} ms", "latency", scope)
    if scen in ("Server", "SingleStream", "MultiStream") and perf.get("early_stopping_met") is not True:
        _tag(dur, f"{where}: LoadGen's early stopping condition was not met", "early-stopping", scope)


def _check_accuracy_txt(text, where, rules, division, scope, acc) -> None:
    from mlbench.submission.official import ACCURACY_LINE

    kind, target = rules.accuracy
    rx = ACCURACY_LINE.get(kind)
    found = [float(m.group(1)) for ln in text.splitlines() if rx and (m := rx.match(ln))]
    if not found:
        _tag(acc, f"{where}: no line in the {kind} format the checker reads", "accuracy", scope)
    elif found[0] < target:
        _tag(acc, f"{where}: {kind} {found[0]:g} is below the round's target {target:g}"
                  + (" (the official checker warns; the open division accepts it)" if division == "open" else ""),
             "accuracy", scope)
    if not any(re.match(r"^hash=[\w\d]+$", ln) for ln in text.splitlines()):
        _tag(acc, f"{where}: no hash= line", "accuracy", scope)


def _check_test(tdir: Path, test: str, base: Path, rules, rnd, division, scope, scen, comp) -> None:
    rel = tdir.relative_to(base)
    if not tdir.is_dir():
        _tag(comp, f"{rel}: missing (run mlbench infer with --compliance)", "compliance", scope)
        return
    for name in (["verify_accuracy.txt"] if test == "TEST01" else []) + ["verify_performance.txt"]:
        p = tdir / name
        if not p.is_file():
            _tag(comp, f"{rel}/{name}: missing", "compliance", scope)
        elif not verdicts.passed(p.read_text(errors="replace")):
            last = p.read_text(errors="replace").strip().splitlines()[-1:] or ["empty"]
            _tag(comp, f"{rel}/{name}: {last[0]}", "compliance", scope)
    run1 = tdir / "performance" / "run_1"
    have = sorted(p.name for p in run1.iterdir() if p.is_file()) if run1.is_dir() else []
    if set(have) - {"mlperf_log_accuracy.json", "mlperf_log_trace.json"} != set(PERF_FILES):
        _tag(comp, f"{rel}/performance/run_1: holds {', '.join(have) or 'nothing'}; the checker wants the summary and "
                   "detail logs", "compliance", scope)
    perf = verdicts.first_values(run1 / "mlperf_log_detail.txt")
    if perf:  # the checker runs its performance checks on the test's log too
        inner = checks.Check("inner")
        _check_performance(perf, f"{rel}/performance/run_1", scen, rules, rnd, division, scope, inner, inner)
        for f in inner.findings:
            _tag(comp, f, "compliance", scope)
