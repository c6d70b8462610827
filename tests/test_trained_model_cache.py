"""The model inference serves for mini/tiny (``mlbench.inference.models.trained_checkpoint``) is the cached one of
``mlbench train`` only while it was trained toward the size's current target: RNN-T mini's moved from WER 0.62
to 0.45 (issue 26), and a model trained to 0.62 would be served against the new inference target."""

from __future__ import annotations

import json

import pytest

from mlbench import registry
from mlbench.data import download
from mlbench.errors import MlbenchError
from mlbench.inference.models import trained_checkpoint
from mlbench.inference.task import TaskOptions


def _cached(bench, quality: dict | None):
    dest = download.cache_dir("models", f"{bench.name}-{bench.size}.pt")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"weights")
    if quality is not None:
        dest.with_suffix(".result.json").write_text(json.dumps({"quality": quality}))
    return dest


def test_a_model_trained_toward_another_target_is_not_served():
    bench = registry.get("rnnt", "mini").definition
    opts = TaskOptions(train_if_missing=False, say=lambda m: None)
    dest = _cached(bench, {"metric": "wer", "target": 0.62})  # before issue 26
    with pytest.raises(MlbenchError, match="trained toward wer 0.62, the target is now wer 0.45"):
        trained_checkpoint(bench, opts)
    _cached(bench, {"metric": "wer", "target": bench.target})
    assert trained_checkpoint(bench, opts) == dest


def test_a_cached_model_without_a_result_is_served_as_before():
    bench = registry.get("rnnt", "mini").definition
    dest = _cached(bench, None)
    assert trained_checkpoint(bench, TaskOptions(train_if_missing=False, say=lambda m: None)) == dest
