"""``execute(cfg)``: the whole ``mlbench infer`` run and its result.json (schema in docs/ARCHITECTURE.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlbench import errors, runs, signals
from mlbench.efficiency import flops as flops_mod
from mlbench.efficiency import kernels, mfu
from mlbench.errors import MlbenchError, RunAborted
from mlbench.inference import inputs, logs, runner
from mlbench.inference.config import InferConfig
from mlbench.results.store import record


def execute(cfg: InferConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Run ``cfg`` and return the result (also written to ``<run_dir>/result.json`` after each test)."""
    from mlbench import allocator, registry

    allocator.configure()  # an unknown MLBENCH_MALLOC fails here, before a run directory is made
    bench = registry.get(cfg.benchmark, cfg.size).definition
    run_dir = run_dir or runner.new_run_dir(cfg)
    console = runs.Console(run_dir / "console.log")
    result = runner.base_result(cfg, bench, run_dir)
    result["run_dir"] = str(run_dir)
    state: dict[str, Any] = {"plan_reasons": [], "tests": result["tests"]}
    console(f"mlbench infer {bench.name} --size {bench.size} --scenario {cfg.scenario} --mode {cfg.mode} "
            f"--backend {cfg.backend}: {bench.description}")
    console(f"run directory {run_dir}")
    session = None
    try:
        session = harness(cfg).open_session(cfg, console)
        result["backend"] = {**session.backend.info(), "sut_workers": session.sut.n_workers,
                             "batch_size": session.batch_size, "sut_pipeline": session.sut.pipeline}
        result["device"] = result["backend"].get("device", cfg.device)
        if hasattr(session.task, "info"):  # what the task chose that the options do not say (e.g. query sizes)
            result["task"] = session.task.info()
            mf = result["task"].get("model_file") or {}
            if mf.get("interface"):
                console(f"model: {mf['interface']}" + (f"; pre-processing: {mf['pre_processing']}"
                                                       if mf.get("pre_processing") else ""))
        _compute_info(result, session)
        if cfg.find_peak:  # probes first; the performance test below at the peak confirms it
            from mlbench.inference import find_peak

            find_peak.find_peak(session, run_dir, result, state, console)
        modes = ["performance", "accuracy"] if cfg.mode == "submission" else [cfg.mode]
        for mode in modes:
            outdir = run_dir / mode if len(modes) > 1 else run_dir
            _one_test(session, mode, outdir, result, state, console)
            _backend_counters(result, session)
            _finish(result, state, run_dir, final=False)
        if result.get("find_peak") and "performance" in state["tests"]:
            ok = state["tests"]["performance"]["loadgen_valid"]
            result["find_peak"]["confirmed"] = ok
            tps = state["tests"]["performance"]["metrics"].get("throughput/tokens_per_s")
            if tps is not None:  # a language model: the peak as MLPerf scores it, in tokens/s
                result["find_peak"]["peak_tokens_per_s"] = tps
            if not ok:
                console("find-peak: the confirming run at the peak was INVALID: the short probes overestimated it; "
                        "rerun with a lower --target-qps or a longer --duration-s")
        if cfg.compliance:
            from mlbench.inference import compliance

            compliance.compliance(session, run_dir, result, state, console)
        _backend_counters(result, session)
        result["status"] = "success"
    except BaseException as exc:
        if not signals.stopped(exc) and not isinstance(exc, Exception):
            raise  # SystemExit and the like: nothing to record
        if signals.stopped(exc):  # Ctrl-C, SIGTERM, SIGHUP: aborted, with why
            result["status"], result["abort_reason"] = "aborted", signals.describe(exc)
        else:  # a backend, LoadGen or data failure: the run failed, never success
            exc = errors.explain(exc)  # a missing optional package: which, and how to install it
            message = exc.message if isinstance(exc, MlbenchError) else f"{type(exc).__name__}: {exc}"
            result["status"], result["abort_reason"], result["error"] = "failed", message, message
            if not isinstance(exc, MlbenchError):  # unexpected: keep the traceback for a bug report
                import traceback

                (run_dir / "error.log").write_text("".join(traceback.format_exception(exc)))
        if session is not None and "backend" in result:
            try:
                _backend_counters(result, session)
            except Exception:  # noqa: BLE001 - the run's own error is the one to report
                pass
        _finish(result, state, run_dir, final=True)
        if signals.stopped(exc) and session is not None and session.loadgen_running:
            # LoadGen's threads still run its schedule; tearing them down crashes the process. The result
            # and LoadGen's logs so far are on disk: leave at once with the interrupt's exit code.
            console(f"{signals.describe(exc)}; result and LoadGen's logs so far are in {run_dir}")
            console.close()
            os._exit(signals.exit_code(exc))
        console.close()
        if signals.stopped(exc) and not isinstance(exc, KeyboardInterrupt):
            raise signals.Stopped(signals.signum_of(exc)) from exc
        if not isinstance(exc, (KeyboardInterrupt, MlbenchError)):
            raise RunAborted(f"the run failed: {result['error']}",
                             f"the traceback is in {run_dir / 'error.log'}; the result says failed") from exc
        raise
    finally:
        if session is not None:
            session.close()
    _finish(result, state, run_dir, final=True)
    console.close()
    return result


