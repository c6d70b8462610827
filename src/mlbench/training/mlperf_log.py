"""The MLPerf log of one run, written with mlperf-logging's mllog (rank 0 only).

Each run gets its own ``mllog`` logger bound to its own file, so several runs in one process (``--runs N``)
never mix their lines. On other ranks every call is a no-op: the log is written once per job.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import constants as C  # noqa: N812 - MLPerf's own naming
from mlperf_logging.mllog.mllog import MLLogger


class MLPerfLog:
    def __init__(self, path: Path | None, enabled: bool = True):
        self.path = path
        self.enabled = enabled and path is not None
        self._mll: MLLogger | None = None
        if self.enabled:
            logger = logging.getLogger(f"mlbench.mllog.{os.getpid()}.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            self._handler = logging.FileHandler(path)  # type: ignore[arg-type]
            logger.addHandler(self._handler)
            self._logger = logger
            self._mll = MLLogger(logger=logger, default_stack_offset=2)

    def event(self, key: str, value: Any = None, **metadata: Any) -> None:
        if self._mll:
            self._mll.event(key=key, value=value, metadata=metadata or None)

    def start(self, key: str, value: Any = None, **metadata: Any) -> None:
        if self._mll:
            self._mll.start(key=key, value=value, metadata=metadata or None)

    def end(self, key: str, value: Any = None, **metadata: Any) -> None:
        if self._mll:
            self._mll.end(key=key, value=value, metadata=metadata or None)

    def close(self) -> None:
        if self._mll:
            self._handler.flush()
            self._handler.close()
            self._logger.removeHandler(self._handler)
            self._mll = None


def clear_page_cache() -> tuple[bool, str]:
    """Drop the OS page cache where permitted; return (done, what happened in words).

    MLPerf wants data to start on storage. Dropping the cache needs root and a writable
    /proc/sys/vm/drop_caches (not the case in most containers); otherwise we say so and log False.
    """
    if os.environ.get("MLBENCH_SKIP_CACHE_CLEAR") == "1":
        return False, "skipped (MLBENCH_SKIP_CACHE_CLEAR=1)"
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True, "page cache dropped (/proc/sys/vm/drop_caches)"
    except OSError as exc:
        return False, f"could not drop the page cache: {exc.strerror or exc} (needs root outside a container)"


__all__ = ["MLPerfLog", "clear_page_cache", "C"]
