"""MLPerf Inference's official submission checker (mlcommons/inference ``tools/submission``), where the user
has a clone: run it on a package, read its verdict, and compare it with mlbench's own checks of the same tree.

The checker prints one log line per problem (``ERROR``, and ``WARNING`` for a missed accuracy target). Each is
sorted into the kind of problem it is and the benchmark/scenario it concerns, the same tags mlbench's checks
put on their findings; a problem the checker reports that mlbench's checks did not is an ``agreement`` failure
(an mlbench bug to report), so the two can never silently disagree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mlbench.submission import checks

# The line formats the checker's accuracy patterns read, by pattern name (our own expressions of them).
ACCURACY_LINE = {
    "acc": re.compile(r"^(?:\{\"accuracy|accuracy)[\": ]*=?\s*([\d.]+)"),
    "F1": re.compile(r"^\{[\"']exact_match[\"']:\s*[\d.]+,\s*[\"']f1[\"']:\s*([\d.]+)\}"),
    "mAP": re.compile(r".*(?:mAP=|'Total':)\s*([\d.]+)"),
    "AUC": re.compile(r"^AUC=([\d.]+)"),
    "ROUGE1": re.compile(r".*'rouge1':\s+'?([\d.]+)'?"),  # the summarisation references' printed dict
    "ACCURACY": re.compile(r"Word Error Rate:.*, accuracy=([\d.]+)%"),  # the speech reference's line
}

# (what the line says, the kind of problem): the first that matches wins.
KINDS = [
    (r"rng_seed is wrong", "seeds"),
    (r"performance_sample_count, found", "performance-sample-count"),
    (r"Test duration less than 600s", "min-duration"),
    (r"Early stopping condition was not met", "early-stopping"),
    (r"Latency constraint", "latency"),
    (r"minimum samples per query", "samples-per-query"),
    (r"minimum Query Count", "min-queries"),
    (r"does not cover all dataset", "dataset-size"),
    (r"accuracy not met|not hash value", "accuracy"),
    (r"is not truncated", "accuracy-log-size"),
    (r"does not have all required scenarios|unknown scenarios", "scenarios"),
    (r"field \S+ is missing meaningful value", "measurements"),
    (r"/results/[^/\s]+, field|has invalid status|invalid system type|has submitter|has division"
     r"|system json file not found|incorrect network mode", "system"),
    (r"src directory does not exist", "files"),
    (r"measurements json file not found|is missing (user\.conf|README\.md)|is having empty", "files"),
    (r"Performance log missing|mlperf_log_accuracy\.json is missing", "files"),
    (r"TEST0\d|compliance dir|Compliance test|performance/run_1 directory|file list mismatch", "compliance"),
    (r"loadgen errors|contains errors", "loadgen-errors"),
    (r"Execution occurred in running check", "checker-exception"),
]
IGNORE = re.compile(r"Some .* [Cc]hecks failed for|NoResults |SUMMARY: submission has errors")


def command(repo: Path) -> list[str] | None:
    """How to start the clone's checker (its entry point moved over the rounds), or None."""
    tools = Path(repo) / "tools" / "submission"
    if (tools / "submission_checker" / "main.py").is_file():
        return [sys.executable, "-m", "submission_checker.main"]
    if (tools / "submission_checker.py").is_file():
        return [sys.executable, "submission_checker.py"]
    return None


def scope_of(line: str) -> str:
    """``bench/scenario`` of the folder a line names, ``system`` or ``src``, or "" when it names none."""
    if m := re.search(r"/(?:results|measurements|compliance)/[^/\s]+/([^/\s,]+)/([^/\s,]+)", line):
        return f"{m.group(1)}/{m.group(2)}"
    if "src directory" in line:
        return "src"
    if re.search(r"/results/[^/\s]+,? ", line) or "system" in line:
        return "system"
    return ""


def kind_of(line: str) -> str:
    return next((k for pat, k in KINDS if re.search(pat, line)), "other")


def problems(text: str) -> list[tuple[str, str, str]]:
    """(kind, scope, line) for every problem the checker's output reports."""
    out = []
    traceback = False
    for line in text.splitlines():
        body = re.sub(r"^\[[^\]]*\]\s*", "", line).strip()
        level = "ERROR" if re.match(r"^(ERROR[:\s]|.* ERROR\b)", line) else \
            "WARNING" if re.match(r"^(WARNING[:\s]|.* WARNING\b)", line) else ""
        body = re.sub(r"^(ERROR|WARNING):\S*:", "", body).strip()
        if line.startswith("Traceback"):
            traceback = True
        if traceback and re.match(r"^\w+(Error|Exception)\b", line):
            out.append(("checker-crash", "", line.strip()))
            traceback = False
            continue
        if not level or IGNORE.search(body):
            continue
        if level == "WARNING" and "accuracy not met" not in body:
            continue
        out.append((kind_of(body), scope_of(body), body))
    return out


def run(repo: Path, out: Path, submitter: str, round_: str, log_dir: Path, ours: list[checks.Check]
        ) -> list[checks.Check]:
    """The official checker's verdict on ``out`` and whether mlbench's checks (``ours``) reported each problem."""
    c = checks.Check("official submission checker", detail=f"mlcommons/inference tools/submission, {round_}")
    cmd = command(repo)
    if cmd is None:
        c.fail(f"{repo}: no tools/submission/submission_checker in it: give a clone of mlcommons/inference")
        return [c]
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd += ["--input", str(out.resolve()), "--submitter", submitter, "--version", round_,
            "--csv", str((log_dir / "summary.csv").resolve())]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(repo) / "tools" / "submission",
                           timeout=1800)
        text, rc = p.stdout + p.stderr, p.returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        c.fail(f"the official checker did not run: {exc}")
        return [c]
    (log_dir / "submission_checker.log").write_text(text)
    found = problems(text)
    base = str(out.resolve()) + "/"
    for _kind, _scope, line in found:
        c.fail(line.replace(base, ""))
    if rc != 0 and not found:
        c.fail(f"exit code {rc} with no error line; see {log_dir / 'submission_checker.log'}")
    c.detail += f"; its log: {log_dir / 'submission_checker.log'}"
    return [c, agreement(found, ours, base)]


def agreement(found: list[tuple[str, str, str]], ours: list[checks.Check], base: str = "") -> checks.Check:
    """A problem of the official checker's that no finding of ours carries (same kind, same benchmark/scenario)."""
    c = checks.Check("agreement", detail="every problem the official checker reports, mlbench's checks report too")
    tags = {t for chk in ours for ts in chk.tags.values() for t in ts}
    kinds_by_scope = {(k, s) for k, s in tags}
    for kind, scope, line in found:
        if kind in ("checker-exception", "checker-crash") and any(k in ("unknown-benchmark", "not-in-suite")
                                                                     for k, _ in tags):
            ok = True  # the checker fails on a benchmark its round, or its suite (closed), does not have
        elif kind == "checker-exception":
            ok = any(k == "checker-exception" for k, _ in tags)
        elif scope in ("", "system", "src"):
            ok = any(k == kind for k, _ in tags)
        else:
            folder = scope.split("/")[0]
            ok = (kind, scope) in kinds_by_scope or (kind, f"{folder}/*") in kinds_by_scope \
                or ("unknown-benchmark", f"{folder}/*") in kinds_by_scope
        if not ok:
            c.fail(f"the official checker reports '{line.replace(base, '')}' and mlbench's checks did not: report "
                   "this as an mlbench bug")
    return c
