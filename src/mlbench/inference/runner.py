"""One ``mlbench infer`` run: prepare the task and backend, run LoadGen test(s), write result.json.

Everything before ``StartTest`` (model export, quantization, warm-up, the throughput estimate, the matmul
calibration) is untimed. LoadGen does all the timing; we read its detail log. The result is written after
each test and again on Ctrl-C or a backend crash, so what LoadGen wrote is never lost.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbench import allocator, registry, runs, signals, sysinfo
from mlbench.errors import RunAborted
from mlbench.finite import HINT, NonFinite, nonfinite_metrics
from mlbench.inference import backends, inputs, logs, settings
from mlbench.inference import task as task_mod
from mlbench.inference.config import TASK_OPTIONS, InferConfig
from mlbench.inference.sut import QSL, SUT

DEFAULT_BATCH = {"Offline": 32, "Server": 32, "SingleStream": 1, "MultiStream": 8}
NULL_OFFLINE_QPS = 2_000_000.0  # above what the harness sustains with no model (1.75M/s measured): Offline runs a bit long, never short
NULL_OFFLINE_BATCH = 1024  # no compute per batch: large batches leave only the per-sample cost
NULL_SERVER_QPS = 10_000.0  # a Server default that stays VALID with no model; --find-peak finds the real peak


@dataclass
class Session:
    """What the tests of one run share: the task, its store, the backend, the SUT and the QSL."""

    cfg: InferConfig
    bench: Any
    task: Any
    store: Any
    backend: Any
    sut: SUT
    qsl: QSL
    batch_size: int
    estimate_qps: float
    estimate_latency_s: float
    estimate_multi_latency_s: float  # one MultiStream query (8 samples)
    server_qps: float  # the Server target when --target-qps is not given
    say: Any
    loadgen_running: bool = False  # interrupted while LoadGen still ran: never destroy its SUT/QSL

    def close(self) -> None:
        if self.loadgen_running:
            return
        self.sut.stop()
        self.qsl.destroy()
        self.backend.close()


def open_session(cfg: InferConfig, say) -> Session:
    """Build the task, load a warm-up batch, prepare the backend and estimate its speed (all untimed)."""
    allocator.configure()  # freed host memory kept for reuse (MLBENCH_MALLOC), before anything is allocated
    handle = registry.get(cfg.benchmark, cfg.size)
    bench = handle.definition
    accuracy_target(bench, cfg.target)  # an unknown --target fails before anything is built
    opts = task_mod.TaskOptions(data_dir=cfg.data_dir, weights=cfg.weights, offline=cfg.offline,
                                train_if_missing=cfg.train_if_missing, say=say,
                                max_samples=cfg.max_samples, backend=cfg.backend,
                                extra={k: getattr(cfg, k) for k in TASK_OPTIONS if getattr(cfg, k) is not None})
    task = task_mod.build(handle, opts)
    store = task.dataset()
    bs = cfg.batch_size or DEFAULT_BATCH[cfg.scenario]
    if cfg.batch_size is None and cfg.backend == "null" and cfg.scenario == "Offline":
        bs = NULL_OFFLINE_BATCH
    bs = batch_limit(task, cfg, bs)
    workers = cfg.workers or default_workers(task)
    threads = cfg.threads or backends.base.default_threads(workers if cfg.scenario in ("Server", "Offline") else 1)
    backend = backends.get(cfg.backend)(cfg, threads)
    warm = list(range(min(bs, store.total_count)))
    store.load(warm)
    example = store.batch(warm)
    say(f"preparing the {cfg.backend} backend ({cfg.precision}, {threads} threads, batch {bs})")
    backend.prepare(task, example)
    box: dict = {}  # estimate on a worker thread, as the SUT runs (each thread has its own OpenMP pool)
    t = threading.Thread(target=lambda: box.update(est=_estimate(backend, example)), name="mlbench-estimate")
    t.start()
    t.join()
    qps, lat, lat_multi = box["est"]
    store.unload(warm)
    sut = SUT(task, store, backend, scenario=cfg.scenario, batch_size=bs, max_wait_s=cfg.max_wait_ms / 1000,
              workers=workers, host_threads=threads)
    sut.start()
    qsl = QSL(store, store.performance_count, on_load=getattr(backend, "on_load", None))
    server_qps = cfg.target_qps or (NULL_SERVER_QPS if not backend.runs_model else qps * 0.5)
    return Session(cfg, bench, task, store, backend, sut, qsl, bs, qps, lat, lat_multi, server_qps, say)


def batch_limit(task, cfg: InferConfig, bs: int) -> int:
    """``bs``, or less where the model file runs at most ``task.max_batch_size`` samples at a time (e.g. an ONNX
    file with a fixed batch of 1); an explicit larger --batch-size is refused."""
    limit = getattr(task, "max_batch_size", None)
    if not limit or cfg.backend == "null" or bs <= limit:
        return bs
    if cfg.batch_size is not None:
        from mlbench.errors import ConfigError

        raise ConfigError(f"invalid value for 'batch_size': {cfg.batch_size}: the model file runs at most {limit} "
                          f"sample(s) at a time ({getattr(task, 'max_batch_reason', 'its interface')})",
                          f"give --batch-size {limit}, or drop it")
    return limit


def default_workers(task) -> int:
    """SUT workers when --workers is not given: 1 (one batch at a time on all cores), or 2 for a task whose
    ``postprocess`` is real host work (``task.host_postprocess``), so that one worker's post-processing runs
    while the other's network computes."""
    if getattr(task, "host_postprocess", False):
        return min(2, backends.base.usable_cores())
    return 1


