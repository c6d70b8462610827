"""The IDX format of (Fashion-)MNIST: a magic number with the element type and rank, the dimensions,
then the raw array. Plain or gzip-compressed."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from mlbench.errors import DataError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


# What gzip raises on a corrupt or truncated file: BadGzipFile (an OSError), EOFError, zlib.error.
_CORRUPT = (OSError, EOFError, zlib.error)


def _corrupt(path: Path, exc: Exception) -> DataError:
    return DataError(f"cannot read {path}: {exc or type(exc).__name__}",
                     "the file is corrupt or truncated; delete it and fetch it again")


def read_bytes(path: Path) -> bytes:
    try:
        with _open(path) as f:
            return f.read()
    except _CORRUPT as exc:
        raise _corrupt(path, exc) from exc


def parse(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """The array held in IDX ``data``; a clear error when the header or the length is wrong."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)", "check that it is the right file")
    dtype, rank = np.dtype(_TYPES[data[2]]), data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header", "the file is corrupt; fetch it again")
    dims = struct.unpack(f">{rank}I", data[4:header])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path}: IDX size mismatch ({len(data)} bytes, header says {expected})",
                        "the file is truncated or corrupt; fetch it again")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def read(path: Path) -> np.ndarray:
    return parse(read_bytes(path), path)


def header_dims(path: Path) -> tuple[int, ...]:
    """The dimensions from the header alone (reads a few bytes, not the data)."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _TYPES:
                raise DataError(f"{path} is not an IDX file (bad magic number)", "check that it is the right file")
            dims = f.read(4 * head[3])
    except _CORRUPT as exc:
        raise _corrupt(path, exc) from exc
    if len(dims) < 4 * head[3]:
        raise DataError(f"{path}: truncated IDX header", "the file is corrupt; fetch it again")
    return struct.unpack(f">{head[3]}I", dims)


def write(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8 or int8) as IDX, gzip-compressed when the name ends in .gz."""
    code = _CODES[array.dtype]
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)
