"""``mlbench infer BENCHMARK``: MLPerf inference on the official LoadGen."""

from __future__ import annotations

import argparse

from mlbench.cli import flags
from mlbench.inference.config import InferConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "infer", help="MLPerf inference on the official LoadGen (Offline, Server, SingleStream, MultiStream)",
        description="Run BENCHMARK's inference under MLPerf's load generator (mlcommons-loadgen): performance "
                    "mode reports the scenario's metric and LoadGen's VALID/INVALID verdict with its reasons; "
                    "accuracy mode runs the whole dataset and scores mlperf_log_accuracy.json against the target. "
                    "Exit code 0 when the result is VALID for LoadGen and on target, 1 when not, 2 for invalid "
                    "options, 130 when interrupted (Ctrl-C), 143 on SIGTERM, 129 on SIGHUP (the partial result is kept, "
                    "status aborted); a backend or LoadGen crash is a failed run (exit code 1).",
    )
    p.add_argument("benchmark", help="benchmark name (see `mlbench list`), or MLPerf Inference's name for it "
                                     "(its inference_name, see `mlbench list`)")
    flags.add_config_flags(p, InferConfig, skip=("benchmark",), more_help={"weights": official_files_help()})
    flags.add_layer_flags(p)
    p.set_defaults(func=main)


def official_files_help() -> str:
    """The model files MLCommons publishes per benchmark (the definitions' ``model_files``), for --weights."""
    from mlbench import registry

    parts = []
    for name in registry.names():
        files = registry.sizes(name).get("reference")
        files = files.model_files if files is not None else ()
        if files:
            parts.append(f"{name}: " + "; ".join(m.text() for m in files))
    return (". The official files accepted (the interface is read from the file; --backend onnxruntime for "
            ".onnx): " + " | ".join(parts)) if parts else ""


def main(args: argparse.Namespace) -> int:
    from mlbench import registry
    from mlbench.inference import backends
    from mlbench.inference.config import check
    from mlbench.inference.execute import execute
    from mlbench.inference.generation import ENGINES

    cfg = check(flags.resolve(InferConfig, args, benchmark=registry.canonical(args.benchmark)))
    registry.get(cfg.benchmark, cfg.size)  # unknown names fail here, before anything runs
    if cfg.backend not in ENGINES:
        backends.get(cfg.backend)
    result = execute(cfg)
    print_summary(result)
    return exit_code(result)


def exit_code(result: dict) -> int:
    """0 when every test finished, LoadGen said VALID and accuracy (if measured) is on target."""
    lg = result.get("loadgen")
    q = result.get("quality")
    ok = result["status"] == "success" and (lg is None or lg["validity"] == "VALID") and (q is None or q["reached"])
    comp = result.get("compliance")
    return 0 if ok and (not comp or comp.get("passed")) else 1


def print_summary(result: dict) -> None:
    m = result["metrics"]
    lines = ["", f"result: {result['benchmark']} {result['size']} {result['scenario']} {result['mode']} "
                 f"({result['backend'].get('backend', result['backend'].get('name'))}, {result['precision']}): "
                 f"{result['status']}"]
    name = m.get("scenario_metric")
    if name:
        lines.append(f"  {name}: {_f(m.get(name))}   (LoadGen: {result['loadgen']['validity']})")
    for key in ("latency/p90_ms", "latency/p99_ms"):
        if m.get(key) is not None and m.get("throughput/tokens_per_s") is None:
            lines.append(f"  {key}: {_f(m[key])}")
    from mlbench.inference.logs import token_lines

    lines += [f"  {line}" for line in token_lines(m)]
    from mlbench.efficiency.mfu import summary_lines

    lines += [f"  {line}" for line in summary_lines(m, result.get("compute"))]
    q = result.get("quality")
    if q:
        lines.append(f"  accuracy: {q['metric']} = {_f(q['value'])} (target {_f(q['target'])}): "
                     f"{'on target' if q['reached'] else 'below target'}")
        for c in (result.get("accuracy") or {}).get("checks", []):
            lines.append(f"    {c['name']}: {c['value']:.6g} {c['op']} {c['bound']:.6g}: {'ok' if c['ok'] else 'NOT MET'}")
    if result.get("find_peak"):
        fp = result["find_peak"]
        lines.append(f"  peak VALID Server QPS (short probes): {_f(fp.get('peak_qps'))}; confirmed by the full test: "
                     f"{'yes' if fp.get('confirmed') else 'no'}"
                     + (f"; {_f(fp['peak_tokens_per_s'])} tokens/s" if fp.get("peak_tokens_per_s") else ""))
    if result.get("compliance"):
        lines.append(f"  compliance: {'passed' if result['compliance']['passed'] else 'FAILED'}")
    lines.append(f"  valid for MLPerf submission: {'yes' if result['valid'] else 'no'}")
    lines += [f"    - {r}" for r in result["validity_reasons"]]
    lines.append(f"  run directory: {result['run_dir']}")
    print("\n".join(lines), flush=True)


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"