def _estimate(backend, example) -> tuple[float, float, float]:
    """Samples/s at the batch size, seconds per single sample and per MultiStream query (8 samples), from a
    few untimed predictions. LoadGen plans queries from these: too low a latency only makes it plan more."""
    if not backend.runs_model:  # the null backend: only the harness runs; low estimates only make LoadGen plan more
        return NULL_OFFLINE_QPS, 4e-6, 5e-6  # MultiStream: 7.9 us a query of 8 measured with the gather
    def timed(x) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            backend.predict(x)
            best = min(best, time.perf_counter() - t0)
        return best
    single = timed(inputs.head(example, 1))
    multi = timed(inputs.head(example, 8)) if inputs.length(example) >= 8 else 8 * single
    return inputs.length(example) / timed(example), single, multi


def plan_for(s: Session, mode: str, cfg: InferConfig | None = None, server_qps: float | None = None
             ) -> settings.Plan:
    """LoadGen settings for one test of this session (``cfg`` overrides the session's, e.g. for probes)."""
    p = settings.plan(cfg or s.cfg, s.bench, mode=mode, store_counts=(s.store.total_count, s.store.performance_count),
                      estimate_qps=s.estimate_qps, estimate_latency_s=s.estimate_latency_s,
                      server_qps=server_qps or s.server_qps, estimate_multi_latency_s=s.estimate_multi_latency_s)
    if p.scenario != "Offline":
        # Token latencies (mlperf.conf, e.g. for a speech model whose responses count tokens) need each query's first
        # token reported (LoadGen's FirstTokenComplete), which a batch backend's whole-sequence output cannot give
        # (the generation engines of generate_run do); in SingleStream, LoadGen 6.0.17 crashes without it. Offline
        # needs only the responses' token counts (tokens/s).
        p.values["use_token_latencies"] = False
    return p


