"""``mlbench train``: N runs of one benchmark, their results, the MLPerf score and whether it is valid."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlbench import allocator, errors, registry, runs, signals, sysinfo
from mlbench.config import TrainConfig
from mlbench.errors import ConfigError
from mlbench.training import distributed, precision
from mlbench.training.harness import RunOutcome, train_run
from mlbench.training.scoring import olympic_score


def check_log(log: Path, ruleset: str, timeout: float = 120) -> dict[str, Any]:
    """Run the official mlperf-logging compliance checker on ``log`` (any path: relative, absolute, spaces)."""
    log = Path(log).resolve()  # absolute: the checker runs in the log's folder, not the caller's
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
    if not bench.is_reference:
        reasons.append(f"size '{bench.size}' is not the MLPerf definition (open division): compare it only "
                       "with other mlbench runs of the same size, not with published MLPerf results")
    if cfg.lr is not None:
        reasons.append("the learning rate was overridden (--lr): open division")
    if cfg.hparams:
        changed = ", ".join(f"{k}={v}" for k, v in sorted(cfg.hparams.items()))
        reasons.append(f"hyper-parameters changed with --hparam ({changed}): open division")
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
    if bench.is_reference and not cache_cleared:
        reasons.append("the page cache could not be dropped before the run (MLPerf wants data on storage)")
    return reasons


def execute(cfg: TrainConfig, say_prefix: str = "") -> dict[str, Any]:
    """Run ``cfg.runs`` runs of ``cfg.benchmark`` in this process (one rank of a job) and return the result."""
    host_allocator = allocator.configure()  # freed host memory kept for reuse (MLBENCH_MALLOC); first, so that
    # an unknown setting fails before anything is made
    handle = registry.get(cfg.benchmark, cfg.size, cfg.hparams)
    bench = handle.definition
    if not handle.has_module("workload"):
        handle.workload()  # an inference-only benchmark: its one-line error before anything is made
    dinfo = distributed.env_info()
    device = precision.resolve_device(cfg.device, dinfo.local_rank)
    precision.check(device, cfg.precision)
    distributed.init(device, cfg.dist_timeout_s)
    run_dir = _run_dir(cfg, dinfo, device)
    console = runs.Console(run_dir / "console.log", enabled=dinfo.is_main)

    def say(msg: str) -> None:
        console(say_prefix + msg)

    kept = finished_runs(run_dir) if cfg.resume else []  # --resume into a run directory: keep its finished runs
    if kept:
        base_seed = kept[0]["seed"]  # run K's seed is the first run's plus K-1, as when they were made
    else:
        base_seed = cfg.seed if cfg.seed is not None else distributed.broadcast_int(secrets.randbelow(2**31), device)
    result: dict[str, Any] = {
        "schema": runs.RESULT_SCHEMA, "kind": "train", "run_id": run_dir.name, "benchmark": bench.name,
        "size": bench.size, "division": bench.division if cfg.lr is None and not cfg.hparams else "open",
        "ruleset": bench.ruleset, "command": runs.command_line(), "started_at": runs.now_iso(),
        "device": str(device), "precision": cfg.precision, "world_size": dinfo.world_size,
        "quality": {"metric": bench.metric, "target": bench.target, "source": bench.target_source,
                    "higher_is_better": bench.higher_is_better},
        "timed": "wall clock from run_start to run_stop (MLPerf time to train), evaluation included",
        "config": cfg.to_dict(), "allocator": host_allocator, "runs": [],
    }
    if dinfo.is_main:
        info = sysinfo.describe()
        for name, data in (("config.json", cfg.to_dict()), ("system.json", info)):
            if not (kept and (run_dir / name).exists()):  # a continued run directory keeps its own
                runs.write_json(run_dir / name, data)
        result["system"] = {"fingerprint": info["system_fingerprint"],
                            "host_processor_model_name": info.get("host_processor_model_name"),
                            "accelerator_model_name": info.get("accelerator_model_name")}
    say(f"mlbench train {bench.name} --size {bench.size}: {bench.description}")
    say(f"target {bench.metric} {'>=' if bench.higher_is_better else '<='} {bench.target} ({bench.target_source}); "
        f"run directory {run_dir}")
    outcomes: list[RunOutcome] = []
    checks: list[dict] = []
    cache_cleared = True
    for record in kept[:cfg.runs]:
        outcomes.append(outcome_from_record(record))
        checks.append(record.get("compliance") or {"passed": False, "output": "no compliance check recorded"})
        log = run_dir / f"run_{record['run']}" / "mlperf_log.txt"
        cache_cleared &= log.is_file() and "dropped" in log.read_text(errors="replace")
        say(f"run {record['run']}: finished before ({record['status']}: {record.get('reason')}); kept as it is")
    resume_cfg = cfg
    try:
        for i in range(len(outcomes), cfg.runs):
            signals.check()  # a stop never lets the next run start, even one whose exception was swallowed
            sub = run_dir / f"run_{i + 1}"
            sub.mkdir(exist_ok=True)
            if kept and dinfo.is_main and (sub / "mlperf_log.txt").exists():  # the interrupted attempt's log
                (sub / "mlperf_log.txt").replace(sub / f"mlperf_log.before-resume-{runs.new_run_id()}.txt")
            seed = base_seed + i
            say(f"--- run {i + 1}/{cfg.runs} (seed {seed}) ---")
            outcome = RunOutcome(seed=seed)
            outcomes.append(outcome)
            train_run(handle, resume_cfg, sub, outcome, say, dinfo, device)
            if resume_cfg.resume:  # --resume continues the first run this command makes; the rest start afresh
                resume_cfg = dataclasses.replace(cfg, resume=None)
            if dinfo.is_main:
                check = check_log(sub / "mlperf_log.txt", bench.ruleset)
                checks.append(check)
                cache_cleared &= "dropped" in (sub / "mlperf_log.txt").read_text()
                runs.write_json(sub / "result.json", run_record(i + 1, outcome, check))
                say(f"run {i + 1}: {outcome.status}: {outcome.reason}")
                say(f"run {i + 1}: MLPerf log {'passes' if check['passed'] else 'FAILS'} the compliance "
                    f"checker (ruleset {bench.ruleset}, {result['division']} division)")
                finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=False)
    except BaseException as exc:  # Ctrl-C, SIGTERM, bad data, a crash: keep what was made, then fail loudly
        stopped = signals.stopped(exc)
        if dinfo.is_main:
            if stopped:  # said why: "interrupted (Ctrl-C)", "terminated by SIGTERM"
                result["interrupted"] = signals.describe(exc)
                if len(checks) < len(outcomes) and outcomes[-1].status != "success":
                    outcomes[-1].reason = f"{signals.describe(exc)} before the target was reached"
            else:
                result["error"] = str(errors.explain(exc)) or type(exc).__name__
            if len(checks) < len(outcomes):
                checks.append({"passed": False, "ruleset": bench.ruleset, "output": "run did not finish"})
            finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=True)
        if stopped and not isinstance(exc, KeyboardInterrupt):
            raise signals.Stopped(signals.signum_of(exc)) from exc  # the stop, not what it broke
        raise
    finally:
        console.close()
    if dinfo.is_main:
        finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir, final=True)
    distributed.barrier()
    return result


def finished_runs(run_dir: Path) -> list[dict[str, Any]]:
    """The records of the runs in ``run_dir`` that finished (``run_K/result.json``), K = 1, 2, ... in order."""
    found = []
    k = 1
    while True:
        try:
            record = json.loads((Path(run_dir) / f"run_{k}" / "result.json").read_text())
        except (OSError, ValueError):
            return found
        if not isinstance(record, dict) or record.get("run") != k or "seed" not in record:
            return found
        found.append(record)
        k += 1


def holds_result(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a result that a new run would overwrite: a finished run (``run_K/result.json``)
    or a final result.json of runs that ended. A directory left by an interrupted or failed attempt before
    any run finished holds none (a requeued SLURM job starts over in it)."""
    run_dir = Path(run_dir)
    if any(run_dir.glob("run_*/result.json")):
        return True
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(result, dict) and bool(result.get("finished_at")) and result.get("status") in ("success", "aborted")
            and not result.get("error") and result.get("interrupted") is None)


