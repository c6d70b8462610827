"""End to end: `mlbench run` trains for real, measures energy from a (fake, moving) powercap tree, records
the run in the store and writes the HTML report of its runs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mlbench.cli import main as cli
from mlbench.results import store


class MovingPowercap:
    """A powercap tree whose package counter advances 2 J every 10 ms (200 W) while the test runs."""

    def __init__(self, root: Path):
        self.zone = root / "intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text("262143328850\n")
        self.uj = 0
        self._write()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _write(self) -> None:
        tmp = self.zone / ".energy_uj.tmp"
        tmp.write_text(f"{self.uj}\n")
        tmp.replace(self.zone / "energy_uj")

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.uj += 2_000_000
            self._write()

    def __enter__(self) -> MovingPowercap:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_run_records_energy_and_writes_report(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("MLBENCH_SKIP_CACHE_CLEAR", "1")
    monkeypatch.setenv("MLBENCH_POWERCAP_ROOT", str(tmp_path / "powercap"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    with MovingPowercap(tmp_path / "powercap"):
        code = cli(["run", "--size", "tiny", "--benchmarks", "resnet50", "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    (run_dir,) = [p.parent for p in out.glob("*/result.json")]
    result = json.loads((run_dir / "result.json").read_text())
    m = result["metrics"]
    assert m["energy/source"] == "rapl:package-0" and m["energy/note"].startswith("informative")
    assert m["energy/joules"] > 0 and 50 < m["power/mean_watts"] < 400  # ~200 W, timer slack allowed
    assert m["energy/joules_per_sample"] == pytest.approx(m["energy/joules"] / result["runs"][-1]["samples"])
    run_m = result["runs"][-1]["metrics"]
    assert run_m["energy/joules"] == m["energy/joules"]
    # only the timed part (run_start..run_stop) is measured
    assert run_m["energy/measured_s"] == pytest.approx(run_m["time_to_train/s"], rel=0.2, abs=0.05)
    (row,) = store.query(out)
    assert row["run_id"] == run_dir.name and row["status"] == "success"
    assert row["energy_joules"] == pytest.approx(m["energy/joules"])
    reports = list(out.glob("*-suite-report-*.html"))
    assert len(reports) == 1 and f"report: {reports[0]}" in printed
    html = reports[0].read_text()
    assert run_dir.name in html and 'data-plot="conv-time-0"' in html and "rapl:package-0" in html
