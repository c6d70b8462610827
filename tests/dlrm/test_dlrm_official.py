"""Issue 33: MLPerf's DLRM-v2 weights are a torchsnapshot folder (model_weights): read without torchsnapshot,
straight into the model, sharded and chunked tensors included; a snapshot of another model is one line, exit 2."""

from __future__ import annotations

import pytest
import torch
from dlrm_support import write_days

import official_models as om
from mlbench.benchmarks.dlrm import inference as inf
from mlbench.benchmarks.dlrm.definition import TINY
from mlbench.benchmarks.dlrm.model import DLRMTrain
from mlbench.errors import ConfigError
from mlbench.inference import snapshot
from mlbench.inference.task import TaskOptions

pytest.importorskip("torchsnapshot")  # writes the test's snapshots (mlbench reads them without it)


def test_dlrm_torchsnapshot_loads_into_the_model_and_scores(tmp_path, capsys):
    torch.manual_seed(3)
    net = DLRMTrain(TINY.hparams)
    folder = om.dlrm_snapshot(net.state_dict(), tmp_path / "model_weights")
    meta = snapshot.read_metadata(folder)
    kinds = {e["type"] for e in meta["manifest"].values()}
    assert {"ShardedTensor", "ChunkedTensor", "Tensor"} <= kinds  # the writer made what the real one holds
    task = inf.DLRMTask(TINY, TaskOptions(weights=str(folder), say=lambda m: None))
    model = task.model()
    for k, v in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k
    assert task.model_id().endswith("-packed") and task._snapshot["tensors"] == len(net.state_dict())

    data = write_days(tmp_path / "days", rows_per_day=256)
    code, r, out = om.run_infer(["dlrm", "--size", "tiny", "--weights", str(folder), "--data-dir", str(data),
                                 "--mode", "accuracy", "--threads", "1"], tmp_path / "runs", capsys)
    assert r["status"] == "success" and code in (0, 1), out
    assert r["task"]["model_file"]["tensors"] == len(net.state_dict()) and "torchsnapshot" in \
        r["task"]["model_file"]["interface"]
    assert 0.0 <= r["accuracy"]["value"] <= 1.0 and r["accuracy"]["scores"]["rows"] == 128


def test_a_snapshot_of_another_model_is_refused_in_one_line(tmp_path):
    other = {**TINY.hparams, "embedding_dim": 4, "bottom_mlp": (16, 4)}
    folder = om.dlrm_snapshot(DLRMTrain(other).state_dict(), tmp_path / "model_weights")
    task = inf.DLRMTask(TINY, TaskOptions(weights=str(folder), say=lambda m: None))
    with pytest.raises(ConfigError) as exc:
        task.model()
    msg = exc.value.message
    assert "does not fit DLRM-DCNv2 tiny" in msg and "of another shape" in msg and "\n" not in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a torchsnapshot"):
        inf.DLRMTask(TINY, TaskOptions(weights=str(tmp_path / "empty"))).model()
