"""The reference's day files, read as the MLCommons loader reads them: memory-mapped, never loaded whole.

One day ``d`` is three files in one directory::

    day_{d}_dense.npy             float32 [N, 13]  (already log-transformed by the reference's pre-processing)
    day_{d}_sparse_multi_hot.npz  members 0.npy .. 25.npy, int32 [N, h_k] each, stored uncompressed
    day_{d}_labels.npy            int32 (or any integer/bool/float dtype holding 0/1) [N] or [N, 1]

Opening a day reads headers only (shapes, dtypes, the byte offset of each npz member, each member's bytes
present); rows are read when a batch asks for them, and each batch is checked (dense features finite, indices
inside their table, labels 0/1) as it is read. Any problem is a :class:`DataError` naming the file and row.

Training batches (``TrainStream``): global batch ``b`` is rows ``[b*G, (b+1)*G)`` of the training days read in
order (the reference does not shuffle the pre-shuffled days), and rank ``r`` takes its slice
``[b*G + r*L, b*G + (r+1)*L)`` (``G = L * world``): every rank reads contiguous rows, ranks are disjoint, and a
global batch is the same rows for any number of processes. Evaluation (``EvalStream``): the validation half of
the evaluation day in chunks; chunk ``c`` goes to rank ``c % world``; every rank yields the same number of
batches (possibly empty), so that collective forward passes (sharded embeddings) stay in step.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlbench.errors import DataError

DENSE_FEATURES = 13
SPARSE_FEATURES = 26
FIX = ("write the day files as the MLCommons reference does (materialize_synthetic_multihot_dataset.py), or "
       "delete the cached synthetic data to have it generated again")


def day_paths(root: Path, day: int) -> tuple[Path, Path, Path]:
    return (root / f"day_{day}_dense.npy", root / f"day_{day}_sparse_multi_hot.npz",
            root / f"day_{day}_labels.npy")


def _npy_header(f, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        return np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise DataError(f"{path} is not a .npy array ({exc})", FIX) from None


def _open_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing day file {path}", FIX)
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({str(exc)[:200]})", FIX) from None


def _npz_member(path: Path, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """A memory map of one uncompressed member of an .npz (the reference's way: header offset + npy header)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise DataError(f"{path} has no member {name} (it needs 0.npy .. {SPARSE_FEATURES - 1}.npy)", FIX) from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(f"{path}: member {name} is compressed; the reference memory-maps uncompressed members",
                        "write it with numpy.savez (not savez_compressed)")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise DataError(f"{path}: corrupt zip entry for {name}", FIX)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        shape, fortran, dtype = _npy_header(f, path)
        offset = f.tell()
    if np.dtype(dtype) != np.int32:
        raise DataError(f"{path}: member {name} holds {dtype}, the reference's multi-hot indices are int32", FIX)
    if len(shape) != 2:
        raise DataError(f"{path}: member {name} has shape {shape}, expected [rows, multi-hot size]", FIX)
    need = offset - start + 4 * int(np.prod(shape, dtype=np.int64))
    have = min(info.file_size, path.stat().st_size - start)
    if need > have:  # a memory map past the end would fail later, or read another member's bytes
        raise DataError(f"{path}: member {name} is truncated: its header says {shape[0]} rows x {shape[1]} indices "
                        f"({need} bytes), the archive holds {max(0, have)}", FIX)
    if shape[0] == 0:
        return np.zeros(shape, np.int32)
    return np.memmap(path, dtype=np.int32, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


@dataclass
class Day:
    """One day's three files, memory-mapped and checked for shape."""

    day: int
    dense: np.ndarray
    sparse: list[np.ndarray]
    labels: np.ndarray
    paths: tuple[Path, Path, Path]

    @property
    def rows(self) -> int:
        return len(self.dense)


def open_day(root: str | Path, day: int, table_rows: Sequence[int], multi_hot: Sequence[int] | None = None) -> Day:
    root = Path(root)
    paths = day_paths(root, day)
    dense_p, sparse_p, labels_p = paths
    for p in paths:
        if not p.is_file():
            raise DataError(f"missing day file {p} (day {day} is part of this benchmark's data)", FIX)
    dense = _open_npy(dense_p)
    if dense.ndim != 2 or dense.shape[1] != DENSE_FEATURES:
        raise DataError(f"{dense_p} has shape {dense.shape}, expected [rows, {DENSE_FEATURES}]", FIX)
    if not np.issubdtype(dense.dtype, np.floating):
        raise DataError(f"{dense_p} holds {dense.dtype}, expected float32 dense features", FIX)
    labels = _open_npy(labels_p)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{labels_p} has shape {labels.shape}, expected [rows] or [rows, 1]", FIX)
    if len(labels) != len(dense):
        raise DataError(f"{labels_p} has {len(labels)} rows but {dense_p.name} has {len(dense)}: the day's files "
                        "do not belong together", FIX)
    try:
        zf = zipfile.ZipFile(sparse_p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{sparse_p} is not a readable .npz archive ({exc})", FIX) from None
    with zf:
        sparse = [_npz_member(sparse_p, zf, f"{k}.npy") for k in range(SPARSE_FEATURES)]
    for k, a in enumerate(sparse):
        if len(a) != len(dense):
            raise DataError(f"{sparse_p}: member {k}.npy has {len(a)} rows but {dense_p.name} has {len(dense)}: "
                            "the day's files do not belong together", FIX)
        if multi_hot is not None and a.shape[1] != multi_hot[k]:
            raise DataError(f"{sparse_p}: member {k}.npy has multi-hot size {a.shape[1]}, this size's model "
                            f"expects {multi_hot[k]}", FIX)
    if len(table_rows) != SPARSE_FEATURES:
        raise ValueError("26 table sizes expected")
    return Day(day, dense, sparse, labels, paths)


def check_dense(dense: np.ndarray, day: Day, start: int) -> None:
    """Every dense feature of rows ``start..`` finite: a NaN feature trains to NaN, or scores as a perfect AUC
    (one vectorised pass; the scan for the bad row runs on failure)."""
    if not np.isfinite(dense).all():
        r, c = (int(v) for v in np.argwhere(~np.isfinite(dense))[0])
        raise DataError(f"{day.paths[0]}: row {start + r} holds {dense[r, c]} in dense feature {c}; dense features "
                        "must be finite numbers", "fix or drop that row (the reference's features are log(1 + "
                        "count)), or regenerate the day files")


def read_rows(day: Day, start: int, stop: int, table_rows: Sequence[int]) -> dict[str, np.ndarray]:
    """Rows ``[start, stop)`` of one day, checked: indices inside their tables, labels 0/1."""
    dense = np.array(day.dense[start:stop], dtype=np.float32)  # a copy: torch wants writable memory
    check_dense(dense, day, start)
    labels = np.asarray(day.labels[start:stop])
    if len(labels) and not np.isin(labels, (0, 1)).all():
        bad = int(np.flatnonzero(~np.isin(labels, (0, 1)))[0])
        raise DataError(f"{day.paths[2]}: row {start + bad} has label {labels[bad]!r}; labels must be 0 or 1", FIX)
    sparse = []
    for k, member in enumerate(day.sparse):
        ids = np.asarray(member[start:stop])
        if ids.size and (ids.min() < 0 or ids.max() >= table_rows[k]):
            pos = np.argwhere((ids < 0) | (ids >= table_rows[k]))[0]
            raise DataError(f"{day.paths[1]}: member {k}.npy row {start + int(pos[0])} holds index "
                            f"{int(ids[tuple(pos)])}, outside table {k} of {table_rows[k]} rows", FIX)
        sparse.append(ids)
    return {"dense": dense, "sparse": sparse, "labels": labels.astype(np.float32)}


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {"dense": np.concatenate([p["dense"] for p in parts]),
            "sparse": [np.concatenate([p["sparse"][k] for p in parts]) for k in range(SPARSE_FEATURES)],
            "labels": np.concatenate([p["labels"] for p in parts])}


def to_batch(rows: dict[str, np.ndarray]) -> dict[str, object]:
    """Numpy rows -> the workload's batch: ``{"dense": f32 [B,13], "sparse": [int64 [B,h_k]] * 26, "labels": f32}``."""
    return {"dense": torch.from_numpy(rows["dense"]),
            "sparse": [torch.from_numpy(s.astype(np.int64)) for s in rows["sparse"]],
            "labels": torch.from_numpy(rows["labels"])}


class Rows:
    """Several days (or a row range of one) as one sequence of rows."""

    def __init__(self, days: list[Day], table_rows: Sequence[int], start: int = 0, stop: int | None = None):
        self.days, self.table_rows = days, list(table_rows)
        self.bounds = np.cumsum([0] + [d.rows for d in days])
        self.start = start
        self.stop = int(self.bounds[-1]) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def read(self, a: int, b: int) -> dict[str, np.ndarray]:
        """Rows ``[a, b)`` relative to this range (may cross day boundaries)."""
        a, b = a + self.start, min(b + self.start, self.stop)
        parts = []
        for i, day in enumerate(self.days):
            lo, hi = int(self.bounds[i]), int(self.bounds[i + 1])
            if b <= lo or a >= hi:
                continue
            parts.append(read_rows(day, max(a, lo) - lo, min(b, hi) - lo, self.table_rows))
        if not parts:
            return read_rows(self.days[0], 0, 0, self.table_rows)
        return concat(parts)


class TrainStream:
    """This rank's training batches, one pass over the training days per epoch (see the module docstring)."""

    def __init__(self, rows: Rows, batch_size: int, rank: int, world: int):
        self.rows, self.bs, self.rank, self.world = rows, batch_size, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows) // (self.bs * self.world)

    def slices(self) -> list[tuple[int, int]]:
        g = self.bs * self.world
        return [(b * g + self.rank * self.bs, b * g + (self.rank + 1) * self.bs) for b in range(len(self))]

    def __iter__(self) -> Iterator[dict[str, object]]:
        return self.iter_from(0)

    def iter_from(self, skip: int) -> Iterator[dict[str, object]]:
        """The epoch's batches from batch ``skip`` on, without reading the ones before (a resumed run)."""
        return _prefetched(self.rows, self.slices()[skip:])


class EvalStream:
    """This rank's share of an evaluation range: disjoint chunks covering it once, equal batch counts."""

    def __init__(self, rows: Rows, batch_size: int, rank: int, world: int):
        self.rows, self.bs, self.rank, self.world = rows, batch_size, rank, world

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        chunks = -(-len(self.rows) // self.bs)
        return -(-chunks // self.world)

    def slices(self) -> list[tuple[int, int]]:
        n = len(self.rows)
        out = []
        for i in range(len(self)):
            c = i * self.world + self.rank
            a = min(c * self.bs, n)
            out.append((a, min(a + self.bs, n)))  # (n, n): an empty batch keeps the ranks in step
        return out

    def __iter__(self) -> Iterator[dict[str, object]]:
        return _prefetched(self.rows, self.slices())


def _prefetched(rows: Rows, slices: list[tuple[int, int]]) -> Iterator[dict[str, object]]:
    """Batches read one ahead in a thread (memory-mapped reads and the checks release the GIL mostly)."""
    from concurrent.futures import ThreadPoolExecutor

    if not slices:
        return
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda s: to_batch(rows.read(*s)), slices[0])
        for nxt in slices[1:]:
            batch = pending.result()
            pending = pool.submit(lambda s: to_batch(rows.read(*s)), nxt)
            yield batch
        yield pending.result()


def eval_rows(day: Day, table_rows: Sequence[int], half: str = "val") -> Rows:
    """The validation (first) or test (second) half of the evaluation day, as the reference splits it."""
    first = -(-day.rows // 2)  # ceil: the validation half gets the odd row
    return Rows([day], table_rows, 0, first) if half == "val" else Rows([day], table_rows, first, day.rows)
