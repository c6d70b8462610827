"""``mlbench infer`` for language models: the same run as :mod:`mlbench.inference.runner` (its ``execute`` drives
both), with a generation engine (:mod:`mlbench.inference.generation`) behind a token-latency SUT
(:mod:`mlbench.inference.token_sut`) instead of a batch backend.

A benchmark's ``inference.py`` opts in with ``GENERATION = True`` and a ``build_task(bench, opts)`` whose task
gives: ``dataset()`` (a store with ``total_count``, ``performance_count``, ``load``/``unload``, ``prompt(i)`` ->
token ids, ``label(i)``), ``model_dir()`` (a Hugging Face directory), ``max_new_tokens``, ``context_length``,
``eos_token_ids``, ``metric``, ``accuracy(responses, store)`` -> scores, ``accuracy_checks(scores, store)`` ->
[{name, value, bound, op, ok}] (every one must hold), ``accuracy_report(scores)`` -> the text of
``accuracy.txt`` as the official checker reads it, and optionally ``info()``.

Scenarios: Offline, Server, SingleStream as LoadGen runs them with the definition's LoadGen model; Interactive
is LoadGen's Server scenario under the definition's interactive model (``loadgen_scenario_models``).

A speech task whose inference module lists a backend in ``REQUEST_BACKENDS`` runs here with that backend too
(``whisper --backend openai``): its task says ``engine_kind = "transcription"`` (the engine comes from
``generation.TRANSCRIPTION_ENGINES``), its store's ``prompt(i)`` is one WAV file, ``task.response(text, ids)`` is what
LoadGen logs of a returned text, and ``accuracy`` is scored as the batch runner scores it (no ``accuracy_checks``).
Such an engine does not stream (no first token), so LoadGen's token latencies are off, except in Offline when the
engine counts tokens (tokens/s from the responses' counts, which needs no first token).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbench import registry
from mlbench.errors import ConfigError
from mlbench.inference import generation, logs, runner, settings
from mlbench.inference import task as task_mod
from mlbench.inference.config import OPENAI_OPTIONS, TASK_OPTIONS, InferConfig
from mlbench.inference.sut import QSL
from mlbench.inference.token_sut import TokenSUT

SCENARIOS = ("Offline", "Server", "Interactive", "SingleStream")
# LoadGen's early stopping on token latencies (p99) passes only from this many queries, even with none over a bound
# (its detail log after 40 and after 120 queries, none over: "would need to run at least 419 / 339 more").
TOKEN_EARLY_STOPPING_QUERIES = 459
DEFAULT_BATCH = {"Offline": 32, "Server": 16, "Interactive": 8, "SingleStream": 1}


@dataclass
class Session(runner.Session):
    """A runner session whose backend is a generation engine and whose SUT is the token-latency SUT."""

    @property
    def ops(self):
        import mlbench.inference.generate_run as me

        return me

    def close(self) -> None:
        if self.loadgen_running:
            return
        self.sut.stop()  # stops the engine too
        self.qsl.destroy()


class _Relay:
    """The engine's callbacks, forwarded to the warm-up collector or to the SUT."""

    def __init__(self) -> None:
        self.target: Any = None

    def on_first_token(self, id: int, token_ids: list[int]) -> None:
        self.target.on_first_token(id, token_ids)

    def on_done(self, id: int, token_ids: list[int], token_count: int | None = None, *,
                text: str | None = None) -> None:
        self.target.on_done(id, token_ids, token_count, text=text)

    def on_error(self, id: int, message: str) -> None:
        self.target.on_error(id, message)


class _Collect:
    def __init__(self, n: int) -> None:
        self.n, self.done, self.errors = n, 0, []
        self.event = threading.Event()
        self.lock = threading.Lock()

    def on_first_token(self, id: int, token_ids: list[int]) -> None:
        pass

    def on_done(self, id: int, token_ids: list[int], token_count: int | None = None, *,
                text: str | None = None) -> None:
        self._one()

    def on_error(self, id: int, message: str) -> None:
        self.errors.append(message)
        self._one()

    def _one(self) -> None:
        with self.lock:
            self.done += 1
            if self.done >= self.n:
                self.event.set()


def engine_name(cfg: InferConfig) -> str:
    """The engine of ``--backend`` (``pytorch``, the default, means ``transformers`` for language models)."""
    requests = getattr(registry.get(cfg.benchmark, cfg.size).inference, "REQUEST_BACKENDS", ())
    if cfg.backend in requests:
        return cfg.backend
    name = "transformers" if cfg.backend == "pytorch" else cfg.backend
    if name not in generation.ENGINES:
        raise ConfigError(f"--backend {cfg.backend} does not run language models",
                          f"use --backend {' or '.join(generation.ENGINES)}")
    return name


