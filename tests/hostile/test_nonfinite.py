"""Issue 32: a metric never scores non-finite predictions (the run fails naming them), and a non-finite loss says
whether the data or the optimisation is the likely cause.

DLRM with NaN dense features in its clicked rows scored AUC 1.0000 and recorded success: NaN sorts like a score.
Data that makes the loss NaN (every label padding, NaN features) was blamed on the learning rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from catalogue import Case, check

from mlbench import registry
from mlbench.finite import NonFinite, nonfinite_metrics, require_finite
from mlbench.training.recipe import StepContext

CTX = StepContext(device=torch.device("cpu"))


def _bert_without_targets(tmp: Path) -> None:
    """BERT tiny data whose training shards mask nothing (every masked_lm_id is padding): the MLM loss is 0/0."""
    import h5py

    from mlbench.benchmarks.bert import pretrain_data

    root = tmp / "bert"
    root.mkdir()
    pretrain_data.build(registry.get("bert", "tiny").definition, root)
    for path in (root / "hdf5" / "training").iterdir():
        with h5py.File(path, "r+") as f:
            f["masked_lm_ids"][...] = 0


def _nan_weights(tmp: Path) -> None:
    from mlbench.benchmarks.resnet50.model import build_model

    bench = registry.get("resnet50", "tiny").definition
    model = build_model(bench)
    state = model.state_dict()
    next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
    torch.save({"model": state}, tmp / "diverged.pt")


CASES = [
    Case("bert-every-label-padding", ("train", "bert", "--size", "tiny", "--data-dir", "{tmp}/bert", "--device",
                                      "cpu", "--log-every", "1", "--output-dir", "{tmp}/runs"), 1,
         "has nothing to learn (every label is padding", setup=_bert_without_targets),
    Case("dummy-diverges", ("train", "dummy", "--size", "tiny", "--lr", "100", "--log-every", "1", "--output-dir",
                            "{tmp}/runs"), 1, "its inputs were finite and held targets, so the optimisation diverged"),
    Case("infer-weights-hold-nan", ("infer", "resnet50", "--size", "tiny", "--weights", "{tmp}/diverged.pt",
                                    "--mode", "accuracy", "--output-dir", "{tmp}/runs"), 1,
         "hold nan or infinite values", setup=_nan_weights),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_nonfinite_is_named_not_scored(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


class _Scores(torch.nn.Module):
    """A DLRM stand-in whose score is NaN for every clicked row (what a NaN dense feature did)."""

    def forward(self, dense, sparse):
        return torch.where(dense[:, 0] > 0, torch.tensor(float("nan")), dense[:, 1])


def test_dlrm_never_scores_nan_click_scores():
    from mlbench.benchmarks.dlrm import auc

    wl = registry.get("dlrm", "tiny").workload()
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0] * 8)
    dense = torch.stack([labels, torch.linspace(0, 1, 32)], 1)
    batches = [{"dense": dense, "sparse": [torch.zeros(32, 1, dtype=torch.long)], "labels": labels}]
    with pytest.raises(NonFinite, match="16 of 32 click scores are NaN or infinite"):
        wl.evaluate(_Scores(), batches, CTX)
    with pytest.raises(NonFinite, match="1 of 3 click scores"):
        auc.auc(np.array([0.5, np.inf, 0.1]), np.array([1, 0, 1]))


class _NanLogits(torch.nn.Module):
    def forward(self, x):
        out = torch.zeros(len(x), 10)
        out[0, 3] = float("nan")
        return out


def test_classification_never_scores_nan_logits():
    wl = registry.get("resnet50", "tiny").workload()
    batches = [(torch.zeros(4, 1, 28, 28), torch.tensor([3, 0, 0, 0]))]
    with pytest.raises(NonFinite, match="NaN or infinite for 1 of 4 evaluation images"):
        wl.evaluate(_NanLogits(), batches, CTX)


def test_resnet_inference_marks_and_refuses_nan_logits():
    from types import SimpleNamespace

    from mlbench.benchmarks.resnet50 import modelfiles
    from mlbench.benchmarks.resnet50.inference import NONFINITE, ResNetTask

    logits = np.zeros((3, 10), np.float32)
    logits[1, 2] = np.inf
    task = SimpleNamespace(interface=lambda: modelfiles.own_interface("tiny", 10))
    pred = ResNetTask.postprocess(task, [logits], [0, 1, 2])
    assert pred.tolist() == [0, NONFINITE, 0]

    class Store:
        def label(self, i):
            return 0

    responses = {i: p.tobytes() for i, p in enumerate(pred.astype(np.int32))}
    with pytest.raises(NonFinite, match="1 of 3 logged predictions"):
        ResNetTask.accuracy(None, responses, Store())


def test_nonfinite_helpers():
    assert nonfinite_metrics({"auc": 1.0, "logloss": float("nan"), "n": 3}) == {"logloss": pytest.approx(np.nan,
                                                                                                      nan_ok=True)}
    require_finite(np.arange(4), "ids")  # integers are always finite
    with pytest.raises(NonFinite, match="2 of 4 scores"):
        require_finite(torch.tensor([0.0, float("nan"), float("-inf"), 1.0]), "scores")


def test_the_loss_names_its_likely_cause():
    from mlbench.training import harness
    from mlbench.training.workload import NO_TARGET, NONFINITE_INPUT

    assert "holds NaN or infinite input values" in harness._nonfinite_loss(1, 5, NONFINITE_INPUT, 1)[0]
    assert "a batch before it has nothing to learn" in harness._nonfinite_loss(1, 5, 0, NO_TARGET)[0]
    message, fix = harness._nonfinite_loss(1, 5, 0, 0)
    assert "optimisation diverged" in message and "--lr" in fix
    wl = registry.get("dlrm", "tiny").workload()
    batch = {"dense": torch.tensor([[0.0, float("nan")]]), "sparse": [torch.zeros(1, 1)], "labels": torch.ones(1)}
    assert int(wl.input_problem(batch)) == NONFINITE_INPUT
    assert int(registry.get("bert", "tiny").workload().input_problem({"masked_lm_ids": torch.zeros(2, 5)})) == NO_TARGET
