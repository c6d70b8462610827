"""dlrm-v2 inference: query sizes as the MLPerf reference draws them, batches of rows without padding (an
``inputs.Ragged`` batch) through PyTorch and ONNX Runtime, and clear errors for bad --query-sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dlrm_support import write_days

from mlbench.benchmarks.dlrm import days
from mlbench.benchmarks.dlrm import inference as inf
from mlbench.benchmarks.dlrm.definition import TINY
from mlbench.benchmarks.dlrm.model import DLRMTrain
from mlbench.errors import ConfigError, DataError
from mlbench.inference import inputs
from support import mlbench

HP = TINY.hparams


def _store(tmp_path: Path, spec: str | None = "uniform:3-9", rows_per_day: int = 128):
    root = write_days(tmp_path / "days", rows_per_day=rows_per_day)
    day = days.open_day(root, HP["eval_day"], HP["table_rows"], HP["multi_hot"])
    rows = days.eval_rows(day, HP["table_rows"], "val")
    sizes = inf.parse_query_sizes(spec, (HP["query_min"], HP["query_max"]), len(rows))
    return inf.QueryStore(rows, inf.query_bounds(len(rows), sizes), 1024), rows


# ---------------------------------------------------------------- inputs.Ragged: counted in samples
def test_ragged_batches_count_samples_not_rows():
    x = inputs.Ragged({"a": np.arange(10).reshape(10, 1), "b": np.arange(10.0)}, [0, 3, 4, 10])
    assert inputs.length(x) == 3
    h = inputs.head(x, 2)
    assert isinstance(h, inputs.Ragged) and inputs.length(h) == 2 and h["a"][:, 0].tolist() == [0, 1, 2, 3]
    parts = inputs.split(x, 2)
    assert [inputs.length(p) for p in parts] == [1, 2]
    assert parts[1]["b"].tolist() == [3.0, 4, 5, 6, 7, 8, 9] and parts[1].offsets.tolist() == [0, 1, 7]
    assert inputs.head(x, 9)["a"].shape == (10, 1)  # more than there are: all of it


# ---------------------------------------------------------------- query sizes
def test_query_bounds_cover_every_row_once_and_repeat(tmp_path):
    for spec, lo, hi in (("uniform:3-9", 3, 9), ("fixed:7", 7, 7)):
        s = inf.parse_query_sizes(spec, (20, 100), 500)
        b = inf.query_bounds(500, s)
        sizes = np.diff(b)
        assert b[0] == 0 and b[-1] == 500 and (sizes[:-1] >= lo).all() and (sizes <= hi).all() and sizes[-1] >= 1
        assert np.array_equal(b, inf.query_bounds(500, s))  # fixed seed: every run serves the same queries
    assert np.diff(inf.query_bounds(20, inf.parse_query_sizes("fixed:7", (1, 2), 20))).tolist() == [7, 7, 6]
    d = inf.parse_query_sizes(None, (20, 100), 50)  # the default: the size's range, capped by the rows
    assert (d.kind, d.low, d.high) == ("uniform", 20, 50)


def test_quantile_file_draws_as_the_reference(tmp_path):
    # the reference: np.random.seed(123); per query q[np.random.randint(low=0, high=len(q))]; last query cut
    q = [2, 2, 5, 5, 5, 9, 13]
    f = tmp_path / "quantile.txt"
    f.write_text(", ".join(map(str, q)) + "\nignored second line\n")
    s = inf.parse_query_sizes(f"quantile:{f}", (1, 1), 1000)
    assert (s.kind, s.low, s.high, s.quantile) == ("quantile", 2, 13, tuple(q))
    b = inf.query_bounds(1000, s)
    rng = np.random.RandomState(123)
    want, total = [], 0
    while total < 1000:
        size = q[rng.randint(low=0, high=len(q))]
        want.append(min(size, 1000 - total))
        total += size
    assert np.diff(b).tolist() == want
    d = s.describe()
    assert d["kind"] == "quantile" and d["seed"] == 123 and d["file"] == str(f) and len(d["sha256"]) == 64


@pytest.mark.parametrize("text, message", [
    ("", "no numbers"),
    ("100, 200, x3\n", "entry 3 ('x3') is not an integer"),
    ("100, 300, 200\n", "entry 3 (200) is below entry 2 (300)"),
    ("0, 100\n", "entry 1 (0) is outside 1..500"),
    ("100, 700\n", "entry 2 (700) is outside 1..500"),
])
def test_malformed_quantile_file_is_a_data_error_naming_it(tmp_path, text, message):
    f = tmp_path / "q.txt"
    f.write_text(text)
    with pytest.raises(DataError) as e:
        inf.parse_query_sizes(f"quantile:{f}", (1, 2), 500)
    assert message in e.value.message and str(f) in e.value.message and e.value.hint
    with pytest.raises(ConfigError, match="quantile file not found"):
        inf.parse_query_sizes(f"quantile:{tmp_path / 'missing.txt'}", (1, 2), 500)


@pytest.mark.parametrize("spec, message", [
    ("uniform", "invalid value for 'query_sizes'"),
    ("normal:3-4", "invalid value for 'query_sizes'"),
    ("uniform:5", "uniform needs MIN-MAX"),
    ("uniform:9-3", "MIN 9 above MAX 3"),
    ("uniform:0-3", "MIN 0 is outside 1..500"),
    ("fixed:501", "size 501 is outside 1..500"),
    ("fixed:ten", "size 'ten' is not an integer"),
])
def test_bad_query_sizes_are_config_errors(spec, message):
    with pytest.raises(ConfigError) as e:
        inf.parse_query_sizes(spec, (1, 2), 500)
    assert message in e.value.message and e.value.hint and e.value.exit_code == 2


# ---------------------------------------------------------------- batches without padding
def test_flat_batch_scores_each_query_as_alone(tmp_path):
    store, rows = _store(tmp_path)
    idx = [4, 0, 7, 2]
    store.load(idx)
    x = store.batch(idx)
    lengths = [store.length(i) for i in idx]
    assert isinstance(x, inputs.Ragged) and inputs.length(x) == 4 and x.offsets.tolist() == np.cumsum([0, *lengths]).tolist()
    assert x["dense"].shape == (sum(lengths), 13) and x["dense"].dtype == np.float32
    assert set(x) == {"dense", "sparse"} and x["sparse"].dtype == np.int64
    assert x["sparse"].shape == (sum(lengths), sum(HP["multi_hot"]))  # the 26 fields side by side
    col = np.concatenate([[0], np.cumsum(HP["multi_hot"])])
    for j, i in enumerate(idx):
        q = rows.read(int(store.bounds[i]), int(store.bounds[i + 1]))
        lo, hi = x.offsets[j], x.offsets[j + 1]
        assert np.array_equal(x["dense"][lo:hi], q["dense"])
        for k in range(days.SPARSE_FEATURES):
            assert np.array_equal(x["sparse"][lo:hi, col[k]:col[k + 1]], q["sparse"][k])
        assert np.array_equal(store.label(i), q["labels"])

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = inf.QueryModel(DLRMTrain(HP), HP["multi_hot"]).eval()
    task = inf.DLRMTask(TINY, inf.TaskOptions())
    task._store = store
    with torch.inference_mode():
        out = model(**inputs.to_torch(x)).numpy()
        alone = [model(**inputs.to_torch(store.batch([i]))).numpy() for i in idx]
    responses = task.postprocess([out], idx)
    assert [len(r) for r in responses] == lengths
    for r, a in zip(responses, alone, strict=True):
        assert r.dtype == np.float32 and np.allclose(r, a, atol=1e-6)
    with pytest.raises(ValueError, match="probabilities for"):
        task.postprocess([out[:-1]], idx)
    store.unload(idx)
    with pytest.raises(KeyError):
        store.batch(idx)


def test_pool_loads_unloads_and_compacts(tmp_path):
    """Loads in several calls (any order, repeats), partial unloads (the pool is compacted when mostly holes):
    every batch holds exactly its queries' rows, as read from the day file."""
    store, rows = _store(tmp_path)
    n = store.total_count

    def check(idx):
        x = store.batch(idx)
        want = [rows.read(int(store.bounds[i]), int(store.bounds[i + 1])) for i in idx]
        assert np.array_equal(x["dense"], np.concatenate([q["dense"] for q in want]))
        packed = [np.concatenate([np.asarray(s, np.int64) for s in q["sparse"]], axis=1) for q in want]
        assert np.array_equal(x["sparse"], np.concatenate(packed))

    store.load([5, 3, 4, 3])
    store.load([0, n - 1, 4])
    assert store.loaded == [0, 3, 4, 5, n - 1]
    check([n - 1, 0, 4, 4, 5])
    check([3])
    store.unload([3, 4, 5])  # 2 of 5 queries left: compacted
    assert store.loaded == [0, n - 1]
    check([0, n - 1])
    with pytest.raises(KeyError, match="query 3 was not loaded"):
        store.batch([0, 3])
    store.load(range(n))
    check(list(range(n))[::-1])
    store.unload(range(n))
    assert store.loaded == [] and len(store._dense) == 0