def open_session(cfg: InferConfig, say) -> Session:
    """Build the task and the engine, load the model, estimate its speed on a warm-up batch (all untimed)."""
    from mlbench import allocator

    allocator.configure()
    if cfg.scenario not in SCENARIOS:
        raise ConfigError(f"--scenario {cfg.scenario} is not defined for language models",
                          f"use one of {', '.join(SCENARIOS)}")
    if cfg.compliance:
        raise ConfigError("--compliance (TEST01/TEST04) does not apply to language models",
                          "drop --compliance")
    if cfg.cuda_graphs or cfg.compile:
        raise ConfigError("--cuda-graphs and --compile apply to the pytorch batch backend, not to generation engines",
                          "drop them")
    name = engine_name(cfg)
    handle = registry.get(cfg.benchmark, cfg.size)
    bench = handle.definition
    model_name(bench, cfg.scenario)  # a scenario the benchmark lacks fails here
    runner.accuracy_target(bench, cfg.target)
    opts = task_mod.TaskOptions(data_dir=cfg.data_dir, weights=cfg.weights, offline=cfg.offline,
                                train_if_missing=cfg.train_if_missing, say=say, max_samples=cfg.max_samples,
                                backend=cfg.backend,
                                extra={k: getattr(cfg, k) for k in TASK_OPTIONS if getattr(cfg, k) is not None})
    task = task_mod.build(handle, opts)
    store = task.dataset()
    bs = cfg.batch_size or DEFAULT_BATCH[cfg.scenario]
    threads = cfg.threads or runner.backends.base.default_threads(1)
    kind = getattr(task, "engine_kind", "text")
    engine = generation.create(name, task.model_dir(), generation.EngineSettings(
        device=cfg.device, precision=cfg.precision, batch_size=bs, max_wait_s=cfg.max_wait_ms / 1000,
        threads=threads, eos_token_ids=tuple(getattr(task, "eos_token_ids", ())),
        context_length=getattr(task, "context_length", None),
        options={**opts.extra, **({k: getattr(cfg, k) for k in OPENAI_OPTIONS} if name == "openai" else {}),
                 **({"batching": cfg.batching} if cfg.batching else {})}),
        kind=kind)
    say(f"loading the model into the {name} engine ({cfg.precision}, {cfg.device}, batch {bs}, {threads} threads)"
        if kind == "text" else f"the {name} {kind} engine: {engine.info()['batching']}")  # its --concurrency
    relay = _Relay()
    engine.start(relay)
    try:
        qps, lat = _estimate(engine, relay, store, task.max_new_tokens, bs)
        sut = TokenSUT(engine, store, task.max_new_tokens, first_tokens=getattr(engine, "streams", True),
                       respond=getattr(task, "response", None))
        relay.target = sut
        sut.construct()
        qsl = QSL(store, store.performance_count)
    except BaseException:
        engine.stop()
        raise
    say(f"warm-up: {qps:.3g} samples/s at batch {bs}, {lat * 1000:.4g} ms for one sample alone")
    server_qps = cfg.target_qps or qps * 0.5
    return Session(cfg, bench, task, store, engine, sut, qsl, bs, qps, lat, lat * 8, server_qps, say)


def _estimate(engine, relay: _Relay, store, max_new_tokens: int, bs: int) -> tuple[float, float]:
    """Samples/s of one full batch and seconds of one sample alone, generated untimed before the tests."""
    n = min(bs, store.total_count)
    idx = list(range(n))
    store.load(idx)
    prompts = [store.prompt(i) for i in idx]

    def run(k: int) -> float:
        coll = _Collect(k)
        relay.target = coll
        t0 = time.perf_counter()
        engine.submit([generation.GenerationRequest(-1 - j, j, prompts[j], max_new_tokens) for j in range(k)])
        engine.flush()
        if not coll.event.wait(3600):
            raise TimeoutError("the warm-up generation did not finish within an hour")
        if coll.errors:
            from mlbench.errors import MlbenchError

            raise MlbenchError(f"the engine failed on the warm-up prompts: {coll.errors[0]}",
                               "check the model directory, --device and --precision (--backend openai: the "
                               "server's log)")
        return time.perf_counter() - t0

    run(1)  # first call: lazy initialisation
    single = run(1)
    full = run(n) if n > 1 else single
    store.unload(idx)
    return n / full, single


def model_name(bench: Any, scenario: str) -> tuple[str, str]:
    """(LoadGen model, LoadGen scenario) of an mlbench scenario: Interactive is Server under its own model."""
    models = dict(bench.loadgen_scenario_models)
    if scenario == "Interactive":
        if "Interactive" not in models:
            raise ConfigError(f"{bench.name} has no Interactive scenario", "use --scenario Server or Offline")
        return models["Interactive"], "Server"
    return models.get(scenario, bench.loadgen_model_name or bench.name), scenario


