"""Seed sweep: does every mini reach its target within its budget, whatever the seed?

Runs ``mlbench train BENCH --size mini --seed S`` (one run each, as ``mlbench run`` does) for N random seeds per
benchmark and records, per seed, whether and when the target was reached (epoch, samples, minutes from
run_start) and the quality of each evaluation. Results go to ``OUT/sweep.json`` after every run, so the sweep
is resumable: run the same command again and it skips what finished (the seeds drawn first are kept there);
a run that was interrupted is started again in a fresh run directory. ``OUT/sweep.md`` holds the tables.

    python benchmarks/seed_sweep.py --benchmarks rnnt --seeds 10 --out runs/sweep-rnnt
    python benchmarks/seed_sweep.py --out runs/sweep-all            # every mini of the quick suite, 10 seeds

A benchmark passes when all its seeds reached the target; the summary gives the slowest seed's epochs (or
samples) against the budget, the margin a random seed of ``make run`` has. Figures are wall-clock minutes on
this machine as it was loaded at the time (reported with the load average); epochs and samples do not depend
on load.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mlbench import registry  # noqa: E402


def suite(size: str = "mini") -> list[str]:
    """The benchmarks ``mlbench run --size SIZE`` trains."""
    return [n for n in registry.names() if size in registry.sizes(n) and registry.sizes(n)[size].in_suite]


def budget(bench) -> str:
    parts = [f"{bench.max_epochs} epochs"]
    if bench.max_samples:
        parts.append(f"{bench.max_samples:,} samples")
    return ", ".join(parts)


def reached(record: dict, target: float, higher: bool) -> dict | None:
    """The first evaluation at or past the target: epoch, samples, minutes since run_start, quality."""
    for e in record.get("evals") or []:
        q = e.get("quality")
        if q is not None and (q >= target if higher else q <= target):
            return {"epoch": e.get("epoch"), "samples": e.get("samples"),
                    "minutes": None if e.get("elapsed_s") is None else round(e["elapsed_s"] / 60, 2), "quality": q}
    return None


def run_one(bench_name: str, size: str, seed: int, out: Path, mlbench: list[str], extra: list[str],
            threads: int | None) -> dict:
    run_dir = out / "runs" / f"{bench_name}-{size}-seed{seed}"
    if run_dir.exists():  # an interrupted attempt: mlbench never reuses a directory holding a result
        shutil.rmtree(run_dir)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [*mlbench, "train", bench_name, "--size", size, "--seed", str(seed), "--run-dir", str(run_dir), *extra]
    t0 = time.time()
    load0 = os.getloadavg()[0]
    with open(out / "logs" / f"{bench_name}-{size}-seed{seed}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.time() - t0
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        result = {}
    runs = result.get("runs") or [{}]
    r = runs[0]
    bench = registry.sizes(bench_name)[size]
    hit = reached(r, bench.target, bench.higher_is_better)
    return {
        "benchmark": bench_name, "size": size, "seed": seed, "exit_code": rc, "status": r.get("status", "failed"),
        "reason": r.get("reason") or result.get("error"), "target": bench.target,
        "higher_is_better": bench.higher_is_better, "budget": budget(bench),
        "by_samples": bool(bench.eval_every_samples),
        "reached": hit, "final_quality": r.get("quality"), "epochs_run": r.get("epochs"), "samples_run": r.get("samples"),
        "time_to_train_minutes": (result.get("score") or {}).get("time_to_train_minutes"),
        "evals": [{"epoch": e.get("epoch"), "samples": e.get("samples"), "quality": e.get("quality"),
                   "minutes": None if e.get("elapsed_s") is None else round(e["elapsed_s"] / 60, 2)}
                  for e in r.get("evals") or []],
        "wall_minutes": round(wall / 60, 2), "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "run_dir": str(run_dir), "command": " ".join(cmd),
    }


def fmt_q(q) -> str:
    return "-" if q is None else f"{q:.4f}"


def tables(state: dict) -> str:
    lines = ["| benchmark | seed | reached | at epoch | samples | minutes | final quality | budget |",
             "|---|---|---|---|---|---|---|---|"]
    summary = ["| benchmark | target | seeds reaching it | epochs (or samples) to target: min / median / max | "
               "budget | minutes to target: median, max |", "|---|---|---|---|---|---|"]
    for name, entry in state["benchmarks"].items():
        done = [entry["results"][str(s)] for s in entry["seeds"] if str(s) in entry["results"]]
        for r in done:
            h = r["reached"]
            lines.append(f"| {name} | {r['seed']} | {'yes' if r['status'] == 'success' else 'NO'} | "
                         f"{h['epoch'] if h else '-'} | {h['samples'] if h else '-'} | "
                         f"{h['minutes'] if h else '-'} | {fmt_q(r['final_quality'])} | {r['budget']} |")
        if not done:
            continue
        hits = [r["reached"] for r in done if r["status"] == "success" and r["reached"]]
        ep = sorted(h["samples" if done[0].get("by_samples") else "epoch"] for h in hits)
        mins = sorted(h["minutes"] for h in hits if h["minutes"] is not None)
        op = ">=" if done[0]["higher_is_better"] else "<="
        summary.append(
            f"| {name} | {op} {done[0]['target']} | {len(hits)} of {len(done)} | "
            + (f"{ep[0]:,} / {statistics.median(ep):,g} / {ep[-1]:,}" if ep else "-")
            + (" samples" if ep and done[0].get("by_samples") else " epochs" if ep else "") + f" | {done[0]['budget']} | "
            + (f"{statistics.median(mins):.1f}, {mins[-1]:.1f}" if mins else "-") + " |")
    return "\n".join(summary) + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--benchmarks", help="comma-separated (default: every benchmark of the quick suite)")
    p.add_argument("--size", default="mini", choices=("mini", "tiny"), help="size (default: mini)")
    p.add_argument("--seeds", type=int, default=10, help="random seeds per benchmark (default: 10)")
    p.add_argument("--seed-list", help="comma-separated seeds instead of random ones")
    p.add_argument("--out", default="runs/seed-sweep", help="folder for sweep.json, sweep.md, logs and runs")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for each run (default: unset)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default: 1; each takes the memory of a "
                   "training run, and runs side by side slow each other down: minutes are then not comparable)")
    p.add_argument("--keep-runs", action="store_true", help="keep each run's directory (default: removed once "
                   "recorded, except for runs that missed the target)")
    p.add_argument("--mlbench", default=str(Path(sys.executable).with_name("mlbench")),
                   help="the mlbench command (default: the one beside this Python)")
    p.add_argument("extra", nargs="*", help="after --: more options for mlbench train (e.g. -- --workers 1)")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.benchmarks.split(",")] if a.benchmarks else suite(a.size)
    out = Path(a.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    state_file = out / "sweep.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"benchmarks": {}}
    for name in names:
        registry.get(name, a.size)  # an unknown name fails here, before anything runs
        entry = state["benchmarks"].setdefault(name, {"size": a.size, "seeds": [], "results": {}})
        if entry.get("size", "mini") != a.size:
            p.error(f"{state_file} holds {name} at size {entry.get('size', 'mini')}: use another --out")
        if a.seed_list:
            wanted = [int(s) for s in a.seed_list.split(",")]
            entry["seeds"] += [s for s in wanted if s not in entry["seeds"]]
        while len(entry["seeds"]) < a.seeds and not a.seed_list:
            entry["seeds"].append(secrets.randbelow(2**31))  # what `mlbench run` draws when no seed is given
    state_file.write_text(json.dumps(state, indent=1))
    todo = [(name, seed) for name in names for seed in state["benchmarks"][name]["seeds"]
            if str(seed) not in state["benchmarks"][name]["results"]]

    def record(r: dict) -> None:  # in the main thread only: one writer of the state file
        h = r["reached"]
        print(f"{r['benchmark']} seed {r['seed']}: {r['status']}: "
              + (f"target at epoch {h['epoch']} ({h['samples']} samples, {h['minutes']} min)" if h
                 else f"not reached ({r['reason']})")
              + f"; final {fmt_q(r['final_quality'])}; {r['wall_minutes']} min wall", flush=True)
        if r["status"] == "success" and not a.keep_runs:
            shutil.rmtree(r["run_dir"], ignore_errors=True)
        state["benchmarks"][r["benchmark"]]["results"][str(r["seed"])] = r
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, state_file)
        (out / "sweep.md").write_text(tables(state))

    with ThreadPoolExecutor(max(1, a.jobs)) as pool:  # each job is a child process; threads only wait
        futures = [pool.submit(run_one, name, a.size, seed, out, [a.mlbench], a.extra, a.threads)
                   for name, seed in todo]
        print(f"{len(todo)} runs to do, {a.jobs} at a time", flush=True)
        for f in as_completed(futures):
            record(f.result())
    print(tables(state))
    ok = all(state["benchmarks"][n]["results"].get(str(s), {}).get("status") == "success"
             for n in names for s in state["benchmarks"][n]["seeds"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
