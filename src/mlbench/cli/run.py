"""``mlbench run``: the quick suite, every benchmark that has a size (mini by default) trained to its target."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="the quick suite: every benchmark's mini size trained to its target, then a summary",
        description="Train every benchmark that has the given size (default mini) to its quality target, one "
                    "after another, and print a summary table. Mini runs are open division: not valid for "
                    "MLPerf submission, comparable with other mlbench mini runs.")
    p.add_argument("--size", default="mini", choices=("mini", "tiny", "reference"), help="size (default: mini)")
    p.add_argument("--benchmarks", metavar="NAMES", help="comma-separated subset (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--runs", type=int, default=1, help="runs per benchmark (default: 1)")
    p.add_argument("--output-dir", default="runs", help="where run directories go (default: runs)")
    p.add_argument("--data-dir", default=None, help="dataset root for every benchmark (default: built-in)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from mlbench import config, registry
    from mlbench.training import runner

    names = registry.names() if args.benchmarks is None else [n.strip() for n in args.benchmarks.split(",") if n.strip()]
    if not names:
        from mlbench.errors import ConfigError

        raise ConfigError(f"invalid value for 'benchmarks': {args.benchmarks!r} names no benchmark",
                          f"give comma-separated names, e.g. --benchmarks {','.join(registry.names())}, "
                          "or leave the option out to run every benchmark")
    plan = []
    for name in names:
        registry.get(name, "mini" if args.size == "mini" else args.size) if args.benchmarks else None
        sizes = registry.sizes(name)
        if args.size in sizes and not registry.get(name, args.size).has_module("workload"):
            print(f"skipping {name}: inference only (mlbench infer {name})")
            continue
        if args.size in sizes and not args.benchmarks and not sizes[args.size].in_suite:
            print(f"skipping {name} {args.size}: {sizes[args.size].target_source} (run it with --benchmarks {name})")
            continue
        if args.size in sizes:
            plan.append(config.build(config.TrainConfig, {
                "benchmark": name, "size": args.size, "device": args.device, "precision": args.precision,
                "runs": args.runs, "output_dir": args.output_dir, "data_dir": args.data_dir}))
    results = []
    for i, cfg in enumerate(plan):
        print(f"\n=== [{i + 1}/{len(plan)}] {cfg.benchmark} {cfg.size} ===", flush=True)
        try:
            results.append(runner.execute(cfg, say_prefix=""))
        except Exception as exc:  # one failing benchmark must not lose the others' results
            from mlbench.errors import MlbenchError

            if not isinstance(exc, MlbenchError):
                raise
            print(f"mlbench: {cfg.benchmark} failed: {exc}", flush=True)
            results.append({"benchmark": cfg.benchmark, "size": cfg.size, "status": "error", "error": str(exc)})
    print_table(results)
    from mlbench.results.report import report_for_runs

    report_for_runs(args.output_dir, [r.get("run_id") for r in results])
    return 0 if results and all(r.get("status") == "success" for r in results) else 1


def print_table(results: list[dict]) -> None:
    heads = ["benchmark", "size", "status", "quality", "target", "time to train", "samples/s", "MFU", "valid"]
    table = []
    for r in results:
        if r.get("status") == "error":
            table.append([r["benchmark"], r["size"], "error", "-", "-", "-", "-", "-", "no"])
            continue
        q, s = r["quality"], r["score"]
        ttt = s["time_to_train_minutes"]
        thr = r["metrics"]["throughput/samples_per_s"]
        mfu = r["metrics"].get("compute/mfu")
        table.append([r["benchmark"], r["size"], r["status"],
                      "n/a" if q.get("value") is None else f"{q['metric']} {q['value']:.4f}", str(q["target"]),
                      "n/a" if ttt is None else f"{ttt:.2f} min", "n/a" if thr is None else f"{thr:.0f}",
                      "n/a" if mfu is None else f"{100 * mfu:.3g}%",
                      "yes" if r["valid"] else "no (open division)" if r["division"] == "open" else "no"])
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(heads)]
    print("\nsummary (quick suite; not valid for MLPerf submission unless marked valid):")
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
