"""``mlbench package training``: mlbench training runs into the MLPerf Training submission layout.

::

    <out>/<org>/systems/<system>.json
    <out>/<org>/benchmarks/<bench>/implementations/mlbench/{README.md,run.sh}
    <out>/<org>/results/<system>/<bench>/result_<i>.txt      (the runs' MLLOG files, unchanged)
    <out>/checks/                                             (the official checkers' logs and summary)

``<bench>`` is MLPerf's name for the benchmark (``resnet``, ...): the registry definition's ``mlperf_name``, which
the ``submission_benchmark`` of every log must equal. What can never be a valid submission is refused before
anything is written, each reason with its run. Verdicts come from the MLPerf logs, not from result.json: a run's
status, time to train and convergence are read from its log's ``run_start``, ``eval_accuracy`` and ``run_stop``,
and where result.json says otherwise that is a reason of its own; compliance, seeds, RCPs and the score are
the official checkers' (package_checker, result_summarizer).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from mlbench.errors import ConfigError, MlbenchError
from mlbench.finite import finite_number
from mlbench.submission import checks, system
from mlbench.submission.output import Output
from mlbench.submission.untrusted import (
    BadInput,
    check_name,
    check_shape,
    inside,
    mllog_events,
    read_object,
    read_results,
)
from mlbench.training.scoring import olympic_score

# Config keys that say where or how often a run was made, not what was run: they may differ between the
# commands whose runs make one submission.
BOOKKEEPING = {"output_dir", "run_dir", "runs", "seed", "resume", "log_every", "dist_timeout_s", "checkpoint",
               "rdzv_endpoint", "rdzv_id", "node_rank", "workers"}
RESULT_SHAPE = {"kind": str, "benchmark": str, "size": str, "division": str, "ruleset": str, "status": str,
                "runs": list, "config": dict, "command": str, "system": dict}
RECORD_SHAPE = {"status": str, "metrics": dict, "compliance": dict, "resumed_from": str}
SAFE_COMMAND = re.compile(r"mlbench [A-Za-z0-9_./=:,+@%-][A-Za-z0-9_./=:,+@% -]*")


class Refused(MlbenchError):
    """Runs that can never be a valid submission (exit code 1); the message lists each reason."""


@dataclass
class Run:
    run_dir: Path
    index: int  # K of run_K
    record: dict[str, Any]  # run_K/result.json (or the entry in result.json runs)
    result: dict[str, Any]  # the command's result.json
    system: dict[str, Any]
    config: dict[str, Any]
    mlperf_name: str = ""  # the registry definition's: the results folder
    facts: LogFacts | None = None  # what the MLPerf log itself says

    @property
    def name(self) -> str:
        return f"{self.run_dir}/run_{self.index}"

    @property
    def log(self) -> Path:
        return self.run_dir / f"run_{self.index}" / "mlperf_log.txt"


@dataclass
class Package:
    """What was written and what the checkers said."""
    out: Path
    org_dir: Path
    system_file: Path
    result_files: dict[str, list[Path]]
    checks: list[checks.Check] = field(default_factory=list)
    summarizer_score: float | None = None
    mlbench_score: float | None = None  # olympic_score over result.json's times (mlbench's clock)
    mlbench_log_score: float | None = None  # olympic_score over the logs' run_start..run_stop
    warnings: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)  # refusals overridden by --force
    checked: bool = True  # False with --no-check: nothing was checked

    @property
    def passed(self) -> bool:
        return self.checked and all(c.status != checks.FAIL for c in self.checks) and not self.forced


def nothing_to_package(problems: list[str], hint: str) -> NoReturn:
    raise Refused("nothing to package:\n" + _listed(problems), hint)


def refuse_unless_forced(reasons: list[str], force: bool, checkers: str) -> None:
    """Refused, naming every reason, unless ``force`` (``checkers``: what judges a forced package)."""
    if reasons and not force:
        raise Refused(f"these runs cannot make a valid MLPerf submission ({len(reasons)} reason(s)):\n"
                      + _listed(reasons),
                      f"fix each reason above (or add --force to write the package anyway and see what {checkers} "
                      "say; it is marked not for submission)")


def _listed(items: list[str]) -> str:
    return "\n".join(f"  - {p}" for p in items)


@dataclass
class LogFacts:
    """What one MLPerf training log says, read from its events alone."""

    start_ms: float | None = None
    stop_ms: float | None = None
    status: str | None = None  # run_stop's metadata status
    benchmark: Any = None  # submission_benchmark
    org: Any = None  # submission_org
    last_eval: Any = None  # the last eval_accuracy value
    cache_cleared: bool = False
    bad_lines: list[int] = field(default_factory=list)
    out_of_order: int = 0  # events timed before run_start or after run_stop between the two

    @property
    def minutes(self) -> float | None:
        if self.start_ms is None or self.stop_ms is None or self.status != "success":
            return None
        return (self.stop_ms - self.start_ms) / 60000


def read_log(log: Path) -> LogFacts:
    events, bad = mllog_events(log)
    f = LogFacts(bad_lines=bad)
    timed = []
    for ev in events:
        key, value, t = ev["key"], ev.get("value"), ev.get("time_ms")
        t = t if finite_number(t) else None
        if key == "run_start" and f.start_ms is None:
            f.start_ms = t
        elif key == "run_stop" and f.stop_ms is None:
            f.stop_ms = t
            f.status = ev.get("metadata", {}).get("status")
        elif key == "submission_benchmark" and f.benchmark is None:
            f.benchmark = value
        elif key == "submission_org" and f.org is None:
            f.org = value
        elif key == "eval_accuracy":
            f.last_eval = value
        elif key == "cache_clear":
            f.cache_cleared = f.cache_cleared or value is True
        if f.start_ms is not None and f.stop_ms is None and key != "run_start":
            timed.append(t)
    if f.start_ms is not None:
        stop = f.stop_ms if f.stop_ms is not None else float("inf")
        f.out_of_order = sum(1 for t in timed if t is None or not f.start_ms <= t <= stop)
        if f.stop_ms is not None and f.stop_ms < f.start_ms:
            f.out_of_order += 1
    return f


def collect(run_dirs: list[Path]) -> tuple[list[Run], list[str]]:
    """Every finished run in ``run_dirs`` (in the order given, then run_1, run_2, ...); problems with dirs.
    Each result.json is checked for its shape and its names against the registry before anything is used."""
    from mlbench import registry

    found: list[Run] = []
    problems: list[str] = []
    results, problems = read_results(run_dirs, "train", RESULT_SHAPE)
    for d, result in results:
        bench, size = result.get("benchmark"), result.get("size")
        if bench not in registry.names(hidden=True) or size not in registry.sizes(bench):
            problems.append(f"{d}: result.json names benchmark {str(bench)[:60]!r} size {str(size)[:20]!r}, which "
                            f"mlbench does not know (known: {', '.join(registry.names())})")
            continue
        mlperf_name = registry.sizes(bench)[size].mlperf_name
        try:
            sysdesc = read_object(d / "system.json", "the run's system") if (d / "system.json").exists() else {}
            config = read_object(d / "config.json", "the run's config") if (d / "config.json").exists() else \
                result.get("config") or {}
        except BadInput as exc:
            problems.append(exc.message)
            continue
        records = result.get("runs") or []
        if not records:
            problems.append(f"{d}: holds no finished run")
        for i, rec in enumerate(records):
            k = rec.get("run") if isinstance(rec, dict) else None
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 10_000:
                problems.append(f"{d}/result.json: runs[{i}] has no run number (a whole number from 1)")
                continue
            own = d / f"run_{k}" / "result.json"
            try:
                rec = read_object(own, "the run's record", RECORD_SHAPE) if own.exists() else rec
                check_shape(rec, RECORD_SHAPE, f"{d}/result.json runs[{i}]")
            except BadInput as exc:
                problems.append(exc.message)
                continue
            run = Run(d, k, rec, result, sysdesc, config, mlperf_name=mlperf_name)
            if run.log.is_file():
                run.facts = read_log(run.log)
            found.append(run)
    return found, problems


def refusals(runs: list[Run], division: str, counts: dict[str, int]) -> list[str]:
    """Why these runs can never make a valid submission, one reason per line, each naming its run."""
    out: list[str] = []
    for r in runs:
        rec = r.record
        if not r.log.is_file():
            out.append(f"{r.name}: its MLPerf log {r.log.name} is missing")
            continue
        if rec.get("resumed_from"):
            out.append(f"{r.name}: resumed from the checkpoint {rec['resumed_from']}: its time to train does not "
                       "count the time before the interruption, so it is not an MLPerf time to train")
        comp = rec.get("compliance") or {}
        if not comp.get("passed"):
            first = next((ln for ln in str(comp.get("output", "no check recorded")).splitlines()
                          if "CHECK for" in ln or "did not" in ln or "no compliance" in ln), "")
            out.append(f"{r.name}: its MLPerf log failed the official compliance checker"
                       + (f" ({first.strip()})" if first else "") + "; rerun it")
        out += _log_disagreements(r)
        if division == "closed" and r.result.get("division") != "closed":
            why = (f"size '{r.result.get('size')}' is not the MLPerf definition" if r.result.get("size") != "reference"
                   else "its settings (e.g. --lr) leave the closed rules")
            out.append(f"{r.name}: an open-division run ({why}) cannot be packaged as closed; use --division open")
        if division == "closed" and not (r.facts and r.facts.cache_cleared):
            out.append(f"{r.name}: the page cache was not dropped before the run (closed MLPerf runs start with the "
                       "data on storage); run as root or with /proc/sys/vm/drop_caches writable")
    by_bench: dict[str, list[Run]] = {}
    for r in runs:
        by_bench.setdefault(r.result.get("benchmark", "?"), []).append(r)
    rulesets = sorted({r.result.get("ruleset") for r in runs})
    if len(rulesets) > 1:
        out.append("the runs follow different MLPerf rulesets (" + ", ".join(map(str, rulesets)) + "); a submission "
                   "is for one round: package each ruleset separately")
    for bench, group in by_bench.items():
        need = counts.get(bench)
        failed = [r.name for r in group if not (r.facts and r.facts.minutes is not None)]
        if len(failed) > 1:
            out.append(f"{bench}: {len(failed)} runs did not reach the target ({', '.join(failed)}); MLPerf's olympic "
                       "scoring allows at most one")
        if need is not None and len(group) < need:
            out.append(f"{bench}: {len(group)} run(s) given; MLPerf's rules ask for exactly {need}: make "
                       f"{need - len(group)} more (mlbench train {bench} --runs {need})")
        elif need is not None and len(group) > need:
            out.append(f"{bench}: {len(group)} runs given; MLPerf's rules ask for exactly {need} and forbid choosing "
                       "the best: give the run directories whose runs you submit, all of them")
        prints = {}
        for r in group:
            prints.setdefault(r.system.get("system_fingerprint") or r.result.get("system", {}).get("fingerprint"),
                              []).append(r.name)
        if len(prints) > 1:
            out.append(f"{bench}: the runs were made on different systems ("
                       + "; ".join(f"{fp}: {', '.join(names)}" for fp, names in prints.items())
                       + "); one result directory describes one system")
        configs = {}
        for r in group:
            key = json.dumps({k: v for k, v in r.config.items() if k not in BOOKKEEPING}, sort_keys=True)
            configs.setdefault(key, []).append(r.name)
        if len(configs) > 1:
            first = json.loads(next(iter(configs)))
            diffs = set()
            for key in configs:
                other = json.loads(key)
                diffs |= {k for k in set(first) | set(other) if first.get(k) != other.get(k)}
            out.append(f"{bench}: the runs were made with different configurations (they differ in "
                       f"{', '.join(sorted(diffs))}); all runs of a result use one configuration")
    return out


def _log_disagreements(r: Run) -> list[str]:
    """What the run's MLPerf log says that result.json does not, or that makes the log untrustworthy."""
    from mlbench import registry

    f, rec, out = r.facts, r.record, []
    if f is None:
        return out
    if f.bad_lines:
        out.append(f"{r.log}: line(s) {', '.join(map(str, f.bad_lines[:5]))} are not valid MLLOG events (the log "
                   "was altered or cut)")
    if f.start_ms is None or f.stop_ms is None or f.status not in ("success", "aborted"):
        out.append(f"{r.name}: its MLPerf log has no complete run_start .. run_stop with a status: the run did not "
                   "finish")
        return out
    if f.out_of_order:
        out.append(f"{r.log}: {f.out_of_order} event(s) timed outside run_start .. run_stop, or run_stop before "
                   "run_start: the log's clock does not run forward (an altered log)")
    if rec.get("status") != f.status:
        out.append(f"{r.name}: result.json says {str(rec.get('status'))[:40]!r} but its MLPerf log's run_stop says "
                   f"{f.status!r}")
    if f.benchmark != r.mlperf_name:
        out.append(f"{r.log}: logs submission_benchmark {str(f.benchmark)[:60]!r} but result.json's benchmark "
                   f"{r.result.get('benchmark')} is MLPerf's {r.mlperf_name!r}")
    claimed = (rec.get("metrics") or {}).get("time_to_train/minutes")
    if f.minutes is not None and isinstance(claimed, (int, float)) and abs(claimed - f.minutes) * 60 > 1.0:
        out.append(f"{r.name}: result.json says a time to train of {claimed:.4f} min but its MLPerf log's run_start .. "
                   f"run_stop is {f.minutes:.4f} min")
    definition = registry.sizes(r.result["benchmark"])[r.result["size"]]
    value = f.last_eval
    if f.status == "success" and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = math.isfinite(value) and (value >= definition.target if definition.higher_is_better
                                       else value <= definition.target)
        if not ok:
            out.append(f"{r.name}: its MLPerf log's run_stop says success but its last eval_accuracy {value:.6g} does "
                       f"not reach the target {definition.target}")
    elif f.status == "success" and value is None:
        out.append(f"{r.name}: its MLPerf log's run_stop says success but it logs no eval_accuracy")
    return out


