"""Issue 33: bad model files. An ONNX file with outputs the benchmark does not know, one whose input has the
wrong rank, a .pth of another architecture: one line before any test runs, exit code 2, nothing valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import Case, check

import official_models as om

INFER = ("infer", "resnet50", "--size", "reference", "--data-dir", "{tmp}/imagenet", "--quick", "--duration-s", "1",
         "--threads", "1", "--output-dir", "{tmp}/runs")


def _onnx(**kw):
    def setup(tmp: Path) -> None:
        om.make_colour_val(tmp / "imagenet", per_class=1)
        om.resnet50_mlperf_onnx(tmp / "model.onnx", **kw)
    return setup


def _unexpected_outputs(tmp: Path) -> None:
    """The official input, but outputs named and shaped as no ResNet-50 file has them."""
    import onnx

    _onnx()(tmp)
    model = onnx.load(str(tmp / "model.onnx"))
    for out in model.graph.output:
        out.name = out.name.replace("ArgMax:0", "classes").replace("softmax_tensor:0", "probs")
    for node in model.graph.node:
        node.output[:] = [o.replace("ArgMax:0", "classes").replace("softmax_tensor:0", "probs") for o in node.output]
    onnx.save(model, str(tmp / "model.onnx"))


def _other_architecture(tmp: Path) -> None:
    import torch
    import torchvision

    om.make_colour_val(tmp / "imagenet", per_class=1)
    torch.save(torchvision.models.resnet18().state_dict(), tmp / "resnet18.pth")


CASES = [
    Case("onnx-unexpected-outputs", (*INFER, "--backend", "onnxruntime", "--weights", "{tmp}/model.onnx"), 2,
         "not an interface mlbench knows for ResNet-50 reference: found inputs input_tensor:0 float32 [N,3,224,224]; "
         "outputs classes int64 [N], probs float32 [N,1001]", setup=_unexpected_outputs),
    Case("onnx-input-rank-2", (*INFER, "--backend", "onnxruntime", "--weights", "{tmp}/model.onnx"), 2,
         "found inputs input_tensor:0 float32 [N,150528]", setup=_onnx(input_rank=2)),
    Case("pth-other-architecture", (*INFER, "--weights", "{tmp}/resnet18.pth"), 2,
         "do not fit ResNet-50 reference: ", setup=_other_architecture),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_model_files(case: Case, tmp_path: Path) -> None:
    out = check(case, tmp_path)
    assert "performance test" not in out  # refused before the test
    error = next(line for line in out.splitlines() if case.error.split(":")[0].lower() in line.lower())
    assert len(error) < 1200  # one line, however large the file's signature
