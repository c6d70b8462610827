"""``mlbench train``: N runs of one benchmark, their results, the MLPerf score and whether it is valid."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlbench import registry, runs, sysinfo
from mlbench.config import TrainConfig
from mlbench.training import distributed, precision
from mlbench.training.harness import RunOutcome, train_run
from mlbench.training.scoring import olympic_score


def check_log(log: Path, ruleset: str, timeout: float = 120) -> dict[str, Any]:
    """Run the official mlperf-logging compliance checker on ``log``."""
    cmd = [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", "training",
           "--ruleset", ruleset, str(log)]
    try:
        # cwd: the checker writes compliance_checker.log into its working directory; keep it with the log.
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=log.parent)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"passed": False, "ruleset": ruleset, "output": f"checker did not run: {exc}"}
    text = (out.stdout + out.stderr).strip()
    return {"passed": out.returncode == 0, "ruleset": ruleset, "output": text[-2000:]}


def validity(cfg: TrainConfig, bench, outcomes: list[RunOutcome], checks: list[dict], cache_cleared: bool
             ) -> list[str]:
    """Why these runs are not a valid MLPerf result, in plain words (empty when they are)."""
    reasons = []
    if bench.size != "reference":
        reasons.append(f"size '{bench.size}' is not the MLPerf definition (open division): compare it only "
                       "with other mlbench runs of the same size, not with published MLPerf results")
    if cfg.lr is not None:
        reasons.append("the learning rate was overridden (--lr): open division")
    if len(outcomes) < bench.runs_required:
        reasons.append(f"{len(outcomes)} run(s); MLPerf scores {bench.name} over {bench.runs_required} runs")
    failed = [i + 1 for i, o in enumerate(outcomes) if o.status != "success"]
    if failed:
        reasons.append(f"run(s) {failed} did not reach the target")
    if any(o.resumed_from for o in outcomes):
        reasons.append("resumed from a checkpoint: time to train is not comparable")
    if any(o.eval_count_mismatch for o in outcomes):
        reasons.append("an evaluation covered a different number of samples than the evaluation set")
    if any(not c["passed"] for c in checks):
        reasons.append("the MLPerf log failed the official compliance checker (see compliance in the result)")
    if bench.size == "reference" and not cache_cleared:
        reasons.append("the page cache could not be dropped before the run (MLPerf wants data on storage)")
    return reasons


def execute(cfg: TrainConfig, say_prefix: str = "") -> dict[str, Any]:
    """Run ``cfg.runs`` runs of ``cfg.benchmark`` in this process (one rank of a job) and return the result."""
    handle = registry.get(cfg.benchmark, cfg.size)
    bench = handle.definition
    dinfo = distributed.env_info()
    device = precision.resolve_device(cfg.device, dinfo.local_rank)
    precision.check(device, cfg.precision)
    distributed.init(device, cfg.dist_timeout_s)
    run_dir = _run_dir(cfg, dinfo, device)
    console = runs.Console(run_dir / "console.log", enabled=dinfo.is_main)

    def say(msg: str) -> None:
        console(say_prefix + msg)

    base_seed = cfg.seed if cfg.seed is not None else distributed.broadcast_int(secrets.randbelow(2**31), device)
    result: dict[str, Any] = {
        "schema": runs.RESULT_SCHEMA, "kind": "train", "run_id": run_dir.name, "benchmark": bench.name,
        "size": bench.size, "division": bench.division if cfg.lr is None else "open",
        "ruleset": bench.ruleset, "command": runs.command_line(), "started_at": runs.now_iso(),
        "device": str(device), "precision": cfg.precision, "world_size": dinfo.world_size,
        "quality": {"metric": bench.metric, "target": bench.target, "source": bench.target_source},
        "timed": "wall clock from run_start to run_stop (MLPerf time to train), evaluation included",
        "config": cfg.to_dict(), "runs": [],
    }
    if dinfo.is_main:
        info = sysinfo.describe()
        runs.write_json(run_dir / "config.json", cfg.to_dict())
        runs.write_json(run_dir / "system.json", info)
        result["system"] = {"fingerprint": info["system_fingerprint"],
                            "host_processor_model_name": info.get("host_processor_model_name"),
                            "accelerator_model_name": info.get("accelerator_model_name")}
    say(f"mlbench train {bench.name} --size {bench.size}: {bench.description}")
    say(f"target {bench.metric} >= {bench.target} ({bench.target_source}); run directory {run_dir}")
    outcomes: list[RunOutcome] = []
    checks: list[dict] = []
    cache_cleared = True
    try:
        for i in range(cfg.runs):
            sub = run_dir / f"run_{i + 1}"
            sub.mkdir(exist_ok=True)
            seed = base_seed + i
            say(f"--- run {i + 1}/{cfg.runs} (seed {seed}) ---")
            outcome = RunOutcome(seed=seed)
            outcomes.append(outcome)
            train_run(handle, cfg, sub, outcome, say, dinfo, device)
            if dinfo.is_main:
                check = check_log(sub / "mlperf_log.txt", bench.ruleset)
                checks.append(check)
                cache_cleared &= "dropped" in (sub / "mlperf_log.txt").read_text()
                runs.write_json(sub / "result.json", run_record(i + 1, outcome, check))
                say(f"run {i + 1}: {outcome.status}: {outcome.reason}")
                say(f"run {i + 1}: MLPerf log {'passes' if check['passed'] else 'FAILS'} the compliance "
                    f"checker (ruleset {bench.ruleset}, {result['division']} division)")
                finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=False)
    except BaseException as exc:  # Ctrl-C, bad data, a crash: keep what was made, then fail loudly
        if dinfo.is_main:
            result["interrupted" if isinstance(exc, KeyboardInterrupt) else "error"] = str(exc) or type(exc).__name__
            if len(checks) < len(outcomes):
                checks.append({"passed": False, "ruleset": bench.ruleset, "output": "run did not finish"})
            finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=True)
        raise
    finally:
        console.close()
    if dinfo.is_main:
        finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=True)
    distributed.barrier()
    return result


def _run_dir(cfg: TrainConfig, dinfo: distributed.DistInfo, device) -> Path:
    if cfg.run_dir:
        path = Path(cfg.run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not dinfo.enabled:
        return runs.create_run_dir(cfg.output_dir, "train", cfg.benchmark, cfg.size)
    # Started by hand under torchrun: rank 0 names the directory, the others take its name.
    import torch.distributed as tdist

    holder = [str(runs.create_run_dir(cfg.output_dir, "train", cfg.benchmark, cfg.size)) if dinfo.is_main else None]
    tdist.broadcast_object_list(holder, src=0)
    return Path(holder[0])


def run_record(index: int, o: RunOutcome, check: dict) -> dict[str, Any]:
    """One run's entry in result.json ``runs`` (also read back by :mod:`mlbench.slurm.multirun`)."""
    return {
        "run": index, "seed": o.seed, "status": o.status, "reason": o.reason, "quality": o.quality,
        "reached_target": o.reached_target, "epochs": o.epochs, "samples": o.samples, "base_lr": o.base_lr,
        "evals": o.evals, "resumed_from": o.resumed_from, "metrics": o.metrics(), "compliance": check,
    }


def finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir: Path, final: bool) -> None:
    """Fill ``result`` (score, status, validity, runs) from the runs so far and write it; shared with the
    several-run requeueable SLURM job (:mod:`mlbench.slurm.multirun`), so both score and judge alike."""
    minutes = [o.time_to_train_s / 60 if o.status == "success" and o.time_to_train_s else None for o in outcomes]
    score = olympic_score(minutes, bench.runs_required)
    reasons = validity(cfg, bench, outcomes, checks, cache_cleared)
    if not final:
        reasons.append("in progress")
    if result.get("interrupted") is not None:
        reasons.append("interrupted (Ctrl-C) before all runs finished")
    if result.get("error"):
        reasons.append(f"failed: {result['error']}")
    result["runs"] = [run_record(i + 1, o, c) for i, (o, c) in enumerate(zip(outcomes, checks))]
    converged = [o for o in outcomes if o.status == "success"]
    result["status"] = ("failed" if result.get("error") else
                        "success" if outcomes and len(converged) == len(outcomes) and final
                        else "aborted" if final else "running")
    result["score"] = {"time_to_train_minutes": score.minutes, "method": score.method, "note": score.reason,
                       "runs": score.runs, "converged": score.converged}
    thr = [o.throughput for o in outcomes if o.throughput]
    last = outcomes[-1] if outcomes else None
    result["metrics"] = {
        "time_to_train/minutes": score.minutes,
        "throughput/samples_per_s": sorted(thr)[len(thr) // 2] if thr else None,
        "quality/last": last.quality if last else None,
        "data/wait_share": last.metrics()["data/wait_share"] if last else None,
        **(last.energy if last else {}),  # the last run's energy (informative), see mlbench.results.energy
    }
    result["quality"]["value"] = last.quality if last else None
    result["quality"]["reached"] = bool(converged) and len(converged) == len(outcomes)
    result["valid"] = not reasons
    result["validity_reasons"] = reasons
    result["finished_at"] = runs.now_iso() if final else None
    runs.write_json(run_dir / "result.json", result)
    if final:
        from mlbench.results.store import record

        record(run_dir)  # index into <output_dir>/results.db; a store failure is only a warning
