"""A scaling sweep: one benchmark trained at several process counts, compared against the smallest.

Each size is a full ``mlbench train`` in its own process (torchrun for more than one process), so every size
starts cold and the same way. The sweep's result.json holds, per size, the training throughput (samples/s in
training steps, data waits included, evaluation excluded: the harness's ``throughput/samples_per_s``), the
scaling efficiency ``thr(n) / (n / n0 * thr(n0))`` against the smallest size ``n0``, and the time to train when
the target was reached. Results are written after every size, so an interrupted sweep keeps the sizes done.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlbench import runs
from mlbench.config import TrainConfig
from mlbench.errors import ConfigError

TIMED = ("throughput: training samples per second over the training steps of each size (data waits included, "
         "evaluation excluded); scaling efficiency = throughput(n) / (n / n0 x throughput(n0)), n0 the smallest "
         "size; time to train: run_start to run_stop when the target was reached")


def parse_sizes(text: str) -> list[int]:
    """``"1,2,4"`` as [1, 2, 4]; ConfigError naming the bad item."""
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(f"invalid value for 'nproc': {item!r} in {text!r}",
                              "give process counts >= 1 separated by commas, e.g. --nproc 1,2,4")
        sizes.append(int(item))
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"invalid value for 'nproc': {text!r} repeats a size", "list each size once")
    return sorted(sizes)


def threads_for(nproc: int) -> str:
    """Intra-op threads per process: the user's OMP_NUM_THREADS, else the cores shared among the processes."""
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))


def run_size(cfg: TrainConfig, sweep_dir: Path, nproc: int) -> dict[str, Any]:
    """Train at ``nproc`` processes in a fresh process; the point for the sweep's result."""
    run_dir = sweep_dir / f"nproc_{nproc}"
    size_cfg = dataclasses.replace(cfg, nproc=nproc, run_dir=str(run_dir), output_dir=str(sweep_dir))
    config_file = sweep_dir / f"nproc_{nproc}.config.json"
    runs.write_json(config_file, size_cfg.to_dict())
    env = {**os.environ, "OMP_NUM_THREADS": threads_for(nproc)}
    print(f"\n=== {cfg.benchmark} {cfg.size}: {nproc} process(es), {env['OMP_NUM_THREADS']} thread(s) each ===",
          flush=True)
    code = subprocess.call([sys.executable, "-m", "mlbench", "train", cfg.benchmark, "--config", str(config_file)],
                           env=env)
    point: dict[str, Any] = {"nproc": nproc, "threads_per_process": int(env["OMP_NUM_THREADS"]),
                             "exit_code": code, "run_dir": str(run_dir)}
    result_file = run_dir / "result.json"
    if not result_file.is_file():
        return {**point, "status": "failed", "error": f"no result.json (mlbench train exited with {code})"}
    result = runs.read_json(result_file)
    ttt = result.get("score", {}).get("time_to_train_minutes") if result.get("status") == "success" else None
    return {**point, "status": result.get("status"), "world_size": result.get("world_size"),
            "throughput/samples_per_s": result.get("metrics", {}).get("throughput/samples_per_s"),
            "time_to_train/minutes": ttt, "quality": result.get("quality", {}).get("value"),
            "error": result.get("error")}


def efficiencies(points: list[dict[str, Any]]) -> None:
    """Add ``scaling_efficiency`` and ``speedup`` to each point, against the smallest size that has a rate."""
    rated = [p for p in points if p.get("throughput/samples_per_s")]
    if not rated:
        return
    base = min(rated, key=lambda p: p["nproc"])
    for p in rated:
        speedup = p["throughput/samples_per_s"] / base["throughput/samples_per_s"]
        p["speedup"] = speedup
        p["scaling_efficiency"] = speedup / (p["nproc"] / base["nproc"])


def sweep(cfg: TrainConfig, sizes: list[int]) -> dict[str, Any]:
    """Run every size; write and return the sweep's result.json."""
    sweep_dir = runs.create_run_dir(cfg.output_dir, "scale", cfg.benchmark, cfg.size)
    result: dict[str, Any] = {
        "schema": runs.RESULT_SCHEMA, "kind": "scale", "run_id": sweep_dir.name, "benchmark": cfg.benchmark,
        "size": cfg.size, "status": "running", "valid": False,
        "validity_reasons": ["a scaling sweep compares process counts on this system; it is not an MLPerf "
                             "result (each size's own result.json says whether that run is valid)"],
        "started_at": runs.now_iso(), "finished_at": None, "command": runs.command_line(), "device": cfg.device,
        "precision": cfg.precision, "timed": TIMED, "sizes": sizes, "points": [], "metrics": {},
        "quality": {}, "config": cfg.to_dict(), "notes": [],
        "load_average_1m_at_start": os.getloadavg()[0],  # other work on the machine skews every size
    }
    print(f"scaling sweep of {cfg.benchmark} {cfg.size} at {sizes} processes; results in {sweep_dir}", flush=True)
    try:
        for n in sizes:
            result["points"].append(run_size(cfg, sweep_dir, n))
            _summarise(result)
            runs.write_json(sweep_dir / "result.json", result)
    finally:
        done = len(result["points"]) == len(sizes)
        ok = done and all(p["status"] in ("success", "aborted") for p in result["points"])
        result["status"] = "success" if ok else "failed" if done else "interrupted"
        result["finished_at"] = runs.now_iso()
        _summarise(result)
        runs.write_json(sweep_dir / "result.json", result)
    result["run_dir"] = str(sweep_dir)
    return result


def _summarise(result: dict[str, Any]) -> None:
    efficiencies(result["points"])
    metrics: dict[str, Any] = {}
    for p in result["points"]:
        for key in ("throughput/samples_per_s", "scaling_efficiency", "speedup", "time_to_train/minutes"):
            metrics[f"nproc_{p['nproc']}/{key}"] = p.get(key)
    result["metrics"] = metrics
    reached = [p for p in result["points"] if p.get("time_to_train/minutes") is not None]
    result["quality"] = {"reached_at_nproc": [p["nproc"] for p in reached]}
    odd = [p["nproc"] for p in result["points"] if (p.get("scaling_efficiency") or 0) > 1.2]
    result["notes"] = [
        f"superlinear scaling at {odd} processes: the smaller size was probably slowed down (its threads "
        "contending with other load on the machine, or cache effects); check the load and rerun"] if odd else []
