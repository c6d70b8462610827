"""Issue 10, point 7: numbers are checked for what they are. NaN, infinity and absurd magnitudes are refused in
every numeric option, before anything runs; dates are parsed or refused."""

from __future__ import annotations

import dataclasses
import datetime
import json
import typing
from pathlib import Path

import pytest
from catalogue import Case, check

from mlbench import config
from mlbench.errors import ConfigError

TRAIN = ("train", "resnet50", "--size", "tiny", "--device", "cpu", "--output-dir", "{tmp}/runs")
INFER = ("infer", "resnet50", "--size", "tiny", "--backend", "null", "--output-dir", "{tmp}/runs")


def _write(name: str, text: str):
    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)
    return setup


def _store(tmp: Path) -> None:
    """A results folder with one (failed) run started two days ago, so that results/compare/report get as far
    as their filters."""
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    run = tmp / "runs" / "20260101-000000-train-resnet50-tiny-abcd"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({
        "schema": "mlbench.result/1", "kind": "train", "run_id": run.name, "benchmark": "resnet50",
        "size": "tiny", "status": "failed", "valid": False, "validity_reasons": ["a test fixture"],
        "started_at": started.isoformat(timespec="seconds"), "finished_at": started.isoformat(timespec="seconds"),
        "metrics": {},
        "quality": {}, "config": {}, "system": {}}))


