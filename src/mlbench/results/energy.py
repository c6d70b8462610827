"""Energy during the timed part of a run, where the machine exposes it: RAPL and NVML.

- RAPL: the Linux powercap counters of the CPU packages (``/sys/class/powercap/intel-rapl:N/energy_uj``,
  also used by AMD CPUs), which wrap at ``max_energy_range_uj``.
- NVML: each GPU's total energy counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and later), or its
  power draw integrated over the samples on older GPUs. Needs ``nvidia-ml-py`` (import ``pynvml``), optional.

Counters are sampled every ``interval_s`` by a background thread so that a wrap between two samples is
handled. The figures are informative: not MLPerf Power (PTDaemon with a calibrated meter). Where no counter is
readable the result says "not available" and why, never 0.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

NOTE = ("informative: {what}, sampled every {interval:g} s during the timed part; not an MLPerf Power "
        "measurement (no PTDaemon, no wall-plug meter)")


class RaplReader:
    """CPU package energy from the powercap sysfs tree (top-level ``intel-rapl:N`` zones; psys skipped)."""

    kind = "counter"
    label = "RAPL CPU package counters"

    def __init__(self, root: str | Path | None = None):
        # MLBENCH_POWERCAP_ROOT points at another tree (a copy, or a fake one in tests)
        self.root = Path(root or os.environ.get("MLBENCH_POWERCAP_ROOT", "/sys/class/powercap"))
        self.zones: dict[str, Path] = {}
        self.ranges: dict[str, float] = {}

    def open(self) -> str | None:
        """Find the readable zones; returns why RAPL is not available, or None."""
        if not self.root.is_dir():
            return f"RAPL: {self.root} does not exist (no powercap driver, or a VM that hides it)"
        problems = []
        for zone in sorted(self.root.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:  # sub-zones (core, dram) are parts of a package: not added twice
                continue
            name = _read(zone / "name") or zone.name
            if name.startswith("psys"):  # the platform domain already includes the packages
                continue
            try:
                int((zone / "energy_uj").read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{zone / 'energy_uj'} is not readable ({getattr(exc, 'strerror', None) or exc})")
                continue
            key = f"rapl:{name}" if f"rapl:{name}" not in self.zones else f"rapl:{zone.name}"
            self.zones[key] = zone
            self.ranges[key] = float(_read(zone / "max_energy_range_uj") or 0) / 1e6
        if self.zones:
            return None
        if problems:
            return ("RAPL: " + "; ".join(problems) + " (since Linux 5.10 only root may read it: "
                    "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj)")
        return f"RAPL: no intel-rapl package zone under {self.root}"

    def read(self) -> dict[str, float]:
        """Joules counter per package."""
        return {k: int((z / "energy_uj").read_text()) / 1e6 for k, z in self.zones.items()}


class NvmlReader:
    """GPU energy from NVML; ``nvml`` is the pynvml module (a fake in tests)."""

    label = "NVML GPU energy"

    def __init__(self, nvml: Any = None):
        self.nvml = nvml
        self.handles: dict[str, Any] = {}
        self.kind = "counter"

    def open(self) -> str | None:
        try:
            if self.nvml is None:
                import pynvml

                self.nvml = pynvml
            self.nvml.nvmlInit()
            count = self.nvml.nvmlDeviceGetCount()
        except ImportError:
            return "NVML: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        except Exception as exc:  # noqa: BLE001 - NVMLError and friends: no driver, no GPU
            return f"NVML: not usable ({exc})"
        if not count:
            return "NVML: no GPU"
        self.handles = {f"nvml:gpu{i}": self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)}
        try:
            self.read()
        except Exception:  # noqa: BLE001 - pre-Volta GPUs have no energy counter: integrate power instead
            self.kind = "power"
            self.label = "NVML GPU power draw (integrated)"
        return None

    def read(self) -> dict[str, float]:
        """Joules counter per GPU ("counter" kind) or watts now ("power" kind)."""
        if self.kind == "counter":
            return {k: self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3 for k, h in self.handles.items()}
        return {k: self.nvml.nvmlDeviceGetPowerUsage(h) / 1e3 for k, h in self.handles.items()}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class EnergyMeter:
    """Measures energy between start() and stop(); also a context manager (figures in ``.metrics``)."""

    def __init__(self, readers: list[Any] | None = None, interval_s: float = 1.0, enabled: bool = True):
        self.readers = readers if readers is not None else [RaplReader(), NvmlReader()]
        self.interval_s = interval_s
        self.enabled = enabled
        self.metrics: dict[str, Any] = {}
        self._active: list[Any] = []
        self._why: list[str] = []
        self._joules: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._ranges: dict[str, float] = {}
        self._failures: dict[int, int] = {}  # consecutive failed reads per reader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._t_last = 0.0
        self._stopped = False

    def start(self) -> EnergyMeter:
        if not self.enabled:
            return self
        for reader in self.readers:
            try:
                why = reader.open()
            except Exception as exc:  # noqa: BLE001 - a failing probe never stops a run
                why = f"{type(reader).__name__}: {exc}"
            if why:
                self._why.append(why)
            else:
                self._active.append(reader)
                self._ranges.update(getattr(reader, "ranges", {}))
        self._t0 = self._t_last = time.perf_counter()
        self._sample()
        if self._active:
            self._thread = threading.Thread(target=self._loop, name="mlbench-energy", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        now = time.perf_counter()
        with self._lock:
            dt, self._t_last = now - self._t_last, now
            for reader in list(self._active):
                try:
                    values = reader.read()
                    self._failures[id(reader)] = 0
                except Exception as exc:  # noqa: BLE001 - skip a failed sample; 3 in a row end the reader
                    self._failures[id(reader)] = n = self._failures.get(id(reader), 0) + 1
                    if n >= 3:
                        self._why.append(f"{reader.label}: reading failed ({exc})")
                        self._active.remove(reader)
                    continue
                for key, v in values.items():
                    if reader.kind == "power":  # watts: integrate with the previous sample (trapezoid)
                        prev = self._last.get(key, v)
                        self._joules[key] = self._joules.get(key, 0.0) + (prev + v) / 2 * dt
                    elif key in self._last:
                        delta = v - self._last[key]
                        if delta < 0:  # the counter wrapped since the last sample
                            delta += self._ranges.get(key) or 0.0
                        self._joules[key] = self._joules.get(key, 0.0) + max(0.0, delta)
                    else:
                        self._joules.setdefault(key, 0.0)
                    self._last[key] = v

    def stop(self, samples: int | None = None) -> dict[str, Any]:
        """Stop sampling; returns (and keeps in ``.metrics``) the flat energy metrics. Idempotent."""
        if not self.enabled or self._stopped:
            return self.metrics
        self._stopped = True
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._sample()
        elapsed = time.perf_counter() - self._t0
        total = sum(self._joules.values())
        if not self._active or total <= 0:
            why = self._why or ["the energy counters did not advance during the run"]
            self.metrics = {"energy/source": "not available", "energy/note": "not available: " + "; ".join(why)}
            return self.metrics
        sources = sorted(self._joules)
        what = " and ".join(r.label for r in self._active)
        m: dict[str, Any] = {"energy/joules": total, "power/mean_watts": total / elapsed if elapsed > 0 else None,
                             "energy/measured_s": elapsed}
        for prefix in ("rapl", "nvml"):
            part = [v for k, v in self._joules.items() if k.startswith(prefix + ":")]
            if part:
                m[f"energy/{'cpu' if prefix == 'rapl' else 'gpu'}_joules"] = sum(part)
        if samples:
            m["energy/joules_per_sample"] = total / samples
        m["energy/source"] = ", ".join(sources)
        m["energy/note"] = NOTE.format(what=what, interval=self.interval_s) + (
            f"; not measured: {'; '.join(self._why)}" if self._why else "")
        self.metrics = m
        return m

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
