"""The host allocator setting (``MLBENCH_MALLOC``, see ``mlbench/allocator.py``): inference throughput with
freed memory kept for reuse (``keep``, the default) against glibc's defaults (``system``), side by side.

The setting is process-wide, so each measurement is a child process (this script with ``--child``): it opens
the inference session of one case, then times the backend's ``predict`` in a plain loop over batches prepared
beforehand (``raw``) and one LoadGen Offline test through mlbench's SUT (``mlbench``), and reports samples/s,
the kernel's share of the process's CPU time and minor page faults per sample. The parent runs the children
alternately (system, keep, system, keep, ...) so that both settings see the same machine, and reports the
medians and the median of the per-pair ratios keep/system.

    python benchmarks/allocator.py [--cases dlrm:mini:pytorch,retinanet:mini:onnxruntime,resnet50:mini:pytorch]
        [--seconds 5] [--repeats 3] [--threads N]

A case is BENCHMARK:SIZE:BACKEND (fp32, Offline, the harness's default batch, workers and threads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_CASES = "dlrm:mini:pytorch,retinanet:mini:onnxruntime,resnet50:mini:pytorch"


def _usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _delta(a: tuple, b: tuple, samples: int) -> dict:
    user, sys_, faults = (y - x for x, y in zip(a, b))
    return {"sys_share": sys_ / max(1e-9, user + sys_), "faults_per_sample": faults / max(1, samples)}


def child(case: str, seconds: float, threads: int | None) -> dict:
    from mlbench import allocator
    from mlbench.inference import runner
    from mlbench.inference.config import InferConfig

    benchmark, size, backend = case.split(":")
    out = Path(tempfile.mkdtemp(prefix="allocator-"))
    cfg = InferConfig(benchmark=benchmark, size=size, backend=backend, precision="fp32", scenario="Offline",
                      quick=True, duration_s=seconds, output_dir=str(out), threads=threads)
    s = runner.open_session(cfg, lambda m: None)
    try:
        idx = list(range(min(s.store.performance_count, s.store.total_count)))
        s.store.load(idx)
        bs = s.batch_size
        batches = [(len(idx[i:i + bs]), s.store.batch(idx[i:i + bs])) for i in range(0, len(idx) - bs + 1, bs)]
        box: dict = {}

        def loop() -> None:  # on a worker thread, as the SUT's (each thread has its own OpenMP pool)
            s.backend.predict(batches[0][1])
            n = k = 0
            u0, t0 = _usage(), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                m, x = batches[k % len(batches)]
                s.backend.predict(x)
                n, k = n + m, k + 1
            box.update(rate=n / (time.perf_counter() - t0), **_delta(u0, _usage(), n))

        t = threading.Thread(target=loop)
        t.start()
        t.join()
        s.store.unload(idx)
        raw = dict(box)
        s.estimate_qps = raw["rate"]  # LoadGen plans the Offline sample count from the measured rate
        u0 = _usage()
        test = runner.run_test(s, runner.plan_for(s, "performance"), out / "test")
        ours = {"rate": test["metrics"]["throughput/samples_per_s"], **_delta(u0, _usage(), s.sut.samples),
                "valid": test["loadgen_valid"]}
        return {"allocator": allocator.configure()["setting"], "raw": raw, "mlbench": ours}
    finally:
        s.close()


def check_cases(ap: argparse.ArgumentParser, text: str) -> list[str]:
    """``--cases`` as BENCHMARK:SIZE:BACKEND items of known names (argparse error, exit 2, otherwise)."""
    from mlbench import registry
    from mlbench.errors import MlbenchError
    from mlbench.inference import backends

    cases = [c.strip() for c in text.split(",") if c.strip()]
    if not cases:
        ap.error("--cases is empty; give BENCHMARK:SIZE:BACKEND items, e.g. dlrm:mini:pytorch")
    for case in cases:
        parts = case.split(":")
        if len(parts) != 3:
            ap.error(f"--cases item {case!r} is not BENCHMARK:SIZE:BACKEND (e.g. dlrm:mini:pytorch)")
        try:
            registry.get(parts[0], parts[1])
        except MlbenchError as exc:
            ap.error(f"--cases item {case!r}: {exc.message}")
        if parts[2] not in backends.BACKENDS:
            ap.error(f"--cases item {case!r}: unknown backend {parts[2]!r} (known: {', '.join(backends.BACKENDS)})")
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not math.isfinite(a.seconds) or not 0 < a.seconds <= 3600:
        ap.error(f"--seconds must be a number of seconds in (0, 3600], not {a.seconds}")
    if a.repeats < 1 or (a.threads is not None and a.threads < 1):
        ap.error("--repeats and --threads must be at least 1")
    if a.child:
        print("RESULT " + json.dumps(child(a.child, a.seconds, a.threads)), flush=True)
        return
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    report = {}
    for case in check_cases(ap, a.cases):
        runs: dict[str, list] = {"system": [], "keep": []}
        for _ in range(a.repeats):
            for setting in ("system", "keep"):
                cmd = [sys.executable, __file__, "--child", case, "--seconds", str(a.seconds)]
                if a.threads:
                    cmd += ["--threads", str(a.threads)]
                p = subprocess.run(cmd, env={**os.environ, "MLBENCH_MALLOC": setting}, capture_output=True,
                                   text=True)
                line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
                if p.returncode or line is None:
                    sys.exit(f"{case} ({setting}) failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
                runs[setting].append(json.loads(line[7:]))
        row: dict = {}
        for side in ("raw", "mlbench"):
            sysr = [r[side]["rate"] for r in runs["system"]]
            keep = [r[side]["rate"] for r in runs["keep"]]
            row[side] = {"system_per_s": med(sysr), "keep_per_s": med(keep),
                         "ratio_keep_over_system": med([k / s for s, k in zip(sysr, keep, strict=True)]),
                         "sys_share": {k: med([r[side]["sys_share"] for r in runs[k]]) for k in runs},
                         "faults_per_sample": {k: med([r[side]["faults_per_sample"] for r in runs[k]]) for k in runs}}
        row["mlbench_over_raw"] = {k: med([r["mlbench"]["rate"] / r["raw"]["rate"] for r in runs[k]]) for k in runs}
        report[case] = row
        print(case, json.dumps(row), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
