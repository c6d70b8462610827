"""Run directories and result files.

A run directory holds everything one command produced: config.json (the resolved configuration),
system.json, console.log, result.json and, for training, one ``run_N`` folder per run with its MLPerf log,
result.json and checkpoint. Files are written atomically and each run's result lands as soon as the run
ends, so an interrupted command loses none of the runs already made.
"""

from __future__ import annotations

import datetime
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
    path.mkdir(parents=True, exist_ok=False)
    return path


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
    """Write ``data`` as JSON atomically (a temporary file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


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
