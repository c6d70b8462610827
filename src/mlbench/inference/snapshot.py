"""torchsnapshot directories, the format of MLPerf's DLRM-v2 weights, read into a model without torchsnapshot.

MLCommons publishes DLRM-v2's trained weights (~97 GB) as the snapshot its training code took with
``torchsnapshot.Snapshot.take(app_state={"model": DistributedModelParallel(...)})``, which the reference restores
with ``snapshot.restore``. The directory holds ``.snapshot_metadata`` (JSON, which is YAML) and the data files.
The metadata's ``manifest`` maps ``<rank>/<app key>/<state-dict key>`` (each part URL-quoted) to an entry:

- ``Tensor``: ``location`` (a file under the directory), ``serializer`` (``buffer_protocol``: the raw bytes;
  ``torch_save``), ``dtype`` (``torch.float32``), ``shape``, and ``byte_range`` when several tensors share a file;
- ``ChunkedTensor``: ``shape``, ``dtype`` and ``chunks``, each ``offsets``, ``sizes`` and a ``tensor`` entry;
- ``ShardedTensor`` (the embedding tables as the GPUs held them): ``shards`` alike; every rank lists its own, and
  the whole tensor is the union over ranks;
- containers and plain values (skipped).

:func:`load_into` writes every tensor straight into the model's own parameters (the tables never exist twice in
memory); a snapshot that does not fit the model is a one-line ConfigError before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from mlbench.errors import ConfigError, DataError

METADATA = ".snapshot_metadata"
TENSOR_KINDS = ("Tensor", "ChunkedTensor", "ShardedTensor", "DTensor")


def is_snapshot(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / METADATA).is_file()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The snapshot's metadata: ``{"version", "world_size", "manifest"}``; DataError when unreadable."""
    p = Path(path) / METADATA
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}", "pass the snapshot's folder") from None
    try:
        meta = json.loads(text)
    except ValueError:  # older snapshots wrote YAML
        import yaml

        try:
            meta = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataError(f"{p} is neither JSON nor YAML: {' '.join(str(exc).split())[:200]}",
                            "the snapshot is damaged; copy it again") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("manifest"), dict):
        raise DataError(f"{p} has no manifest (not a torchsnapshot)", "pass the folder torchsnapshot wrote")
    return meta


def tensor_entries(meta: dict[str, Any], app: str) -> dict[str, list[dict]]:
    """State-dict key -> the tensor entries of app ``app`` (one per rank that lists it)."""
    out: dict[str, list[dict]] = {}
    for path, entry in meta["manifest"].items():
        parts = path.split("/")
        if len(parts) < 3 or unquote(parts[1]) != app or not isinstance(entry, dict):
            continue
        if entry.get("type") not in TENSOR_KINDS:
            continue
        out.setdefault(".".join(unquote(p) for p in parts[2:]), []).append(entry)
    return out


def entry_shape(entries: list[dict]) -> tuple[int, ...]:
    """The whole tensor's shape (for sharded entries, the union of every rank's shards)."""
    first = entries[0]
    if first["type"] in ("Tensor", "ChunkedTensor"):
        return tuple(first["shape"])
    shards = [s for e in entries for s in e["shards"]]
    dims = len(shards[0]["sizes"])
    return tuple(max(sh["offsets"][d] + sh["sizes"][d] for sh in shards) for d in range(dims))


def _dtype(name: str):
    import torch

    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise DataError(f"unknown dtype {name!r} in the snapshot", "a snapshot of float/int tensors is expected")
    return dtype


