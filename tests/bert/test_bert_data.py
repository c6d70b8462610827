"""BERT pre-training data: the MLPerf HDF5 format, errors, rank sharding, the mini/tiny builders."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from bert_train_support import PREDS, SEQ, SMALL_BENCH, make_dataset, sample_arrays, sample_ids

from mlbench.benchmarks.bert import pretrain_data, shards
from mlbench.benchmarks.bert.definition import TINY
from mlbench.errors import DataError

BATCH_KEYS = {"input_ids", "token_type_ids", "attention_mask", "masked_lm_positions", "masked_lm_ids",
              "next_sentence_labels"}


def _stream(folder, world=1, rank=0, batch=4, seed=0, **kw):
    infos = shards.open_folder(folder, SEQ, PREDS, "training")
    return shards.ShardStream(infos, batch, seq_len=SEQ, max_predictions=PREDS, rank=rank, world_size=world,
                              seed=seed, **kw)


def test_round_trip_any_integer_dtype(tmp_path):
    arrays = sample_arrays(10, dtype=np.int32)
    arrays["next_sentence_labels"] = arrays["next_sentence_labels"].astype(np.uint8)
    path = shards.write_shard(tmp_path / "a.hdf5", arrays)
    info = shards.open_shard(path, SEQ, PREDS)
    assert info.samples == 10 and not info.varlen
    s = shards.ShardStream([info], 5, seq_len=SEQ, max_predictions=PREDS, prefetch=False)
    batches = list(s)
    assert len(batches) == len(s) == 2
    b = batches[0]
    assert set(b) == BATCH_KEYS and all(v.dtype == torch.int64 for v in b.values())
    assert b["input_ids"].shape == (5, SEQ) and b["masked_lm_ids"].shape == (5, PREDS)
    assert b["next_sentence_labels"].shape == (5,)
    got = sorted(sample_ids(batches))
    assert got == list(range(10))


def test_fewer_predictions_than_the_size_are_padded(tmp_path):
    arrays = sample_arrays(4, preds=2)
    path = shards.write_shard(tmp_path / "a.hdf5", arrays)
    info = shards.open_shard(path, SEQ, PREDS)
    out = shards.read_shard(info, SEQ, PREDS)
    assert out["masked_lm_ids"].shape == (4, PREDS) and (out["masked_lm_ids"][:, 2] == 0).all()


@pytest.mark.parametrize("case, words", [
    ("missing", ["missing key", "masked_lm_ids"]),
    ("lengths", ["segment_ids", "inconsistent lengths"]),
    ("seq", ["sequence length 12", f"uses {SEQ}"]),
    ("float", ["input_mask", "float", "not an integer"]),
    ("preds", ["masked_lm_positions", "more than"]),
    ("shape", ["input_ids", "shape"]),
])
def test_bad_shards_name_file_key_and_fix(tmp_path, case, words):
    arrays = sample_arrays(6)
    if case == "missing":
        del arrays["masked_lm_ids"]
    elif case == "lengths":
        arrays["segment_ids"] = arrays["segment_ids"][:5]
    elif case == "seq":
        arrays = sample_arrays(6, seq=12)
    elif case == "float":
        arrays["input_mask"] = arrays["input_mask"].astype(np.float32)
    elif case == "preds":
        arrays = sample_arrays(6, preds=PREDS + 2)
    elif case == "shape":
        arrays["input_ids"] = arrays["input_ids"].reshape(-1)[:6]
    path = shards.write_shard(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DataError) as err:
        shards.open_shard(path, SEQ, PREDS)
    text = str(err.value)
    assert str(path) in text and "fix:" in text
    for w in words:
        assert w in text


def test_not_hdf5_is_a_data_error(tmp_path):
    path = tmp_path / "x.hdf5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    with pytest.raises(DataError, match="x.hdf5"):
        shards.open_shard(path, SEQ, PREDS)


@pytest.mark.parametrize("files, world", [(5, 2), (3, 3), (1, 3), (2, 4)])
def test_training_shards_are_disjoint_and_equal_across_ranks(tmp_path, files, world):
    make_dataset(tmp_path, files=files, per_file=13)
    for epoch in (0, 1):
        seen, lengths = [], []
        for rank in range(world):
            s = _stream(tmp_path / "hdf5" / "training", world=world, rank=rank, batch=3)
            s.set_epoch(epoch)
            batches = list(s)
            assert len(batches) == len(s) > 0
            lengths.append(len(s))
            seen.append(sample_ids(batches))
        assert len(set(lengths)) == 1
        flat = [x for ids in seen for x in ids]
        assert len(flat) == len(set(flat))  # disjoint, no sample twice
        assert set(flat) <= set(range(files * 13))


def test_epoch_order_is_deterministic_and_changes(tmp_path):
    make_dataset(tmp_path, files=3, per_file=16)
    folder = tmp_path / "hdf5" / "training"
    a, b = _stream(folder, seed=1), _stream(folder, seed=1, prefetch=False)
    assert sample_ids(a) == sample_ids(b)
    first = sample_ids(a)
    a.set_epoch(1)
    assert sample_ids(a) != first and sorted(sample_ids(a)) == sorted(first)
    assert sample_ids(_stream(folder, seed=2)) != first


def test_eval_set_is_covered_once_across_ranks(tmp_path):
    make_dataset(tmp_path, eval_n=23)
    infos = shards.open_folder(tmp_path / "hdf5" / "eval", SEQ, PREDS, "evaluation")
    seen = []
    for rank in range(3):
        ev = shards.EvalSet(infos, 4, seq_len=SEQ, max_predictions=PREDS, rank=rank, world_size=3)
        batches = list(ev)
        assert len(batches) == len(ev)
        seen += sample_ids(batches)
    assert sorted(seen) == list(range(10_000, 10_023))


def test_variable_length_shards_read_like_fixed(tmp_path):
    arrays = sample_arrays(7)
    fixed = shards.open_shard(shards.write_shard(tmp_path / "f.hdf5", arrays), SEQ, PREDS)
    path = tmp_path / "v.hdf5"
    with h5py.File(path, "w") as f:
        n = len(arrays["input_ids"])
        lengths = arrays["input_mask"].sum(1)
        for key in ("input_ids", "segment_ids"):
            ds = f.create_dataset(key, (n,), dtype=h5py.vlen_dtype(np.int16))
            for i in range(n):
                ds[i] = arrays[key][i, :lengths[i]]
        for key in ("masked_lm_positions", "masked_lm_ids"):
            ds = f.create_dataset(key, (n,), dtype=h5py.vlen_dtype(np.int16))
            for i in range(n):
                k = int((arrays["masked_lm_ids"][i] != 0).sum())
                ds[i] = arrays[key][i, :k]
        f.create_dataset("next_sentence_labels", data=arrays["next_sentence_labels"])
    var = shards.open_shard(path, SEQ, PREDS)
    assert var.varlen and var.samples == 7
    a, b = shards.read_shard(fixed, SEQ, PREDS), shards.read_shard(var, SEQ, PREDS)
    for key in shards.KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_tiny_builder_makes_valid_deterministic_shards(tmp_path):
    root = pretrain_data.ensure_data(TINY, tmp_path / "a")
    hp = TINY.hparams
    infos = shards.open_folder(root / "hdf5" / "training", hp["seq_len"], hp["max_predictions"], "training")
    ev = shards.open_folder(root / "hdf5" / "eval", hp["seq_len"], hp["max_predictions"], "evaluation")
    assert len(infos) >= 2 and sum(i.samples for i in ev) == hp["eval_samples"]
    vocab = (root / "vocab.txt").read_text().split("\n")
    assert vocab[:5] == pretrain_data.SPECIALS
    data = shards.read_shard(infos[0], hp["seq_len"], hp["max_predictions"])
    ids, pos, lab = data["input_ids"], data["masked_lm_positions"], data["masked_lm_ids"]
    assert (ids[:, 0] == pretrain_data.CLS).all() and ids.max() < hp["model"]["vocab_size"]
    real = lab > 0
    picked = np.take_along_axis(ids, pos, 1)[real]
    share_mask = (picked == pretrain_data.MASK).mean()
    assert 0.7 < share_mask < 0.9  # 80% [MASK], 10% kept, 10% random
    assert 0.3 < data["next_sentence_labels"].mean() < 0.7  # half random next sentences
    again = pretrain_data.ensure_data(TINY, tmp_path / "b")
    other = shards.read_shard(shards.open_folder(again / "hdf5" / "training", hp["seq_len"],
                                                 hp["max_predictions"], "training")[0],
                              hp["seq_len"], hp["max_predictions"])
    for key in shards.KEYS:
        np.testing.assert_array_equal(data[key], other[key])
    assert pretrain_data.ensure_data(TINY, root) == root  # reused, not rebuilt


RST = """
.. _intro:

