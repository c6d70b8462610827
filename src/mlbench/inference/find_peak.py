"""``--find-peak``: the highest VALID Server QPS.

Short Server probes, doubling the target QPS while LoadGen says VALID, then bisecting between the last VALID
and the first INVALID rate; the run's own performance test at the found rate is the confirming run. Every
probe is reported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mlbench import runs
from mlbench.errors import ConfigError
from mlbench.inference import runner

PROBE_STEPS = 10  # at most this many probes after the first


def find_peak(s, run_dir: Path, result: dict, state: dict, say) -> float:
    """Search the highest VALID Server QPS with short probes; sets ``s.server_qps`` to it."""
    cfg = s.cfg
    if cfg.scenario not in ("Server", "Interactive"):
        raise ConfigError("--find-peak searches the Server scenario's QPS", "add --scenario Server")
    probe_s = min(cfg.duration_s, 3.0) if cfg.quick else 10.0
    probes: list[dict[str, Any]] = []
    good, bad = 0.0, None
    qps = cfg.target_qps or s.server_qps
    for i in range(PROBE_STEPS + 1):
        valid, m = _probe(s, qps, probe_s, run_dir / "find_peak" / f"probe_{i + 1:02d}")
        probes.append({"target_qps": qps, "valid": valid, "completed_qps": m.get("throughput/samples_per_s"),
                       "p99_ms": m.get("latency/p99_ms")})
        if "throughput/tokens_per_s" in m:  # a language model: tokens/s, TTFT and TPOT
            probes[-1].update({k: m.get(k) for k in ("throughput/tokens_per_s", "latency/ttft_p99_ms",
                                                     "latency/tpot_p99_ms")})
        say(f"find-peak probe {i + 1}: {qps:.3g} QPS -> {'VALID' if valid else 'INVALID'} " + (
            f"({_f(m.get('throughput/tokens_per_s'))} tokens/s, p99 TTFT {_f(m.get('latency/ttft_p99_ms'))} ms, "
            f"p99 TPOT {_f(m.get('latency/tpot_p99_ms'))} ms)" if "throughput/tokens_per_s" in m else
            f"(p99 {m.get('latency/p99_ms') or float('nan'):.2f} ms)"))
        if valid:
            good = max(good, qps)
        else:
            bad = qps if bad is None else min(bad, qps)
        if bad is None:
            qps *= 2
        elif good == 0.0:
            qps = bad / 2
        elif (bad - good) / bad < 0.05:
            break
        else:
            qps = (good + bad) / 2
    result["find_peak"] = {"peak_qps": good or None, "probe_duration_s": probe_s, "probes": probes,
                           "note": "short probes; the performance test that follows at peak_qps confirms it"}
    runs.write_json(run_dir / "result.json", result)
    if good:
        s.server_qps = good
    return good


def _probe(s, qps: float, seconds: float, outdir: Path) -> tuple[bool, dict]:
    cfg = dataclasses.replace(s.cfg, quick=True, duration_s=seconds, target_qps=qps)
    ops = getattr(s, "ops", runner)
    p = ops.plan_for(s, "performance", cfg=cfg, server_qps=qps)
    test = ops.run_test(s, p, outdir)
    return test["loadgen_valid"], test["metrics"]


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"
