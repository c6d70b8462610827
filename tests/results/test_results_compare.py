"""Comparison: ratios with the right direction, variance, and plain words when runs are not comparable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from results_fixtures import make_infer, make_train

from mlbench.cli import main as cli
from mlbench.errors import MlbenchError
from mlbench.results import compare, store


def _rows(out: Path, *specs: str, by: str | None = None, baseline: int = 0) -> list[dict]:
    store.reindex(out)
    groups = [compare.resolve(s, out) for s in specs]
    if by:
        groups = [p for g in groups for p in compare.split(g, by)]
    return compare.compare(groups, baseline=baseline)


def test_time_to_train_ratio_and_variance(out: Path):
    slow = make_train(out, [2.0, 2.2, 1.8], device="cpu")
    fast = make_train(out, [1.0, 1.1, 0.9], device="cuda", gpu="Test GPU")
    base, other = _rows(out, slow.name, fast.name)
    assert base["baseline"] and base["median"] == pytest.approx(2.0) and base["n"] == 3
    assert (base["min"], base["max"]) == (pytest.approx(1.8), pytest.approx(2.2))
    assert base["cv"] == pytest.approx(0.1)  # stdev 0.2 / mean 2.0
    assert other["speedup"] == pytest.approx(2.0)  # time: lower is better, so 2.0 / 1.0
    assert other["differs"]["device"] == "cuda" and "Test GPU" in other["differs"]["system_name"]
    text = compare.render([base, other])
    assert "2.00x faster" in text and "10.0%" in text and "baseline" in text


def test_mfu_beside_throughput(out: Path):
    cpu = make_train(out, [2.0], device="cpu", throughput=900.0)
    gpu = make_train(out, [1.0], device="cuda", gpu="Test GPU", throughput=9000.0, mfu=0.412)
    odd = make_train(out, [1.0], device="cuda", gpu="Test GPU", throughput=9000.0, mfu=1.3)
    rows = _rows(out, cpu.name, gpu.name, odd.name)
    assert rows[1]["throughput"] == 9000.0 and rows[1]["mfu"] == pytest.approx(0.412)
    assert rows[0]["mfu"] is None and rows[1]["mfu_peak"] == "H100 SXM bf16 datasheet"
    text = compare.render(rows)
    assert "samples/s" in text and "MFU" in text and "41.2% (H100 SXM bf16 datasheet)" in text
    assert "130% (H100 SXM bf16 datasheet) [3]" in text and "flagged: MFU 1.30 is above 1" in text


def test_throughput_ratio_higher_is_better(out: Path):
    a = make_infer(out, 200.0, backend="pytorch")
    b = make_infer(out, 100.0, backend="onnxruntime")
    rows = _rows(out, a.name, b.name)
    assert rows[1]["speedup"] == pytest.approx(0.5)
    assert "0.50x (2.00x lower)" in compare.render(rows)
    rows = _rows(out, a.name, b.name, baseline=1)
    assert rows[0]["speedup"] == pytest.approx(2.0)


def test_filter_group_and_split(out: Path):
    for m in (1.0, 1.2):
        make_train(out, [m], precision="fp32")
    make_train(out, [0.5], precision="bf16")
    rows = _rows(out, "benchmark=resnet50,size=tiny", by="precision")
    assert [r["label"] for r in rows] == ["precision=fp32", "precision=bf16"]
    assert rows[0]["n"] == 2 and rows[0]["median"] == pytest.approx(1.1)
    assert rows[1]["speedup"] == pytest.approx(2.2)


def test_different_size_not_comparable(out: Path):
    a = make_train(out, [1.0], size="tiny")
    b = make_train(out, [5.0], size="mini")
    rows = _rows(out, a.name, b.name)
    assert rows[1]["speedup"] is None
    assert "different size (mini vs baseline tiny)" in rows[1]["not_comparable"]
    text = compare.render(rows)
    assert "not comparable [2]" in text and "different size" in text and "x faster" not in text


def test_invalid_loadgen_run_not_comparable(out: Path):
    a = make_infer(out, 200.0)
    b = make_infer(out, 900.0, valid_loadgen=False)
    rows = _rows(out, a.name, b.name)
    assert rows[1]["speedup"] is None
    why = " ".join(rows[1]["not_comparable"])
    assert "LoadGen result is INVALID" in why and "min duration not met" in why
    rows = _rows(out, b.name, a.name)  # an INVALID baseline gives no ratio either
    assert rows[1]["speedup"] is None and "baseline:" in " ".join(rows[1]["not_comparable"])


def test_aborted_and_settings_not_comparable(out: Path):
    a = make_train(out, [1.0])
    aborted = make_train(out, [None, None])
    tuned = make_train(out, [0.5], lr=0.4)
    rows = _rows(out, a.name, aborted.name, tuned.name)
    assert "status is 'aborted'" in " ".join(rows[1]["not_comparable"])
    assert "no measured value" in rows[1]["not_comparable"]
    assert "different settings: lr=0.4 vs baseline lr=None" in rows[2]["not_comparable"]
    q = make_infer(out, 100.0, quick=True)
    full = make_infer(out, 100.0, quick=False)
    server = make_infer(out, 100.0, scenario="Server")
    rows = _rows(out, q.name, full.name, server.name)
    assert "different settings: quick=False vs baseline quick=True" in rows[1]["not_comparable"]
    assert "different scenario (Server vs baseline Offline)" in rows[2]["not_comparable"]


def test_markdown_and_json_cli(out: Path, capsys):
    a = make_train(out, [2.0])
    b = make_train(out, [1.0])
    assert cli(["compare", a.name, b.name, "--output-dir", str(out), "--markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| # | runs |") and "|---|" in md and "2.00x faster" in md
    assert cli(["compare", str(a), str(b), "--json"]) == 0  # run directories work without a store
    data = json.loads(capsys.readouterr().out)
    assert data[1]["speedup"] == pytest.approx(2.0)


def test_unknown_and_ambiguous_runs(out: Path, capsys):
    make_train(out, [1.0])
    make_train(out, [2.0])
    store.reindex(out)
    with pytest.raises(MlbenchError, match="no run matches 'nope'"):
        compare.resolve("nope", out)
    with pytest.raises(MlbenchError, match="matches 2 runs"):
        compare.resolve("2026", out)
    assert cli(["compare", "nope", "--output-dir", str(out)]) == 1
    assert "mlbench results" in capsys.readouterr().err


def test_unknown_split_field(out: Path):
    make_train(out, [1.0])
    store.reindex(out)
    with pytest.raises(MlbenchError, match="unknown field for --by 'devise'") as exc:
        compare.split(compare.resolve("kind=train", out), "devise")
    assert "did you mean 'device'" in str(exc.value)
