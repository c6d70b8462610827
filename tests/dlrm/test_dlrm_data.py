"""The day-file loader (real format, memory-mapped, checked), the rank sharding of the streams, and AUC."""

from __future__ import annotations

import itertools
import zipfile

import numpy as np
import pytest
import torch
from dlrm_support import rewrite_sparse, write_days

from mlbench.benchmarks.dlrm import auc, days, synthetic
from mlbench.benchmarks.dlrm.definition import TINY
from mlbench.errors import DataError

HP = TINY.hparams
ROWS = HP["table_rows"]


def _open(root, d=0):
    return days.open_day(root, d, ROWS, HP["multi_hot"])


def test_reads_the_reference_format_memory_mapped(tmp_path):
    root = write_days(tmp_path / "d", rows_per_day=50)
    day = _open(root)
    assert day.rows == 50 and isinstance(day.sparse[0], np.memmap) and isinstance(day.dense, np.memmap)
    with zipfile.ZipFile(root / "day_0_sparse_multi_hot.npz") as z:
        assert sorted(z.namelist(), key=lambda n: int(n.split(".")[0])) == [f"{k}.npy" for k in range(26)]
    with np.load(root / "day_0_sparse_multi_hot.npz") as z:
        for k in range(26):
            assert np.array_equal(day.sparse[k], z[f"{k}.npy"])
    r = days.read_rows(day, 10, 20, ROWS)
    assert r["dense"].shape == (10, 13) and r["labels"].shape == (10,)
    assert [s.shape for s in r["sparse"]] == [(10, h) for h in HP["multi_hot"]]


def test_labels_as_n_by_1_and_as_n(tmp_path):
    root = write_days(tmp_path / "d", rows_per_day=20, days=(0,))
    np.save(root / "day_0_labels.npy", np.load(root / "day_0_labels.npy")[:, 0])
    assert _open(root).labels.shape == (20,)


@pytest.mark.parametrize("case", ["missing_day", "rows_mismatch_labels", "rows_mismatch_sparse", "index_out",
                                  "negative_index", "label_two", "compressed", "missing_member", "dense_shape"])
def test_bad_input_is_a_data_error_naming_the_file(tmp_path, case):
    root = write_days(tmp_path / "d", rows_per_day=30, days=(0,))
    expect = {"missing_day": "day_1_dense.npy", "rows_mismatch_labels": "day_0_labels.npy",
              "rows_mismatch_sparse": "day_0_sparse_multi_hot.npz", "index_out": "day_0_sparse_multi_hot.npz",
              "negative_index": "day_0_sparse_multi_hot.npz", "label_two": "day_0_labels.npy",
              "compressed": "day_0_sparse_multi_hot.npz", "missing_member": "day_0_sparse_multi_hot.npz",
              "dense_shape": "day_0_dense.npy"}[case]
    day = 0
    if case == "missing_day":
        day = 1
    elif case == "rows_mismatch_labels":
        np.save(root / "day_0_labels.npy", np.zeros((29, 1), np.int32))
    elif case == "rows_mismatch_sparse":
        rewrite_sparse(root, 0, lambda m: m.__setitem__(3, m[3][:-1]))
    elif case == "index_out":
        rewrite_sparse(root, 0, lambda m: m[7].__setitem__((12, 0), ROWS[7]))
    elif case == "negative_index":
        rewrite_sparse(root, 0, lambda m: m[0].__setitem__((3, 0), -1))
    elif case == "label_two":
        lab = np.load(root / "day_0_labels.npy")
        lab[5] = 2
        np.save(root / "day_0_labels.npy", lab)
    elif case == "compressed":
        with np.load(root / "day_0_sparse_multi_hot.npz") as z:
            arrays = {k.removesuffix(".npy"): z[k] for k in z.files}
        np.savez_compressed(root / "day_0_sparse_multi_hot.npz", **arrays)
    elif case == "missing_member":
        rewrite_sparse(root, 0, lambda m: m.pop())
    elif case == "dense_shape":
        np.save(root / "day_0_dense.npy", np.zeros((30, 12), np.float32))
    with pytest.raises(DataError) as err:
        d = days.open_day(root, day, ROWS, HP["multi_hot"])
        days.read_rows(d, 0, d.rows, ROWS)
    assert expect in str(err.value)
    if case == "index_out":
        assert "row 12" in str(err.value) and "table 7" in str(err.value)