def harness(cfg: InferConfig):
    """The module that runs ``cfg``'s tests: :mod:`runner` (batch backends), or :mod:`generate_run` for a language
    model (its inference module says ``GENERATION = True``). Both give open_session, plan_for, run_test,
    run_planned and accuracy_of; a session's ``ops`` is its module."""
    from mlbench import registry

    module = registry.get(cfg.benchmark, cfg.size).inference
    if getattr(module, "GENERATION", False) or cfg.backend in getattr(module, "REQUEST_BACKENDS", ()):
        from mlbench.inference import generate_run

        return generate_run
    from mlbench.inference.generation import ENGINES

    if cfg.backend in ENGINES:
        from mlbench.errors import ConfigError

        raise ConfigError(f"--backend {cfg.backend} runs language models (and speech-to-text); {cfg.benchmark} is not "
                          "one", "use --backend pytorch, onnxruntime or null")
    if cfg.batching:
        from mlbench.errors import ConfigError

        raise ConfigError(f"--batching applies to language models' transformers engine; {cfg.benchmark} is not one",
                          "drop --batching")
    if cfg.scenario == "Interactive":
        from mlbench.errors import ConfigError

        raise ConfigError(f"the Interactive scenario is defined for language models only, not {cfg.benchmark}",
                          "use --scenario Server")
    return runner


def _ops(s):
    return getattr(s, "ops", runner)


def _backend_counters(result: dict, s) -> None:
    """The backend's info again after a test: its counters (e.g. batches run outside the CUDA graphs) grew."""
    result["backend"].update(s.backend.info())


def _one_test(s, mode: str, outdir: Path, result: dict, state: dict, say) -> None:
    cfg = s.cfg
    ops = _ops(s)
    p = ops.plan_for(s, mode)
    state["plan_reasons"] = sorted(set(state["plan_reasons"]) | set(p.invalid_because))
    say(f"{mode} test: {cfg.scenario}, " + (
        f"{p.values['min_duration_ms'] / 1000:g} s minimum" if mode == "performance" else
        f"all {s.store.total_count} samples"))
    test = ops.run_planned(s, p, outdir)
    test["settings"] = p.values
    if mode == "accuracy":
        test["accuracy"] = ops.accuracy_of(s, outdir)
        a = test["accuracy"]
        say(f"accuracy: {a['metric']} = {a['value']:.4f} (target {a['target']:.4f}): "
            f"{'on target' if a['reached'] else 'BELOW TARGET'}")
        for c in a.get("checks", []):
            say(f"  {c['name']}: {c['value']:.6g} {c['op']} {c['bound']:.6g}: {'ok' if c['ok'] else 'NOT MET'}")
    else:
        m = test["metrics"]
        name = m["scenario_metric"]
        again = test.get("replanned")
        say(f"performance: {name} = {_fmt(m.get(name))}; LoadGen says "
            f"{'VALID' if test['loadgen_valid'] else 'INVALID'}"
            + (f" (repeated {len(again['tries'])}x: the warm-up estimate planned too few samples; LoadGen "
               f"expected {again['expected_qps']:,.0f} samples/s)" if again else ""))
        for line in logs.token_lines(m):
            say(f"  {line}")
        if test.get("tokens_per_s_unavailable"):
            say(f"  tokens/s: {test['tokens_per_s_unavailable']}; samples/s: "
                f"{_fmt(m.get('throughput/samples_per_s'))}")
        for r in test["loadgen_reasons"]:
            say(f"  - {r}")
    state["tests"][mode] = test


