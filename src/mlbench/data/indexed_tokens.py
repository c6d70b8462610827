"""Megatron-style indexed token files: ``PREFIX.bin`` (token ids back to back) and ``PREFIX.idx`` (their index).

This is the format NeMo's and Megatron-LM's ``preprocess_data_for_megatron`` write (``--dataset-impl mmap``) and
MLPerf's Llama 3.1 8B pre-training reads (``c4-train.en_6_text_document.{bin,idx}``). Written from the format's
description, little-endian throughout::

    .idx  b"MMIDIDX\\x00\\x00"           9 bytes, the magic
          version                      uint64, 1
          dtype code                   uint8: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16
                                       (6 and 7 are floats: never token ids)
          sequence count N             uint64
          document count D             uint64 (the length of the document index, N + 1 for one sequence a doc)
          sizes                        int32[N]  tokens of each sequence
          pointers                     int64[N]  byte offset of each sequence in .bin
          document index               int64[D]  sequence index where each document starts, then N
    .bin  the sequences' token ids, in order, without gaps

The reader memory-maps both files and checks the index against its data before anything trains: a missing or
truncated file, an index that points past its ``.bin``, sequences with gaps between them, a float dtype, or an
index that does not belong to its ``.bin`` each get a :class:`~mlbench.errors.DataError` naming the file and the
fix. Token ids are checked against the vocabulary (:meth:`IndexedTokens.check_vocab`) at open and, in the
loaders, batch by batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mlbench.errors import DataError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document count (34 bytes)
DTYPES: dict[int, type[np.integer]] = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64,
                                       8: np.uint16}
CODES = {np.dtype(t): c for c, t in DTYPES.items()}
_FIX = ("rebuild the pair with the reference's preprocess_data_for_megatron.py (--dataset-impl mmap), or copy "
        "both files again")
_CHUNK = 1 << 22  # index entries checked at a time (a C4 shard holds tens of millions)


def best_dtype(vocab_size: int) -> type[np.integer]:
    """The token dtype Megatron picks for a vocabulary: uint16 below 65,500 ids, int32 above."""
    return np.uint16 if vocab_size < 65_500 else np.int32


def paths(prefix: str | Path) -> tuple[Path, Path]:
    """(``PREFIX.bin``, ``PREFIX.idx``); a prefix given with either suffix is accepted."""
    p = Path(prefix)
    if p.suffix in (".bin", ".idx"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".bin"), p.with_name(p.name + ".idx")


def write(prefix: str | Path, documents: Iterable[Sequence[int] | np.ndarray], vocab_size: int) -> tuple[int, int]:
    """Write ``documents`` (one token-id sequence each) as ``PREFIX.bin`` + ``PREFIX.idx``; (documents, tokens).

    Each document is one sequence, as ``preprocess_data_for_megatron`` writes it without sentence splitting.
    Both files are written beside their final names and renamed when complete.
    """
    bin_path, idx_path = paths(prefix)
    dtype = np.dtype(best_dtype(vocab_size))
    sizes: list[int] = []
    tmp_bin = bin_path.with_name(bin_path.name + ".part")
    tmp_idx = idx_path.with_name(idx_path.name + ".part")
    with open(tmp_bin, "wb") as f:
        for doc in documents:
            arr = np.asarray(doc, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"token id outside 0..{vocab_size - 1}")
            f.write(arr.astype(dtype).tobytes())
            sizes.append(int(arr.size))
    n = len(sizes)
    size_arr = np.asarray(sizes, dtype=np.int32)
    pointers = np.zeros(n, dtype=np.int64)
    if n > 1:
        pointers[1:] = np.cumsum(size_arr[:-1].astype(np.int64)) * dtype.itemsize
    doc_index = np.arange(n + 1, dtype=np.int64)
    with open(tmp_idx, "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, CODES[dtype], n, n + 1))
        f.write(size_arr.tobytes())
        f.write(pointers.tobytes())
        f.write(doc_index.tobytes())
    tmp_bin.replace(bin_path)
    tmp_idx.replace(idx_path)
    return n, int(size_arr.sum(dtype=np.int64))


class IndexedTokens:
    """One ``.bin``/``.idx`` pair, memory-mapped and checked (see the module docstring)."""

    def __init__(self, prefix: str | Path, *, what: str = "token file"):
        self.bin_path, self.idx_path = paths(prefix)
        self.what = what
        for p in (self.idx_path, self.bin_path):
            if not p.is_file():
                other = self.bin_path if p == self.idx_path else self.idx_path
                raise DataError(f"{what}: {p} not found" + (f" (its pair {other.name} is there)" if other.is_file()
                                                            else ""),
                                "a Megatron indexed dataset is two files, PREFIX.bin and PREFIX.idx, side by side; "
                                + _FIX)
        self._read_index()
        self._check_against_bin()
        self._tokens = np.memmap(self.bin_path, dtype=self.dtype, mode="r", shape=(self.n_tokens,)) \
            if self.n_tokens else np.zeros(0, dtype=self.dtype)

    # ------------------------------------------------------------------ index
    def _truncated(self, need: int, have: int) -> DataError:
        return DataError(f"{self.what}: {self.idx_path} is truncated ({have} bytes; its header announces {need})",
                         _FIX)

    def _read_index(self) -> None:
        size = self.idx_path.stat().st_size
        if size < HEADER.size:
            raise self._truncated(HEADER.size, size)
        with open(self.idx_path, "rb") as f:
            magic, version, code, n, d = HEADER.unpack(f.read(HEADER.size))
        if magic != MAGIC:
            raise DataError(f"{self.what}: {self.idx_path} is not a Megatron indexed dataset index "
                            f"(it starts with {magic[:9]!r}, not {MAGIC!r})", _FIX)
        if version != VERSION:
            raise DataError(f"{self.what}: {self.idx_path} has index version {version}; only version {VERSION} "
                            "exists", _FIX)
        if code not in DTYPES:
            kind = "a floating-point type" if code in (6, 7) else "no known type"
            raise DataError(f"{self.what}: {self.idx_path} declares token dtype code {code}, {kind}; token ids are "
                            "integers (codes 1-5, 8)", _FIX)
        need = HEADER.size + 4 * n + 8 * n + 8 * d
        if size < need:
            raise self._truncated(need, size)
        if d < 1:
            raise DataError(f"{self.what}: {self.idx_path} has an empty document index", _FIX)
        self.dtype = np.dtype(DTYPES[code])
        self.n_sequences, self.n_documents = int(n), int(d) - 1
        mm = np.memmap(self.idx_path, mode="r", dtype=np.uint8)
        off = HEADER.size
        self.sizes = np.frombuffer(mm, dtype=np.int32, count=n, offset=off)
        self.pointers = np.frombuffer(mm, dtype=np.int64, count=n, offset=off + 4 * n)
        self.document_index = np.frombuffer(mm, dtype=np.int64, count=d, offset=off + 12 * n)

    def _check_against_bin(self) -> None:
        n, item = self.n_sequences, self.dtype.itemsize
        doc = self.document_index
        if doc[0] != 0 or doc[-1] != n:
            raise DataError(f"{self.what}: {self.idx_path}'s document index runs {doc[0]}..{doc[-1]}, not 0..{n} "
                            "(the sequences it counts)", _FIX)
        end = 0  # byte offset where the next sequence must start
        for lo in range(0, n, _CHUNK):
            sizes = self.sizes[lo:lo + _CHUNK].astype(np.int64)
            ptrs = self.pointers[lo:lo + _CHUNK]
            if (sizes < 0).any():
                raise DataError(f"{self.what}: {self.idx_path} holds a negative sequence length", _FIX)
            expect = end + np.concatenate(([0], np.cumsum(sizes[:-1]))) * item
            bad = np.flatnonzero(ptrs != expect)
            if bad.size:
                i = lo + int(bad[0])
                raise DataError(f"{self.what}: {self.idx_path} puts sequence {i} at byte {int(self.pointers[i])}, "
                                f"but the sequences before it end at byte {int(expect[bad[0]])} (gaps or overlaps "
                                "between sequences)", _FIX)
            end = int(expect[-1] + sizes[-1] * item) if sizes.size else end
        have = self.bin_path.stat().st_size
        if end > have:
            raise DataError(f"{self.what}: {self.idx_path} points past its data file: the index needs {end} bytes "
                            f"of {self.bin_path.name}, which holds {have} (a truncated .bin, or a pair that does "
                            "not belong together)", _FIX)
        if end < have:
            raise DataError(f"{self.what}: {self.bin_path} holds {have - end} bytes more than its index "
                            f"{self.idx_path.name} describes (the two files do not belong together)", _FIX)
        self.n_tokens = end // item

    # ------------------------------------------------------------------ tokens
    @property
    def tokens(self) -> np.ndarray:
        """Every token id, documents back to back (a memory map: slicing reads only what it needs)."""
        return self._tokens

    def document(self, i: int) -> np.ndarray:
        start = int(self.pointers[i]) // self.dtype.itemsize
        return self._tokens[start:start + int(self.sizes[i])]

    def check_vocab(self, vocab_size: int, max_tokens: int = 1 << 26) -> None:
        """DataError when a token id is outside ``0..vocab_size-1``. Files up to ``max_tokens`` are read whole;
        larger ones (a C4 shard) at their start and end here, and batch by batch by the loaders."""
        if self.n_tokens <= max_tokens:
            spans = [(0, self.n_tokens)]
        else:
            half = max_tokens // 2
            spans = [(0, half), (self.n_tokens - half, self.n_tokens)]
        for lo, hi in spans:
            for a in range(lo, hi, _CHUNK):
                check_ids(self._tokens[a:min(hi, a + _CHUNK)], vocab_size, f"{self.what} {self.bin_path}")


def check_ids(ids: np.ndarray, vocab_size: int, where: str) -> None:
    """DataError when an id in ``ids`` is outside ``0..vocab_size-1`` (the model's embedding would fail)."""
    if ids.size == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = hi if hi >= vocab_size else lo
        raise DataError(f"{where}: token id {bad} is outside the model's vocabulary (0..{vocab_size - 1})",
                        "the data was tokenized with another tokenizer: tokenize it with the model's own "
                        "(Llama 3.1's 128,256-id vocabulary for the reference)")
