"""``mlbench package training|inference``: runs into the MLPerf submission layout, checked by the official tools."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("package", help="package runs as an MLPerf submission and run the official checkers",
                       description="Write mlbench runs into MLPerf's submission layout, then check the tree: the "
                                   "official mlperf-logging package_checker and result_summarizer for training; for "
                                   "inference, mlbench's checks against the rules of the round whose LoadGen made "
                                   "the runs (and the official submission checker with --inference-repo). Verdicts "
                                   "come from the MLPerf logs, never from result.json alone. -o must be empty or "
                                   "hold an earlier package of the same submitter and system (replaced whole). "
                                   "See docs/submission.md.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    for kind, what in (("training", "mlbench train run directories"), ("inference", "mlbench infer run directories")):
        k = kinds.add_parser(kind, help=f"package {what}",
                             description=f"Package {what} (each holds result.json) into MLPerf's {kind} layout.")
        k.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (runs/<id>/)")
        k.add_argument("--submitter", required=True, metavar="ORG", help="your organisation (a folder name)")
        k.add_argument("--system", required=True, metavar="NAME", help="the system's name (systems/NAME.json)")
        k.add_argument("--system-json", metavar="FILE",
                       help="JSON object of the system fields only you can give (status, cooling, storage, ...); "
                            "they win over the recorded ones")
        k.add_argument("--division", choices=("closed", "open"),
                       help="default: closed when every run is closed, else open")
        k.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write the package")
        k.add_argument("--force", action="store_true",
                       help="write the package even when runs are refused, to see what the checkers say (marked "
                            "NOT_FOR_SUBMISSION)")
        k.add_argument("--no-check", action="store_true",
                       help="write the tree only, run no checker (the verdict then says NOT CHECKED)")
        if kind == "inference":
            k.add_argument("--inference-repo", metavar="PATH",
                           help="a clone of mlcommons/inference: also run its official submission checker and "
                                "fail if it reports a problem mlbench's checks did not")
            k.add_argument("--version", dest="round", default=None, metavar="ROUND",
                           help="the MLPerf Inference round whose layout and rules to follow (v5.0, v5.1, v6.0, "
                                "v6.1); default: the round whose RNG seeds the runs' LoadGen logged (LoadGen "
                                "6.0.17 carries v6.1's)")
        k.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlbench.submission import checks

    out = Path(args.output)
    if args.kind == "training":
        from mlbench.submission import training

        pkg = training.package([Path(d) for d in args.run_dirs], submitter=args.submitter, system_name=args.system,
                               out=out, division=args.division, system_json=args.system_json, force=args.force,
                               run_checkers=not args.no_check)
        print(f"package written: {pkg.org_dir}")
        print(f"  system description: {pkg.system_file}")
        for bench, files in pkg.result_files.items():
            print(f"  {bench}: {len(files)} result files in {files[0].parent}")
        for w in pkg.warnings:
            print(f"  warning: {w}")
        for f in pkg.forced:
            print(f"  NOT FOR SUBMISSION (--force): {f}")
        if pkg.checks:
            print("official checks (mlperf-logging; logs in " + str(out / "checks") + "):")
            print(checks.table(pkg.checks))
        if pkg.summarizer_score is not None:
            def mins(v):
                return "none" if v is None else f"{v:.4f} minutes"

            print(f"score (result_summarizer): {mins(pkg.summarizer_score)}; mlbench's olympic score: "
                  f"{mins(pkg.mlbench_log_score)} from the logs, {mins(pkg.mlbench_score)} from result.json")
        ok = pkg.passed
    else:
        from mlbench.submission import inference

        pkg = inference.package([Path(d) for d in args.run_dirs], submitter=args.submitter, system_name=args.system,
                                out=out, division=args.division, system_json=args.system_json, force=args.force,
                                inference_repo=args.inference_repo, round_=args.round, run_checkers=not args.no_check)
        print(f"package written: {pkg.root} (MLPerf Inference {pkg.round} layout)")
        for f in pkg.forced:
            print(f"  NOT FOR SUBMISSION (--force): {f}")
        if pkg.checks:
            print(f"checks (mlbench's checks of the tree against {pkg.round}'s rules"
                  + ("; the official submission checker" if args.inference_repo else "") + "):")
            print(checks.table(pkg.checks))
        ok = pkg.passed
    if args.no_check:
        print("verdict: NOT CHECKED (--no-check): the tree was written and nothing in it was checked"
              + ("; NOT FOR SUBMISSION (--force)" if pkg.forced else ""))
        return 1 if pkg.forced else 0
    print("verdict: " + ("every check passes" if ok else "NOT a valid submission (see the failures above)"))
    return 0 if ok else 1