def _fill(root: Path, entry: dict, dst) -> None:
    """Read one Tensor entry into ``dst`` (a tensor of its shape, written in place)."""
    import torch

    if tuple(dst.shape) != tuple(entry["shape"]):
        raise DataError(f"snapshot entry {entry['location']}: shape {entry['shape']} where {list(dst.shape)} was "
                        "expected", "the snapshot is inconsistent; copy it again")
    f = root / entry["location"]
    start, end = entry.get("byte_range") or (0, None)
    try:
        with open(f, "rb") as fh:
            fh.seek(start)
            if entry["serializer"] == "buffer_protocol":
                dtype = _dtype(entry["dtype"])
                nbytes = dst.numel() * dst.element_size()
                if end is not None and end - start != nbytes:
                    raise DataError(f"{f}: bytes {start}-{end} cannot hold a {entry['dtype']} {entry['shape']}",
                                    "the snapshot is inconsistent; copy it again")
                if dst.dtype == dtype and dst.is_contiguous():
                    view = dst.view(torch.uint8).reshape(-1).numpy() if nbytes else np.empty(0, np.uint8)
                    if fh.readinto(memoryview(view)) != nbytes:
                        raise DataError(f"{f} ends before byte {start + nbytes}", "the snapshot is truncated")
                else:
                    raw = fh.read(nbytes)
                    if len(raw) != nbytes:
                        raise DataError(f"{f} ends before byte {start + nbytes}", "the snapshot is truncated")
                    src = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(dst.shape)
                    dst.copy_(src)
            elif entry["serializer"] == "torch_save":
                import io

                raw = fh.read() if end is None else fh.read(end - start)
                dst.copy_(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True))
            else:
                raise DataError(f"snapshot entry {entry['location']} is serialized as {entry['serializer']!r}, "
                                "which mlbench does not read (quantized tensors)", "pass a float snapshot")
    except FileNotFoundError:
        raise DataError(f"snapshot data file missing: {f}", "copy the whole snapshot folder") from None


def _fill_entries(root: Path, entries: list[dict], dst) -> None:
    first = entries[0]
    if first["type"] == "Tensor":
        _fill(root, first, dst)
        return
    pieces = first["chunks"] if first["type"] == "ChunkedTensor" else [s for e in entries for s in e["shards"]]
    seen = set()
    for piece in pieces:
        key = tuple(piece["offsets"])
        if key in seen:  # a shard several ranks list
            continue
        seen.add(key)
        region = dst[tuple(slice(o, o + s) for o, s in zip(piece["offsets"], piece["sizes"], strict=True))]
        if region.is_contiguous():
            _fill(root, piece["tensor"], region)
        else:  # a column shard: read, then copy into place
            tmp = region.new_empty(region.shape).contiguous()
            _fill(root, piece["tensor"], tmp)
            region.copy_(tmp)


def load_into(path: str | Path, model: Any, *, app: str = "model", what: str, hint: str,
              rename: Any = None) -> dict[str, Any]:
    """Write the snapshot at ``path`` (app ``app``) into ``model``'s parameters and buffers in place. ``rename``
    maps a snapshot key to the model's (None: as is). ConfigError (one line) when the keys or shapes differ;
    returns what was read (``{"version", "world_size", "tensors"}``)."""
    import torch

    root = Path(path)
    meta = read_metadata(root)
    entries = tensor_entries(meta, app)
    if not entries:
        apps = sorted({unquote(k.split("/")[1]) for k in meta["manifest"] if k.count("/") >= 1})
        raise ConfigError(f"snapshot {root} holds no tensors under {quote(app)!r} (it has: {', '.join(apps) or 'none'})",
                          hint)
    if rename is not None:
        entries = {rename(k): v for k, v in entries.items()}
    want = model.state_dict()
    missing = [k for k in want if k not in entries]
    extra = [k for k in entries if k not in want]
    shapes = [f"{k} {list(entry_shape(entries[k]))} vs {list(want[k].shape)}" for k in want
              if k in entries and entry_shape(entries[k]) != tuple(want[k].shape)]
    if missing or extra or shapes:
        from mlbench.inference.models import describe_mismatch

        raise ConfigError(f"snapshot {root} does not fit {what}: {describe_mismatch(missing, extra, shapes, len(want))}",
                          hint)
    with torch.no_grad():
        for k, dst in want.items():
            _fill_entries(root, entries[k], dst)
    return {"version": meta.get("version"), "world_size": meta.get("world_size"), "tensors": len(want)}
