"""The Megatron indexed token files (written here in the exact format) and the windows cut from them."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mlbench.data import indexed_tokens as it
from mlbench.errors import DataError
from mlbench.llm import windows

DOCS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14], [15, 16, 17, 18, 19, 20]]


def _write_by_hand(prefix: Path, docs: list[list[int]], dtype=np.int32, code: int = 4) -> None:
    """The .idx as the format describes it, written field by field (independent of indexed_tokens.write)."""
    sizes = np.array([len(d) for d in docs], dtype=np.int32)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.concatenate(([0], np.cumsum(sizes[:-1]) * itemsize)).astype(np.int64)
    with open(str(prefix) + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", code))
        f.write(struct.pack("<Q", len(docs)))
        f.write(struct.pack("<Q", len(docs) + 1))
        f.write(sizes.tobytes())
        f.write(pointers.tobytes())
        f.write(np.arange(len(docs) + 1, dtype=np.int64).tobytes())
    with open(str(prefix) + ".bin", "wb") as f:
        for d in docs:
            f.write(np.asarray(d, dtype=dtype).tobytes())


def test_reads_a_pair_written_field_by_field_and_writes_the_same_bytes(tmp_path):
    _write_by_hand(tmp_path / "hand", DOCS)
    f = it.IndexedTokens(tmp_path / "hand")
    assert (f.n_sequences, f.n_documents, f.n_tokens, f.dtype) == (5, 5, 16, np.dtype(np.int32))
    assert f.document(2).tolist() == [10, 11, 12, 13]
    assert f.tokens.tolist() == [t for d in DOCS for t in d]
    # our writer picks int32 above 65,500 ids, as Megatron does: byte for byte the same files
    assert it.write(tmp_path / "ours", DOCS, vocab_size=128_256) == (5, 16)
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"ours{suffix}").read_bytes() == (tmp_path / f"hand{suffix}").read_bytes()
    it.write(tmp_path / "small", DOCS, vocab_size=4096)
    assert it.IndexedTokens(tmp_path / "small.bin").dtype == np.dtype(np.uint16)  # a suffix is accepted too


def _corrupt(tmp: Path, how: str) -> Path:
    p = tmp / "c4"
    _write_by_hand(p, DOCS)
    idx, bin_ = Path(str(p) + ".idx"), Path(str(p) + ".bin")
    data = bytearray(idx.read_bytes())
    if how == "no idx":
        idx.unlink()
    elif how == "no bin":
        bin_.unlink()
    elif how == "short header":
        idx.write_bytes(bytes(data[:20]))
    elif how == "truncated idx":
        idx.write_bytes(bytes(data[:-9]))
    elif how == "truncated bin":
        bin_.write_bytes(bin_.read_bytes()[:-4])
    elif how == "longer bin":
        bin_.write_bytes(bin_.read_bytes() + b"\0" * 8)
    elif how == "magic":
        data[0:3] = b"XYZ"
        idx.write_bytes(bytes(data))
    elif how == "float":
        data[17] = 7
        idx.write_bytes(bytes(data))
    elif how == "gap":
        off = it.HEADER.size + 4 * len(DOCS) + 8 * 3  # the fourth sequence's pointer
        data[off:off + 8] = struct.pack("<q", 44)
        idx.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize("how, words", [
    ("no idx", "c4.idx not found (its pair c4.bin is there)"), ("no bin", "c4.bin not found"),
    ("short header", "is truncated"), ("truncated idx", "is truncated"),
    ("truncated bin", "points past its data file"), ("longer bin", "do not belong together"),
    ("magic", "not a Megatron indexed dataset index"), ("float", "a floating-point type"),
    ("gap", "gaps or overlaps"),
])
def test_a_broken_pair_is_refused_with_the_file_named(tmp_path, how, words):
    p = _corrupt(tmp_path, how)
    with pytest.raises(DataError) as err:
        it.IndexedTokens(p, what="training data")
    assert words in str(err.value)
    assert err.value.hint and "preprocess_data_for_megatron" in err.value.hint


def test_token_ids_beyond_the_vocabulary_are_refused(tmp_path):
    _write_by_hand(tmp_path / "c4", DOCS)
    f = it.IndexedTokens(tmp_path / "c4")
    f.check_vocab(21)
    with pytest.raises(DataError, match="token id 20 is outside the model's vocabulary"):
        f.check_vocab(20)
    with pytest.raises(DataError, match="outside"):  # the loaders check every batch too
        windows.Windows([f], 5, vocab_size=20).get(np.array([2]))


def test_windows_are_consecutive_slices_sharing_one_token_across_documents_and_files(tmp_path):
    it.write(tmp_path / "a", DOCS, vocab_size=64)  # 16 tokens: 3 windows of 4 (+1)
    it.write(tmp_path / "b", [[30, 31, 32, 33, 34, 35, 36, 37, 38]], vocab_size=64)  # 2 windows
    w = windows.Windows([it.IndexedTokens(tmp_path / "a"), it.IndexedTokens(tmp_path / "b")], 4, vocab_size=64)
    assert len(w) == 5
    got = w.get(np.arange(5))
    assert got[:, 0].tolist() == [5, 9, 13, 30, 34]
    assert got[0].tolist() == [5, 6, 7, 8, 9] and got[1, 0] == got[0, -1]
    batch = windows.to_batch(got)
    assert batch["input_ids"][0].tolist() == [5, 6, 7, 8] and batch["labels"][0].tolist() == [6, 7, 8, 9]


def test_training_batches_are_shuffled_per_epoch_split_by_rank_and_resumable(tmp_path):
    it.write(tmp_path / "t", [list(range(1, 200))], vocab_size=256)  # 49 windows of 4
    w = windows.Windows([it.IndexedTokens(tmp_path / "t")], 4, vocab_size=256)
    ranks = [windows.TrainWindows(w, 3, rank=r, world_size=2, seed=7) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 49 // 6
    firsts = [[b["input_ids"][:, 0].tolist() for b in r] for r in ranks]
    seen = [x for r in firsts for b in r for x in b]
    assert len(seen) == len(set(seen)) == 8 * 6  # disjoint, no window twice in an epoch
    again = windows.TrainWindows(w, 3, rank=0, world_size=2, seed=7)
    assert [b["input_ids"][:, 0].tolist() for b in again] == firsts[0]  # the seed decides the order
    assert [b["input_ids"][:, 0].tolist() for b in again.iter_from(5)] == firsts[0][5:]
    again.set_epoch(1)
    assert [b["input_ids"][:, 0].tolist() for b in again] != firsts[0]
    with pytest.raises(DataError, match="fewer than one global batch"):
        windows.TrainWindows(w, 30, rank=0, world_size=2, seed=0)


def test_evaluation_reads_the_first_samples_in_order_each_rank_its_share(tmp_path):
    it.write(tmp_path / "v", [list(range(1, 100))], vocab_size=128)  # 24 windows of 4
    w = windows.Windows([it.IndexedTokens(tmp_path / "v")], 4, vocab_size=128)
    shares = [windows.EvalWindows(w, 10, 3, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shares] == [2, 2, 2]  # every rank the same batches (a sharded model needs them all)
    starts = sorted(x for s in shares for b in s for x, wt in zip(b["input_ids"][:, 0].tolist(), b["weight"]) if wt)
    assert starts == [1 + 4 * i for i in range(10)]  # 12 rows run, the 2 padding rows weigh 0
    with pytest.raises(DataError, match="evaluates on 30"):
        windows.EvalWindows(w, 30, 4, rank=0, world_size=1)
