"""Energy readers against a fake powercap tree and a fake NVML module; "not available", never 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlbench.results.energy import EnergyMeter, NvmlReader, RaplReader


def powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """zones: dir name -> (name, energy_uj, max_energy_range_uj), in the sysfs layout."""
    for d, (name, uj, rng) in zones.items():
        z = root / d
        z.mkdir(parents=True)
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text(f"{uj}\n")
        (z / "max_energy_range_uj").write_text(f"{rng}\n")
    return root


def set_uj(root: Path, zone: str, uj: int) -> None:
    """Replace the counter atomically, as sysfs reads are (the sampling thread may read at any time)."""
    tmp = root / zone / ".energy_uj.tmp"
    tmp.write_text(f"{uj}\n")
    tmp.replace(root / zone / "energy_uj")


def test_rapl_packages_and_wrap(tmp_path: Path):
    root = powercap(tmp_path / "powercap", {
        "intel-rapl:0": ("package-0", 1_000_000, 10_000_000),
        "intel-rapl:1": ("package-1", 9_500_000, 10_000_000),
        "intel-rapl:0:0": ("core", 5, 10_000_000),  # a sub-zone: already inside package-0
        "intel-rapl:2": ("psys", 5, 10_000_000),  # the platform: would count the packages twice
    })
    meter = EnergyMeter([RaplReader(root)], interval_s=60).start()
    set_uj(root, "intel-rapl:0", 4_000_000)  # +3 J
    set_uj(root, "intel-rapl:1", 500_000)  # wrapped: +1 J
    m = meter.stop(samples=8)
    assert m["energy/joules"] == pytest.approx(4.0)
    assert m["energy/cpu_joules"] == pytest.approx(4.0)
    assert m["energy/joules_per_sample"] == pytest.approx(0.5)
    assert m["power/mean_watts"] > 0
    assert m["energy/source"] == "rapl:package-0, rapl:package-1"
    assert m["energy/note"].startswith("informative")


def test_background_sampling_sees_several_wraps(tmp_path: Path):
    import time

    root = powercap(tmp_path / "pc", {"intel-rapl:0": ("package-0", 0, 1_000_000)})
    meter = EnergyMeter([RaplReader(root)], interval_s=0.01).start()
    for step in range(1, 6):  # 0.6 J per step on a counter that wraps at 1 J
        uj = (step * 600_000) % 1_000_000
        set_uj(root, "intel-rapl:0", uj)
        deadline = time.monotonic() + 10
        while meter._last.get("rapl:package-0") != uj / 1e6:  # wait for the sampling thread to see it
            assert time.monotonic() < deadline, "the sampling thread never read the counter"
            time.sleep(0.005)
    assert meter.stop()["energy/joules"] == pytest.approx(3.0)


def test_not_available_is_said_never_zero(tmp_path: Path):
    m = EnergyMeter([RaplReader(tmp_path / "absent"), NvmlReader(nvml=_NoNvml())]).start().stop()
    assert "energy/joules" not in m and m["energy/source"] == "not available"
    assert "does not exist" in m["energy/note"] and "NVML: not usable" in m["energy/note"]
    # counters that never move: not available either, rather than 0 J
    root = powercap(tmp_path / "still", {"intel-rapl:0": ("package-0", 5, 100)})
    with EnergyMeter([RaplReader(root)], interval_s=60) as meter:
        pass
    assert meter.metrics["energy/source"] == "not available" and "did not advance" in meter.metrics["energy/note"]


def test_unreadable_counter_explains_the_fix(tmp_path: Path):
    root = powercap(tmp_path / "pc", {"intel-rapl:0": ("package-0", 5, 100)})
    # an unreadable file (root reads any file, so the test makes the read fail another way)
    (root / "intel-rapl:0" / "energy_uj").unlink()
    (root / "intel-rapl:0" / "energy_uj").mkdir()
    m = EnergyMeter([RaplReader(root)]).start().stop()
    assert "not readable" in m["energy/note"] and "chmod" in m["energy/note"]


class _NoNvml:
    def nvmlInit(self):
        raise RuntimeError("NVML Shared Library Not Found")


class FakeNvml:
    """The pynvml calls the reader uses, with counters the test moves."""

    def __init__(self, gpus: int, counter: bool = True):
        self.mj = [0] * gpus
        self.mw = [0] * gpus
        self.counter = counter

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.mj)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise RuntimeError("Not Supported")
        return self.mj[h]

    def nvmlDeviceGetPowerUsage(self, h):
        return self.mw[h]


def test_nvml_energy_counter(tmp_path: Path):
    nvml = FakeNvml(2)
    nvml.mj = [1000, 2000]
    meter = EnergyMeter([RaplReader(tmp_path / "none"), NvmlReader(nvml)], interval_s=60).start()
    nvml.mj = [301000, 502000]  # +300 J and +500 J
    m = meter.stop(samples=100)
    assert m["energy/joules"] == pytest.approx(800.0) and m["energy/gpu_joules"] == pytest.approx(800.0)
    assert m["energy/joules_per_sample"] == pytest.approx(8.0)
    assert m["energy/source"] == "nvml:gpu0, nvml:gpu1"
    assert "RAPL" in m["energy/note"] and "not measured" in m["energy/note"]  # says what was not measured


def test_a_failing_counter_is_dropped_after_three_reads(tmp_path: Path):
    root = powercap(tmp_path / "pc", {"intel-rapl:0": ("package-0", 0, 10**9)})
    meter = EnergyMeter([RaplReader(root)], interval_s=60).start()
    set_uj(root, "intel-rapl:0", 1_000_000)
    meter._sample()
    (root / "intel-rapl:0" / "energy_uj").write_text("garbage")
    meter._sample()  # one bad read is skipped
    set_uj(root, "intel-rapl:0", 2_000_000)
    assert meter.stop()["energy/joules"] == pytest.approx(2.0)
    meter = EnergyMeter([RaplReader(root)], interval_s=60).start()
    (root / "intel-rapl:0" / "energy_uj").write_text("garbage")
    for _ in range(3):
        meter._sample()
    m = meter.stop()
    assert m["energy/source"] == "not available" and "reading failed" in m["energy/note"]


def test_nvml_power_integrated_on_old_gpus():
    import time

    nvml = FakeNvml(1, counter=False)
    nvml.mw = [250_000]  # 250 W, constant
    meter = EnergyMeter([NvmlReader(nvml)], interval_s=0.05).start()
    time.sleep(0.4)
    m = meter.stop()
    assert m["power/mean_watts"] == pytest.approx(250.0, rel=0.05)
    assert "integrated" in m["energy/note"]


def test_disabled_meter_adds_nothing():
    assert EnergyMeter(enabled=False).start().stop() == {}