def run_test(s: Session, plan: settings.Plan, outdir: Path, audit_config: Path | None = None, *,
             keep_detail: bool = False) -> dict[str, Any]:
    """Run one LoadGen test into ``outdir``; returns {loadgen_valid, loadgen_reasons, metrics, dir}, and with
    ``keep_detail`` the detail log's entries as ``detail`` (read once here; a caller that reads more of them pops
    it before the test goes into result.json). Raises RunAborted when LoadGen stopped without a result."""
    import mlperf_loadgen as lg

    outdir.mkdir(parents=True, exist_ok=True)
    lg_settings = plan.to_loadgen()
    log_settings = settings.log_settings(outdir, s.cfg.trace)
    s.sut.abort, s.sut.error, s.sut._flush = False, None, False
    s.sut.batches, s.sut.samples, s.sut.busy_s, s.sut.tokens = 0, 0, 0.0, 0  # per test
    # LoadGen reads an audit.config by name from the working directory; a missing file means no audit.
    audit = str(audit_config) if audit_config else str(outdir / "no-audit.config")
    done = threading.Event()
    crashed: list[BaseException] = []

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(s.sut.handle, s.qsl.handle, lg_settings, log_settings, audit)
        except BaseException as exc:  # noqa: BLE001 - LoadGen failed: the main thread reports it as a failed run
            crashed.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=target, name="mlbench-loadgen", daemon=True)
    started = time.perf_counter()
    t.start()
    try:
        while not done.wait(0.2):  # the main thread stays in Python so that Ctrl-C reaches us
            pass
    except KeyboardInterrupt as exc:
        s.say(f"{signals.describe(exc)}: completing pending samples so that LoadGen writes its logs")
        s.sut.drain()
        if not done.wait(5):  # LoadGen keeps its schedule (Server): it must not be torn down under it
            s.loadgen_running = True
        raise
    wall = time.perf_counter() - started
    error = s.qsl.error or s.sut.error
    if error is not None:
        raise RunAborted(f"the test stopped: {type(error).__name__}: {error}",
                         "see the traceback-free message above and LoadGen's logs in the run directory") from error
    if crashed:
        exc = crashed[0]
        raise RunAborted(f"LoadGen failed: {type(exc).__name__}: {exc}",
                         f"see LoadGen's logs in {outdir}; lower extreme settings (--target-qps, --duration-s)"
                         ) from exc
    detail = logs.read_detail(outdir / "mlperf_log_detail.txt")
    if plan.mode == "performance" and "result_validity" not in detail:
        errors = "; ".join(detail.get("_errors", [])) or "no result in its detail log"
        raise RunAborted(f"LoadGen ended the {plan.mode} test without a result ({errors})",
                         f"see {outdir / 'mlperf_log_detail.txt'}; lower extreme settings "
                         "(--target-qps, --duration-s)")
    shortest = s.estimate_latency_s if getattr(s.backend, "runs_model", True) else None
    valid, reasons = (logs.validity(detail, plan.scenario, min_latency_s=shortest) if plan.mode == "performance"
                      else (True, []))
    m = logs.metrics(detail, plan.scenario) if plan.mode == "performance" else {}
    m["test/wall_s"] = wall
    if s.sut.samples:
        m["sut/mean_batch"] = s.sut.samples / max(1, s.sut.batches)
        m["sut/backend_busy_share"] = s.sut.busy_s / wall if wall > 0 else None  # summed over workers
    if s.sut.tokens and s.sut.samples:
        m["sut/tokens_per_sample"] = s.sut.tokens / s.sut.samples
        if m.get("throughput/tokens_per_s") is None and m.get("throughput/samples_per_s"):
            # LoadGen counts tokens only with token latencies (Offline here): the SUT's count at LoadGen's rate
            m["throughput/tokens_per_s"] = m["throughput/samples_per_s"] * m["sut/tokens_per_sample"]
    return {"loadgen_valid": valid, "loadgen_reasons": reasons, "metrics": m, "dir": str(outdir),
            **({"detail": detail} if keep_detail else {})}


OFFLINE_REPLAN_MARGIN = 1.5  # a repeated Offline test expects this times the rate the short one measured
OFFLINE_REPLAN_TRIES = 2  # repeats at most (a very short first test underestimates the rate: fixed costs)


def run_planned(s: Session, plan: settings.Plan, outdir: Path, audit_config: Path | None = None
                ) -> dict[str, Any]:
    """:func:`run_test`, and, when an Offline performance test planned from the warm-up estimate (no
    --target-qps) ran too short because the harness completed samples faster than that estimate, the same
    test again with LoadGen's expected QPS at 1.5x the rate it measured (at most twice). The short try's logs
    move to ``outdir/short_try_N``; ``test["replanned"]`` says what was repeated and why."""
    test = run_test(s, plan, outdir, audit_config)
    tries: list[dict[str, Any]] = []
    while _too_short_offline(s, plan, test) and len(tries) < OFFLINE_REPLAN_TRIES:
        expected = float(plan.values["offline_expected_qps"])
        rate = float(test["metrics"]["throughput/samples_per_s"])
        new = _replan_qps(rate * OFFLINE_REPLAN_MARGIN, plan)
        if new <= expected:  # capped by memory: repeating cannot plan more samples
            break
        keep = outdir / f"short_try_{len(tries) + 1}"
        keep.mkdir(parents=True, exist_ok=True)
        for f in list(outdir.iterdir()):
            if f.is_file() and f.name.startswith("mlperf_log_"):
                f.replace(keep / f.name)
        tries.append({"expected_qps": expected, "samples_per_s": rate,
                      "duration_s": logs.measured_duration_s(logs.read_detail(keep / "mlperf_log_detail.txt"),
                                                             plan.scenario),
                      "logs": str(keep)})
        s.say(f"performance: the test ran too short: LoadGen planned {expected:,.0f} samples/s from the warm-up "
            f"estimate and the SUT completed {rate:,.0f}; repeating it once with {new:,.0f} expected "
            f"({OFFLINE_REPLAN_MARGIN:g}x the measured rate)")
        s.estimate_qps = max(s.estimate_qps, rate)  # later tests of this run (compliance) plan from it
        plan.values["offline_expected_qps"] = new
        test = run_test(s, plan, outdir, audit_config)
    if tries:
        test["replanned"] = {
            "why": "the Offline test planned from the warm-up estimate ran shorter than the minimum duration "
                   "(the SUT completed samples faster than estimated); it was repeated with LoadGen's expected "
                   f"QPS at {OFFLINE_REPLAN_MARGIN:g}x the rate the short test measured",
            "tries": tries, "expected_qps": float(plan.values["offline_expected_qps"])}
    return test


