"""Issue 33: the model files MLPerf publishes, recognised from the file and served with the reference's pre-
and post-processing, on small models built here with exactly their interfaces (official_models.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import official_models as om
from mlbench import registry
from mlbench.benchmarks.resnet50 import modelfiles
from mlbench.benchmarks.resnet50.data import ImageNetFolder
from mlbench.errors import ConfigError
from mlbench.inference import modelfile
from mlbench.inference.task import TaskOptions, build


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_resnet50_mlperf_onnx_through_the_whole_path(infer, tmp_path):
    """MLPerf's resnet50_v1.onnx interface (input_tensor:0 NCHW, ArgMax:0 and softmax_tensor:0 over 1001
    classes, background at 0): recognised, fed with the reference's pre-processing, ArgMax read and offset,
    scored; FLOPs counted from the graph."""
    data = om.make_colour_val(tmp_path / "imagenet")
    onnx_file = om.resnet50_mlperf_onnx(tmp_path / "resnet50_v1.onnx")
    code, r, out = infer("--size", "reference", "--data-dir", str(data), "--weights", str(onnx_file),
                         "--backend", "onnxruntime", "--mode", "accuracy", "--threads", "1")
    assert code == 0, out
    assert r["accuracy"]["value"] == 1.0 and r["accuracy"]["samples_logged"] == 10
    mf = r["task"]["model_file"]
    assert mf["output"] == "ArgMax:0" and mf["class_offset"] == -1 and mf["layout"] == "NCHW"
    assert "pre_process_vgg" in mf["pre_processing"] and "resnet50_v1.onnx" in out
    assert r["compute"]["flops_per_sample"] == 2 * 3 * 1001  # the Gemm: the graph's only counted op
    assert "ONNX graph" in r["compute"]["flops_method"]


@pytest.mark.parametrize("layout,outputs,opset", [("NHWC", ("ArgMax:0",), 11), ("NCHW", ("softmax_tensor:0",), 8)])
def test_resnet50_mlperf_onnx_variants(tmp_path, layout, outputs, opset):
    """NHWC input (read from the shape), ArgMax only (the opset-11 file), softmax only: each recognised and read
    correctly; the same file fed torchvision's normalisation instead would be wrong (the test is not vacuous)."""
    data = om.make_colour_val(tmp_path / "imagenet", per_class=1)
    path = om.resnet50_mlperf_onnx(tmp_path / "m.onnx", layout=layout, outputs=outputs, opset=opset)
    task = build(registry.get("resnet50", "reference"), TaskOptions(data_dir=str(data), weights=str(path),
                                                                    say=lambda m: None))
    iface = task.interface()
    assert iface.layout == layout and iface.output == outputs[0] and iface.offset == 1
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    x = store.batch(idx)
    assert x.shape[1:] == ((3, 224, 224) if layout == "NCHW" else (224, 224, 3))
    sess = _session(path)
    got = task.postprocess(sess.run(task.onnx_outputs, {"input_tensor:0": x}), idx)
    assert got.dtype == np.int32 and got.tolist() == [store.label(i) for i in idx]
    wrong = modelfiles.image_preprocessor(modelfiles.Interface("torchvision", "torchvision", layout=layout))
    tv = np.stack([wrong(p) for p, _ in ImageNetFolder(data, "val").samples])
    bad = task.postprocess(sess.run(task.onnx_outputs, {"input_tensor:0": tv}), idx)
    assert (bad == got).mean() < 0.5


def test_resnet50_torchvision_pth_with_the_reference_preprocessing(tmp_path):
    """torchvision's state dict (the interface of resnet50-19c8e357.pth): the task loads it, its samples are the
    reference's pre_process_imagenet_pytorch, and the logged classes (the model's argmax, no offset) are scored
    against the labels."""
    import torchvision

    data = om.make_colour_val(tmp_path / "imagenet", per_class=1)
    torch.manual_seed(0)
    net = torchvision.models.resnet50().eval()
    weights = tmp_path / "resnet50-19c8e357.pth"
    torch.save(net.state_dict(), weights)
    task = build(registry.get("resnet50", "reference"), TaskOptions(data_dir=str(data), weights=str(weights),
                                                                    say=lambda m: None))
    assert task.interface() is modelfiles.TORCHVISION and task.onnx_outputs is None
    store = task.dataset()
    idx = list(range(store.total_count))
    store.load(idx)
    x = store.batch(idx)
    samples = ImageNetFolder(data, "val").samples
    assert np.array_equal(x, np.stack([modelfiles.torchvision_image(p) for p, _ in samples]))
    with torch.no_grad():
        logits = task.model()(torch.from_numpy(x)).numpy()
    responses = task.postprocess([logits], idx)
    assert responses.tolist() == logits.argmax(1).tolist()
    # score: the first three labelled with the model's class, the other two with another
    store._labels = [int(c) if k < 3 else int(c + 1) % 1000 for k, c in enumerate(responses)]
    scores = task.accuracy({i: responses[i].tobytes() for i in idx}, store)
    assert scores == {"top1": pytest.approx(0.6), "samples": 5}


def test_onnx_flops_match_torch_counter(tmp_path):
    """The ONNX count (Conv, Gemm, batched MatMul) equals torch's FLOP counter on the model it was exported
    from."""
    from torch.utils.flop_counter import FlopCounterMode

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1)
            self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=4)
            self.fc = torch.nn.Linear(8, 16)

        def forward(self, x):
            y = self.dw(self.conv(x)).flatten(2).transpose(1, 2)  # [N, 64, 8]
            q = self.fc(y)  # [N, 64, 16]
            return q @ q.transpose(1, 2)

    net, x = Net().eval(), torch.randn(1, 3, 16, 16)
    with FlopCounterMode(display=False) as counter:
        net(x)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False,
                      opset_version=17)
    got = modelfile.count_flops(path, {"x": (3, 16, 16)})
    assert got["flops_per_sample"] == counter.get_total_flops() and not got["uncounted"]


def test_unknown_onnx_interfaces_name_what_was_found(tmp_path):
    data = om.make_colour_val(tmp_path / "imagenet", per_class=1)
    rank2 = om.resnet50_mlperf_onnx(tmp_path / "rank2.onnx", input_rank=2)
    task = build(registry.get("resnet50", "reference"), TaskOptions(data_dir=str(data), weights=str(rank2)))
    with pytest.raises(ConfigError) as exc:
        task.dataset()
    assert "input_tensor:0 float32 [N,150528]" in exc.value.message and "expected one float32 image input" in \
        exc.value.message and exc.value.exit_code == 2
