"""The host allocator setting (mlbench.allocator): what it records, its switch, and that it works (freed
buffers are reused instead of being faulted in again), checked in child processes (it is process-wide)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mlbench import allocator
from mlbench.errors import ConfigError

GLIBC = platform.libc_ver()[0] == "glibc"

# A child that allocates and frees buffers of varying sizes (as a ragged batch's arrays and intermediates are),
# writing to every 4 KiB page, and prints how many of those pages were faulted in and what configure() recorded.
CHILD = r"""
import json, random, resource
from mlbench import allocator
rec = allocator.configure()
rng, pages = random.Random(0), 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    bufs = []
    for _ in range(4):
        n = rng.randrange(256 << 10, 16 << 20, 4096)
        b = bytearray(n)
        b[::4096] = b"x" * (n // 4096)
        bufs.append(b)
        pages += n // 4096
    del bufs
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"record": rec, "faults": faults, "pages": pages}))
"""


def _child(setting: str) -> dict:
    env = {**os.environ, allocator.ENV: setting}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_keep_reuses_freed_memory_and_records_it() -> None:
    keep, system = _child("keep"), _child("system")
    assert keep["record"]["setting"] == "keep" and keep["record"]["library"].startswith("glibc")
    assert keep["record"]["mmap_threshold"] == keep["record"]["trim_threshold"] == allocator.THRESHOLD
    assert system["record"]["setting"] == "system" and "MLBENCH_MALLOC=system" in system["record"]["note"]
    pages = keep["pages"]  # the same seeded sizes in both children
    assert system["faults"] > pages // 4  # many buffers are fresh mappings, faulted in page by page (measured 44%)
    assert keep["faults"] < pages // 10  # freed memory is reused (measured 3%)


def test_unknown_setting_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setenv(allocator.ENV, "bogus")
    with pytest.raises(ConfigError, match="MLBENCH_MALLOC='bogus' is not understood") as info:
        allocator.configure()
    assert "MLBENCH_MALLOC=keep" in info.value.hint


def test_choice_defaults_to_keep(monkeypatch) -> None:
    monkeypatch.delenv(allocator.ENV, raising=False)
    assert allocator.choice() == "keep"
    monkeypatch.setenv(allocator.ENV, " System ")
    assert allocator.choice() == "system"


@pytest.mark.parametrize("args, message", [
    (["--cases", "dlrm:mini"], "is not BENCHMARK:SIZE:BACKEND"),
    (["--cases", "nosuch:mini:pytorch"], "nosuch"),
    (["--cases", "dlrm:mini:tensorrt"], "unknown backend 'tensorrt'"),
    (["--cases", " , "], "--cases is empty"),
    (["--seconds", "nan"], "--seconds must be a number"),
    (["--seconds", "-1"], "--seconds must be a number"),
    (["--repeats", "0"], "must be at least 1"),
])
def test_benchmark_script_refuses_bad_options(args, message) -> None:
    script = Path(__file__).parents[1] / "benchmarks" / "allocator.py"
    p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