def _too_short_offline(s: Session, plan: settings.Plan, test: dict[str, Any]) -> bool:
    """An Offline performance test, planned from the estimate, that LoadGen found too short and nothing else."""
    if plan.scenario != "Offline" or plan.mode != "performance" or s.cfg.target_qps or test["loadgen_valid"]:
        return False
    if s.cfg.user_conf and "offline_expected_qps" in Path(s.cfg.user_conf).read_text():
        return False  # the user chose the expected rate: keep their plan
    reasons = test["loadgen_reasons"]
    return (bool(reasons) and all(r.startswith("duration too short") for r in reasons)
            and bool(test["metrics"].get("throughput/samples_per_s")))


def _replan_qps(qps: float, plan: settings.Plan) -> float:
    """``qps`` capped at what LoadGen can hold in memory over the plan's minimum duration."""
    from mlbench.inference.config import loadgen_sample_limit

    need_s = max(1e-3, plan.values["min_duration_ms"] / 1000)
    return float(min(qps, loadgen_sample_limit() / need_s))


def accuracy_of(s: Session, outdir: Path) -> dict[str, Any]:
    """Score mlperf_log_accuracy.json with the task's metric and compare it with the definition's target."""
    responses = logs.read_accuracy(outdir / "mlperf_log_accuracy.json")
    scores = s.task.accuracy(responses, s.store)
    name, target = accuracy_target(s.bench, s.cfg.target)
    value = scores.get(s.task.metric)
    if value is not None and nonfinite_metrics({s.task.metric: value}):
        raise NonFinite(f"the accuracy check gave {s.task.metric} = {value}: the model's outputs hold NaN or "
                        "infinite values, so nothing is scored", HINT)
    higher = getattr(s.task, "higher_is_better", True)
    reached = value is not None and target is not None and (value >= target if higher else value <= target)
    return {"metric": s.task.metric, "value": value, "target": target, "target_name": name,
            "higher_is_better": higher, "source": s.bench.inference_target_source, "reached": reached,
            "scores": scores,
            "samples_logged": len(responses), "dataset_samples": s.store.total_count}


def accuracy_target(bench: Any, name: str | None) -> tuple[str | None, float | None]:
    """(name, value) of the accuracy target: ``name`` among the benchmark's ``inference_targets`` (e.g. "99",
    "99.9"), or its single ``inference_target`` when it has no named ones."""
    from mlbench.errors import ConfigError

    named = bench.inference_targets
    if name is None:
        if named:
            first = next(iter(named))
            return first, named[first]
        return None, bench.inference_target
    if name not in named:
        known = ", ".join(named) if named else "none: it has one target"
        raise ConfigError(f"{bench.name} {bench.size} has no accuracy target '{name}' (known: {known})",
                          "drop --target, or pass one of the known names")
    return name, named[name]


def new_run_dir(cfg: InferConfig) -> Path:
    return runs.create_run_dir(cfg.output_dir, "infer", cfg.benchmark, cfg.size, cfg.scenario.lower())


def base_result(cfg: InferConfig, bench: Any, run_dir: Path) -> dict[str, Any]:
    info = sysinfo.describe()
    runs.write_json(run_dir / "config.json", cfg.to_dict())
    runs.write_json(run_dir / "system.json", info)
    if cfg.user_conf:
        shutil.copyfile(cfg.user_conf, run_dir / "user.conf")
    return {
        "schema": runs.RESULT_SCHEMA, "kind": "infer", "run_id": run_dir.name, "benchmark": bench.name,
        "size": bench.size, "division": bench.division, "scenario": cfg.scenario, "mode": cfg.mode,
        "backend": {"name": cfg.backend}, "status": "running", "valid": False, "validity_reasons": [],
        "started_at": runs.now_iso(), "finished_at": None, "command": runs.command_line(), "device": cfg.device,
        "precision": cfg.precision, "metrics": {}, "quality": None, "config": cfg.to_dict(),
        "allocator": allocator.configure(),
        "system": {"fingerprint": info["system_fingerprint"],
                   "host_processor_model_name": info.get("host_processor_model_name"),
                   "accelerator_model_name": info.get("accelerator_model_name")},
        "timed": "LoadGen's own clock: from the first query issued to the last completed (the scenario's "
                 "MLPerf metric); model preparation, warm-up and sample loading are untimed",
        "tests": {},
    }