def test_onnx_export_has_no_embedding_loop_and_agrees(tmp_path):
    """Run in a child process: torch.onnx's export leaves autograd threads behind, after which the fork-based
    multi-process tests of this folder cannot fork in the same pytest process."""
    here = Path(__file__).parent
    code = (f"import sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; import test_dlrm_inference as t; "
            f"t._onnx_check(__import__('pathlib').Path({str(tmp_path)!r}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def _onnx_check(tmp_path: Path) -> None:
    import onnx

    from mlbench.inference.backends import onnxrt

    store, _ = _store(tmp_path)
    store.load(range(6))
    x = store.batch(list(range(6)))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = inf.QueryModel(DLRMTrain(HP), HP["multi_hot"]).eval()
    path = onnxrt.export(model, x, tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Loop" not in ops and "ReduceSum" in ops  # sum bags as Gather + ReduceSum, not a Loop per bag
    import onnxruntime as ort

    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, dict(x))[0]
    with torch.inference_mode():
        want = model(**inputs.to_torch(x)).numpy()
    assert got.shape == (len(x["dense"]),) and np.allclose(got, want, atol=1e-5)
    # state dict names are unchanged by the swap: a checkpoint still loads
    assert set(model.net.state_dict()) == set(DLRMTrain(HP).state_dict())


# ---------------------------------------------------------------- the command line
def _run_dir(out: Path) -> Path:
    return next(d for d in out.iterdir() if d.is_dir())


@pytest.mark.parametrize("spec, code, message", [
    ("fixed:0", 2, "size 0 is outside 1..32"),
    ("uniform:10-99", 2, "MAX 99 is outside 1..32"),
    ("quantile:{tmp}/missing.txt", 2, "quantile file not found"),
    ("quantile:{tmp}/bad.txt", 1, "entry 2 ('abc') is not an integer"),
])
def test_cli_bad_query_sizes(tmp_path, spec, code, message):
    data = write_days(tmp_path / "days", rows_per_day=64)
    (tmp_path / "bad.txt").write_text("3, abc\n")
    p = mlbench("infer", "dlrm", "--size", "tiny", "--weights", "random", "--data-dir", str(data), "--quick",
                "--query-sizes", spec.format(tmp=tmp_path), "--output-dir", str(tmp_path / "runs"),
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == code, p.stdout + p.stderr
    assert message in p.stdout + p.stderr and "Traceback" not in p.stderr
    for f in (tmp_path / "runs").rglob("result.json"):
        assert json.loads(f.read_text()).get("valid") is not True


def test_cli_query_sizes_on_another_benchmark_is_refused(tmp_path):
    p = mlbench("infer", "resnet50", "--size", "tiny", "--query-sizes", "fixed:3", "--output-dir",
                str(tmp_path / "runs"), env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 2 and "--query-sizes does not apply to resnet50" in p.stdout + p.stderr


@pytest.mark.slow
def test_cli_quantile_queries_onnxruntime_submission(tmp_path):
    data = write_days(tmp_path / "days", rows_per_day=512)
    q = tmp_path / "quantile.txt"
    q.write_text("2, 3, 3, 5, 8\n")
    out = tmp_path / "runs"
    p = mlbench("infer", "dlrm", "--size", "tiny", "--weights", "random", "--data-dir", str(data), "--quick",
                "--duration-s", "0.5", "--mode", "submission", "--backend", "onnxruntime", "--query-sizes",
                f"quantile:{q}", "--output-dir", str(out), env={"OMP_NUM_THREADS": "1"})
    assert p.returncode in (0, 1), p.stdout + p.stderr  # random weights: the AUC may miss the target
    result = json.loads((_run_dir(out) / "result.json").read_text())
    assert result["status"] == "success", result.get("error")
    task = result["task"]
    assert task["query_sizes"]["kind"] == "quantile" and task["query_sizes"]["file"] == str(q)
    assert task["rows"] == 256 and task["rows_per_query_max"] <= 8 and task["queries"] >= 256 // 8
    scores = result["accuracy"]["scores"]
    assert scores["rows"] == 256 and scores["samples"] == task["queries"] and scores["malformed_responses"] == 0
    assert result["config"]["query_sizes"] == f"quantile:{q}"
    assert result["metrics"]["throughput/samples_per_s"] > 0
    assert result["allocator"]["setting"] in ("keep", "system")
    # FLOPs per query: per row times the mean rows per query (query 0 alone would say 2, 3, 5 or 8 rows' worth)
    mean_rows = task["rows"] / task["queries"]
    assert f"({mean_rows:.1f})" in result["compute"]["flops_basis"]
