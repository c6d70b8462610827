"""The host memory allocator: keep freed memory for reuse instead of handing it back to the kernel.

glibc's malloc serves each block of 128 KiB or more (a threshold that grows, at most to 32 MiB) with a fresh
``mmap`` and gives it back with ``munmap`` when freed, and gives back the free top of its heaps above 128 KiB.
A benchmark loop allocates and frees large buffers of varying sizes every batch (a batch's input arrays, the
model's intermediate tensors), and on the CPU each batch can then pay a page fault for every 4 KiB page of them
again. Measured (``benchmarks/allocator.py``, ``benchmarks/train_dlrm.py``): DLRM mini inference with 27 input
arrays a batch spent a quarter of its CPU time in the kernel (61 faults a query; 1.33x the raw throughput with
the setting); DLRM mini training halved its kernel time. Since DLRM's inference batches are two packed arrays,
they no longer fault either way, and DLRM, ResNet-50 and RetinaNet mini inference measure the same with and
without the setting (within the noise of the shared machine).

``configure()`` raises both thresholds (``mallopt`` M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to 1 GiB): freed
memory stays in the process and the next batch reuses it, as the allocators of tuned MLPerf CPU submissions
(jemalloc, tcmalloc) do. The cost: the process keeps its peak host memory until it exits. It is an automatic
choice, recorded in result.json (``allocator``); ``MLBENCH_MALLOC=system`` keeps glibc's defaults. Elsewhere than
glibc (macOS, musl) nothing changes and the record says so. The setting is process-wide and inherited by
forked processes (data-loader workers); it changes no result, only time spent in the kernel.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

from mlbench.errors import ConfigError

ENV = "MLBENCH_MALLOC"
THRESHOLD = 1 << 30  # bytes; blocks below it come from (and go back to) the heap, which is never trimmed below it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)

_record: dict[str, Any] | None = None


def choice() -> str:
    """``keep`` (the default) or ``system``, from ``$MLBENCH_MALLOC``; ConfigError for anything else."""
    value = os.environ.get(ENV, "keep").strip().lower()
    if value in ("", "keep"):
        return "keep"
    if value == "system":
        return "system"
    raise ConfigError(f"{ENV}={value!r} is not understood",
                      f"set {ENV}=keep (keep freed memory for reuse, the default) or system (glibc's defaults)")


def configure() -> dict[str, Any]:
    """Apply the setting once per process and return what was done (result.json ``allocator``). Later calls
    return that first record: thresholds once set stay set for the life of the process."""
    global _record
    wanted = choice()
    if _record is not None:
        return _record
    if wanted == "system":
        _record = {"setting": "system", "note": f"{ENV}=system: the C library's default thresholds"}
        return _record
    lib, version = platform.libc_ver()
    if lib != "glibc":
        _record = {"setting": "system", "note": f"not glibc ({lib or platform.system()}): left as it is"}
        return _record
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD) == 1
    except (OSError, AttributeError) as exc:
        ok, why = False, str(exc)
    else:
        why = "mallopt refused the thresholds"
    if not ok:
        _record = {"setting": "system", "note": f"glibc {version}: {why}; left as it is"}
        return _record
    _record = {"setting": "keep", "library": f"glibc {version}", "mmap_threshold": THRESHOLD,
               "trim_threshold": THRESHOLD,
               "note": "freed host memory is kept for reuse (no page faults on each batch's buffers)"}
    return _record