Introduction
============

The :func:`open` function returns a *file object*.  It is used with ``with``
statements, as shown in :ref:`the tutorial <tut-files>`.  Files are closed when the block ends.

For example::

    with open("x") as f:
        data = f.read()

.. note::

   Reading a closed file raises :exc:`ValueError` in every case that we know of.

.. code-block:: python

   print("never prose")

+------+------+
| a    | b    |
+------+------+
"""


def test_rst_cleaning_keeps_prose_and_drops_code():
    sents = pretrain_data.sentences_of(pretrain_data.rst_paragraphs(RST))
    text = " ".join(sents)
    assert "The open function returns a file object." in sents
    assert "as shown in the tutorial." in text
    assert "Reading a closed file raises ValueError" in text
    for bad in ("data = f.read()", "never prose", "+------", "====", ":func:", "``"):
        assert bad not in text


def test_mini_builder_on_a_few_rst_files(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(12):
        (src / f"doc{k}.rst.txt").write_text(RST + "\n\n" + " ".join(
            f"Sentence number {k} {j} talks about the module and its functions." for j in range(12)))
    monkeypatch.setattr(pretrain_data, "PYDOC_DIR", src)
    bench = SMALL_BENCH.derive(size="mini", hparams={"seq_len": 32, "max_predictions": 5, "eval_samples": 10,
                                                     "model": {**SMALL_BENCH.hparams["model"], "vocab_size": 200}})
    report = pretrain_data.prepare(bench, tmp_path / "out", say=lambda m: None)
    assert report["train_samples"] > 0 and report["eval_samples"] == 10
    vocab = (tmp_path / "out" / "vocab.txt").read_text().split()
    assert vocab[:5] == pretrain_data.SPECIALS and len(vocab) <= 200
    shards.open_folder(tmp_path / "out" / "hdf5" / "training", 32, 5, "training")


def test_missing_python_docs_say_how_to_install(tmp_path):
    with pytest.raises(DataError, match="python3.11-doc"):
        pretrain_data.pydoc_documents(tmp_path / "nothing")


def test_reference_check_lists_what_is_missing(tmp_path):
    from mlbench.benchmarks.bert.definition import REFERENCE

    with pytest.raises(DataError) as err:
        pretrain_data.prepare(REFERENCE, tmp_path, say=lambda m: None)
    text = str(err.value)
    assert "training shards" in text and "evaluation set" in text and "model.ckpt-28252.pt" in text