def torch_flops(model: Any, example: Any) -> float | None:
    """FLOPs of one forward pass on one sample (multiply-add counted as 2), by torch's FLOP counter given the
    CPU attention kernels it lacks (``mlbench.efficiency.flops.count``); None when it cannot trace the model."""
    import torch

    def forward() -> None:
        with torch.inference_mode():
            inputs.call(model, inputs.to_torch(inputs.head(example, 1)))

    return flops_mod.count(forward)


def _compute_info(result: dict, s) -> None:
    """Model FLOPs per sample (torch's counter on the PyTorch model; for ONNX Runtime, counted from the ONNX graph
    it runs; one forward pass at batch 1, counted once before the tests), the hardware peak MFU divides by and
    the measured kernel peak, both at the run's precision."""
    if not getattr(s.backend, "runs_model", False):
        return
    idx = [0]
    s.store.load(idx)
    x = s.store.batch(idx)
    s.store.unload(idx)
    state: dict[str, Any] = model_flops(s.backend, s.task, x)
    per_row = state.pop("flops_basis", None) == "row"
    state["flops_basis"] = "one sample's forward pass, counted once before the tests"
    if state.get("flops_per_sample") and isinstance(x, inputs.Ragged) and hasattr(s.store, "length"):
        # rows scored each on its own (the Ragged contract): FLOPs are per row; a sample costs its rows
        n = s.store.total_count
        mean_rows = sum(s.store.length(i) for i in range(n)) / n
        rows = 1 if per_row else int(x.offsets[-1])
        state["flops_per_sample"] = state["flops_per_sample"] / rows * mean_rows
        state["flops_basis"] += f"; per row, times the mean rows per sample ({mean_rows:.1f})"
    dev = str(result["device"]) if str(result["device"]).startswith("cuda") else "cpu"
    threads = s.backend.threads or 1
    if dev == "cpu" and s.cfg.scenario in ("Server", "Offline"):  # workers run side by side, each with threads
        from mlbench.inference.backends.base import usable_cores

        threads = min(usable_cores(), threads * max(1, s.sut.n_workers))
    try:
        state["peak"] = mfu.hardware_peak(dev, s.cfg.precision, threads=threads, user_tflops=s.cfg.peak_tflops,
                                          convolutional=dev.startswith("cuda") and _convolutional(s.task))
    except Exception as exc:  # noqa: BLE001 - the efficiency figures are informative only
        state["peak"] = {"kind": "unknown", "flops_per_s": None, "precision": s.cfg.precision,
                         "why": f"{type(exc).__name__}: {exc}"}
    try:
        state["kernel_peak"] = kernels.kernel_peak(dev, s.cfg.precision, threads)
    except Exception as exc:  # noqa: BLE001 - the calibration is informative only
        state["kernel_peak"] = {"error": f"{type(exc).__name__}: {exc}", "precision": s.cfg.precision}
    result["compute"] = state


def _convolutional(task) -> bool:
    """Whether the task's model has convolutions (an fp32 run on CUDA then computes on TF32, see ``mfu``)."""
    try:
        return mfu.is_convolutional(task.model())
    except Exception:  # noqa: BLE001 - an ONNX-only model: taken as not convolutional
        return False


def model_flops(backend, task, x) -> dict[str, Any]:
    """``{"flops_per_sample", "flops_method"}`` of one sample ``x`` (a batch of 1): from the fp32 ONNX graph
    when the backend runs an ONNX file (the file given, or the one exported), else torch's FLOP counter on the
    task's model. A Ragged sample's ONNX count is per row (``flops_basis: "row"``)."""
    onnx_path = getattr(backend, "fp32_path", None)
    if onnx_path is not None:
        from mlbench.inference import modelfile

        names = getattr(backend, "input_names", None) or [inputs.SINGLE]
        shapes = ({k: tuple(v.shape[1:]) for k, v in x.items()} if isinstance(x, dict)
                  else {names[0]: tuple(x.shape[1:])})
        out = {"flops_per_sample": modelfile.flops_per_sample(onnx_path, shapes),
               "flops_method": "counted from the ONNX graph (Conv, Gemm, MatMul, recurrent layers; multiply-add = 2)"}
        if isinstance(x, inputs.Ragged):
            out["flops_basis"] = "row"
        return out
    return {"flops_per_sample": torch_flops(task.model(), x),
            "flops_method": "torch.utils.flop_counter on the PyTorch model (multiply-add = 2)"}