def _log_minutes(log: Path) -> float | None:
    return read_log(log).minutes if Path(log).is_file() else None


def commands(results: list[dict[str, Any]]) -> list[str]:
    """The recorded commands that are plain mlbench command lines (run.sh runs them: anything else a result.json
    says is left out, named as such)."""
    out = set()
    for res in results:
        cmd = res.get("command")
        out.add(cmd if isinstance(cmd, str) and SAFE_COMMAND.fullmatch(cmd) else
                "# (a recorded command that is not a plain mlbench command line was left out)")
    return sorted(out)


def _implementation_readme(runs: list[Run], bench: str, system_name: str) -> str:
    r0 = runs[0]
    commands_ = commands([r.result for r in runs])
    commits = sorted({f"{r.system.get('mlbench_version', '?')} (commit {r.system.get('mlbench_commit') or 'unknown'})"
                      for r in runs})
    lines = [
        f"# {bench}: mlbench",
        "",
        f"These results were made with mlbench {', '.join(commits)}: `mlbench train {r0.result.get('benchmark')} "
        f"--size {r0.result.get('size')}`, {r0.result.get('division')} division, MLPerf Training ruleset "
        f"{r0.result.get('ruleset')}, on the system `{system_name}` (see ../../../../systems/{system_name}.json).",
        "",
        "## How the runs were made",
        "",
        "The exact command(s), as recorded in each run directory's result.json:",
        "",
        "```bash",
        *commands_,
        "```",
        "",
        "`run.sh` beside this file repeats them. Each run logs its own seed; the time to train is the wall clock",
        "from `run_start` to `run_stop` in its MLPerf log (result_<i>.txt), evaluation included.",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps({k: v for k, v in r0.config.items() if k not in BOOKKEEPING}, indent=2, sort_keys=True),
        "```",
        "",
        "## Runs",
        "",
        "| result file | run directory | seed | status |",
        "|---|---|---|---|",
        *[f"| result_{i}.txt | {r.run_dir.name}/run_{r.index} | {r.record.get('seed')} | {r.record.get('status')} |"
          for i, r in enumerate(runs)],
        "",
        "The code is mlbench at the commit above: check out that commit of the mlbench repository and",
        "`pip install -e .`; `mlbench list` shows the benchmark definition (model, data, hyper-parameters).",
        "",
    ]
    return "\n".join(lines)