def check_run_dir(cfg: TrainConfig) -> None:
    """``--run-dir`` never overwrites a result: refused (exit code 2) unless ``--resume`` continues it."""
    if not cfg.run_dir or cfg.resume or not holds_result(Path(cfg.run_dir)):
        return
    done = [r["run"] for r in finished_runs(Path(cfg.run_dir))]
    nxt = Path(cfg.run_dir) / f"run_{len(done) + 1}" / "checkpoint.pt"
    resume = (f"continue it with --resume {nxt} (keeps the finished runs)" if nxt.is_file() and len(done) < cfg.runs
              else "continue it with --resume CHECKPOINT (keeps the finished runs)")
    raise ConfigError(f"invalid value for 'run_dir': {cfg.run_dir} already holds a result"
                      + (f" (run(s) {done} finished)" if done else "") + "; mlbench never overwrites one",
                      f"leave out --run-dir (a new directory is made under --output-dir), pick a new one, or {resume}")


def _run_dir(cfg: TrainConfig, dinfo: distributed.DistInfo, device) -> Path:
    if cfg.run_dir:
        check_run_dir(cfg)
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
        "compute": o.compute_record(), "speed": o.speed,
    }


def outcome_from_record(record: dict[str, Any], eval_count_mismatch: bool = False) -> RunOutcome:
    """The runner's RunOutcome back from a run record in result.json (``run_record`` inverted)."""
    metrics = dict(record.get("metrics") or {})
    base_keys = set(RunOutcome(seed=0).metrics())
    train_s = metrics.get("train/s") or 0.0
    compute = record.get("compute") or {}
    return RunOutcome(
        seed=record["seed"], status=record["status"], reason=record.get("reason", ""),
        epochs=record.get("epochs", 0), samples=record.get("samples", 0), quality=record.get("quality"),
        reached_target=bool(record.get("reached_target")), time_to_train_s=metrics.get("time_to_train/s"),
        init_s=metrics.get("init/s") or 0.0, train_s=train_s, eval_s=metrics.get("eval/s") or 0.0,
        data_wait_s=(metrics.get("data/wait_share") or 0.0) * train_s, evals=list(record.get("evals") or []),
        resumed_from=record.get("resumed_from"), eval_count_mismatch=eval_count_mismatch,
        base_lr=record.get("base_lr"), params_in_sync=metrics.get("dist/params_in_sync"),
        energy={k: v for k, v in metrics.items() if k not in base_keys and not k.startswith(("compute/", "model/"))},
        flops_per_sample=compute.get("flops_per_sample"), flops_method=compute.get("flops_counted") or RunOutcome.flops_method,
        peak=compute.get("peak"), kernel_peak=compute.get("kernel_peak"), world_size=compute.get("devices") or 1,
        precision=compute.get("precision") or "",
    )