CASES = [
    # training options: NaN, infinity, negative, zero and absurd magnitudes
    Case("train-lr-nan", (*TRAIN, "--lr", "nan"), 2, "invalid value for 'lr': nan"),
    Case("train-lr-inf", (*TRAIN, "--lr", "inf"), 2, "invalid value for 'lr': inf"),
    Case("train-lr-huge", (*TRAIN, "--lr", "1e300"), 2, "invalid value for 'lr': 1e+300"),
    Case("train-lr-nan-set", (*TRAIN, "--set", "lr=NaN"), 2, "invalid value for 'lr'"),
    Case("train-lr-nan-yaml", (*TRAIN, "--config", "{tmp}/c.yaml"), 2, "invalid value for 'lr'",
         setup=_write("c.yaml", "lr: .nan\n")),
    Case("train-lr-inf-json", (*TRAIN, "--config", "{tmp}/c.json"), 2, "invalid value for 'lr'",
         setup=_write("c.json", '{"lr": Infinity}')),
    Case("train-seed-2^32", (*TRAIN, "--seed", str(2**32)), 2, "invalid value for 'seed': 4294967296"),
    Case("train-seed-2^64", (*TRAIN, "--seed", str(2**64)), 2, "invalid value for 'seed'"),
    Case("train-seed-runs-overflow", (*TRAIN, "--seed", str(2**32 - 1), "--runs", "3"), 2,
         "invalid value for 'seed'"),
    Case("train-batch-huge", (*TRAIN, "--batch-size", str(10**9)), 2, "invalid value for 'batch_size'"),
    Case("train-epochs-huge", (*TRAIN, "--epochs", str(10**12)), 2, "invalid value for 'epochs'"),
    Case("train-workers-huge", (*TRAIN, "--workers", "100000"), 2, "invalid value for 'workers'"),
    Case("train-grad-accum-huge", (*TRAIN, "--grad-accum", str(10**7)), 2, "invalid value for 'grad_accum'"),
    Case("train-runs-huge", (*TRAIN, "--runs", str(10**6)), 2, "invalid value for 'runs'"),
    Case("train-nproc-huge", (*TRAIN, "--nproc", str(10**6)), 2, "invalid value for 'nproc'"),
    Case("train-log-every-huge", (*TRAIN, "--log-every", str(10**15)), 2, "invalid value for 'log_every'"),
    Case("train-timeout-huge", (*TRAIN, "--dist-timeout-s", str(10**12)), 2, "invalid value for 'dist_timeout_s'"),
    Case("train-rdzv-port-huge", (*TRAIN, "--nnodes", "2", "--rdzv-endpoint", "node01:99999"), 2,
         "invalid value for 'rdzv_endpoint'"),
    Case("train-rdzv-port-zero", (*TRAIN, "--rdzv-endpoint", "node01:0"), 2, "invalid value for 'rdzv_endpoint'"),
    Case("train-node-rank-huge", (*TRAIN, "--nnodes", "2", "--node-rank", str(10**9)), 2,
         "invalid value for 'node_rank'"),
    # a batch larger than the whole training set: no step could run
    Case("train-batch-over-dataset", (*TRAIN, "--batch-size", "4096", "--epochs", "1"), 1,
         "larger than the training set (512 images)"),
    Case("run-runs-huge", ("run", "--size", "tiny", "--benchmarks", "resnet50", "--runs", str(10**6),
                           "--output-dir", "{tmp}/runs"), 2, "invalid value for 'runs'"),
    Case("scale-nproc-huge", ("scale", "resnet50", "--size", "tiny", "--nproc", f"1,{10**6}",
                              "--output-dir", "{tmp}/runs"), 2, "invalid value for 'nproc'"),
    Case("scale-gpus-huge", ("scale", "resnet50", "--size", "tiny", "--slurm", "--gpus-per-node", str(10**6),
                             "--output-dir", "{tmp}/runs"), 2, "invalid value for 'gpus_per_node'"),
    # inference options
    Case("infer-qps-nan", (*INFER, "--target-qps", "nan"), 2, "invalid value for 'target_qps': nan"),
    Case("infer-qps-inf", (*INFER, "--target-qps", "inf"), 2, "invalid value for 'target_qps': inf"),
    Case("infer-qps-absurd", (*INFER, "--target-qps", "1e30"), 2, "invalid value for 'target_qps'"),
    Case("infer-qps-loadgen-memory", (*INFER, "--scenario", "Server", "--target-qps", "5e8"), 2,
         "more than LoadGen can hold in this machine's memory"),
    Case("infer-qps-loadgen-memory-quick", (*INFER, "--quick", "--duration-s", "80000", "--target-qps", "1e9"), 2,
         "more than LoadGen can hold"),
    Case("infer-duration-nan", (*INFER, "--quick", "--duration-s", "nan"), 2, "invalid value for 'duration_s'"),
    Case("infer-duration-huge", (*INFER, "--quick", "--duration-s", "1e12"), 2, "invalid value for 'duration_s'"),
    Case("infer-wait-inf", (*INFER, "--scenario", "Server", "--max-wait-ms", "inf"), 2,
         "invalid value for 'max_wait_ms'"),
    Case("infer-latency-nan", (*INFER, "--scenario", "Server", "--target-latency-ms", "nan"), 2,
         "invalid value for 'target_latency_ms'"),
    Case("infer-latency-inf-set", (*INFER, "--set", "target_latency_ms=inf"), 2,
         "invalid value for 'target_latency_ms'"),
    Case("infer-cuda-graphs-cpu", ("infer", "resnet50", "--size", "tiny", "--quick", "--device", "cpu",
                                   "--cuda-graphs", "--output-dir", "{tmp}/runs"), 2,
         "--cuda-graphs needs a CUDA device"),
    Case("infer-cuda-graphs-onnxruntime", (*INFER[:4], "--backend", "onnxruntime", "--cuda-graphs", *INFER[6:]), 2,
         "--cuda-graphs applies to the pytorch backend only"),
    Case("infer-cuda-graphs-compile", ("infer", "resnet50", "--size", "tiny", "--cuda-graphs", "--compile",
                                       "--output-dir", "{tmp}/runs"), 2, "--cuda-graphs and --compile together"),
    Case("infer-batch-huge", (*INFER, "--batch-size", str(10**9)), 2, "invalid value for 'batch_size'"),
    Case("infer-threads-huge", (*INFER, "--threads", str(10**7)), 2, "invalid value for 'threads'"),
    Case("infer-workers-huge", (*INFER, "--workers", str(10**7)), 2, "invalid value for 'workers'"),
    Case("infer-max-samples-huge", (*INFER, "--mode", "accuracy", "--max-samples", str(10**15)), 2,
         "invalid value for 'max_samples'"),
    # cluster and data preparation options
    Case("slurm-port-huge", ("slurm", "submit", "resnet50", "--size", "tiny", "--rdzv-port", "70000", "--dry-run",
                             "--output-dir", "{tmp}/runs"), 2, "invalid value for 'rdzv_port'"),
    Case("slurm-nodes-huge", ("slurm", "submit", "resnet50", "--size", "tiny", "--nodes", str(10**9), "--dry-run",
                              "--output-dir", "{tmp}/runs"), 2, "invalid value for 'nodes'"),
    Case("slurm-logs-tail-negative", ("slurm", "logs", "--tail", "-5", "--output-dir", "{tmp}/runs"), 2,
         "argument --tail"),
    Case("prepare-workers-huge", ("data", "prepare", "retinanet", "--root", "{tmp}/oi", "--workers", str(10**9)), 2,
         "invalid value for 'workers'"),
    # results, compare, report: limits and dates
    Case("results-limit-negative", ("results", "--output-dir", "{tmp}/runs", "--limit", "-1"), 2,
         "argument --limit", setup=_store),
    Case("results-limit-zero", ("results", "--output-dir", "{tmp}/runs", "--limit", "0"), 2,
         "argument --limit", setup=_store),
    Case("results-world-size-negative", ("results", "--output-dir", "{tmp}/runs", "--world-size", "-2"), 2,
         "argument --world-size", setup=_store),
    Case("results-since-word", ("results", "--output-dir", "{tmp}/runs", "--since", "soon"), 2,
         "is not a date", setup=_store),
    Case("results-since-bad-month", ("results", "--output-dir", "{tmp}/runs", "--since", "2026-13-01"), 2,
         "is not a date", setup=_store),
    Case("report-since-word", ("report", "--output-dir", "{tmp}/runs", "--since", "last tuesday"), 2,
         "is not a date", setup=_store),
    Case("compare-since-word", ("compare", "since=whenever", "--output-dir", "{tmp}/runs"), 2,
         "invalid value for 'since'", setup=_store),
    Case("compare-baseline-zero", ("compare", "benchmark=resnet50", "--baseline", "0", "--output-dir", "{tmp}/runs"),
         2, "argument --baseline", setup=_store),
    Case("compare-baseline-beyond", ("compare", "benchmark=resnet50", "--baseline", "5", "--output-dir",
                                     "{tmp}/runs"), 2, "invalid value for 'baseline'", setup=_store),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_value(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


# ---------------------------------------------------------------- one mechanism for every option

def _numeric_fields():
    from mlbench.benchmarks.retinanet.prepare import PrepareConfig
    from mlbench.inference.config import InferConfig
    from mlbench.slurm.script import SlurmConfig

    for cls in (config.TrainConfig, InferConfig, SlurmConfig, PrepareConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[f.name]) or (hints[f.name],))
            if kinds & {int, float}:
                yield cls, f, (float if float in kinds else int)


@pytest.mark.parametrize("cls,f,kind", list(_numeric_fields()), ids=lambda v: getattr(v, "name", ""))
def test_every_numeric_option_has_bounds_and_refuses_nan_and_absurd_values(cls, f, kind):
    assert "max" in f.metadata and "min" in f.metadata, f"{cls.__name__}.{f.name}"
    for bad in ([float("nan"), float("inf"), -float("inf"), 1e300] if kind is float else [10**30, -(10**30)]):
        with pytest.raises(ConfigError, match=f"invalid value for '{f.name}'"):
            config.build(cls, {f.name: bad})


def test_seed_bound_is_what_numpy_takes():
    import numpy as np

    np.random.seed(config.SEED_MAX)  # the largest seed we accept works
    assert config.build(config.TrainConfig, {"seed": config.SEED_MAX}).seed == config.SEED_MAX
    with pytest.raises(ConfigError, match="seed"):
        config.build(config.TrainConfig, {"seed": config.SEED_MAX + 1})


def test_target_qps_bound_names_the_samples_and_the_limit():
    from mlbench.inference.config import InferConfig, check, loadgen_sample_limit

    limit = loadgen_sample_limit()
    ok = config.build(InferConfig, {"target_qps": limit / 600 * 0.9})
    assert check(ok) is ok
    with pytest.raises(ConfigError) as exc:
        check(config.build(InferConfig, {"target_qps": limit / 600 * 1.1}))
    assert "600 s minimum duration" in str(exc.value) and f"{limit:.3g} samples" in str(exc.value)
    # --quick tests last --duration-s, so they may ask for more QPS
    assert check(config.build(InferConfig, {"quick": True, "duration_s": 5.0, "target_qps": limit / 600 * 1.1}))


# ---------------------------------------------------------------- dates

NOW = datetime.datetime(2026, 3, 10, 15, 30, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("text,expected", [
    ("today", "2026-03-10T00:00:00+00:00"),
    ("yesterday", "2026-03-09T00:00:00+00:00"),
    ("7d", "2026-03-03T15:30:00+00:00"),
    ("24h", "2026-03-09T15:30:00+00:00"),
    ("2w", "2026-02-24T15:30:00+00:00"),
    ("3 days ago", "2026-03-07T15:30:00+00:00"),
    ("2026-01-31T18:00:00Z", "2026-01-31T18:00:00+00:00"),
    ("2026-01-31T18:00+02:00", "2026-01-31T16:00:00+00:00"),
])
def test_since_forms(text, expected):
    assert config.parse_since(text, now=NOW) == expected


def test_since_date_without_offset_is_local_midnight():
    local = datetime.datetime(2026, 1, 31).astimezone().astimezone(datetime.timezone.utc)
    assert config.parse_since("2026-01-31") == local.isoformat(timespec="seconds")


@pytest.mark.parametrize("text", ["soon", "", "2026-02-30", "7 fortnights", "-1d", "1e9d"])
def test_since_refuses_what_it_cannot_read(text):
    with pytest.raises(ConfigError, match="invalid value for 'since'"):
        config.parse_since(text, now=NOW)


def test_results_since_words_filter_by_start_time(tmp_path):
    from support import mlbench

    _store(tmp_path)  # a run started two days ago
    for since, listed in (("yesterday", False), ("24h", False), ("7d", True), ("1w", True)):
        p = mlbench("results", "--output-dir", str(tmp_path / "runs"), "--since", since, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert ("20260101-000000-train-resnet50-tiny-abcd" in p.stdout) == listed, (since, p.stdout)
