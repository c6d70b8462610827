"""bf16/fp16 on the PyTorch backend: convolution and linear weights are cast once at prepare, not on every call
under autocast. That must leave every benchmark's outputs bit-identical, and leave shared parameters alone."""

from __future__ import annotations

import copy

import pytest
import torch

from mlbench import registry
from mlbench.inference import inputs
from mlbench.inference import task as task_mod
from mlbench.inference.backends.pytorch import cast_weights_once


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out
    return [t for v in items for t in _tensors(v)]


@pytest.mark.parametrize("name", ["resnet50", "retinanet", "bert", "maskrcnn", "dlrm", "rnnt", "dummy"])
def test_outputs_are_bit_identical_for_every_benchmark(name):
    torch.manual_seed(0)
    task = task_mod.build(registry.get(name, "tiny"), task_mod.TaskOptions(say=lambda *a: None))
    store = task.dataset()
    idx = list(range(min(4, store.total_count)))
    store.load(idx)
    x = inputs.to_torch(store.batch(idx), torch.device("cpu"))
    model = task.model().eval()
    cast = copy.deepcopy(model)
    assert cast_weights_once(cast, torch.bfloat16) > 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = _tensors(inputs.call(model, x)), _tensors(inputs.call(cast, x))
    assert len(want) == len(got) > 0
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and torch.equal(w, g)


def test_tied_and_other_parameters_keep_their_dtype():
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10)
    head.weight = emb.weight  # tied, as BERT's decoder and word embeddings
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    model = torch.nn.ModuleDict({"emb": emb, "head": head, "conv": conv, "norm": torch.nn.LayerNorm(4)})
    assert cast_weights_once(model, torch.bfloat16) == 3  # head.bias, conv.weight, conv.bias
    assert emb.weight.dtype == torch.float32 and head.bias.dtype == torch.bfloat16
    assert conv.weight.dtype == torch.bfloat16 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model["norm"].weight.dtype == torch.float32