def finish_result(result, cfg, bench, outcomes, checks, cache_cleared, run_dir: Path, final: bool) -> None:
    """Fill ``result`` (score, status, validity, runs) from the runs so far and write it; shared with the
    several-run requeueable SLURM job (:mod:`mlbench.slurm.multirun`), so both score and judge alike."""
    minutes = [o.time_to_train_s / 60 if o.status == "success" and o.time_to_train_s else None for o in outcomes]
    score = olympic_score(minutes, bench.runs_required)
    reasons = validity(cfg, bench, outcomes, checks, cache_cleared)
    if not final:
        reasons.append("in progress")
    if result.get("interrupted") is not None:
        done = [i + 1 for i, (o, c) in enumerate(zip(outcomes, checks)) if c.get("output") != "run did not finish"]
        result["runs_finished"] = done
        why = result["interrupted"] if str(result["interrupted"]).startswith(("interrupted", "terminated")) \
            else "interrupted (Ctrl-C)"
        reasons.append(f"{why} before all runs finished ({len(done)} of {cfg.runs} finished"
                       + (f": run(s) {done})" if done else ")"))
    if result.get("error"):
        reasons.append(f"failed: {result['error']}")
    result["runs"] = [run_record(i + 1, o, c) for i, (o, c) in enumerate(zip(outcomes, checks))]
    converged = [o for o in outcomes if o.status == "success"]
    result["status"] = ("failed" if result.get("error") else
                        "aborted" if final and result.get("interrupted") is not None else  # between runs too
                        "success" if outcomes and len(converged) == len(outcomes) and final
                        else "aborted" if final else "running")
    result["score"] = {"time_to_train_minutes": score.minutes, "method": score.method, "note": score.reason,
                       "runs": score.runs, "converged": score.converged}
    thr = [o.throughput for o in outcomes if o.throughput]
    last = outcomes[-1] if outcomes else None
    result["metrics"] = {
        "time_to_train/minutes": score.minutes,
        "throughput/samples_per_s": sorted(thr)[len(thr) // 2] if thr else None,
        **({"throughput/tokens_per_s": sorted(thr)[len(thr) // 2] * last.tokens_per_sample}
           if thr and last and last.tokens_per_sample else {}),
        **(last.memory if last else {}),  # the last run's peak memory (this process)
        "quality/last": last.quality if last else None,
        "data/wait_share": last.metrics()["data/wait_share"] if last else None,
        **(last.energy if last else {}),  # the last run's energy (informative), see mlbench.results.energy
        **(last.compute_metrics() if last else {}),  # the last run's efficiency (see harness.RunOutcome)
    }
    if last is not None:
        result["compute"] = last.compute_record()
        result["speed"] = last.speed  # the workload's automatic speed choices; the flags are in ``config``
    result["quality"]["value"] = last.quality if last else None
    result["quality"]["reached"] = bool(converged) and len(converged) == len(outcomes)
    result["valid"] = not reasons
    result["validity_reasons"] = reasons
    result["finished_at"] = runs.now_iso() if final else None
    runs.write_json(run_dir / "result.json", result)
    if final:
        from mlbench.results.store import record

        record(run_dir)  # index into <output_dir>/results.db; a store failure is only a warning


def print_summary(result: dict) -> None:
    score = result["score"]
    q = result["quality"]
    lines = [
        "",
        f"result: {result['benchmark']} {result['size']}: {result['status']}",
        f"  quality: {q['metric']} = {_f(q.get('value'))} (target {q['target']})",
        f"  time to train: {_f(score['time_to_train_minutes'])} min ({score['method']}"
        + (f"; {score['note']}" if score['note'] else "") + ")",
        f"  throughput: {_f(result['metrics']['throughput/samples_per_s'], 1)} samples/s (training steps only)",
        f"  valid for MLPerf submission: {'yes' if result['valid'] else 'no'}",
    ]
    lines += [f"    - {r}" for r in result["validity_reasons"]]
    from mlbench.efficiency.mfu import summary_lines

    lines += [f"  {line}" for line in summary_lines(result["metrics"], result.get("compute"))]
    lines.append(f"  run directory: {os_path_of(result)}")
    print("\n".join(lines), flush=True)


def os_path_of(result: dict) -> str:
    cfg = result["config"]
    return cfg.get("run_dir") or os.path.join(cfg["output_dir"], result["run_id"])


def _f(v, nd: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"
