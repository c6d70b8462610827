"""benchmarks/infer_overhead.py refuses bad options with one line and exit 2, before it measures anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "infer_overhead.py"


@pytest.mark.parametrize("args, message", [
    (["--seconds", "nan"], "--seconds must be a number"),
    (["--seconds", "-1"], "--seconds must be a number"),
    (["--seconds", "1e9"], "--seconds must be a number"),
    (["--repeats", "0"], "--repeats must be between 1"),
    (["--attempts", "-3"], "--attempts must be between 1"),
    (["--batch-size", "0"], "--batch-size must be between 1"),
    (["--scenarios", "Bogus"], "--scenarios takes Offline"),
    (["--scenarios", "Offline,"], "--scenarios takes Offline"),
    (["--ladder", "x,y"], "--ladder takes target QPS"),
    (["--ladder", "1000,nan"], "--ladder takes target QPS"),
    (["--bare-twice=yes"], "ignored explicit argument"),
])
def test_bad_options_exit_2_with_one_line(args, message):
    p = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
