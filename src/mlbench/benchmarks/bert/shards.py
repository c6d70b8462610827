"""The MLPerf BERT pre-training HDF5 shards: validation on open, a streaming training set, a sharded eval set.

Two layouts of the same samples are read (both as the MLPerf reference writes them):

- **fixed length** (``create_pretraining_data.py``, ``hdf5_4320_shards_uncompressed``, ``eval``): 2-D integer
  datasets ``input_ids``, ``input_mask``, ``segment_ids`` of shape ``[N, seq_len]``, ``masked_lm_positions`` and
  ``masked_lm_ids`` of shape ``[N, max_predictions]`` (``masked_lm_ids`` 0 = padding), ``next_sentence_labels``
  of shape ``[N]`` (or ``[N, 1]``); any integer dtype.
- **variable length** (``hdf5_4320_shards_varlength``, ``eval_varlength``): the same keys as 1-D datasets of
  h5py variable-length integer arrays (trailing padding removed), ``input_mask`` optional (it is then the
  length of ``input_ids``).

Training reads shard by shard (one file in memory at a time, never the whole set). As the reference does,
every rank reads its own files (the file list is reshuffled each epoch from ``seed + epoch``); when there are
fewer files than ranks, every rank reads every file and keeps a disjoint share of its samples. Every rank
yields the same number of batches (``len()``); samples are shuffled within each file, deterministically.
Batches are dicts of int64 tensors: ``input_ids``, ``token_type_ids``, ``attention_mask``,
``masked_lm_positions``, ``masked_lm_ids``, ``next_sentence_labels``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlbench.errors import DataError

KEYS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids", "next_sentence_labels")
SEQ_KEYS = ("input_ids", "input_mask", "segment_ids")
PRED_KEYS = ("masked_lm_positions", "masked_lm_ids")
SHARD_EXTS = (".hdf5", ".h5")

FORMAT_HINT = ("MLPerf BERT shards hold integer datasets input_ids, input_mask, segment_ids [N, seq_len], "
               "masked_lm_positions, masked_lm_ids [N, max_predictions] and next_sentence_labels [N] "
               "(create_pretraining_data.py output); regenerate or replace the file")


def write_shard(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write one fixed-length shard (the reference's format) for tests and generated data."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=np.asarray(value))
    return path


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    samples: int
    varlen: bool
    predictions: int  # width of masked_lm_positions (fixed format) or the size's maximum (varlen)
    vocab_size: int | None = None  # the model's vocabulary: token ids are checked against it when the rows are read


def _int_dtype(ds) -> np.dtype:
    import h5py

    base = h5py.check_vlen_dtype(ds.dtype)
    return np.dtype(base) if base is not None else ds.dtype


def open_shard(path: str | Path, seq_len: int, max_predictions: int, vocab_size: int | None = None) -> ShardInfo:
    """Check one shard's keys, dtypes and shapes (reads no samples); a DataError names the file and key. The
    values are checked when rows are read (:func:`check_values`), against ``vocab_size`` when given."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})",
                        "the file is truncated or not HDF5; copy it again or regenerate it") from exc
    with f:
        varlen = h5py.check_vlen_dtype(f["input_ids"].dtype) is not None if "input_ids" in f else False
        required = [k for k in KEYS if not (varlen and k == "input_mask")]
        missing = [k for k in required if k not in f]
        if missing:
            raise DataError(f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(sorted(f.keys()))})",
                            FORMAT_HINT)
        n = None
        for key in KEYS:
            if key not in f:
                continue
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise DataError(f"{path}: {key} is a group, not a dataset", FORMAT_HINT)
            dt = _int_dtype(ds)
            if not np.issubdtype(dt, np.integer):
                raise DataError(f"{path}: {key} has dtype {dt}, not an integer type", FORMAT_HINT)
            if n is None:
                n = ds.shape[0] if ds.ndim else 0
            if ds.ndim == 0 or ds.shape[0] != n:
                raise DataError(f"{path}: {key} has {ds.shape[0] if ds.ndim else 0} samples but input_ids "
                                f"has {n}: the datasets have inconsistent lengths", FORMAT_HINT)
            if varlen and key != "next_sentence_labels":
                if ds.ndim != 1 or h5py.check_vlen_dtype(ds.dtype) is None:
                    raise DataError(f"{path}: {key} has shape {ds.shape}; a variable-length shard holds 1-D "
                                    "arrays of variable-length integers", FORMAT_HINT)
                continue
            if key in SEQ_KEYS:
                if ds.ndim != 2:
                    raise DataError(f"{path}: {key} has shape {ds.shape}, expected [N, {seq_len}]", FORMAT_HINT)
                if ds.shape[1] != seq_len:
                    raise DataError(f"{path}: {key} has sequence length {ds.shape[1]} but this size uses "
                                    f"{seq_len}", "use shards made with max_seq_length="
                                    f"{seq_len}, or the size whose sequence length they have")
            elif key in PRED_KEYS:
                if ds.ndim != 2:
                    raise DataError(f"{path}: {key} has shape {ds.shape}, expected [N, {max_predictions}]",
                                    FORMAT_HINT)
                if ds.shape[1] > max_predictions:
                    raise DataError(f"{path}: {key} holds {ds.shape[1]} predictions per sample, more than "
                                    f"this size's {max_predictions}",
                                    f"use shards made with max_predictions_per_seq={max_predictions}")
            elif ds.ndim == 2 and ds.shape[1] != 1 or ds.ndim > 2:
                raise DataError(f"{path}: next_sentence_labels has shape {ds.shape}, expected [N]", FORMAT_HINT)
        preds = f["masked_lm_positions"].shape[1] if not varlen else max_predictions
        if not varlen and f["masked_lm_ids"].shape[1] != preds:
            raise DataError(f"{path}: masked_lm_ids has {f['masked_lm_ids'].shape[1]} columns but "
                            f"masked_lm_positions has {preds}", FORMAT_HINT)
        return ShardInfo(path=path, samples=int(n or 0), varlen=varlen, predictions=preds, vocab_size=vocab_size)


