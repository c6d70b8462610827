"""Run the official mlperf-logging checkers on a training package and say what they found in plain words.

``package_checker`` always exits 0 and reports through its log lines (``INFO - ...``, ``ERROR - ...``), so the
verdict is read from those lines: every ERROR line (and the compliance checker's failed CHECK warnings) is
turned into a finding that names the file it concerns.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP = "pass", "FAIL", "not run"


@dataclass
class Check:
    name: str
    status: str = PASS  # PASS, FAIL or SKIP
    detail: str = ""  # one line: what was checked, or why it was not run
    findings: list[str] = field(default_factory=list)  # each failure in words, with its file
    tags: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # finding -> {(kind, scope)} (inference)

    def fail(self, finding: str) -> None:
        self.status = FAIL
        if finding not in self.findings:
            self.findings.append(finding)


def _run(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"did not finish within {timeout:.0f} s"
    except OSError as exc:
        return -1, f"could not start: {exc}"
    return out.returncode, out.stdout + out.stderr


RCP_WORDS = {
    "RCP found": "the runs converged in fewer epochs than the Reference Convergence Points allow for this global "
                 "batch size (a closed run must not converge faster than the reference)",
    "RCP Interpolation": "the runs converged in fewer epochs than the Reference Convergence Points interpolated "
                         "for this global batch size allow",
    "Cannot find any RCPs": "MLPerf has no Reference Convergence Points for this benchmark and ruleset",
    "Insufficient convergence": "too few runs converged for the RCP check",
    "Could not detect global_batch_size": "the logs carry no global_batch_size, which the RCP check needs",
}


def _rcp_words(msg: str) -> str:
    msg = msg.strip()
    if msg.startswith("Missing RCP"):
        bs = msg.rsplit("=", 1)[-1].strip()
        return (f"MLPerf has no Reference Convergence Point for global batch size {bs} and the nearest ones do not "
                "allow this convergence; a closed result at this batch size needs a new RCP submitted to MLCommons")
    return RCP_WORDS.get(msg, f"the RCP checker says: {msg}")


def package_checker(org_dir: Path, ruleset: str, division: str, log_dir: Path, timeout: float = 900
                    ) -> tuple[list[Check], str]:
    """``python -m mlperf_logging.package_checker ORG training RULESET``; the checks it made and its output."""
    log_dir.mkdir(parents=True, exist_ok=True)
    org_dir = org_dir.resolve()
    (log_dir / "package_checker.log").unlink(missing_ok=True)  # the checker appends to it
    cmd = [sys.executable, "-m", "mlperf_logging.package_checker", str(org_dir), "training", ruleset,
           "--log_output", str((log_dir / "package_checker.log").resolve())]
    rc, text = _run(cmd, log_dir, timeout)
    checks = {name: Check(name) for name in ("system description", "result files", "compliance", "seeds", "RCP")}
    checks["system description"].detail = "systems/*.json against system_desc_checker's required fields"
    checks["result files"].detail = "result_<i>.txt: the number the rules ask for, no other files"
    checks["compliance"].detail = f"every result file against the training {ruleset} rules"
    closed = division == "closed"
    for name in ("seeds", "RCP"):
        checks[name].status, checks[name].detail = (
            (PASS, "distinct seeds per run" if name == "seeds" else "convergence against the reference")
            if closed else (SKIP, "the checker runs it for the closed division only"))
    if rc != 0 or "PACKAGE CHECKER FOUND" not in text:
        c = Check("package_checker", FAIL, "the official checker itself")
        last = text.strip().splitlines()[-1] if text.strip() else "no output"
        c.fail(f"package_checker stopped with an error (exit code {rc}): {last}; its whole output is in "
               f"{log_dir / 'package_checker.out'}")
        (log_dir / "package_checker.out").write_text(text)
        return [*checks.values(), c], text
    bench_dir = current_file = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        level, _, msg = line.partition(" - ")
        msg = msg.strip()
        if m := re.match(r"Running compliance checks in dir (.*)", msg):
            bench_dir = _rel(m.group(1), org_dir)
        elif m := re.match(r"Running compliance on file: (.*)", msg):
            current_file = _rel(m.group(1), org_dir)
        if level == "ERROR":
            _translate_error(msg, lines[i + 1:], checks, bench_dir, org_dir)
        elif level == "WARNING" and msg.startswith("CHECK for"):
            checks["compliance"].fail(f"{current_file}: {_check_words(msg, lines[i + 1:])}")
        elif level == "WARNING" and "Found parsing errors" in msg:
            checks["compliance"].fail(f"{current_file}: lines that are not valid MLLOG (the log was altered?)")
        elif level == "WARNING" and "accepting this under olympic scoring" in msg:
            checks["compliance"].detail += "; one non-compliant file accepted under olympic scoring"
        elif level == "WARNING" and "Skipping benchmark" in msg:
            checks["result files"].fail(f"{bench_dir or 'results'}: the checker does not know benchmark "
                                        f"{msg.split(':', 1)[-1].strip()} in ruleset {ruleset}; nothing was checked")
    return list(checks.values()), text


def _rel(path: str, org_dir: Path) -> str:
    try:
        return str(Path(path.strip()).resolve().relative_to(org_dir.parent))
    except ValueError:
        return path.strip()


def _check_words(msg: str, following: list[str]) -> str:
    m = re.match(r"CHECK for '([^']+)' failed in line (\d+)", msg)
    test = next((ln.split("failed test:", 1)[1].strip() for ln in following[:6] if "failed test:" in ln), "")
    if not m:
        return msg
    return f"the '{m.group(1)}' line (line {m.group(2)}) breaks the rule `{test}`"


def _translate_error(msg: str, following: list[str], checks: dict[str, Check], bench_dir: str, org_dir: Path
                     ) -> None:
    if m := re.match(r"System description checker failed for (.*?) : (.*)", msg):
        name = m.group(1)
        try:
            reasons = json.loads(m.group(2).replace("'", '"'))
        except ValueError:
            reasons = [m.group(2)]
        missing = [r.removeprefix("Missing field ") for r in reasons if r.startswith("Missing field ")]
        other = [r for r in reasons if not r.startswith("Missing field ")]
        where = f"{org_dir.name}/systems/{name}.json"
        if missing:
            checks["system description"].fail(f"{where}: missing field(s) {', '.join(missing)} (give them in "
                                              "--system-json)")
        for r in other:
            checks["system description"].fail(f"{where}: {r}")
    elif msg.startswith("System description file checker failed"):
        checks["system description"].status = FAIL
    elif m := re.search(r"directory (\S+), found (\d+), expected (\d+)", msg):
        checks["result files"].fail(f"{_rel(m.group(1), org_dir)}: {m.group(2)} result file(s); the rules ask "
                                    f"for exactly {m.group(3)} named result_<i>.txt")
    elif m := re.search(r"(\d+) files do not comply", msg):
        checks["compliance"].fail(f"{bench_dir}: {m.group(1)} result files fail the compliance rules; MLPerf "
                                  "accepts at most one (olympic scoring)")
    elif msg.startswith("Seed checker failed and found"):
        body = msg.split("errors:", 1)[-1].strip()
        for err in [body, *following[:10]]:
            err = err.strip()
            if not err or " - " in err[:10]:
                break
            checks["seeds"].fail(_seed_words(err, org_dir))
    elif msg.startswith("Seed checker failed"):
        checks["seeds"].status = FAIL
    elif msg.startswith("RCP Test Failed:"):
        checks["RCP"].fail(f"{bench_dir}: {_rcp_words(msg.split(':', 1)[1])}")
    elif msg.startswith("Expected at least"):
        checks["result files"].fail(f"{bench_dir}: {msg}")


def _seed_words(err: str, org_dir: Path) -> str:
    m = re.match(r"Result file (\S+) logs seed (\d+) on (.*?)\. However, result file (\S+) already", err)
    if m:
        return (f"{_rel(m.group(1), org_dir)} and {_rel(m.group(4), org_dir)} log the same seed {m.group(2)}: "
                "every run must use its own seed")
    m = re.match(r"Result file (\S+) logs no seed", err)
    if m:
        return f"{_rel(m.group(1), org_dir)} logs no seed"
    return err


def result_summarizer(org_dir: Path, ruleset: str, mlperf_name: str, log_dir: Path, timeout: float = 900
                      ) -> tuple[Check, float | None, str]:
    """``python -m mlperf_logging.result_summarizer ORG training RULESET``: its score for ``mlperf_name`` (minutes)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    csv = (log_dir / "summary.csv").resolve()
    cmd = [sys.executable, "-m", "mlperf_logging.result_summarizer", str(org_dir.resolve()), "training", ruleset,
           "--csv", str(csv)]
    rc, text = _run(cmd, log_dir, timeout)
    (log_dir / "result_summarizer.log").write_text(text)
    check = Check("result_summarizer", detail="the official score of the result files (olympic mean)")
    rows: list[dict[str, Any]] = []
    try:  # the CSV keeps every digit (its summary.json rounds to 10 decimals)
        import csv as csvmod

        with open(csv, newline="") as f:
            rows = list(csvmod.DictReader(f))
    except OSError:
        pass
    score = next((float(r[mlperf_name]) for r in rows if r.get(mlperf_name) not in (None, "")), None)
    if rc != 0:
        check.fail(f"result_summarizer failed (exit code {rc}): {text.strip()[-800:]}")
    for line in text.splitlines():
        if "CRITICAL ERROR: Too many non-converging runs" in line:
            check.fail("more than one run failed its compliance check or did not converge: no score")
        elif m := re.match(r"(.*) in (\S+result_\d+\.txt)$", line.strip()):
            check.fail(f"{_rel(m.group(2), org_dir)}: not scored ({m.group(1)})")
        elif line.startswith("ERROR: RCP Test Failed"):
            check.detail += "; it also reports the RCP failure above"
    if score is None and check.status == PASS:
        check.fail("the summarizer produced no score for this benchmark")
    if score is not None:
        check.detail = f"score {score:.6f} min ({check.detail})"
    return check, (float(score) if score is not None else None), text


def table(checks: list[Check]) -> str:
    """The checks as a plain-text table; each failure on its own indented line."""
    width = max(len(c.name) for c in checks)
    out = []
    for c in checks:
        out.append(f"  {c.name:<{width}}  {c.status:<7}  {c.detail}")
        out.extend(f"  {'':<{width}}           - {f}" for f in c.findings)
    return "\n".join(out)
