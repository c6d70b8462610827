"""The ResNet-50 model files MLPerf publishes, recognised from the file, with the reference's pre- and
post-processing for each (mlcommons/inference ``vision/classification_and_detection``: its README's model
table, ``python/main.py`` profiles ``resnet50-onnxruntime`` and ``resnet50-pytorch``, ``python/dataset.py``).

- ``resnet50_v1.onnx`` (top-1 76.456%): TensorFlow's ResNet-50 v1.5 converted by tf2onnx, opset 8 or 11.
  Input ``input_tensor:0`` float32 ``[N, 3, 224, 224]`` (NCHW: converted with ``--inputs-as-nchw``; a
  conversion without it takes NHWC ``[N, 224, 224, 3]``, recognised from the shape). Outputs ``ArgMax:0``
  (int64 ``[N]``) and, in the opset-8 file, ``softmax_tensor:0`` (float32 ``[N, 1001]``): 1001 classes, class 0
  the background, so ImageNet class ``c`` is output ``c + 1``. The reference reads ``ArgMax:0`` and subtracts 1
  (``PostProcessCommon(offset=-1)``). Pre-processing (``pre_process_vgg``): decode to RGB, resize with OpenCV's
  INTER_AREA so that the short side is 256 (``int(224 / 0.875)``), centre crop 224 (offsets rounded down),
  float32 0-255, subtract the per-channel mean ``[123.68, 116.78, 103.94]``, no scaling.
- ``resnet50-19c8e357.pth`` (top-1 76.014%): torchvision's ResNet-50 state dict. Pre-processing
  (``pre_process_imagenet_pytorch``): decode to RGB, torchvision's resize of the short side to 256 (bilinear,
  PIL), centre crop 224, 0-1 scale, ImageNet mean and std; 1000 classes, no offset.

An ONNX file with one 4-D input and one ``[N, 1000]`` float output (torchvision's interface, e.g. what
``--backend onnxruntime`` exports from the .pth) is served like the .pth. Anything else is refused before
the test with what was found and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlbench.data import cvimage
from mlbench.inference import modelfile

VGG_MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32)  # pre_process_vgg: RGB means on 0-255
CROP_PERCENT = 87.5  # resize_with_aspectratio's scale: the short side becomes int(100 * 224 / 87.5) = 256
TF_INPUT, TF_ARGMAX, TF_SOFTMAX = "input_tensor:0", "ArgMax:0", "softmax_tensor:0"


@dataclass(frozen=True)
class Interface:
    """How one model file is fed and read.

    ``preprocessing``: "mlperf-onnx" (the reference's ``pre_process_vgg``), "torchvision" (its
    ``pre_process_imagenet_pytorch``) or "mini"/"tiny" (mlbench's own sizes). ``output``: the ONNX output read
    (None: the model's first output); ``output_is_class``: it holds class indices (ArgMax) rather than scores;
    ``offset``: subtracted from the model's class (1 where class 0 is the background)."""

    name: str
    preprocessing: str
    layout: str = "NCHW"
    output: str | None = None
    output_is_class: bool = False
    offset: int = 0
    classes: int = 1000
    found: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def info(self) -> dict:
        return {"interface": self.name, "pre_processing": PREPROCESSING[self.preprocessing], "layout": self.layout,
                "output": self.output, "class_offset": -self.offset, "classes": self.classes,
                **({"found": self.found} if self.found else {})}


PREPROCESSING = {
    "mlperf-onnx": "the MLPerf reference's for resnet50_v1.onnx (pre_process_vgg): OpenCV INTER_AREA resize of the "
                   "short side to 256, centre crop 224, 0-255 minus the RGB means 123.68/116.78/103.94",
    "torchvision": "the MLPerf reference's for the PyTorch model (pre_process_imagenet_pytorch): resize 256 "
                   "(bilinear), centre crop 224, ImageNet mean/std",
    "mini": "Fashion-MNIST 28x28, normalised as in training", "tiny": "generated gratings, normalised as in training",
}
TORCHVISION = Interface("torchvision ResNet-50 v1.5 (PyTorch state dict or an ONNX with its interface)",
                        "torchvision")


def own_interface(size: str, classes: int) -> Interface:
    """The interface of mlbench's mini/tiny model (and of its ONNX export)."""
    return Interface(f"mlbench {size} model", size, classes=classes)


def recognise_onnx(sig: modelfile.OnnxSignature, size: str, sample_shape: tuple[int, ...], classes: int
                   ) -> Interface:
    """The interface of an ONNX file for ResNet-50 ``size`` (sample shape CHW, ``classes`` outputs), or the
    ConfigError naming what was found and what was expected."""
    expected = (f"one float32 image input [N,{','.join(map(str, sample_shape))}] (NCHW) or NHWC, and either "
                f"{TF_ARGMAX} (int64 [N]) / {TF_SOFTMAX} (float32 [N,1001], class 0 the background) as in the "
                f"MLPerf resnet50_v1.onnx, or one float32 [N,{classes}] score output as torchvision's")
    what = f"ResNet-50 {size}"
    if len(sig.inputs) != 1:
        raise modelfile.unrecognised(sig, what, expected)
    x = sig.inputs[0]
    c, h, w = sample_shape
    layout = _layout(x.shape, c, h, w)
    if x.dtype != "float32" or layout is None:
        raise modelfile.unrecognised(sig, what, expected)
    found = sig.describe()
    argmax, softmax = sig.output(TF_ARGMAX), sig.output(TF_SOFTMAX)
    if size == "reference" and (argmax is not None or softmax is not None):
        if argmax is not None and argmax.dtype.startswith("int") and argmax.rank == 1:
            return Interface(f"MLPerf resnet50_v1.onnx (TensorFlow ResNet-50 v1.5, {layout}, 1001 classes, "
                             f"reading {TF_ARGMAX})", "mlperf-onnx", layout, TF_ARGMAX, True, 1, 1001, found)
        if softmax is not None and softmax.rank == 2 and (not isinstance(softmax.shape[1], int)
                                                          or softmax.shape[1] == 1001):
            return Interface(f"MLPerf resnet50_v1.onnx (TensorFlow ResNet-50 v1.5, {layout}, 1001 classes, "
                             f"reading {TF_SOFTMAX})", "mlperf-onnx", layout, TF_SOFTMAX, False, 1, 1001, found)
        raise modelfile.unrecognised(sig, what, expected)
    scores = [o for o in sig.outputs if o.dtype == "float32" and o.rank == 2]
    if len(sig.outputs) == 1 and scores and scores[0].shape[1] == classes:
        base = TORCHVISION if size == "reference" else own_interface(size, classes)
        return Interface(f"{base.name}, {layout}" if layout != "NCHW" else base.name, base.preprocessing, layout,
                         scores[0].name, False, 0, classes, found)
    if size == "reference" and len(sig.outputs) == 1 and scores and scores[0].shape[1] == 1001:
        raise modelfile.unrecognised(sig, what, expected, "a 1001-class ONNX is served as MLPerf's resnet50_v1.onnx: "
                                     f"its outputs must be named {TF_ARGMAX} and/or {TF_SOFTMAX}")
    raise modelfile.unrecognised(sig, what, expected)


def _layout(shape: tuple, c: int, h: int, w: int) -> str | None:
    """NCHW or NHWC from a 4-D input shape whose sizes are fixed or symbolic (never both readings at once)."""
    if len(shape) != 4:
        return None

    def fits(got, want) -> bool:
        return not isinstance(got, int) or got == want
    nchw = fits(shape[1], c) and fits(shape[2], h) and fits(shape[3], w)
    nhwc = fits(shape[1], h) and fits(shape[2], w) and fits(shape[3], c)
    if nchw and (not nhwc or shape[1] == c):
        return "NCHW"
    if nhwc:
        return "NHWC"
    return None


# ------------------------------------------------------------------------------------------ pre-processing
def mlperf_onnx_image(path: str | Path, size: int = 224, layout: str = "NCHW") -> np.ndarray:
    """The reference's ``pre_process_vgg`` for one image file: float32 ``[3, 224, 224]`` (or HWC)."""
    img = cvimage.imread_rgb(path)
    h, w = img.shape[:2]
    short = int(100.0 * size / CROP_PERCENT)
    if h > w:
        nw, nh = short, int(short * h / w)
    else:
        nh, nw = short, int(short * w / h)
    img = cvimage.resize_area(img, nw, nh)
    top, left = int((nh - size) / 2), int((nw - size) / 2)
    img = img[top:top + size, left:left + size].astype(np.float32) - VGG_MEANS
    return np.ascontiguousarray(img.transpose(2, 0, 1) if layout == "NCHW" else img)


def torchvision_image(path: str | Path, size: int = 224, resize: int = 256, layout: str = "NCHW") -> np.ndarray:
    """The reference's ``pre_process_imagenet_pytorch`` for one image file: float32 ``[3, 224, 224]``."""
    from PIL import Image

    from mlbench.benchmarks.resnet50.data import eval_transform

    x = eval_transform(size, resize)(Image.fromarray(cvimage.imread_rgb(path))).numpy()
    return np.ascontiguousarray(x.transpose(1, 2, 0) if layout == "NHWC" else x)


def image_preprocessor(interface: Interface, size: int = 224, resize: int = 256):
    """``path -> sample`` for a reference-size interface."""
    if interface.preprocessing == "mlperf-onnx":
        return lambda p: mlperf_onnx_image(p, size, interface.layout)
    return lambda p: torchvision_image(p, size, resize, interface.layout)


# ------------------------------------------------------------------------------------------ post-processing
def classes_of(outputs, interface: Interface) -> np.ndarray:
    """The ImageNet class (0-999) of each sample, int32, from the outputs the backend fetched (the interface's
    output first)."""
    out = np.asarray(outputs[0])
    pred = out.reshape(len(out), -1)[:, 0] if interface.output_is_class else out.argmax(axis=1)
    return np.ascontiguousarray((pred - interface.offset).astype(np.int32))
