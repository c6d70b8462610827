"""Small model files with exactly the interfaces of the model files MLPerf publishes (names, shapes, dtypes,
class offsets), and image data they classify, for the tests of issue 33.

The ResNet-50 ones classify solid-colour images by their mean red value *after the reference's pre-processing
for that file*: the MLPerf ``resnet50_v1.onnx`` interface expects 0-255 values minus the VGG means (with
torchvision's normalisation instead, or without its background offset, its predictions are wrong), so a run
only scores 1.0 when mlbench feeds and reads the file as the reference does.

(A uniquely named module: several test folders have a conftest.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RED_LEVELS = (25, 75, 125, 175, 225)  # class c: images whose red channel is RED_LEVELS[c]
VGG_MEANS = (123.68, 116.78, 103.94)


def make_colour_val(root: Path, per_class: int = 2, sizes=((300, 240), (240, 320), (256, 256))) -> Path:
    """``root/val/*.JPEG`` + ``val_map.txt`` (the ILSVRC2012 layout): class c is red level ``RED_LEVELS[c]``,
    images of several sizes and aspect ratios (the resize and crop run for real)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    val = root / "val"
    val.mkdir(parents=True, exist_ok=True)
    lines = []
    k = 0
    for c, red in enumerate(RED_LEVELS):
        for i in range(per_class):
            w, h = sizes[(c + i) % len(sizes)]
            arr = np.empty((h, w, 3), np.int16)
            arr[..., 0], arr[..., 1], arr[..., 2] = red, 110, 100
            arr += rng.integers(-6, 7, arr.shape).astype(np.int16)
            k += 1
            name = f"ILSVRC2012_val_{k:08d}.JPEG"
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(val / name, quality=95)
            lines.append(f"{name} {c}")
    (val / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


def _red_classifier_weights(classes: int, offset: int, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Gemm weights [3, classes] and bias: logit j = 2 t_j r - t_j^2 (argmax = the level nearest to r, the mean
    red input value), with t_j the expected input value of class j - offset; other classes never win."""
    w = np.zeros((3, classes), np.float32)
    b = np.full((classes,), -1e9, np.float32)
    for c, red in enumerate(RED_LEVELS):
        t = (red - shift) * scale
        w[0, c + offset] = 2 * t
        b[c + offset] = -t * t
    return w, b


def resnet50_mlperf_onnx(path: Path, layout: str = "NCHW", outputs=("ArgMax:0", "softmax_tensor:0"),
                         opset: int = 11, input_rank: int = 4) -> Path:
    """A small ONNX with the interface of MLPerf's ``resnet50_v1.onnx``: input ``input_tensor:0`` float32
    ``[N, 3, 224, 224]`` (or NHWC), outputs ``ArgMax:0`` int64 ``[N]`` and/or ``softmax_tensor:0`` float32
    ``[N, 1001]``, class 0 the background (ImageNet class c is output c + 1), named ``unk__`` batch dims as
    tf2onnx writes them. It expects the reference's pre-processing: 0-255 minus the VGG means."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = _red_classifier_weights(1001, 1, 1.0, VGG_MEANS[0])
    shape = ["unk__614", 3, 224, 224] if layout == "NCHW" else ["unk__614", 224, 224, 3]
    if input_rank != 4:
        shape = ["unk__614", 3 * 224 * 224]
    x = helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, shape)
    nodes, inits = [], [numpy_helper.from_array(w, "dense/kernel"), numpy_helper.from_array(b, "dense/bias")]
    src = "input_tensor:0"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [src], ["nchw"], perm=[0, 3, 1, 2]))
        src = "nchw"
    nodes += [helper.make_node("ReduceMean", [src], ["pooled"], axes=[2, 3], keepdims=0)]
    if opset >= 18:  # ReduceMean takes its axes as an input from opset 18
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
        nodes[-1] = helper.make_node("ReduceMean", [src, "axes"], ["pooled"], keepdims=0)
    nodes += [helper.make_node("Gemm", ["pooled", "dense/kernel", "dense/bias"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["softmax_tensor:0"], axis=1),
              helper.make_node("ArgMax", ["logits"], ["ArgMax:0"], axis=1, keepdims=0)]
    outs = {"ArgMax:0": helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, ["unk__615"]),
            "softmax_tensor:0": helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT,
                                                              ["unk__616", 1001])}
    graph = helper.make_graph(nodes, "tf2onnx", [x], [outs[o] for o in outputs], inits)
    model = helper.make_model(graph, producer_name="tf2onnx", producer_version="1.9.3",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ------------------------------------------------------------------------------------------------- RetinaNet
OBJECT = (0.25, 0.30, 0.70, 0.80)  # the one object of every image: x0, y0, x1, y1 as fractions of the image
OBJECT_CATEGORY = 7


def make_openimages_val(root: Path, sizes=((640, 480), (480, 640), (1024, 683), (500, 500))) -> Path:
    """OpenImages-MLPerf's layout (``validation/data/*.jpg`` + ``validation/labels/openimages-mlperf.json``,
    COCO format): grey images of several sizes with one red rectangle at :data:`OBJECT` (category 7)."""
    import json

    from PIL import Image

    data, labels = root / "validation" / "data", root / "validation" / "labels"
    data.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for k, (w, h) in enumerate(sizes):
        arr = np.full((h, w, 3), 128, np.uint8)
        x0, y0, x1, y1 = (int(round(f * s)) for f, s in zip(OBJECT, (w, h, w, h)))
        arr[y0:y1, x0:x1] = (200, 40, 40)
        name = f"{k:016x}.jpg"
        Image.fromarray(arr).save(data / name, quality=95)
        images.append({"id": k, "file_name": name, "width": w, "height": h})
        anns.append({"id": k + 1, "image_id": k, "category_id": OBJECT_CATEGORY, "bbox": [x0, y0, x1 - x0, y1 - y0],
                     "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    cats = [{"id": i, "name": f"class{i}"} for i in range(10)]
    (labels / "openimages-mlperf.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                               "categories": cats}))
    return root


def retinanet_mlperf_onnx(path: Path, mean: float, size: int = 800) -> Path:
    """A small ONNX with the interface of MLPerf's ``resnext50_32x4d_fpn.onnx``: input ``images`` float32
    ``[1, 3, 800, 800]`` (0-1 RGB), outputs ``boxes`` ``[K, 4]`` (input pixels), ``scores`` ``[K]`` (descending),
    ``labels`` int64 ``[K]`` (category ids). It finds :data:`OBJECT` with score 0.9, a box of another category
    (0.5) and a duplicate under the reference's 0.05 threshold; its boxes scale with the input's mean over
    ``mean`` (the mean of the reference's pre-processing), so a wrongly scaled input misplaces them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    box = np.array([OBJECT[0] * size, OBJECT[1] * size, OBJECT[2] * size, OBJECT[3] * size], np.float32)
    boxes = np.stack([box, box * 0.5, box]).astype(np.float32)
    inits = [numpy_helper.from_array(boxes / np.float32(mean), "boxes_per_mean"),
             numpy_helper.from_array(np.array([0.9, 0.5, 0.01], np.float32), "scores_const"),
             numpy_helper.from_array(np.array([OBJECT_CATEGORY, 3, OBJECT_CATEGORY], np.int64), "labels_const")]
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[0, 1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["boxes_per_mean", "m"], ["boxes"]),
             helper.make_node("Identity", ["scores_const"], ["scores"]),
             helper.make_node("Identity", ["labels_const"], ["labels"])]
    graph = helper.make_graph(
        nodes, "torch_jit", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["num_detections", 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["num_detections"]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, ["num_detections"])], inits)
    model = helper.make_model(graph, producer_name="pytorch", producer_version="1.11.0",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def pickled_module(state: dict, path: Path, module_name: str = "model.retinanet") -> Path:
    """``torch.save`` of a whole ``nn.Module`` holding ``state``'s tensors under their dotted names, whose
    classes live in a module (``model.retinanet``, as in MLPerf's training repository) that exists only while
    saving: loading it the usual way would need that code base; mlbench must read it without."""
    import sys
    import types

    import torch

    mod = types.ModuleType(module_name)

    class Node(torch.nn.Module):
        def __setstate__(self, state):  # never runs when mlbench reads the file
            raise RuntimeError("the file's own code ran")

    Node.__module__, Node.__qualname__ = module_name, "RetinaNet"
    mod.RetinaNet = Node
    root = Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for p in parents:
            if p not in node._modules:
                node.add_module(p, Node())
            node = node._modules[p]
        if "running" in leaf or leaf.endswith("num_batches_tracked"):
            node.register_buffer(leaf, value.clone())
        else:
            node.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
    parent = module_name.rpartition(".")[0]
    added = {module_name: mod, **({parent: types.ModuleType(parent)} if parent and parent not in sys.modules else {})}
    sys.modules.update(added)
    try:
        torch.save(root, str(path))
    finally:
        for name in added:
            del sys.modules[name]
    return path


# ------------------------------------------------------------------------------------------------------ BERT
def bert_onnx(path: Path, model, seq_len: int, inputs=("input_ids", "input_mask", "segment_ids"),
              outputs=("output_start_logits", "output_end_logits")) -> Path:
    """``model`` (mlbench's QAModel: (input_ids, attention_mask, token_type_ids) -> (start, end)) exported with
    MLPerf's model.onnx interface: inputs ``input_ids``, ``input_mask``, ``segment_ids`` int64 ``[batch_size,
    seq]``, outputs ``output_start_logits``, ``output_end_logits`` (as its bert_tf_to_pytorch.py exports), or the
    names given."""
    import torch

    x = torch.ones((1, seq_len), dtype=torch.int64)
    torch.onnx.export(model, (x, x, x), str(path), input_names=list(inputs), output_names=list(outputs),
                      dynamic_axes={n: {0: "batch_size"} for n in (*inputs, *outputs)}, opset_version=17,
                      dynamo=False)
    return path


# ------------------------------------------------------------------------------------------------------ DLRM
_SNAPSHOT_WRITER = r"""
import os, sys, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3])
os.environ["TORCHSNAPSHOT_MAX_CHUNK_SIZE_BYTES_OVERRIDE"] = "512"  # small tensors chunked, as large ones are
dist.init_process_group("gloo", rank=0, world_size=1)
from torch.distributed._shard import sharded_tensor
from torch.distributed._shard.sharding_spec import ChunkShardingSpec
import torchsnapshot

state = torch.load(sys.argv[1], weights_only=True)
out = {}
for k, v in state.items():
    dim = 1 if k.endswith("t_cat_1.weight") else 0
    if "embedding_bags" in k and v.shape[dim] >= 6:  # tables sharded as the GPUs held them: rows, or columns
        st = sharded_tensor.empty(ChunkShardingSpec(dim=dim, placements=["rank:0/cpu"] * 3), *v.shape)
        for shard in st.local_shards():
            o, s = shard.metadata.shard_offsets, shard.metadata.shard_sizes
            shard.tensor.copy_(v[o[0]:o[0] + s[0], o[1]:o[1] + s[1]])
        out[k] = st
    else:
        out[k] = v


class App:  # what the reference's app_state holds: the model, whose state dict this is
    def state_dict(self):
        return out

    def load_state_dict(self, sd):
        pass


torchsnapshot.Snapshot.take(path=sys.argv[2], app_state={"model": App()})
"""


def dlrm_snapshot(state: dict, folder: Path) -> Path:
    """``folder`` written by the real torchsnapshot (as MLPerf's DLRM-v2 ``model_weights``): ``state`` (TorchRec
    DLRM_DCN names) under app ``model``, embedding tables as ShardedTensors (three row shards; one table in column
    shards), larger tensors chunked. Run in a child process (it starts a one-process gloo group)."""
    import random
    import subprocess
    import sys

    import torch

    src = folder.with_suffix(".state.pt")
    torch.save(state, src)
    port = str(random.randint(20000, 40000))
    proc = subprocess.run([sys.executable, "-c", _SNAPSHOT_WRITER, str(src), str(folder), port],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    src.unlink()
    return folder


def run_infer(args: list[str], out: Path, capsys) -> tuple[int, dict, str]:
    """``mlbench infer ARGS --output-dir OUT`` in this process: (exit code, the run's result.json, its output)."""
    import json

    from mlbench.cli import main

    code = main(["infer", *args, "--output-dir", str(out)])
    text = capsys.readouterr()
    return code, json.loads(next(out.glob("*/result.json")).read_text()), text.out + text.err