def _covered(streams) -> list[list[tuple[int, int]]]:
    return [s.slices() for s in streams]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_train_shards_are_disjoint_equal_and_global_batches_fixed(tmp_path, world):
    root = write_days(tmp_path / "d", rows_per_day=100, days=(0, 1))
    rows = days.Rows([_open(root, 0), _open(root, 1)], ROWS)
    bs = 8
    streams = [days.TrainStream(rows, bs, r, world) for r in range(world)]
    per_rank = _covered(streams)
    assert len({len(p) for p in per_rank}) == 1  # every rank takes the same number of steps
    taken = [i for p in per_rank for a, b in p for i in range(a, b)]
    assert len(taken) == len(set(taken))  # disjoint
    assert len(taken) == (200 // (bs * world)) * bs * world
    for step in range(len(per_rank[0])):  # global batch `step` = the same rows for any world size
        rows_of_step = sorted(i for p in per_rank for i in range(*p[step]))
        assert rows_of_step == list(range(step * bs * world, (step + 1) * bs * world))
    batch = next(iter(streams[-1]))  # crosses no day boundary issue: reads real rows
    assert batch["dense"].shape == (bs, 13) and len(batch["sparse"]) == 26


def test_train_stream_resumes_mid_epoch_without_reading_the_skipped_batches(tmp_path):
    root = write_days(tmp_path / "d", rows_per_day=60)
    rows = days.Rows([_open(root, d) for d in (0, 1)], ROWS)
    stream = days.TrainStream(rows, 8, 1, 2)
    every = list(stream)
    reads = []
    real = rows.read
    rows.read = lambda a, b: reads.append((a, b)) or real(a, b)
    rest = list(stream.iter_from(3))
    assert reads == stream.slices()[3:]  # nothing before batch 3 is read
    assert len(rest) == len(every) - 3
    for got, want in zip(rest, every[3:], strict=True):
        assert torch.equal(got["dense"], want["dense"]) and torch.equal(got["labels"], want["labels"])
        assert all(torch.equal(a, b) for a, b in zip(got["sparse"], want["sparse"], strict=True))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_shards_cover_the_validation_half_once(tmp_path, world):
    root = write_days(tmp_path / "d", rows_per_day=101, days=(2,))
    val = days.eval_rows(_open(root, 2), ROWS, "val")
    test = days.eval_rows(_open(root, 2), ROWS, "test")
    assert len(val) == 51 and len(test) == 50  # ceil half for validation, as the reference splits day 23
    streams = [days.EvalStream(val, 8, r, world) for r in range(world)]
    assert len({len(s) for s in streams}) == 1
    seen = [i for s in streams for a, b in s.slices() for i in range(a, b)]
    assert sorted(seen) == list(range(51))
    total = sum(len(b["labels"]) for s in streams for b in s)
    assert total == 51


def test_auc_matches_brute_force_pairs_with_ties():
    rng = np.random.default_rng(0)
    for n in (2, 7, 60, 200):
        s = rng.integers(0, 6, n).astype(np.float32)  # many ties
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        pos, neg = s[y == 1], s[y == 0]
        brute = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
        assert auc.auc(s, y) == pytest.approx(brute / (len(pos) * len(neg)), abs=1e-12)
    assert np.isnan(auc.auc(np.ones(3), np.ones(3)))
    assert auc.auc(np.array([0.1, 0.9]), np.array([0, 1])) == 1.0


def test_planted_log_reports_its_bayes_auc(tmp_path):
    hp = {**HP, "rows_per_day": 3000}
    info = synthetic.generate(tmp_path / "planted", hp, say=lambda _m: None)
    assert 0.6 < info["bayes_auc_val"] < 0.95
    prob = np.load(tmp_path / "planted" / f"day_{HP['eval_day']}_click_probability.npy")
    labels = np.load(tmp_path / "planted" / f"day_{HP['eval_day']}_labels.npy")[:, 0]
    assert info["bayes_auc_val"] == pytest.approx(auc.auc(prob[:1500], labels[:1500]))
    assert synthetic.ensure(tmp_path / "planted", hp, say=lambda _m: None) == info  # cached
