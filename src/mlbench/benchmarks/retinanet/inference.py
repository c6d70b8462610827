"""RetinaNet inference (``mlbench infer retinanet``): the task of :mod:`mlbench.inference.task`.

The backends run the network only: normalisation, backbone, FPN and head, with fixed-shape outputs
(class logits ``[N, anchors, classes]`` and box deltas ``[N, anchors, 4]``), which exports to ONNX and
batches. Box decoding, score threshold, top-k and NMS then run once, the same for every backend, for the
whole batch at once (:mod:`.decode`: torchvision's RetinaNet post-processing without its per-image loop;
ONNX Runtime would need a hand-built NMS graph and would then not match PyTorch). Samples are the validation
images resized to the model's square input, 0-1 floats, as the training evaluation does.

Each sample's logged response is float32 rows ``[x0, y0, x1, y1, score, category_id]`` in the original
image's pixels; accuracy is COCO box mAP@[.5:.95] with pycocotools over the scored images.

Models: mini/tiny use the checkpoint of ``mlbench train retinanet --size mini|tiny`` (cached; trained first
when missing). Reference needs ``--weights``: MLPerf's ``resnext50_32x4d_fpn.pth`` (a whole pickled module, read
without running its code) or ``resnext50_32x4d_fpn.onnx`` (the whole detector: boxes, scores and labels of one
image per run, served as the reference serves it), or a state dict of torchvision's RetinaNet ResNeXt50 FPN
with 264 classes (an mlbench training checkpoint, or the MLPerf training reference's, whose dict holds
``model``); see :mod:`.modelfiles`. The reference size's samples are the MLPerf reference's pre-processing
(OpenCV-style decode and bilinear resize to 800x800). ``--weights random`` measures throughput only (its
accuracy is meaningless).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlbench.benchmarks.retinanet import decode, modelfiles
from mlbench.benchmarks.retinanet.workload import data_root
from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.detection import coco_data, coco_map
from mlbench.detection.coco_data import image_store
from mlbench.errors import MlbenchError
from mlbench.finite import require_finite
from mlbench.inference import modelfile
from mlbench.inference.models import WEIGHTS_HINT, find_weights, load_weights, random_weights
from mlbench.inference.sample_store import ArrayStore
from mlbench.inference.task import TaskOptions


class DetectorCore(nn.Module):
    """A RetinaNet's network part: 0-1 images ``[N, 3, S, S]`` -> (class logits, box regression)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.backbone, self.head = net.backbone, net.head
        self.register_buffer("mean", torch.tensor(net.transform.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(net.transform.image_std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = list(self.backbone((x - self.mean) / self.std).values())
        out = self.head(feats)
        return out["cls_logits"], out["bbox_regression"]


def build_task(bench: Benchmark, opts: TaskOptions) -> RetinaNetTask:
    return RetinaNetTask(bench, opts)


class RetinaNetTask:
    metric = "mAP"
    response_dtype = "float32"
    host_postprocess = True  # decoding and NMS on the CPU: two SUT workers overlap it with the network

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self.size = bench.hparams["image_size"]
        self._store: ArrayStore | None = None
        self._index: coco_data.CocoIndex | None = None
        self._post: nn.Module | None = None  # a CPU RetinaNet whose anchors and box coder decode outputs
        self._anchors: tuple[torch.Tensor, list[int]] | None = None
        self._interface: modelfiles.Interface | None = None
        self._table_cache: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ model file
    def interface(self) -> modelfiles.Interface:
        """How the model file is fed and read, recognised from the file (ConfigError when unknown)."""
        if self._interface is None:
            w = self.opts.weights
            if w and str(w).endswith(".onnx"):
                self._interface = modelfiles.recognise_onnx(modelfile.signature(w), f"RetinaNet {self.bench.size}",
                                                            self.size, self.bench.num_classes)
            else:
                self._interface = modelfiles.NETWORK
        return self._interface

    @property
    def detections_in_file(self) -> bool:
        return self.interface().kind == "detections"

    @property
    def onnx_outputs(self) -> list[str] | None:
        """The ONNX outputs the onnxruntime backend fetches (the whole detector's, by name), else all."""
        return list(modelfiles.DETECTION_OUTPUTS) if self.detections_in_file else None

    @property
    def max_batch_size(self) -> int | None:
        """The whole-detector ONNX file runs one image at a time (its outputs have no batch dimension)."""
        return 1 if self.detections_in_file else None

    max_batch_reason = "MLPerf's resnext50_32x4d_fpn.onnx returns the detections of one image"

    def info(self) -> dict:
        return {"model_file": {**self.interface().info(), "file": self.opts.weights}}

    # ------------------------------------------------------------------ data
    def dataset(self) -> ArrayStore:
        if self._store is None:
            self.interface()  # an unknown model file fails here, before any image is read
            root = data_root(self.bench, self.opts.data_dir)
            labels, images = coco_data.split_paths(root, coco_data.SPLITS["eval"], self.bench.hparams["labels_file"])
            index = coco_data.CocoIndex(labels, images, prepare=f"mlbench data prepare {self.bench.name}")
            ds = coco_data.CocoDetection(index)
            self._index = index
            if self.bench.is_reference:  # the MLPerf reference's pre-processing, from the image file
                files = [images / im["file_name"] for im in index.images]
                self._store = image_store(self.bench, self.opts, index, None, self.size,
                                          read=lambda i: modelfiles.reference_image(files[i], self.size))
            else:
                self._store = image_store(self.bench, self.opts, index, lambda i: ds[i][0], self.size)
        return self._store

    # ------------------------------------------------------------------ outputs
    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        """Decode, threshold and NMS for the whole batch at once (:mod:`.decode`, the result of
        torchvision's RetinaNet post-processing); rows [x0, y0, x1, y1, score, category] per sample. A file
        holding the whole detector gives one image's detections, kept from a score of 0.05 as the reference does."""
        if self.detections_in_file:
            if len(indices) != 1:
                raise ValueError(f"the whole-detector model file gives one image's detections, not {len(indices)}")
            return [modelfiles.detection_rows(outputs, self._tables()[0][int(indices[0])])]
        if self._post is None:
            self._prepare_decode()
        cls, reg = (torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in outputs[:2])
        anchors, per_level = self._anchor_grid(cls.shape[1])
        with torch.no_grad():
            boxes, scores, labels, counts = decode.batch_detections(cls, reg, anchors, per_level, self._settings,
                                                                    self._post.box_coder)
        image = torch.repeat_interleave(torch.as_tensor(np.asarray(indices, dtype=np.int64)),
                                        torch.tensor(counts, dtype=torch.int64))
        rows = torch.empty((len(scores), 6), dtype=torch.float32)
        rows[:, :4] = boxes * self._scale[image]  # back to the original image's pixels
        rows[:, 4] = scores
        rows[:, 5] = self._categories[labels]
        return np.split(rows.numpy(), np.cumsum(counts)[:-1])

    def _prepare_decode(self) -> None:
        """A CPU RetinaNet for its anchors and box coder (the backend's model may be on a GPU, or be ONNX),
        and per-sample lookup tables: box scale to the original image, label to COCO category."""
        from mlbench.benchmarks.retinanet.model import build_model

        net = build_model(self.bench, backbone_weights=False).eval()
        scale, categories = self._tables()
        self._scale, self._categories = torch.from_numpy(scale), torch.from_numpy(categories)
        self._settings = decode.DecodeSettings.of(net, self.size)
        self._post = net

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Per sample index, ``[w, h, w, h] / size`` (back to the original image's pixels); per label, its COCO
        category (-1 for a label the data lacks: never a match). Float32."""
        if self._table_cache is None:
            store = self.dataset()
            wh = np.asarray([store.label(i)[1:] for i in range(store.total_count)], dtype=np.float32).reshape(-1, 2)
            cats = self._index.label_to_cat
            self._table_cache = (np.ascontiguousarray(np.tile(wh / self.size, (1, 2)), dtype=np.float32),
                                 np.asarray([cats[c] if c < len(cats) else -1 for c in range(self.bench.num_classes)],
                                            dtype=np.float32))
        return self._table_cache

    def _anchor_grid(self, total: int) -> tuple[torch.Tensor, list[int]]:
        """The anchors of one input (fixed size) and how many fall on each pyramid level."""
        if self._anchors is None:
            from torchvision.models.detection.image_list import ImageList

            net = self._post
            x = torch.zeros(1, 3, self.size, self.size)
            with torch.no_grad():
                feats = list(net.backbone(x).values())
            anchors = net.anchor_generator(ImageList(x, [(self.size, self.size)]), feats)[0]
            a = net.anchor_generator.num_anchors_per_location()[0]
            self._anchors = (anchors, [f.shape[-2] * f.shape[-1] * a for f in feats])
        if self._anchors[0].shape[0] != total:
            raise MlbenchError(f"the model produced {total} anchors, expected {self._anchors[0].shape[0]}",
                               "the weights or the ONNX file belong to another RetinaNet size")
        return self._anchors

    def accuracy(self, responses: dict[int, bytes], store: ArrayStore) -> dict[str, float]:
        """COCO box mAP of the logged detections over the images they belong to."""
        if not responses:
            return {"mAP": 0.0, "samples": 0}
        dets, ids = [], []
        for i, raw in responses.items():
            image_id = store.label(int(i))[0]
            ids.append(image_id)
            rows = np.frombuffer(raw, dtype=np.float32).reshape(-1, 6)
            require_finite(rows, f"values of the detections of image {image_id} (boxes, scores)")
            for x0, y0, x1, y1, score, cat in rows.tolist():
                dets.append({"image_id": image_id, "category_id": int(cat), "bbox": [x0, y0, x1 - x0, y1 - y0],
                             "score": score})
        self.dataset()
        m = coco_map.box_map(self._index.raw, dets, image_ids=ids)
        return {**m, "samples": len(ids)}

    # ------------------------------------------------------------------ model
    def model(self) -> nn.Module:
        from mlbench.benchmarks.retinanet.model import build_model

        net = build_model(self.bench, backbone_weights=False)  # the full weights below replace the backbone's
        if not random_weights(self.bench, self.opts):
            hint = (f"pass MLPerf's resnext50_32x4d_fpn.pth or a RetinaNet ResNeXt50 FPN state dict; {WEIGHTS_HINT}"
                    if self.bench.is_reference else WEIGHTS_HINT)
            load_weights(net, self._weights(), what=f"RetinaNet {self.bench.size}", hint=hint, modules=True)
        return DetectorCore(net.eval()).eval()

    def model_id(self) -> str:
        return "random" if random_weights(self.bench, self.opts) else download.sha256_file(self._weights())[:12]

    def _weights(self) -> Path:
        return find_weights(self.bench, self.opts, files=".pth/.pt", reference=self._reference_weights)

    def _reference_weights(self) -> Path:
        raise MlbenchError("RetinaNet reference inference needs trained weights",
                           "pass --weights FILE (a RetinaNet ResNeXt50 FPN state dict, e.g. the checkpoint.pt "
                           "of `mlbench train retinanet --size reference`), or --weights random for "
                           "throughput only")
