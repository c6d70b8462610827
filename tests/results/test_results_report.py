"""The HTML report: every section from real-format runs, opened in a real headless chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from results_fixtures import make_infer, make_train

from mlbench.cli import main as cli
from mlbench.results import latency, report, store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
def suite(out: Path) -> Path:
    """Training on two systems and at two process counts; inference with LoadGen logs; an INVALID run."""
    make_train(out, [1.0, 1.2, 1.1], device="cpu", throughput=900.0)
    make_train(out, [0.2, 0.25, 0.22], device="cuda", gpu="Test GPU", throughput=9000.0, mfu=0.412)
    make_train(out, [0.7], device="cpu", world_size=2, throughput=1600.0)
    make_infer(out, 5000.0, backend="onnxruntime")
    make_infer(out, 4000.0, backend="pytorch")
    make_infer(out, 0.02, scenario="SingleStream", loadgen_logs=True,
               per_query=[20000 + (i * 7919) % 30000 for i in range(500)])
    make_infer(out, 9999.0, valid_loadgen=False)
    make_infer(out, 1900.0, scenario="Server", loadgen_logs=True, trace=True)
    store.reindex(out)
    return out


def plot_ids(html: str) -> list[str]:
    return re.findall(r'<svg class="plot" data-plot="([^"]+)"', html)


def test_loadgen_detail_log_is_read(out: Path):
    run = make_infer(out, 0.02, scenario="SingleStream", loadgen_logs=True)
    info = latency.latency_info(run)
    pct = dict(info["percentiles_ms"])
    assert {0.0, 50.0, 90.0, 99.0, 100.0} <= set(pct)
    assert pct[0.0] <= pct[50.0] <= pct[90.0] <= pct[99.0] <= pct[100.0]
    assert info["scenario"] == "SingleStream" and info["query_count"] >= 300
    assert info["validity"] in ("VALID", "INVALID") and info["per_query_ms"] is None


def test_latencies_from_loadgens_trace(out: Path):
    """Per-query latencies from a real LoadGen trace give exactly LoadGen's own percentiles; Server's bound."""
    run = make_infer(out, 1900.0, scenario="Server", loadgen_logs=True, trace=True)
    info = latency.latency_info(run)
    srt = sorted(info["per_query_ms"])
    assert len(srt) == info["query_count"] and "trace" in info["per_query_source"]
    for p, v in info["percentiles_ms"]:
        if 0 < p < 100:
            assert srt[int(p / 100 * len(srt))] == pytest.approx(v, abs=1e-6)
    assert info["bound_ms"] == 0.05 and info["bound_percentile"] == 99.0 and info["metric_name"] == "p99 latency"


def test_report_sections(suite: Path):
    rows = store.query(suite)
    html = report.render(rows)
    ids = plot_ids(html)
    # bars compare systems and stacks: train tiny (3) and infer Offline (2); SingleStream ran on one: no bar
    assert sum(i.startswith("bars-") for i in ids) == 2
    assert any(i.startswith("latency-pct-") for i in ids) and any(i.startswith("latency-hist-") for i in ids)
    assert any(i.startswith("conv-time-") for i in ids) and any(i.startswith("conv-samples-") for i in ids)
    assert "1,024 samples, " in html and "target top1 &gt;= 0.6" in html  # where each run reached it
    summary = html.split('id="summary"')[1].split("</table>")[0]
    assert "<td>9,000</td>" in summary and "41.2%" in summary and "H100 SXM bf16 datasheet" in summary
    assert "SingleStream has no latency bound; its metric is the p90 early-stopping estimate" in html
    assert "Server bound: 99% of queries within 0.05 ms" in html and "dashed line: bound 0.05 ms at p99" in html
    assert any(i.startswith("scaling-") for i in ids)
    assert "target 0.6" in html and "efficiency vs 1 process(es)" in html and "88.9%" in html  # 1600/(2*900)
    assert "1 run(s) left out: aborted, not converged or INVALID" in html
    assert 'id="systems"' in html and "Test GPU" in html and "Test CPU 9000" in html
    # self-contained: no script, no external resource (the SVG namespace is a name, not a request)
    assert "<script" not in html.lower() and not re.search(r'(src|href)=', html)
    assert set(re.findall(r"https?://[^\s\"']+", html)) <= {"http://www.w3.org/2000/svg"}


def test_one_run_report(out: Path):
    """A report of one run shows its curve against samples with the target and where it was reached; no
    single-bar chart, no empty sections."""
    make_train(out, [0.5], mfu=1.3)
    store.reindex(out)
    html = report.render(store.query(out))
    ids = plot_ids(html)
    assert not any(i.startswith("bars-") for i in ids) and "Benchmarks across systems" not in html
    assert {"conv-samples-0", "conv-time-0"} <= set(ids) and html.count('class="reached"') == 2
    assert "reached at 1,024 samples" in html and "reached at 30 s" in html and "Scaling" not in html
    assert 'class="warn"' in html and "MFU 1.30 is above 1" in html  # a flagged MFU is shown as it is


def test_cli_report_and_empty_filter(suite: Path, tmp_path: Path, capsys):
    target = tmp_path / "r" / "report.html"
    assert cli(["report", "--output-dir", str(suite), "--kind", "train", "-o", str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    html = target.read_text()
    assert "infer" not in re.sub(r"<h2>[^<]*</h2>", "", html.split('id="summary"')[1].split("</table>")[0])
    assert cli(["report", "--output-dir", str(suite), "--benchmark", "nope"]) == 1
    assert "no runs match" in capsys.readouterr().err


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install chromium (Debian) "
                    "to run the browser test of the HTML report")
def test_report_in_headless_chromium(suite: Path, tmp_path: Path):
    from PIL import Image

    path = report.write(store.query(suite), tmp_path / "report.html")
    html = path.read_text()
    url = path.resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="summary"' in dom.stdout
    for row in store.query(suite):
        assert row["run_id"] in dom.stdout
    expected = plot_ids(html)
    assert len(expected) >= 8
    assert plot_ids(dom.stdout) == expected  # every plot made it into the browser's DOM
    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path / "profile2")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables and coloured plots, not a blank page
    assert max(colors)[0] < 0.97 * 1280 * 2000
