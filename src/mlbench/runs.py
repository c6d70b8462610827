"""Run directories and result files.

A run directory holds everything one command produced: config.json (the resolved configuration),
system.json, console.log, result.json and, for training, one ``run_N`` folder per run with its MLPerf log,
result.json and checkpoint. Files are written atomically and each run's result lands as soon as the run
ends, so an interrupted command loses none of the runs already made.
"""

from __future__ import annotations

import datetime
import errno
import json
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Any

RESULT_SCHEMA = "mlbench.result/1"


def new_run_id(*parts: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return "-".join([stamp, *[p for p in parts if p], secrets.token_hex(2)])


def create_run_dir(output_dir: str | Path, *parts: str) -> Path:
    path = Path(output_dir) / new_run_id(*parts)
    make_dir(path, exist_ok=False)
    return path


def make_dir(path: Path, exist_ok: bool = True, writing: Path | None = None) -> None:
    """``mkdir -p path``; an MlbenchError naming the obstacle (a file in the way, no permission, a full disk) and
    what was being written (``writing``, default ``path``)."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        if isinstance(exc, FileExistsError) and path.is_dir():
            raise  # a run id collision: the caller's bug, not the user's
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        cause = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
        raise _write_error(writing or path, cause, exc) from None


def _write_error(path: Path, cause: str, exc: OSError | None = None):
    from mlbench.errors import MlbenchError

    if exc is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free some space on the disk holding {path.parent}, or write elsewhere"
    elif exc is not None and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a folder you can write to"
    else:
        hint = "choose another path, or move the file out of the way"
    return MlbenchError(f"cannot write {path}: {cause}", hint)


def _clean(obj: Any) -> Any:
    """JSON cannot hold NaN or infinities: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a temporary file renamed over the target). When the write fails (a full
    disk, a file in the way) the temporary file is removed, the target is left as it was, and an MlbenchError
    says why."""
    path = Path(path)
    text = json.dumps(_clean(data), indent=2, sort_keys=False) + "\n"
    make_dir(path.parent, writing=path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc.strerror or str(exc), exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Console:
    """Prints on the main process and keeps a copy in console.log."""

    def __init__(self, path: Path | None, enabled: bool = True):
        self.enabled = enabled
        self._file = open(path, "a", buffering=1) if (path is not None and enabled) else None  # noqa: SIM115

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        print(message, flush=True)
        if self._file:
            self._file.write(message + "\n")

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def command_line() -> str:
    return " ".join(["mlbench", *sys.argv[1:]])
