"""Several runs in one requeueable SLURM job: which runs finished, and the job's result over all of them.

``mlbench slurm submit --requeue --runs N`` (N > 1) writes a job script that starts each run as its own
``mlbench train --runs 1`` in ``run_<K>/`` of the job's run directory. When SLURM restarts the job, the script
asks :func:`finished` which runs to keep, resumes the first unfinished one from its checkpoint and runs the rest.
After every run it calls :func:`combine`, which writes the job's result.json over the runs made so far, with the
same scoring (olympic mean) and validity rules as ``mlbench train --runs N`` in one process: the run records
are the runs' own, and the score and validity come from :mod:`mlbench.training.runner`.

The job script calls this module as ``python -m mlbench.slurm.multirun finished RUN_DIR/run_K`` (exit code 0
when that run finished) and ``python -m mlbench.slurm.multirun combine RUN_DIR CONFIG [--final]`` (with
``--final``: exit code 0 when every run reached the target, like ``mlbench train``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished(part_dir: str | Path) -> bool:
    """Whether the run in ``part_dir`` (one ``mlbench train --runs 1``) ended: its result.json is final, says
    success or aborted (target missed), and records neither an error nor an interruption."""
    from mlbench.slurm.launcher import runs_ended

    result = _read(Path(part_dir) / "result.json")
    return bool(result and runs_ended(result) and result.get("runs"))


def _mismatch_reason(cfg, bench) -> str:
    """The runner's validity reason for an evaluation of the wrong size, as it words it."""
    from mlbench.training import runner
    from mlbench.training.harness import RunOutcome

    ok = {"passed": True}
    plain = runner.validity(cfg, bench, [RunOutcome(seed=0, status="success")], [ok], True)
    odd = runner.validity(cfg, bench, [RunOutcome(seed=0, status="success", eval_count_mismatch=True)], [ok], True)
    return next(r for r in odd if r not in plain)


def combine(run_dir: str | Path, config_file: str | Path, final: bool = False) -> dict[str, Any]:
    """Write ``run_dir``/result.json over the runs in ``run_<K>/`` so far and return it.

    Runs are taken in order up to the first that did not finish. A run that failed (its result.json says
    failed) makes the job failed; with ``final``, so does any run of the N that did not finish.
    """
    from mlbench import config, registry
    from mlbench.config import TrainConfig
    from mlbench.training import runner

    run_dir, config_file = Path(run_dir), Path(config_file)
    cfg = config.build(TrainConfig, json.loads(config_file.read_text()))
    bench = registry.get(cfg.benchmark, cfg.size).definition
    mismatch = _mismatch_reason(cfg, bench)
    outcomes, checks, parts = [], [], []
    cache_cleared = True
    error = None
    for k in range(1, cfg.runs + 1):
        part = run_dir / f"run_{k}"
        res = _read(part / "result.json")
        if res is None:
            break
        if not finished(part):
            if res.get("status") == "failed" or res.get("error"):
                error = f"run {k}: {res.get('error') or 'failed'}"
            elif res.get("interrupted") is not None:
                error = f"run {k}: interrupted"
            break
        parts.append(res)
        record = res["runs"][0]
        outcomes.append(runner.outcome_from_record(record, mismatch in res.get("validity_reasons", [])))
        checks.append(record.get("compliance") or {"passed": False, "output": "no compliance check recorded"})
        log = part / "run_1" / "mlperf_log.txt"
        cache_cleared &= log.is_file() and "dropped" in log.read_text(errors="replace")
    if final and error is None and len(outcomes) < cfg.runs:
        error = f"run {len(outcomes) + 1} of {cfg.runs} did not finish"
    first = parts[0] if parts else _read(run_dir / "run_1" / "result.json") or {}
    result: dict[str, Any] = {
        "schema": first.get("schema"), "kind": "train", "run_id": run_dir.name,
        "benchmark": first.get("benchmark", bench.name), "size": first.get("size", bench.size),
        "division": first.get("division", bench.division if cfg.lr is None else "open"),
        "ruleset": first.get("ruleset", bench.ruleset), "command": first.get("command"),
        "started_at": first.get("started_at"), "device": first.get("device", cfg.device),
        "precision": first.get("precision", cfg.precision),
        "world_size": first.get("world_size", cfg.nproc * cfg.nnodes),
        "quality": {"metric": bench.metric, "target": bench.target, "source": bench.target_source,
                    "higher_is_better": bench.higher_is_better},
        "timed": first.get("timed"), "config": cfg.to_dict(), "allocator": first.get("allocator"), "runs": [],
        "run_dirs": [str(run_dir / f"run_{k}") for k in range(1, len(outcomes) + 1)],
    }
    if "system" in first:
        result["system"] = first["system"]
    if result["schema"] is None:
        from mlbench import runs

        result["schema"] = runs.RESULT_SCHEMA
    if error:
        result["error"] = error
    # The same score, status and validity as `mlbench train --runs N` in one process.
    runner.finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=final)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbench.slurm.multirun",
                                     description="Used by the job script of `mlbench slurm submit --requeue --runs N`.")
    sub = parser.add_subparsers(dest="action", required=True)
    f = sub.add_parser("finished", help="exit code 0 when the run in RUN_PART_DIR finished")
    f.add_argument("part_dir")
    c = sub.add_parser("combine", help="write RUN_DIR/result.json over the runs so far")
    c.add_argument("run_dir")
    c.add_argument("config_file")
    c.add_argument("--final", action="store_true",
                   help="the job ends: print the result; exit code 0 when every run reached the target")
    args = parser.parse_args(argv)
    if args.action == "finished":
        return 0 if finished(args.part_dir) else 1
    result = combine(args.run_dir, args.config_file, final=args.final)
    if not args.final:
        done = len(result["runs"])
        print(f"{done} of {result['config']['runs']} run(s) finished; {args.run_dir}/result.json updated",
              flush=True)
        return 0
    from mlbench.training.runner import print_summary

    print_summary(result)
    return 0 if result.get("status") == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
