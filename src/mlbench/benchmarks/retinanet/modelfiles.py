"""The RetinaNet model files MLPerf publishes, recognised from the file, with the reference's pre- and
post-processing (mlcommons/inference ``vision/classification_and_detection``: README's model table, ``main.py``
profiles ``retinanet-pytorch`` and ``retinanet-onnxruntime``, ``dataset.pre_process_openimages_retinanet``,
``openimages.PostProcessOpenImagesRetinanet``; the files come from mlcommons/training's RetinaNet).

- ``resnext50_32x4d_fpn.onnx`` (mAP 0.3757): the whole detector exported at opset 13, transform, NMS and all.
  Input ``images`` float32 ``[1, 3, 800, 800]`` (0-1 RGB; the model normalises), outputs ``boxes`` float32
  ``[K, 4]`` (x0, y0, x1, y1 in the 800x800 input's pixels), ``scores`` float32 ``[K]`` (descending),
  ``labels`` int64 ``[K]`` (the category ids of OpenImages-MLPerf), for one image per run. The reference
  keeps detections scoring at least 0.05 and scales boxes back to the original image.
- ``resnext50_32x4d_fpn.pth`` (mAP 0.3755): the same detector as a whole pickled ``nn.Module`` (the reference
  loads it with ``torch.load(weights_only=False)``). mlbench reads its tensors without running the file's code
  (:func:`mlbench.inference.modelfile.read_pickled_module`) into torchvision's RetinaNet (older key names are
  renamed by torchvision as it loads), which then runs as mlbench's own network + decoding.

Pre-processing for both (``pre_process_openimages_retinanet``): decode to RGB, float32, OpenCV's INTER_LINEAR
resize to 800x800, divide by 255, NCHW. A state dict (an mlbench or MLPerf training checkpoint) and mlbench's
own ONNX export (two outputs: class logits and box regression) are served as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlbench.data import cvimage
from mlbench.inference import modelfile

DETECTION_OUTPUTS = ("boxes", "scores", "labels")  # the order the task reads them in (fetched by name)
SCORE_THRESHOLD = 0.05  # PostProcessOpenImagesRetinanet(score_threshold=0.05)


@dataclass(frozen=True)
class Interface:
    """``kind``: "network" (class logits and box regression, decoded by mlbench) or "detections" (the whole
    detector in the file: boxes, scores, labels for one image per run)."""

    name: str
    kind: str
    found: str = ""

    def info(self) -> dict:
        pre = ("the MLPerf reference's (pre_process_openimages_retinanet): OpenCV INTER_LINEAR resize to the model "
               "size, 0-1 RGB")
        return {"interface": self.name, "pre_processing": pre, "outputs": list(DETECTION_OUTPUTS)
                if self.kind == "detections" else ["class logits", "box regression"],
                **({"found": self.found} if self.found else {})}


NETWORK = Interface("RetinaNet network (torchvision layout: a state dict, the MLPerf .pth, or mlbench's ONNX "
                    "export), decoded by mlbench", "network")


def recognise_onnx(sig: modelfile.OnnxSignature, what: str, image_size: int, num_classes: int) -> Interface:
    """The interface of an ONNX file for RetinaNet, or the ConfigError naming what was found and expected."""
    expected = (f"one float32 image input [N,3,{image_size},{image_size}] and either the outputs boxes [K,4], "
                "scores [K], labels int64 [K] of MLPerf's resnext50_32x4d_fpn.onnx, or the two outputs of mlbench's "
                f"export (class logits [N,A,{num_classes}] and box regression [N,A,4])")
    if len(sig.inputs) != 1:
        raise modelfile.unrecognised(sig, what, expected)
    x = sig.inputs[0]
    size_ok = x.rank == 4 and all(not isinstance(d, int) or d == want for d, want in
                                  zip(x.shape[1:], (3, image_size, image_size)))
    if x.dtype != "float32" or not size_ok:
        raise modelfile.unrecognised(sig, what, expected)
    outs = {o.name: o for o in sig.outputs}
    if set(DETECTION_OUTPUTS) <= set(outs):
        b, s, lab = (outs[n] for n in DETECTION_OUTPUTS)
        if b.rank == 2 and s.rank == 1 and lab.rank == 1 and lab.dtype.startswith("int") and (
                not isinstance(b.shape[1], int) or b.shape[1] == 4):
            return Interface(f"MLPerf resnext50_32x4d_fpn.onnx (the whole detector; one image per run, reading "
                             f"{', '.join(DETECTION_OUTPUTS)})", "detections", sig.describe())
    if len(sig.outputs) == 2 and all(o.rank == 3 and o.dtype == "float32" for o in sig.outputs) and \
            sig.outputs[0].shape[2] == num_classes and sig.outputs[1].shape[2] == 4:
        return Interface("mlbench's RetinaNet export (class logits, box regression), decoded by mlbench", "network",
                         sig.describe())
    raise modelfile.unrecognised(sig, what, expected)


def reference_image(path: str | Path, size: int = 800) -> np.ndarray:
    """The reference's ``pre_process_openimages_retinanet`` for one image: float32 ``[3, size, size]`` in 0-1."""
    img = cvimage.resize_linear(cvimage.imread_rgb(path).astype(np.float32), size, size)
    img /= 255.0
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def detection_rows(outputs, scale: np.ndarray, categories: np.ndarray | None = None) -> np.ndarray:
    """One image's ``[boxes, scores, labels]`` -> rows ``[x0, y0, x1, y1, score, category]`` float32 in the
    original image's pixels (``scale``: ``[w, h, w, h]`` / model size), detections scoring under 0.05 dropped;
    ``categories`` maps a label to its category id (None: the label is the id, as in the reference)."""
    boxes, scores, labels = (np.asarray(o) for o in outputs[:3])
    keep = scores >= SCORE_THRESHOLD
    rows = np.empty((int(keep.sum()), 6), np.float32)
    rows[:, :4] = boxes[keep].reshape(-1, 4) * scale
    rows[:, 4] = scores[keep]
    lab = labels[keep].astype(np.int64)
    rows[:, 5] = lab if categories is None else categories[np.clip(lab, 0, len(categories) - 1)]
    return rows
