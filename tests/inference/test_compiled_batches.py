"""--compile on the PyTorch backend: every batch size compiled before the test (padded batches), what compiles
later counted and called out in the result, and inductor's freezing (CPU) undone when the run ends."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from mlbench.cli import main
from mlbench.inference.backends import compiled


class Recorder:
    """A stand-in for a compiled model: doubles its input and records the batch sizes it was called with."""

    def __init__(self):
        self.sizes: list[int] = []

    def __call__(self, x):
        self.sizes.append(len(x))
        return x * 2, x.sum(dim=1)


def test_bucket_sizes_leave_one_graph_to_spare():
    assert compiled.bucket_sizes(32, 8) == [1, 2, 4, 8, 16, 32]
    assert compiled.bucket_sizes(256, 8) == [4, 8, 16, 32, 64, 128, 256]  # 1-3 samples pad up to 4
    assert compiled.bucket_sizes(24, 8) == [1, 2, 4, 8, 16, 24]


def test_every_size_is_compiled_before_and_partial_batches_are_padded():
    fn = Recorder()
    example = torch.arange(12.0).reshape(3, 4)
    runner = compiled.CompiledRunner(fn, example, [1, 2, 4, 8], warm=1)
    assert fn.sizes == [1, 2, 4, 8]  # the warm-up: one call per size
    fn.sizes.clear()
    x = torch.arange(20.0).reshape(5, 4)
    doubled, sums = runner(x)
    assert fn.sizes == [8]  # 5 samples ran as 8: copies of its own samples fill the rest
    assert torch.equal(doubled, x * 2) and torch.equal(sums, x.sum(dim=1))
    runner(x[:4])
    assert fn.sizes == [8, 4] and runner.padded_batches == 1
    runner(torch.ones(9, 4))  # larger than every size: as it is
    runner(torch.ones(2, 5))  # another per-sample shape: as it is
    assert fn.sizes == [8, 4, 9, 2]
    info = runner.info()
    assert info["batch_sizes"] == [1, 2, 4, 8] and info["padded_batches"] == 1


def test_ragged_batches_are_passed_as_they_are():
    fn = Recorder()
    runner = compiled.CompiledRunner(fn, torch.ones(7, 4), [1, 2, 4], ragged=True, warm=1)
    # no sizes to pad to (the rows change with every batch); the warm-up runs three row counts, so that the
    # dynamic graph a second shape brings, and the one a single row gets, are built before the test
    assert fn.sizes == [7, 3, 1]
    runner(torch.ones(5, 4))
    assert fn.sizes == [7, 3, 1, 5] and runner.info()["batch_sizes"] == "dynamic (ragged inputs)"
    fn.sizes.clear()
    compiled.CompiledRunner(fn, torch.ones(2, 4), [1, 2], ragged=True, warm=1)
    assert fn.sizes == [2, 1]


def test_compiles_after_the_warm_up_are_counted(monkeypatch):
    graphs_built = iter([10, 13])
    monkeypatch.setattr(compiled, "compiled_graphs", lambda: next(graphs_built))
    runner = compiled.CompiledRunner(Recorder(), torch.ones(2, 4), [1, 2], warm=1)
    assert runner.info()["compiles_during_test"] == 3


def _infer(tmp_path, capsys, *args: str) -> dict:
    """`mlbench infer ARGS --quick --duration-s 0.5 --compile` in this process: its result.json (exit 0)."""
    out = tmp_path / "runs"
    code = main(["infer", *args, "--quick", "--duration-s", "0.5", "--compile", "--output-dir", str(out)])
    text = capsys.readouterr()
    assert code == 0, text.out + text.err
    (found,) = out.glob("*/result.json")
    return json.loads(found.read_text())


@pytest.mark.slow
def test_compiled_run_compiles_nothing_during_the_test_and_restores_freezing(tmp_path, capsys):
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    r = _infer(tmp_path, capsys, "resnet50", "--size", "tiny", "--batch-size", "4")
    c = r["backend"]["compiled"]
    assert c["batch_sizes"] == [1, 2, 4] and c["compiles_during_test"] == 0
    assert r["backend"]["compile_freezing"] is True  # on a CPU
    assert not any("compiled the model again" in x for x in r["validity_reasons"])
    assert inductor_config.freezing == before  # a model compiled later in this process may train


@pytest.mark.slow
def test_a_compile_during_the_test_is_a_validity_reason(tmp_path, capsys, monkeypatch):
    counts = itertools.chain([100], itertools.repeat(102))  # the warm-up ends at 100; 2 more by the end
    monkeypatch.setattr(compiled, "compiled_graphs", lambda: next(counts))
    r = _infer(tmp_path, capsys, "resnet50", "--size", "tiny", "--batch-size", "2")
    assert r["backend"]["compiled"]["compiles_during_test"] == 2 and r["valid"] is False
    assert any("compiled the model again 2 time(s)" in x for x in r["validity_reasons"])


@pytest.mark.slow
def test_ragged_compiled_run_compiles_nothing_during_the_test(tmp_path, capsys):
    """DLRM's ragged batches: before, the estimate's one-sample batch compiled the dynamic graph after the
    warm-up's count was taken, and every --compile run came out invalid."""
    r = _infer(tmp_path, capsys, "dlrm", "--size", "tiny", "--weights", "random")
    assert r["backend"]["compiled"]["compiles_during_test"] == 0
    assert not any("compiled the model again" in x for x in r["validity_reasons"])


def test_a_model_that_freezing_cannot_compile_is_compiled_without_it(monkeypatch):
    """Inductor's freezing passes fail on some models (Mask R-CNN tiny on torch 2.14: "FakeTensorUpdater cannot
    recompute metadata"); the backend then compiles without freezing, says why in result.json, and leaves the
    process-wide setting as it was."""
    import torch._inductor.config as inductor_config

    from mlbench import registry
    from mlbench.inference import task as task_mod
    from mlbench.inference.backends.pytorch import PyTorchBackend
    from mlbench.inference.config import InferConfig

    real = PyTorchBackend._compile
    tried = []

    def compile_(self, model, example, freezing):
        tried.append(freezing)
        if freezing:
            real(self, model, example, freezing)  # switches freezing on, as the real one does
            raise RuntimeError("FakeTensorUpdater cannot recompute metadata\nmore lines")
        return real(self, model, example, freezing)

    monkeypatch.setattr(PyTorchBackend, "_compile", compile_)
    before = inductor_config.freezing
    task = task_mod.build(registry.get("dummy", "tiny"), task_mod.TaskOptions(say=lambda *a: None))
    store = task.dataset()
    store.load([0, 1])
    backend = PyTorchBackend(InferConfig(benchmark="dummy", size="tiny", compile=True, device="cpu", batch_size=2),
                             threads=1)
    backend.prepare(task, store.batch([0, 1]))
    assert inductor_config.freezing == before and tried == [True, False]
    info = backend.info()
    assert info["compile_freezing"] is False
    assert info["compile_freezing_failed"] == "RuntimeError: FakeTensorUpdater cannot recompute metadata"
    assert len(backend.predict(store.batch([1]))[0]) == 1
    backend.close()
    assert inductor_config.freezing == before