def _run_sh(runs: list[Run]) -> str:
    return "#!/bin/sh\n# The commands that made these results (from each run directory's result.json).\nset -e\n" + \
        "".join(f"{c}\n" for c in commands([r.result for r in runs]))


def package(run_dirs: list[Path], *, submitter: str, system_name: str, out: Path, division: str | None = None,
            system_json: Path | None = None, force: bool = False, run_checkers: bool = True,
            say=print) -> Package:
    """Write the package (refusing what cannot be valid unless ``force``) and run the official checkers on it."""
    from mlperf_logging.benchmark_meta import get_result_file_counts

    check_name(submitter, "submitter")
    check_name(system_name, "system")
    if division is not None and division not in ("closed", "open"):
        raise BadInput(f"invalid division {division!r}", "closed or open")
    user = system.read_user_fields(system_json)
    target = Output(out, "training", submitter, system_name)
    target.claim()
    runs, problems = collect(run_dirs)
    if not runs:
        nothing_to_package(problems, "give the run directories that `mlbench train` printed (runs/<id>/)")
    divisions = {r.result.get("division") for r in runs}
    division = division or ("closed" if divisions == {"closed"} else "open")
    counts = {r.result["benchmark"]: get_result_file_counts("training").get(r.mlperf_name) for r in runs}
    reasons = problems + refusals(runs, division, counts)
    refuse_unless_forced(reasons, force, "the official checkers")
    # The system description: recorded by the first run, completed by the user.
    desc = system.describe(runs[0].system, user, submitter=submitter, system_name=system_name, division=division)
    bad = system.problems(desc)
    if bad:
        tmpl = target.write_template({**system.template(desc),
                                      **({"status": "Available on-premise"} if "status" not in desc else {})})
        raise ConfigError("the system description is incomplete: " + "; ".join(bad),
                          f"fill in {tmpl} (status is one of: {', '.join(system.TRAINING_STATUS)}) and pass it "
                          "with --system-json FILE")
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.mlperf_name, []).append(r)
    counts_written: dict[str, int] = {}

    def fill(stage: Path) -> None:
        org_stage = inside(stage, submitter)
        inside(org_stage, "systems").mkdir(parents=True)
        inside(org_stage, "systems", f"{system_name}.json").write_bytes(system.dumps(desc))
        for bench, group in groups.items():
            res_dir = inside(org_stage, "results", system_name, bench)
            res_dir.mkdir(parents=True)
            for i, r in enumerate(group):
                shutil.copyfile(r.log, res_dir / f"result_{i}.txt")
            counts_written[bench] = len(group)
            impl = inside(org_stage, "benchmarks", bench, "implementations", "mlbench")
            impl.mkdir(parents=True)
            (impl / "README.md").write_text(_implementation_readme(group, bench, system_name))
            (impl / "run.sh").write_text(_run_sh(group))

    target.build(fill, reasons if force else [])
    org = Path(out) / submitter
    written = {b: [org / "results" / system_name / b / f"result_{i}.txt" for i in range(n)]
               for b, n in counts_written.items()}
    pkg = Package(out=Path(out), org_dir=org, system_file=org / "systems" / f"{system_name}.json",
                  result_files=written, forced=reasons if force else [])
    logged_orgs = {r.facts.org if r.facts else None for r in runs}
    if logged_orgs != {submitter}:
        pkg.warnings.append(f"the logs name submission_org {', '.join(sorted(map(str, logged_orgs)))}, not "
                            f"{submitter}: train with --submission-org {submitter} so that they agree")
    minutes = [r.record.get("metrics", {}).get("time_to_train/minutes") if r.record.get("status") == "success"
               else None for r in runs]
    minutes = [m if isinstance(m, (int, float)) and not isinstance(m, bool) else None for m in minutes]
    need = max((c for c in counts.values() if c), default=5)
    pkg.mlbench_score = olympic_score(minutes, need).minutes
    pkg.mlbench_log_score = olympic_score([r.facts.minutes if r.facts else None for r in runs], need).minutes
    if run_checkers:
        ruleset = runs[0].result.get("ruleset")
        check_dir = Path(out) / "checks"
        found, _ = checks.package_checker(org, ruleset, division, check_dir)
        pkg.checks.extend(found)
        if len(groups) == 1:
            summ, score, _ = checks.result_summarizer(org, ruleset, next(iter(groups)), check_dir)
            pkg.checks.append(summ)
            pkg.summarizer_score = score
            if score is not None and pkg.mlbench_log_score is not None:
                same = abs(score - pkg.mlbench_log_score) < 1e-9
                c = checks.Check("score agrees with mlbench",
                                 detail=f"summarizer {score:.6f} min, mlbench olympic score {pkg.mlbench_log_score:.6f} "
                                        "min over the same logs")
                if not same:
                    c.fail("the official score and mlbench's differ: report this as an mlbench bug")
                pkg.checks.append(c)
    else:
        pkg.checked = False
    target.finish()
    return pkg
