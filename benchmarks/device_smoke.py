"""Every benchmark end to end on one device, at the tiny size: `mlbench train B --size tiny` and `mlbench infer B
--size tiny --mode accuracy` for each benchmark, as a user runs them (one process per command), one line per
command. It finds what only a device shows: a tensor left on the host, a host-only op, an autocast dtype that a
CPU never produces. It measures nothing: tiny sizes time start-up more than work.

    python benchmarks/device_smoke.py [--device cuda] [--precision bf16] [--compile] [--benchmarks resnet50,bert]
                                      [--work DIR] [--timeout-s 150] [--budget-s S] [--json FILE]

A command passes when it made a result.json whose status is success, or, for training, ran every epoch without
reaching the tiny target (a precision's numerics may differ from fp32's; the line says so). A crash, a timeout
or a failed status fails it, with the last line of what it printed. With --budget-s, a command that would start
after that many seconds is skipped and counted as not passed. Exit status: 0 when every command passed,
1 when one did not, 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mlbench import registry  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (default: cuda)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"),
                   help="precision of both commands (default: bf16)")
    p.add_argument("--compile", action="store_true", help="add --compile to both commands (torch.compile)")
    p.add_argument("--benchmarks", default=",".join(registry.names()),
                   help="comma-separated (default: every benchmark)")
    p.add_argument("--work", help="folder for the runs (default: a new one under the temporary folder)")
    p.add_argument("--timeout-s", type=float, default=150.0, help="limit for each command (default: 150)")
    p.add_argument("--budget-s", type=float, help="start no command after this many seconds (default: no limit)")
    p.add_argument("--json", help="also write the lines as JSON to this file")
    args = p.parse_args(argv)
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    unknown = [b for b in args.benchmarks if b not in registry.names(hidden=True)]
    if unknown or not args.benchmarks:
        p.error(f"unknown benchmark(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(registry.names())}")
    if not 1 <= args.timeout_s <= 3600:
        p.error(f"--timeout-s must be between 1 and 3600 seconds, not {args.timeout_s}")
    if args.budget_s is not None and not 0 < args.budget_s <= 86400:
        p.error(f"--budget-s must be between 0 and 86400 seconds, not {args.budget_s}")
    return args


def commands(bench: str, device: str, precision: str, compile_: bool = False) -> dict[str, list[str]]:
    common = ["--size", "tiny", "--device", device, "--precision", precision] + (["--compile"] if compile_ else [])
    return {"train": ["train", bench, *common],
            "infer": ["infer", bench, *common, "--mode", "accuracy"]}


def summarise(result: dict, kind: str) -> tuple[bool, str]:
    """(passed, what the result says) for one result.json."""
    status = result.get("status")
    if result.get("error"):
        return False, f"{status}: {result['error']}"
    if kind == "train":
        run = (result.get("runs") or [{}])[-1]
        compliance = (run.get("compliance") or {}).get("passed")
        said = f"{status}: {run.get('reason', '')}; compliance checker {'passed' if compliance else 'FAILED'}"
        # aborted by the budget, not by an error or a stop: every epoch ran, the target was not reached
        ran = status == "success" or (status == "aborted" and not result.get("error")
                                      and result.get("interrupted") is None and bool(run.get("epochs")))
        return bool(ran and compliance), said
    acc = {k: round(v, 4) for k, v in (result.get("metrics") or {}).items() if k.startswith("accuracy/")}
    return status == "success", f"{status}: {json.dumps(acc)}"


def last_error(text: str) -> str:
    """The line of a command's output that says what went wrong: its last error line (mlbench's, or a traceback's
    exception), else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["printed nothing"])[-1]


def run_one(bench: str, kind: str, argv: list[str], work: pathlib.Path, timeout_s: float) -> dict:
    out = work / f"{bench}-{kind}"
    cmd = [sys.executable, "-m", "mlbench", *argv, "--output-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=work)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = None, f"timed out after {timeout_s:.0f} s " + str(exc.stdout or "")[-200:]
    seconds = time.perf_counter() - t0
    (work / f"{bench}-{kind}.log").write_text(" ".join(cmd) + "\n" + text)
    results = sorted(out.glob("*/result.json"))
    if results:
        passed, said = summarise(json.loads(results[-1].read_text()), kind)
    else:
        passed, said = False, "no result.json; " + last_error(text)
    return {"benchmark": bench, "command": "mlbench " + " ".join(argv), "kind": kind, "exit": rc,
            "passed": passed and rc in (0, 1), "said": said, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="mlbench-smoke-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    lines, t0 = [], time.monotonic()
    for bench in args.benchmarks:
        for kind, cmd in commands(bench, args.device, args.precision, args.compile).items():
            if args.budget_s is not None and time.monotonic() - t0 > args.budget_s:
                line = {"benchmark": bench, "command": "mlbench " + " ".join(cmd), "kind": kind, "exit": None,
                        "passed": False, "said": f"skipped: the {args.budget_s:.0f} s budget was spent", "seconds": 0}
            else:
                line = run_one(bench, kind, cmd, work, args.timeout_s)
            lines.append(line)
            print(f"{'ok  ' if line['passed'] else 'FAIL'} {line['command']}: exit {line['exit']}, "
                  f"{line['said']} ({line['seconds']} s)", flush=True)
    failed = sum(not ln["passed"] for ln in lines)
    print(f"{len(lines) - failed} of {len(lines)} commands passed on {args.device} ({args.precision}); logs in {work}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"device": args.device, "precision": args.precision,
                                                       "commands": lines}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
