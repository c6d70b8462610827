"""Folders of generated data in the cache, built once and atomically.

A folder is complete when its marker file exists (written last by the builder); it is built in a temporary
sibling and renamed, under a lock, so that processes started together (the ranks of one job) build it once and a
killed build never leaves a folder that looks complete.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def build_once(root: Path, build: Callable[[Path], None], *, marker: str, say: Callable[[str], None] | None = None,
               what: str = "data") -> Path:
    """``root``, built by ``build(tmp)`` when ``root/marker`` is missing (``build`` writes the marker last)."""
    if (root / marker).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building it: wait, then find it complete
        if (root / marker).is_file():
            return root
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            t0 = time.perf_counter()
            build(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"building {root} did not write {marker}")
            if root.exists():  # a half-made folder from an older build
                shutil.rmtree(root)
            os.replace(tmp, root)
            if say:
                say(f"built {what} in {time.perf_counter() - t0:.1f} s: {root}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root
