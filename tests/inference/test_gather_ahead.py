"""Offline gathers the next batch on a helper thread while the current one runs, and finishes (post-processes and
completes) each batch there while the next one runs: every sample still gets its own response, and a failing
gather or post-processing fails the run instead of hanging it."""

from __future__ import annotations

import json
import threading

import pytest

from mlbench.errors import RunAborted
from mlbench.inference.sample_store import ArrayStore


def _spy(monkeypatch, fail_after: int | None = None) -> list[str]:
    threads: list[str] = []
    real = ArrayStore.batch

    def batch(self, indices):
        threads.append(threading.current_thread().name)
        if fail_after is not None and len(threads) > fail_after:
            raise OSError("sample store unreadable")
        return real(self, indices)

    monkeypatch.setattr(ArrayStore, "batch", batch)
    return threads


def _finish_threads(monkeypatch) -> list[str]:
    from mlbench.benchmarks.resnet50.inference import ResNetTask

    threads: list[str] = []
    real = ResNetTask.postprocess

    def postprocess(self, outputs, indices):
        threads.append(threading.current_thread().name)
        return real(self, outputs, indices)

    monkeypatch.setattr(ResNetTask, "postprocess", postprocess)
    return threads


def test_offline_accuracy_with_gather_ahead(infer, monkeypatch):
    threads = _spy(monkeypatch)
    finished = _finish_threads(monkeypatch)
    code, r, out = infer("--size", "tiny", "--quick", "--threads", "1", "--scenario", "Offline", "--mode",
                         "accuracy", "--batch-size", "16")
    assert code == 0, out
    assert r["accuracy"]["samples_logged"] == r["accuracy"]["dataset_samples"]
    assert r["accuracy"]["reached"], r["accuracy"]  # responses belong to their samples
    assert any(name.endswith("-gather_0") for name in threads)  # batches were gathered ahead
    assert finished and all(name.endswith("-gather_0") for name in finished)  # and finished behind
    assert r["backend"]["sut_pipeline"].startswith("gather ahead, finish behind")


def test_offline_without_gather_ahead_same_responses(infer, monkeypatch):
    code, a, _ = infer("--size", "tiny", "--quick", "--threads", "1", "--scenario", "Offline", "--mode",
                       "accuracy", "--batch-size", "16")
    from mlbench.inference import sut

    init = sut.SUT.__init__

    def no_ahead(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.gather_ahead = False

    monkeypatch.setattr(sut.SUT, "__init__", no_ahead)
    code, b, _ = infer("--size", "tiny", "--quick", "--threads", "1", "--scenario", "Offline", "--mode",
                       "accuracy", "--batch-size", "16")
    assert a["accuracy"]["value"] == b["accuracy"]["value"]
    assert b["backend"]["sut_pipeline"] == "one batch at a time per worker"


def test_failing_gather_fails_the_run(tmp_path, monkeypatch):
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    _spy(monkeypatch, fail_after=30)
    cfg = InferConfig(size="tiny", backend="null", scenario="Offline", quick=True, duration_s=0.5,
                      output_dir=str(tmp_path / "runs"), batch_size=4)
    with pytest.raises(RunAborted, match="sample store unreadable"):
        execute(cfg)
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "sample store unreadable" in result["error"]


@pytest.mark.parametrize("fault", ["raises", "wrong count"])
def test_failing_postprocess_fails_the_run(tmp_path, monkeypatch, fault):
    """A post-processing that raises, or returns the wrong number of responses, on the helper thread: the run
    ends as failed with that error (LoadGen still gets every sample completed, so nothing hangs)."""
    import numpy as np

    from mlbench.benchmarks.resnet50.inference import ResNetTask
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    real, calls = ResNetTask.postprocess, []

    def postprocess(self, outputs, indices):
        calls.append(1)
        if len(calls) > 3:
            if fault == "raises":
                raise RuntimeError("decoder exploded")
            return np.zeros(len(indices) + 1, np.int64)
        return real(self, outputs, indices)

    monkeypatch.setattr(ResNetTask, "postprocess", postprocess)
    cfg = InferConfig(size="tiny", scenario="Offline", quick=True, duration_s=0.5, threads=1,
                      output_dir=str(tmp_path / "runs"), batch_size=4)
    message = "decoder exploded" if fault == "raises" else "postprocess returned 5 responses for 4 samples"
    with pytest.raises(RunAborted, match=message):
        execute(cfg)
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and message in result["error"]


def test_finishing_behind_is_bounded(tmp_path, monkeypatch):
    """A post-processing slower than the network: the worker waits instead of piling up outputs (the helper
    runs in submission order, so the next gather waits behind the finishing before it: at most 2 batches run
    and not yet finished)."""
    import time

    from mlbench.benchmarks.resnet50.inference import ResNetTask
    from mlbench.inference.backends.pytorch import PyTorchBackend
    from mlbench.inference.config import InferConfig
    from mlbench.inference.execute import execute

    counts = {"run": 0, "finished": 0, "most": 0}
    real_predict, real_post = PyTorchBackend.predict, ResNetTask.postprocess

    def predict(self, x):
        out = real_predict(self, x)
        if threading.current_thread().name.startswith("mlbench-sut"):
            counts["run"] += 1
            counts["most"] = max(counts["most"], counts["run"] - counts["finished"])
        return out

    def postprocess(self, outputs, indices):
        time.sleep(0.01)
        out = real_post(self, outputs, indices)
        if threading.current_thread().name.startswith("mlbench-sut"):
            counts["finished"] += 1
        return out

    monkeypatch.setattr(PyTorchBackend, "predict", predict)
    monkeypatch.setattr(ResNetTask, "postprocess", postprocess)
    cfg = InferConfig(size="tiny", scenario="Offline", quick=True, duration_s=0.3, threads=1,
                      output_dir=str(tmp_path / "runs"), batch_size=2, target_qps=2000)
    execute(cfg)
    assert counts["run"] > 20  # many batches, each finished slower than it ran
    assert counts["most"] <= 2