def _finish(result: dict, state: dict, run_dir: Path, final: bool) -> None:
    cfg = InferConfig(**result["config"])
    tests = state["tests"]
    perf, acc = tests.get("performance"), tests.get("accuracy")
    reasons: list[str] = []
    if result["size"] != "reference":
        reasons.append(f"size '{result['size']}' is not the MLPerf definition (open division): compare it only "
                       "with other mlbench runs of the same size")
    reasons += state["plan_reasons"]
    if cfg.backend == "null":
        reasons.append("the null backend runs no model: this measures the harness only, "
                       + ("without the sample gather (--null-skip-gather: LoadGen and the SUT alone)"
                          if cfg.null_skip_gather else "with the sample gather a real backend pays"))
    if cfg.weights == "random":
        reasons.append("random weights (--weights random): throughput only, the accuracy is meaningless")
    if perf is None and result["status"] not in ("aborted", "failed"):
        reasons.append("accuracy only: no performance result (use --mode submission for both)")
    if acc is None and result["status"] not in ("aborted", "failed"):
        reasons.append("performance only: MLPerf also requires an accuracy run (use --mode submission)")
    if perf is not None:
        reasons += perf["loadgen_reasons"]
        result["metrics"] = dict(perf["metrics"])
        result["loadgen"] = {"validity": "VALID" if perf["loadgen_valid"] else "INVALID",
                             "reasons": perf["loadgen_reasons"], "settings": perf["settings"]}
        if perf.get("replanned"):
            result["loadgen"]["replanned"] = perf["replanned"]
    if acc is not None:
        # requests that failed in the accuracy test (a server's): scored as empty answers, so never valid
        reasons += [f"accuracy test: {r}" for r in acc.get("loadgen_reasons", [])]
        a = acc["accuracy"]
        result["quality"] = {k: a[k] for k in ("metric", "value", "target", "target_name", "reached", "source")}
        result["accuracy"] = a
        result["metrics"][f"accuracy/{a['metric']}"] = a["value"]
        if a.get("checks"):  # several checks, each must hold
            reasons += [f"accuracy check not met: {c['name']} {c['value']:.6g}, needs {c['op']} {c['bound']:.6g}"
                        for c in a["checks"] if not c["ok"]]
        elif not a["reached"]:
            reasons.append(f"accuracy off target: {a['metric']} {a['value']:.4f} "
                           f"{'<' if a['higher_is_better'] else '>'} {a['target']:.4f}")
    again = (result.get("backend", {}).get("compiled") or {}).get("compiles_during_test")
    if again:
        reasons.append(f"torch.compile compiled the model again {again} time(s) after the warm-up, for batch shapes it "
                       "had not seen: that time may be inside the timed result")
    comp = result.get("compliance")
    if comp and not comp.get("passed"):
        reasons.append("a compliance test failed (see compliance)")
    _flops(result)
    if result["status"] == "aborted":
        reasons.append(f"aborted: {result.get('abort_reason')}")
    elif result["status"] == "failed":
        reasons.append(f"failed: {result.get('error')}")
    elif not final:
        reasons.append("in progress")
    result["valid"] = not reasons
    result["validity_reasons"] = reasons
    result["finished_at"] = runs.now_iso() if final else None
    runs.write_json(run_dir / "result.json", result)
    if final:
        record(run_dir)  # index it in <output_dir>/results.db (never raises)


def _flops(result: dict) -> None:
    """Achieved FLOP/s, MFU (over the hardware peak) and the fraction of the measured kernel peak (measured again
    when the run beat it, ``kernels.confirm``); a fraction above 1 is kept and flagged (``compute.flags``), never
    capped."""
    c = result.get("compute") or {}
    sps = result["metrics"].get("throughput/samples_per_s")
    f = c.get("flops_per_sample")
    if f:
        result["metrics"]["model/gflops_per_sample"] = f / 1e9
    if not (f and sps):
        return
    kp = c.get("kernel_peak") or {}
    if kp.get("flops_per_s") and kp.get("precision") == result["precision"]:
        try:  # a kernel peak below the run: measured once more, untimed (a busy machine holds it down)
            c["kernel_peak"] = kernels.confirm(kp, f * sps)
        except Exception as exc:  # noqa: BLE001 - the calibration is informative only
            kp["remeasure_error"] = f"{type(exc).__name__}: {exc}"
    m, flags = mfu.figures(f * sps, c.get("peak"), c.get("kernel_peak"), result["precision"])
    result["metrics"].update(m)
    c["mfu"] = m.get("compute/mfu")
    c["flags"] = flags


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4g}"
