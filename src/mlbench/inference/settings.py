"""LoadGen TestSettings: MLPerf's rules (LoadGen's embedded mlperf.conf), then user.conf, then --quick.

LoadGen applies its embedded mlperf.conf only on the first ``FromConfig`` call of a process, so a second
test in the same process (find-peak probes, compliance tests) would silently run without MLPerf's
settings. We therefore read the resolved values once in a short child process and set them field by field.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mlbench.errors import ConfigError

FIELDS = (
    "min_duration_ms", "max_duration_ms", "min_query_count", "max_query_count", "qsl_rng_seed",
    "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_rng_seed", "accuracy_log_probability",
    "accuracy_log_sampling_target", "performance_sample_count_override", "offline_expected_qps",
    "server_target_qps", "server_target_latency_ns", "server_target_latency_percentile",
    "server_max_async_queries", "server_coalesce_queries", "single_stream_expected_latency_ns",
    "single_stream_target_latency_percentile", "multi_stream_expected_latency_ns",
    "multi_stream_target_latency_percentile", "multi_stream_samples_per_query",
    "sample_concatenate_permutation", "print_timestamps",
    "use_token_latencies", "ttft_latency", "tpot_latency",  # language models: LoadGen's token latencies (ns)
)

_READER = """
import json, sys, mlperf_loadgen as lg
s = lg.TestSettings()
rc = s.FromConfig(sys.argv[1], sys.argv[2], sys.argv[3], 1)
print(json.dumps({"rc": rc, **{k: getattr(s, k) for k in json.loads(sys.argv[4])}}))
"""


@lru_cache(maxsize=32)
def conf_values(model: str, scenario: str, user_conf: str | None) -> dict[str, Any]:
    """The settings LoadGen resolves from mlperf.conf (and ``user_conf``) for ``model`` and ``scenario``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = user_conf
        if path is None:
            path = str(Path(tmp) / "empty.conf")
            Path(path).write_text("")
        elif not Path(path).is_file():
            raise ConfigError(f"user.conf not found: {path}", "pass an existing file in LoadGen's conf format")
        else:
            path = str(Path(path).resolve())  # the reader runs in a temporary folder, not the caller's
        out = subprocess.run([sys.executable, "-c", _READER, path, model, scenario, json.dumps(FIELDS)],
                             capture_output=True, text=True, timeout=60, cwd=tmp)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise ConfigError(f"LoadGen could not read the settings: {(out.stderr or out.stdout).strip()[-500:]}",
                          "check the user.conf syntax: '<model>.<scenario>.<key> = <value>' lines")
    values = json.loads(lines[-1])
    if values.pop("rc") != 0:
        raise ConfigError(f"LoadGen rejected the user.conf {user_conf}", "fix the lines LoadGen's log names")
    return values


@dataclass
class Plan:
    """The settings of one LoadGen test and why they were chosen."""

    values: dict[str, Any]
    scenario: str
    mode: str  # performance | accuracy
    invalid_because: list[str] = field(default_factory=list)  # deviations from MLPerf's rules, in words

    def to_loadgen(self, audit: bool = False):
        import mlperf_loadgen as lg

        s = lg.TestSettings()
        for key, value in self.values.items():
            setattr(s, key, value)
        s.scenario = getattr(lg.TestScenario, self.scenario)
        s.mode = lg.TestMode.AccuracyOnly if self.mode == "accuracy" else lg.TestMode.PerformanceOnly
        return s


def plan(cfg: Any, bench: Any, *, mode: str, store_counts: tuple[int, int], estimate_qps: float,
         estimate_latency_s: float, server_qps: float, estimate_multi_latency_s: float | None = None) -> Plan:
    """Settings for one test: mlperf.conf < user.conf < --quick < explicit flags.

    ``estimate_qps`` and ``estimate_latency_s`` come from the warm-up; LoadGen uses them only to plan how many
    queries fill the minimum duration. ``server_qps`` is the Server arrival rate without --target-qps.
    """
    model = bench.loadgen_model_name or bench.name
    v = dict(conf_values(model, cfg.scenario, cfg.user_conf))
    reasons: list[str] = []
    total, perf_count = store_counts
    if perf_count != v["performance_sample_count_override"]:
        if bench.is_reference:
            reasons.append(f"the dataset holds {total} samples; MLPerf's performance sample count is "
                           f"{v['performance_sample_count_override']}")
        v["performance_sample_count_override"] = perf_count
    if cfg.user_conf and not cfg.quick:
        reasons.append("settings changed by a user.conf (valid only if it keeps MLPerf's rules)")
    # Offline: too high an expected rate only lengthens the test, too low makes it INVALID (too short)
    v["offline_expected_qps"] = float(cfg.target_qps or max(1.0, estimate_qps * 1.5))
    v["server_target_qps"] = float(max(0.001, server_qps))  # --target-qps, or the estimate, or find-peak's
    v["single_stream_expected_latency_ns"] = int(max(1e3, estimate_latency_s * 1e9))
    multi = estimate_multi_latency_s or estimate_latency_s * v["multi_stream_samples_per_query"]
    v["multi_stream_expected_latency_ns"] = int(max(1e3, multi * 1e9))
    if bench.server_latency_ms and cfg.scenario == "Server":
        v["server_target_latency_ns"] = int(bench.server_latency_ms * 1e6)
    if cfg.target_latency_ms is not None:
        v["server_target_latency_ns"] = int(cfg.target_latency_ms * 1e6)
        reasons.append(f"the latency bound was overridden ({cfg.target_latency_ms} ms)")
    if cfg.quick:
        v["min_duration_ms"] = int(cfg.duration_s * 1000)
        v["min_query_count"] = {"Offline": 1, "Server": 100, "SingleStream": 100, "MultiStream": 662}[cfg.scenario]
        v["max_duration_ms"] = 0
        reasons.append(f"--quick: {cfg.duration_s:g} s minimum duration and {v['min_query_count']} minimum "
                       f"queries instead of MLPerf's {conf_values(model, cfg.scenario, None)['min_duration_ms'] // 1000} s")
    if mode == "accuracy" and cfg.max_samples:
        reasons.append(f"accuracy on the first {total} samples only (--max-samples)")
    return Plan(values=v, scenario=cfg.scenario, mode=mode, invalid_because=reasons)


def log_settings(outdir: Path, trace: bool):
    import mlperf_loadgen as lg

    ls = lg.LogSettings()
    ls.log_output.outdir = str(outdir)
    ls.log_output.copy_summary_to_stdout = False
    ls.enable_trace = bool(trace)
    return ls