def plan_for(s: Session, mode: str, cfg: InferConfig | None = None, server_qps: float | None = None
             ) -> settings.Plan:
    cfg = cfg or s.cfg
    model, lg_scenario = model_name(s.bench, cfg.scenario)
    bench = s.bench.derive(loadgen_model_name=model)
    p = settings.plan(dataclasses.replace(cfg, scenario=lg_scenario), bench, mode=mode,
                      store_counts=(s.store.total_count, s.store.performance_count),
                      estimate_qps=s.estimate_qps, estimate_latency_s=s.estimate_latency_s,
                      server_qps=server_qps or s.server_qps, estimate_multi_latency_s=s.estimate_multi_latency_s)
    if not s.sut.first_tokens and (lg_scenario != "Offline" or not getattr(s.backend, "counts_tokens", True)):
        # no first token (an answer in one piece): LoadGen's token latencies need one (see runner.plan_for);
        # Offline keeps them for tokens/s when the tokens are counted
        p.values["use_token_latencies"] = False
    if mode == "accuracy":
        p.values["min_query_count"] = 1  # accuracy: every sample once, whatever the scenario plans
    if cfg.quick and cfg.find_peak and lg_scenario == "Server" and mode == "performance" \
            and p.values["min_query_count"] < TOKEN_EARLY_STOPPING_QUERIES:
        p.values["min_query_count"] = TOKEN_EARLY_STOPPING_QUERIES  # else no probe could be VALID
        p.invalid_because.append(f"--find-peak with --quick: {TOKEN_EARLY_STOPPING_QUERIES} minimum queries, the "
                                 "fewest with which LoadGen's token-latency early stopping can pass")
    p.invalid_because += list(getattr(s.task, "deviations", ()))  # e.g. another --max-new-tokens than the rules'
    return p


def run_test(s: Session, plan: settings.Plan, outdir: Path, audit_config: Path | None = None) -> dict[str, Any]:
    """One LoadGen test (``runner.run_test``), its metrics as tokens and its verdict in token-latency words."""
    s.sut.reset()
    cpu0 = s.backend.info().get("generation_thread_cpu_s")
    test = runner.run_test(s, plan, outdir, audit_config, keep_detail=True)
    detail = test.pop("detail")
    info = s.backend.info()
    m = test["metrics"]
    if cpu0 is not None:  # an in-process engine: CPU time of its generating thread in this test
        m["sut/engine_cpu_s"] = info["generation_thread_cpu_s"] - cpu0
    for k in ("sut/mean_batch", "sut/backend_busy_share"):
        m.pop(k, None)
    counted = getattr(s.backend, "counts_tokens", True)
    m["sut/samples"] = s.sut.samples
    m["sut/generated_tokens"] = s.sut.tokens if counted else None
    m["sut/failed_requests"] = s.sut.failed
    mem = info.get("memory") or {}
    for key in ("weights_bytes", "kv_cache_peak_bytes", "device_peak_allocated_bytes"):
        if mem.get(key) is not None:
            m[f"memory/{key}"] = mem[key]
    if plan.mode == "performance" and plan.values.get("use_token_latencies", True):
        m.update(logs.token_metrics(detail, plan.scenario))
        test["loadgen_reasons"] = logs.token_reasons(detail, test["loadgen_reasons"])
    if not counted:
        m.pop("throughput/tokens_per_s", None)
        m.pop("sut/tokens_per_sample", None)
        test["tokens_per_s_unavailable"] = info.get("token_count_source")
    if s.sut.failed:
        test["loadgen_valid"] = False
        test["loadgen_reasons"].append(
            f"{s.sut.failed} request(s) failed and were completed empty (first: {s.sut.first_failure})")
    return test


run_planned = run_test  # no re-planning: a token-latency test runs as planned


def accuracy_of(s: Session, outdir: Path) -> dict[str, Any]:
    """Score mlperf_log_accuracy.json with every check of the task (all must hold); write accuracy.txt. A task
    without ``accuracy_checks`` (a speech task on a request engine) is scored as the batch runner scores it."""
    if not hasattr(s.task, "accuracy_checks"):
        return runner.accuracy_of(s, outdir)
    responses = logs.read_accuracy(outdir / "mlperf_log_accuracy.json")
    scores = s.task.accuracy(responses, s.store)
    checks = s.task.accuracy_checks(scores, s.store)
    (outdir / "accuracy.txt").write_text(s.task.accuracy_report(scores))
    name, target = runner.accuracy_target(s.bench, s.cfg.target)
    value = scores.get(s.task.metric)
    return {"metric": s.task.metric, "value": value, "target": target, "target_name": name,
            "higher_is_better": True, "source": s.bench.inference_target_source,
            "reached": bool(checks) and all(c["ok"] for c in checks), "checks": checks, "scores": scores,
            "samples_logged": len(responses), "dataset_samples": s.store.total_count}
