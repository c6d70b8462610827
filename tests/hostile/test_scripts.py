"""The hostile-input catalogue for the helper scripts (scripts/test_compat.sh, benchmarks/gpu_wheels.sh,
benchmarks/gpu_check.sh, benchmarks/device_smoke.py): bad arguments get one clear line and a non-zero exit,
before anything is installed, downloaded or written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from support import ROOT


def _run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / script), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, **env})


@pytest.mark.parametrize(("args", "error"), [
    ((), "scripts/test_compat.sh TORCH TORCHVISION TORCHAUDIO"),  # the usage
    (("2.11.0", "0.26.0"), "scripts/test_compat.sh TORCH TORCHVISION TORCHAUDIO"),
    (("../../x", "0.26.0", "2.11.0"), "invalid version '../../x'"),  # a version names the venv folder
    (("2.11.0", "0.26.0; rm -rf /", "2.11.0"), "invalid version '0.26.0; rm -rf /'"),
], ids=["no-args", "two-args", "path-in-version", "shell-in-version"])
def test_compat_refuses_bad_versions(args, error):
    before = set(os.listdir(ROOT))
    proc = _run("scripts/test_compat.sh", *args)
    assert proc.returncode == 2 and error in proc.stderr, proc.stderr
    assert set(os.listdir(ROOT)) == before  # no virtual environment made


@pytest.mark.parametrize("version", ["abc", "3.12; rm -rf /", "../3.12", " "])
def test_gpu_wheels_refuses_a_bad_python_version(version):
    proc = _run("benchmarks/gpu_wheels.sh", PY_VERSION=version)
    assert proc.returncode == 2 and "invalid PY_VERSION" in proc.stderr, proc.stderr


def test_gpu_check_refuses_a_work_folder_it_cannot_make(tmp_path):
    (tmp_path / "file").write_text("")
    proc = _run("benchmarks/gpu_check.sh", "--dry-run", str(tmp_path / "out"), PYTHON=sys.executable,
                WORK=str(tmp_path / "file" / "work"))  # under a file: cannot be made
    assert proc.returncode == 1 and "cannot create" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "details.tgz").exists()


@pytest.mark.parametrize(("args", "error"), [
    (("--benchmarks", "resnet5"), "unknown benchmark(s) resnet5"),
    (("--benchmarks", ","), "unknown benchmark(s) (none given)"),
    (("--timeout-s", "nan"), "--timeout-s must be between"),
    (("--timeout-s", "0"), "--timeout-s must be between"),
    (("--budget-s", "-5"), "--budget-s must be between"),
    (("--precision", "int4"), "invalid choice: 'int4'"),
], ids=["unknown-benchmark", "no-benchmark", "nan-timeout", "zero-timeout", "negative-budget", "bad-precision"])
def test_device_smoke_refuses_bad_options(tmp_path, args, error):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_smoke.py"), *args, "--work",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and error in proc.stderr, proc.stderr
    assert not (tmp_path / "work").exists()  # refused before anything ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_device_smoke_fails_a_command_that_cannot_run(tmp_path):
    """--device cuda without a GPU: each command stops with mlbench's error, which the line quotes; exit 1. A
    spent budget skips the rest, counted as not passed."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_smoke.py"), "--device", "cuda",
                           "--benchmarks", "dlrm,bert", "--budget-s", "0.001", "--work", str(tmp_path / "work"),
                           "--json", str(tmp_path / "smoke.json")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAIL mlbench train dlrm") and "no result.json" in lines[0] and "cuda" in lines[0]
    assert "skipped: the 0 s budget was spent" in lines[-2] and "0 of 4 commands passed" in lines[-1]


@pytest.mark.parametrize(("args", "env", "error"), [
    (("--seeds", "0,x"), {}, "give comma-separated integers"),
    (("--steps", "0"), {}, "--steps must be at least 1"),
    (("--lr", "nan"), {}, "--lr must be between 0 and 1"),
    ((), {"OMP_NUM_THREADS": "two"}, "set a positive whole number of threads"),
], ids=["bad-seeds", "zero-steps", "nan-lr", "bad-threads"])
def test_bert_qa_sweep_refuses_bad_options(args, env, error):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bert_qa_sweep.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **env})
    assert proc.returncode == 2 and error in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
