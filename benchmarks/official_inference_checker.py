"""MLPerf Inference's official submission checker on packages that ``mlbench package inference`` writes.

Each run directory is packaged on its own (``--force``, so that what the checks refuse is still written), the
official checker of a clone of mlcommons/inference runs on the package, and its problems are listed per
benchmark and scenario beside whether mlbench's own checks of the same tree report each of them (agreement).

    python benchmarks/official_inference_checker.py --inference-repo ~/src/inference RUN_DIR [RUN_DIR ...]
        [--make resnet50:Offline,bert:SingleStream --runs-dir runs/]   (tiny --quick --compliance runs first)
        [--version v6.1] [--mlbench "python -m mlbench"] [--out DIR]

``--mlbench`` names the command that packages (e.g. an older checkout's, to compare before and after); the
agreement column needs this checkout's mlbench and is left out for another's. The clone is a development copy
(``git clone https://github.com/mlcommons/inference``), never part of mlbench.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

SYSTEM = {"status": "available", "system_type": "edge", "system_type_detail": "workstation",
          "host_networking": "none (one machine)", "host_network_card_count": "0",
          "host_processor_frequency": "unknown", "host_processor_caches": "unknown",
          "host_processor_interconnect": "N/A", "host_storage_type": "SSD", "host_storage_capacity": "unknown",
          "host_networking_topology": "N/A", "host_memory_configuration": "unknown", "cooling": "air",
          "host_networking_card_count": "0"}  # the last: the name mlbench asked for before it read the checker


def _generates(bench: str) -> bool:
    """Is ``bench`` a language model (its inference generates tokens)?"""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from mlbench import registry

    return bool(getattr(registry.get(registry.canonical(bench), "tiny").inference, "GENERATION", False))


def make_runs(specs: str, runs_dir: Path, mlbench: list[str]) -> list[Path]:
    made = []
    for spec in specs.split(","):
        bench, scen = spec.split(":")
        before = set(runs_dir.glob("*")) if runs_dir.exists() else set()
        # TEST01/TEST04 are not defined for language models (MLPerf's TEST06 is theirs; mlbench refuses --compliance)
        compliance = [] if _generates(bench) else ["--compliance"]
        subprocess.run([*mlbench, "infer", bench, "--size", "tiny", "--scenario", scen, "--mode", "submission",
                        "--quick", "--duration-s", "2", *compliance, "--output-dir", str(runs_dir)],
                       check=False, stdout=subprocess.DEVNULL)
        made += sorted(p for p in set(runs_dir.glob("*")) - before if p.is_dir())
    return made


def official(repo: Path, pkg: Path, version: str) -> str:
    tools = repo / "tools" / "submission"
    cmd = [sys.executable, "-m", "submission_checker.main", "--input", str(pkg.resolve()), "--submitter", "ACME",
           "--version", version, "--csv", str(pkg.resolve() / "summary.csv")]
    p = subprocess.run(cmd, cwd=tools, capture_output=True, text=True, timeout=1800)
    return p.stdout + p.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="*", type=Path)
    ap.add_argument("--inference-repo", required=True, type=Path, help="a clone of mlcommons/inference")
    ap.add_argument("--make", help="bench:scenario,... tiny runs to make first")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--version", help="the round to check against (default: the installed LoadGen's)")
    ap.add_argument("--mlbench", default=f"{shlex.quote(sys.executable)} -m mlbench",
                    help="the command that packages (default: this checkout's)")
    ap.add_argument("--out", type=Path, help="where the packages go (default: a temporary folder)")
    ap.add_argument("--division", choices=("open", "closed"), help="package as this division (tiny runs are open; "
                                                                   "closed shows the closed-only checks)")
    ap.add_argument("--system-json", type=Path, help="the system fields to give (default: every field the checker "
                                                     "requires, filled)")
    args = ap.parse_args()
    from mlbench.submission import official as off
    from mlbench.submission import rounds

    mlbench = shlex.split(args.mlbench)
    ours = args.mlbench == ap.get_default("mlbench")
    version = args.version or (rounds.loadgen_round() or rounds.ROUNDS["v6.1"]).name
    runs = list(args.run_dirs) + (make_runs(args.make, args.runs_dir, mlbench) if args.make else [])
    out = args.out or Path(tempfile.mkdtemp(prefix="official-checker-"))
    out.mkdir(parents=True, exist_ok=True)
    user = args.system_json or out / "system.json"
    if not args.system_json:
        user.write_text(json.dumps(SYSTEM))
    print(f"official checker: {args.inference_repo} (round {version}); packages in {out}")
    total = missed = 0
    for run in runs:
        if not (run / "result.json").is_file():
            print(f"\n{run}: no result.json (not a finished run)")
            continue
        result = json.loads((run / "result.json").read_text())
        name = f"{result['benchmark']}-{result['scenario']}"
        pkg = out / f"pkg-{name}"
        cmd = [*mlbench, "package", "inference", str(run), "--submitter", "ACME", "--system", "cpu",
               "--system-json", str(user), "-o", str(pkg), "--force", "--no-check"]
        if ours:
            cmd += ["--version", version]
        if args.division:
            cmd += ["--division", args.division]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if not any((pkg / d).is_dir() for d in ("open", "closed")):
            print(f"\n{name}: not packaged: {(p.stdout + p.stderr).strip().splitlines()[-1:]}")
            continue
        text = official(args.inference_repo, pkg, version)
        (pkg.parent / f"{name}.checker.log").write_text(text)
        found = off.problems(text)
        base = str(pkg.resolve()) + "/"
        agree = None
        if ours:
            from mlbench.submission.inference import check_tree

            divs = [d for d in pkg.iterdir() if d.name in ("open", "closed")]
            tree = check_tree(divs[0] / "ACME", "cpu", rounds.ROUNDS[version], divs[0].name) if divs else []
            agree = off.agreement(found, tree, base)
        total += len(found)
        counted = re.search(r"Results=(\d+), NoResults=(\d+)", text)
        print(f"\n{name}: {len(found)} problem(s) reported by the official checker"
              + (f" (results {counted.group(1)}, without results {counted.group(2)})" if counted else ""))
        for kind, _scope, line in found:
            print(f"  [{kind}] {line.replace(base, '')}")
        if agree is not None:
            missed += len(agree.findings)
            print("  mlbench's checks report each of them" if not agree.findings else
                  "  NOT reported by mlbench's checks:\n" + "\n".join(f"    {f}" for f in agree.findings))
    print(f"\ntotal: {total} problem(s) over {len(runs)} package(s)"
          + (f"; {missed} not reported by mlbench's checks" if ours else ""))
    return 1 if missed else 0



if __name__ == "__main__":
    sys.exit(main())