def list_shards(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix in SHARD_EXTS and p.is_file())


def open_folder(folder: str | Path, seq_len: int, max_predictions: int, what: str,
                vocab_size: int | None = None) -> list[ShardInfo]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"BERT {what} folder not found: {folder}", "see `mlbench data prepare bert --help` for the "
                        "layout (training shards and an eval folder of HDF5 files)")
    files = list_shards(folder)
    if not files:
        raise DataError(f"no .hdf5 shards in the BERT {what} folder {folder}",
                        "put the MLPerf pre-training shards (*.hdf5) there")
    infos = [open_shard(p, seq_len, max_predictions, vocab_size) for p in files]
    if not any(i.samples for i in infos):
        raise DataError(f"the {len(infos)} BERT {what} shard(s) in {folder} hold no samples (every dataset has "
                        "0 rows)", "copy the shards again or regenerate them: the files are empty or truncated")
    return infos


def read_shard(info: ShardInfo, seq_len: int, max_predictions: int,
               select: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The shard's samples (all, or the sorted indices ``select``) as padded fixed-size arrays."""
    import h5py

    try:
        with h5py.File(info.path, "r") as f:
            raw = {k: (f[k][...] if select is None else f[k][select]) for k in KEYS if k in f}
    except OSError as exc:
        raise DataError(f"{info.path}: cannot read samples ({exc})",
                        "the file is truncated or corrupt; copy it again or regenerate it") from exc
    out = _from_varlen(raw, info, seq_len, max_predictions) if info.varlen else _fixed(raw, info, seq_len,
                                                                                       max_predictions)
    check_values(out, info, seq_len, select)
    return out


# key, what its values are, their range [low, high) ("vocab": the model's vocabulary; "seq": the sequence), the fix
_RANGES = (
    ("input_ids", "token id", "vocab", "use shards tokenised with this model's vocabulary ({vocab} tokens), or "
     "regenerate them"),
    ("input_mask", "mask value", 2, "input_mask is 1 for a token and 0 for padding; regenerate the shard"),
    ("segment_ids", "segment id", 2, "segment ids are 0 (first sentence) or 1 (second); regenerate the shard"),
    ("masked_lm_positions", "masked position", "seq", "masked_lm_positions index the sequence (0 to {last}); use "
     "shards made with max_seq_length={seq}, or regenerate them"),
    ("masked_lm_ids", "masked token id", "vocab", "use shards tokenised with this model's vocabulary ({vocab} "
     "tokens), or regenerate them"),
    ("next_sentence_labels", "next-sentence label", 2, "next_sentence_labels are 0 (is the next sentence) or 1 "
     "(a random one); regenerate the shard"),
)


def check_values(arrays: dict[str, np.ndarray], info: ShardInfo, seq_len: int,
                 select: np.ndarray | None = None) -> None:
    """Every id inside its range (tokens and masked labels in the vocabulary, positions in the sequence,
    segments, mask and next-sentence labels 0/1); a DataError names the file, the row and the fix.

    One reduction per key on the rows already in memory: seen as unsigned, a negative id is larger than any
    range, so ``max() < top`` checks both ends (the scan of the bad row runs only on failure)."""
    for key, what, high, fix in _RANGES:
        a = arrays[key]
        top = info.vocab_size if high == "vocab" else seq_len if high == "seq" else high
        if not a.size or int(a.astype(np.int64, copy=False).view(np.uint64).max()) < (top or 2**63):
            continue
        rows = a.reshape(len(a), -1)
        bad = (rows < 0) | (rows >= top) if top is not None else rows < 0
        r = int(np.flatnonzero(bad.any(axis=1))[0])
        value = int(rows[r][bad[r]][0])
        row = int(select[r]) if select is not None else r
        span = f"0..{top - 1}" if top is not None else "0 or more"
        raise DataError(f"{info.path}: row {row}: {key} holds the {what} {value}, outside {span}",
                        fix.format(vocab=info.vocab_size, last=seq_len - 1, seq=seq_len))


def _fixed(raw: dict[str, np.ndarray], info: ShardInfo, seq_len: int, max_predictions: int) -> dict[str, np.ndarray]:
    out = {k: np.asarray(raw[k], dtype=np.int64) for k in KEYS}
    out["next_sentence_labels"] = out["next_sentence_labels"].reshape(-1)
    if info.predictions < max_predictions:
        pad = max_predictions - info.predictions
        for k in PRED_KEYS:
            out[k] = np.pad(out[k], ((0, 0), (0, pad)))
    return out


def _from_varlen(raw: dict[str, np.ndarray], info: ShardInfo, seq_len: int, max_predictions: int
                 ) -> dict[str, np.ndarray]:
    n = len(raw["input_ids"])
    out = {k: np.zeros((n, seq_len), np.int64) for k in SEQ_KEYS}
    for k in PRED_KEYS:
        out[k] = np.zeros((n, max_predictions), np.int64)
    for i in range(n):
        ids = raw["input_ids"][i]
        if len(ids) > seq_len:
            raise DataError(f"{info.path}: sample {i} has {len(ids)} tokens, more than the size's {seq_len}",
                            f"use shards made with max_seq_length={seq_len}")
        out["input_ids"][i, :len(ids)] = ids
        seg = raw["segment_ids"][i]
        out["segment_ids"][i, :len(seg)] = seg
        if "input_mask" in raw:
            m = raw["input_mask"][i]
            out["input_mask"][i, :len(m)] = m
        else:
            out["input_mask"][i, :len(ids)] = 1
        for k in PRED_KEYS:
            v = raw[k][i]
            if len(v) > max_predictions:
                raise DataError(f"{info.path}: sample {i} has {len(v)} {k}, more than the size's "
                                f"{max_predictions}", f"use shards made with max_predictions_per_seq={max_predictions}")
            out[k][i, :len(v)] = v
    out["next_sentence_labels"] = np.asarray(raw["next_sentence_labels"], np.int64).reshape(-1)
    return out


def to_batch(arrays: dict[str, np.ndarray], sel: np.ndarray | slice) -> dict[str, torch.Tensor]:
    """Model inputs (the names transformers uses) from the shard's arrays."""
    return {
        "input_ids": torch.from_numpy(np.ascontiguousarray(arrays["input_ids"][sel])),
        "token_type_ids": torch.from_numpy(np.ascontiguousarray(arrays["segment_ids"][sel])),
        "attention_mask": torch.from_numpy(np.ascontiguousarray(arrays["input_mask"][sel])),
        "masked_lm_positions": torch.from_numpy(np.ascontiguousarray(arrays["masked_lm_positions"][sel])),
        "masked_lm_ids": torch.from_numpy(np.ascontiguousarray(arrays["masked_lm_ids"][sel])),
        "next_sentence_labels": torch.from_numpy(np.ascontiguousarray(arrays["next_sentence_labels"][sel])),
    }


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class ShardStream:
    """Training batches streamed shard by shard (see the module docstring); ``len()`` batches per epoch."""

    def __init__(self, shards: list[ShardInfo], batch_size: int, *, seq_len: int, max_predictions: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0, prefetch: bool = True):
        if not shards:
            raise DataError("no BERT training shards", "give a folder holding the MLPerf *.hdf5 shards")
        self.shards = shards
        self.batch_size = batch_size
        self.seq_len, self.max_predictions = seq_len, max_predictions
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.prefetch = prefetch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, *extra: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *extra])

    def _plan(self) -> list[tuple[int, np.ndarray | None]]:
        """This rank's (shard index, selected sample indices or None for all) in reading order."""
        order = self._rng().permutation(len(self.shards))
        if len(self.shards) >= self.world_size:
            return [(int(i), None) for i in order[self.rank::self.world_size]]
        # Fewer files than ranks: every rank reads every file and keeps a disjoint, equal share of samples.
        plan = []
        for i in order:
            n = self.shards[i].samples
            keep = np.arange(self.rank, n - n % self.world_size, self.world_size)
            plan.append((int(i), keep))
        return plan

    def _rank_samples(self, rank: int) -> int:
        order = self._rng().permutation(len(self.shards))
        if len(self.shards) >= self.world_size:
            return sum(self.shards[i].samples for i in order[rank::self.world_size])
        return sum(self.shards[i].samples // self.world_size for i in order)

    def __len__(self) -> int:
        return min(self._rank_samples(r) for r in range(self.world_size)) // self.batch_size

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        total = len(self)
        made = 0
        carry: dict[str, np.ndarray] | None = None
        for idx, select in self._plan():
            if made >= total:
                return
            arrays = read_shard(self.shards[idx], self.seq_len, self.max_predictions, select)
            perm = self._rng(idx + 1).permutation(len(arrays["input_ids"]))
            arrays = {k: v[perm] for k, v in arrays.items()}
            if carry is not None:
                arrays = _concat([carry, arrays])
                carry = None
            n = len(arrays["input_ids"])
            start = 0
            while start + self.batch_size <= n and made < total:
                yield to_batch(arrays, slice(start, start + self.batch_size))
                start += self.batch_size
                made += 1
            if start < n:
                carry = {k: v[start:] for k, v in arrays.items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.prefetch:
            return self._batches()
        return _prefetched(self._batches())


def _prefetched(source: Iterator, depth: int = 8) -> Iterator:
    """Batches produced by a background thread (reading the next shard while the model trains)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    t = threading.Thread(target=work, name="bert-shards", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class EvalSet:
    """The evaluation samples of this rank (sample ``i`` of the concatenated files goes to rank ``i % world``),
    read once and kept in memory (the reference caches the 10,000 eval samples)."""

    def __init__(self, shards: list[ShardInfo], batch_size: int, *, seq_len: int, max_predictions: int,
                 rank: int = 0, world_size: int = 1, limit: int | None = None):
        self.shards = shards
        self.batch_size = batch_size
        self.seq_len, self.max_predictions = seq_len, max_predictions
        self.rank, self.world_size = rank, world_size
        total = sum(s.samples for s in shards)
        self.total = total if limit is None else min(limit, total)
        self._arrays: dict[str, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        pass

    @property
    def local_samples(self) -> int:
        return len(range(self.rank, self.total, self.world_size))

    def __len__(self) -> int:
        return -(-self.local_samples // self.batch_size)

    def _load(self) -> dict[str, np.ndarray]:
        parts, offset = [], 0
        for info in self.shards:
            if offset >= self.total:
                break
            n = min(info.samples, self.total - offset)
            first = (self.rank - offset) % self.world_size
            select = np.arange(first, n, self.world_size)
            if len(select):
                parts.append(read_shard(info, self.seq_len, self.max_predictions, select))
            offset += info.samples
        if not parts:
            return {k: np.zeros((0, 1), np.int64) for k in KEYS}
        return _concat(parts)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self._arrays is None:
            self._arrays = self._load()
        n = len(self._arrays["input_ids"])
        for start in range(0, n, self.batch_size):
            yield to_batch(self._arrays, slice(start, min(n, start + self.batch_size)))
