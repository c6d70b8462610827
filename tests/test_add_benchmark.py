"""docs/ARCHITECTURE.md's promise, "a benchmark is one folder plus one registry line", kept: the hidden dummy
benchmark copied as a new package under a new name (its folder, the name in its definition) and one registry
line trains with `mlbench train` and runs under LoadGen with `mlbench infer`, with no other change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlbench.benchmarks.dummy
from mlbench import registry
from mlbench.cli import main


def test_a_new_benchmark_is_one_folder_and_one_registry_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "extra_benchmarks"
    folder = root / "sketch"
    shutil.copytree(Path(mlbench.benchmarks.dummy.__file__).parent, folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "__init__.py").write_text("")
    definition = folder / "definition.py"
    definition.write_text(definition.read_text().replace('name="dummy"', 'name="sketch"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.BENCHMARKS, "sketch", "extra_benchmarks.sketch")  # the registry line

    assert "sketch" in registry.names() and registry.get("sketch", "tiny").definition.name == "sketch"
    out = tmp_path / "runs"
    assert main(["train", "sketch", "--size", "tiny", "--output-dir", str(out / "train")]) == 0, capsys.readouterr()
    (trained,) = (out / "train").glob("*/result.json")
    result = json.loads(trained.read_text())
    assert result["benchmark"] == "sketch" and result["status"] == "success"
    assert all(r["compliance"]["passed"] for r in result["runs"])
    code = main(["infer", "sketch", "--size", "tiny", "--quick", "--mode", "accuracy",
                 "--output-dir", str(out / "infer")])
    assert code == 0, capsys.readouterr()
    (served,) = (out / "infer").glob("*/result.json")
    result = json.loads(served.read_text())
    assert result["benchmark"] == "sketch" and result["quality"]["reached"] and result["accuracy"]["scores"]["samples"]
