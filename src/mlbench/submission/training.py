"""``mlbench package training``: mlbench training runs into the MLPerf Training submission layout.

::

    <out>/<org>/systems/<system>.json
    <out>/<org>/benchmarks/<bench>/implementations/mlbench/{README.md,run.sh}
    <out>/<org>/results/<system>/<bench>/result_<i>.txt      (the runs' MLLOG files, unchanged)
    <out>/checks/                                             (the official checkers' logs and summary)

``<bench>`` is MLPerf's name for the benchmark (the ``submission_benchmark`` the logs carry: ``resnet``, ...).
What can never be a valid submission is refused before anything is written, each reason with its run.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from mlbench.errors import ConfigError, MlbenchError
from mlbench.submission import checks, system
from mlbench.training.scoring import olympic_score

# Config keys that say where or how often a run was made, not what was run: they may differ between the
# commands whose runs make one submission.
BOOKKEEPING = {"output_dir", "run_dir", "runs", "seed", "resume", "log_every", "dist_timeout_s", "checkpoint",
               "rdzv_endpoint", "rdzv_id", "node_rank", "workers"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


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

    @property
    def passed(self) -> bool:
        return all(c.status != checks.FAIL for c in self.checks) and not self.forced


def nothing_to_package(problems: list[str], hint: str) -> NoReturn:
    raise Refused("nothing to package:\n" + _listed(problems), hint)


def refuse_unless_forced(reasons: list[str], force: bool, checkers: str) -> None:
    """Refused, naming every reason, unless ``force`` (``checkers``: what judges a forced package)."""
    if reasons and not force:
        raise Refused(f"these runs cannot make a valid MLPerf submission ({len(reasons)} reason(s)):\n"
                      + _listed(reasons),
                      f"fix each reason above (or add --force to write the package anyway and see what {checkers} "
                      "say; it is marked not for submission)")


def ask_for_system_fields(out: Path, bad: list[str], template: dict[str, Any], values: str) -> NoReturn:
    """ConfigError naming the missing system fields, with ``template`` written into ``out`` for the user to fill
    (``values``: what the fields may hold)."""
    out.mkdir(parents=True, exist_ok=True)
    tmpl = out / "system-fields-to-fill.json"
    tmpl.write_text(json.dumps(template, indent=2) + "\n")
    raise ConfigError("the system description is incomplete: " + "; ".join(bad),
                      f"fill in {tmpl} ({values}) and pass it with --system-json FILE")


def mark_forced(out: Path, forced: list[str]) -> None:
    """``out/NOT_FOR_SUBMISSION.txt`` listing the refusals that --force overrode; removed when there are none."""
    marker = out / "NOT_FOR_SUBMISSION.txt"
    if forced:
        marker.write_text("Written with --force despite these reasons; this package is not a valid submission:\n"
                          + "".join(f"- {p}\n" for p in forced))
    elif marker.exists():
        marker.unlink()


def _listed(items: list[str]) -> str:
    return "\n".join(f"  - {p}" for p in items)


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value or ""):
        raise ConfigError(f"invalid value for '{what}': {value!r}: it becomes a folder and a file name",
                          "use letters, digits and . _ + - (no spaces or slashes), e.g. MyOrg or 1xH100_pytorch")
    return value


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(run_dirs: list[Path]) -> tuple[list[Run], list[str]]:
    """Every finished run in ``run_dirs`` (in the order given, then run_1, run_2, ...); problems with dirs."""
    found: list[Run] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for d in run_dirs:
        d = Path(d)
        if d.resolve() in seen:
            continue
        seen.add(d.resolve())
        result = _read(d / "result.json")
        if not isinstance(result, dict):
            problems.append(f"{d}: no readable result.json: not an mlbench run directory")
            continue
        if result.get("kind") != "train":
            problems.append(f"{d}: a '{result.get('kind')}' run, not a training run (mlbench train)")
            continue
        sysdesc = _read(d / "system.json") or {}
        config = _read(d / "config.json") or result.get("config") or {}
        records = result.get("runs") or []
        if not records:
            problems.append(f"{d}: holds no finished run")
        for rec in records:
            k = rec.get("run")
            own = _read(d / f"run_{k}" / "result.json")
            found.append(Run(d, k, own if isinstance(own, dict) else rec, result, sysdesc, config))
    return found, problems


def _cache_dropped(log: Path) -> bool:
    for line in log.read_text(errors="replace").splitlines():
        if '"key": "cache_clear"' in line:
            return '"value": true' in line
    return False


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
        if rec.get("status") not in ("success", "aborted"):
            out.append(f"{r.name}: the run did not finish ({rec.get('status')}: {rec.get('reason')})")
        if division == "closed" and r.result.get("division") != "closed":
            why = (f"size '{r.result.get('size')}' is not the MLPerf definition" if r.result.get("size") != "reference"
                   else "its settings (e.g. --lr) leave the closed rules")
            out.append(f"{r.name}: an open-division run ({why}) cannot be packaged as closed; use --division open")
        if division == "closed" and not _cache_dropped(r.log):
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
        failed = [r.name for r in group if r.record.get("status") != "success"]
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


def _log_minutes(log: Path) -> float | None:
    start = stop = None
    status = None
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            ev = json.loads(line[len(":::MLLOG "):])
        except ValueError:
            continue
        if ev.get("key") == "run_start" and start is None:
            start = ev["time_ms"]
        elif ev.get("key") == "run_stop" and stop is None:
            stop, status = ev["time_ms"], (ev.get("metadata") or {}).get("status")
    if start is None or stop is None or status != "success":
        return None
    return (stop - start) / 60000


def _implementation_readme(runs: list[Run], bench: str, system_name: str) -> str:
    r0 = runs[0]
    commands = sorted({str(r.result.get("command", "")) for r in runs})
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
        *commands,
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
    commands = sorted({str(r.result.get("command", "")) for r in runs})
    return "#!/bin/sh\n# The commands that made these results (from each run directory's result.json).\nset -e\n" + \
        "".join(f"{c}\n" for c in commands)


def package(run_dirs: list[Path], *, submitter: str, system_name: str, out: Path, division: str | None = None,
            system_json: Path | None = None, force: bool = False, run_checkers: bool = True,
            say=print) -> Package:
    """Write the package (refusing what cannot be valid unless ``force``) and run the official checkers on it."""
    from mlperf_logging.benchmark_meta import get_result_file_counts

    check_name(submitter, "submitter")
    check_name(system_name, "system")
    runs, problems = collect(run_dirs)
    if problems and not runs:
        nothing_to_package(problems, "give the run directories that `mlbench train` printed (runs/<id>/)")
    divisions = {r.result.get("division") for r in runs}
    division = division or ("closed" if divisions == {"closed"} else "open")
    counts = {}
    for r in runs:
        name = r.result.get("benchmark")
        mlperf = _mlperf_name(r)
        counts[name] = get_result_file_counts("training").get(mlperf)
    reasons = problems + refusals(runs, division, counts)
    refuse_unless_forced(reasons, force, "the official checkers")
    # The system description: recorded by the first run, completed by the user.
    user = system.read_user_fields(system_json)
    desc = system.describe(runs[0].system, user, submitter=submitter, system_name=system_name, division=division)
    bad = system.problems(desc)
    if bad:
        ask_for_system_fields(out, bad, {**system.template(desc), **({"status": "Available on-premise"}
                                                                     if "status" not in desc else {})},
                              f"status is one of: {', '.join(system.TRAINING_STATUS)}")
    org = out / submitter
    sys_file = org / "systems" / f"{system_name}.json"
    sys_file.parent.mkdir(parents=True, exist_ok=True)
    sys_file.write_bytes(system.dumps(desc))
    written: dict[str, list[Path]] = {}
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(_mlperf_name(r), []).append(r)
    for bench, group in groups.items():
        res_dir = org / "results" / system_name / bench
        res_dir.mkdir(parents=True, exist_ok=True)
        for stale in res_dir.glob("result_*.txt"):
            stale.unlink()
        files = []
        for i, r in enumerate(group):
            dest = res_dir / f"result_{i}.txt"
            shutil.copyfile(r.log, dest)
            files.append(dest)
        written[bench] = files
        impl = org / "benchmarks" / bench / "implementations" / "mlbench"
        impl.mkdir(parents=True, exist_ok=True)
        (impl / "README.md").write_text(_implementation_readme(group, bench, system_name))
        (impl / "run.sh").write_text(_run_sh(group))
    pkg = Package(out=out, org_dir=org, system_file=sys_file, result_files=written, forced=reasons if force else [])
    mark_forced(out, reasons if force else [])
    logged_orgs = {_logged(r.log, "submission_org") for r in runs}
    if logged_orgs != {submitter}:
        pkg.warnings.append(f"the logs name submission_org {', '.join(sorted(map(str, logged_orgs)))}, not "
                            f"{submitter}: train with --submission-org {submitter} so that they agree")
    minutes = [r.record.get("metrics", {}).get("time_to_train/minutes") if r.record.get("status") == "success"
               else None for r in runs]
    need = max((c for c in counts.values() if c), default=5)
    pkg.mlbench_score = olympic_score(minutes, need).minutes
    pkg.mlbench_log_score = olympic_score([_log_minutes(r.log) for r in runs], need).minutes
    if run_checkers:
        ruleset = runs[0].result.get("ruleset")
        check_dir = out / "checks"
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
    return pkg


def _mlperf_name(r: Run) -> str:
    return _logged(r.log, "submission_benchmark") or str(r.result.get("benchmark"))


def _logged(log: Path, key: str) -> Any:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if f'"key": "{key}"' in line:
            try:
                return json.loads(line.split(":::MLLOG ", 1)[1])["value"]
            except (IndexError, ValueError, KeyError):
                return None
    return None
