"""Mask R-CNN inference (``mlbench infer maskrcnn``): open division, MLPerf Inference has no Mask R-CNN.

Samples are the validation images resized to the model's square input (``input_shape``), 0-1 floats, as for
RetinaNet; the reference uses 800x800 (the training reference keeps the aspect ratio: a deviation that batching
needs, stated in every result by the open division). The backend runs the whole two-stage network (transform,
backbone, RPN, RoI box and mask heads) and returns fixed-shape, padded outputs per image: boxes ``[D, 4]`` in the
input's pixels, scores ``[D]``, labels ``[D]`` (0 = padding) and the heads' 28x28 mask probabilities
``[D, 28, 28]`` (D = detections per image). Pasting each mask into its box at the original image's size,
thresholding at 0.5 and RLE-encoding run afterwards on the CPU (``host_postprocess``: two SUT workers).

Each sample's logged response is UTF-8 JSON (uint8 bytes): a list of ``[x, y, w, h, score, category_id, rle]``
in the original image's pixels. Accuracy scores box and mask mAP@[.5:.95] with pycocotools (``bbox`` and
``segm``) and reports both; the one compared with the target is the mask mAP (``task.metric = "segm_mAP"``).

Models: mini/tiny use the checkpoint of ``mlbench train maskrcnn --size mini|tiny`` (cached; trained first when
missing). Reference needs ``--weights`` (a state dict of this Mask R-CNN with 81 classes, e.g. the checkpoint.pt
of a reference training run); ``--weights random`` measures throughput only. The pytorch backend is the tested
one; ONNX export of the two-stage network (data-dependent shapes inside) is not supported by mlbench yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlbench.benchmarks.maskrcnn import data as mdata
from mlbench.benchmarks.maskrcnn import mask_map
from mlbench.data import download
from mlbench.definition import Benchmark
from mlbench.detection.coco_data import CocoDetection, image_store
from mlbench.errors import MlbenchError
from mlbench.finite import require_finite
from mlbench.inference.models import WEIGHTS_HINT, find_weights, load_weights, random_weights
from mlbench.inference.sample_store import ArrayStore
from mlbench.inference.task import TaskOptions


class MaskRCNNCore(nn.Module):
    """A Mask R-CNN whose output is padded to fixed shapes: 0-1 images ``[N, 3, S, S]`` -> (boxes ``[N, D, 4]``,
    scores ``[N, D]``, labels ``[N, D]`` as float, 0 for padding, mask probabilities ``[N, D, M, M]``)."""

    def __init__(self, net: nn.Module, detections: int):
        super().__init__()
        self.net, self.detections = net, detections

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        net, d = self.net, self.detections
        images, _ = net.transform(list(x))
        feats = net.backbone(images.tensors)
        proposals, _ = net.rpn(images, feats)
        dets, _ = net.roi_heads(feats, proposals, images.image_sizes)
        # back to the input's pixels when the transform resized (the light models' fixed size does not)
        scale = torch.tensor([x.shape[-1] / images.image_sizes[0][1], x.shape[-2] / images.image_sizes[0][0]] * 2,
                             device=x.device)
        m = 2 * net.roi_heads.mask_roi_pool.output_size[0]  # the mask head upsamples its RoIs twice
        n = len(dets)
        boxes, scores = x.new_zeros((n, d, 4)), x.new_zeros((n, d))
        labels, masks = x.new_zeros((n, d)), x.new_zeros((n, d, m, m))
        for i, det in enumerate(dets):
            k = min(d, len(det["scores"]))
            boxes[i, :k] = det["boxes"][:k] * scale
            scores[i, :k] = det["scores"][:k]
            labels[i, :k] = det["labels"][:k].to(x.dtype)
            if k:
                masks[i, :k] = det["masks"][:k, 0]
        return boxes, scores, labels, masks


def build_task(bench: Benchmark, opts: TaskOptions) -> MaskRCNNTask:
    return MaskRCNNTask(bench, opts)


class MaskRCNNTask:
    metric = "segm_mAP"  # compared with the target; bbox_mAP is reported beside it
    response_dtype = "uint8"  # UTF-8 JSON per sample (variable-length RLE masks)
    host_postprocess = True  # mask pasting and RLE encoding on the CPU
    # see task.InferenceTask: the model's second stage runs on however many boxes the first kept
    cuda_graphs_unsupported = ("its detector keeps a different number of boxes per image (NMS), shapes a graph "
                               "cannot replay")

    def __init__(self, bench: Benchmark, opts: TaskOptions):
        self.bench, self.opts = bench, opts
        self.size = bench.input_shape[-1]
        self._store: ArrayStore | None = None
        self._index: mdata.MaskCocoIndex | None = None

    # ------------------------------------------------------------------ data
    def dataset(self) -> ArrayStore:
        if self._store is None:
            root = mdata.data_root(self.bench, self.opts.data_dir)
            index = mdata.load_index(self.bench, root, "eval")
            ds = mdata.MaskDataset(index)

            def image(i: int) -> torch.Tensor:
                return CocoDetection.__getitem__(ds, i)[0]  # the image only, no masks

            self._index = index
            self._store = image_store(self.bench, self.opts, index, image, self.size)
        return self._store

    # ------------------------------------------------------------------ outputs
    def postprocess(self, outputs: Sequence[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        """Per sample: masks pasted into the original image, binarised, RLE-encoded; JSON records as bytes."""
        from torchvision.models.detection.roi_heads import paste_masks_in_image

        store = self.dataset()
        cats = self._index.label_to_cat
        threshold = self.bench.hparams["mask_threshold"]
        boxes, scores, labels, masks = (torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in outputs[:4])
        responses = []
        for i, idx in enumerate(indices):
            _, w, h = store.label(int(idx))
            keep = labels[i] > 0
            b = boxes[i][keep] * torch.tensor([w / self.size, h / self.size] * 2)
            records: list = []
            if len(b):
                pasted = paste_masks_in_image(masks[i][keep][:, None], b, (int(h), int(w)))[:, 0] > threshold
                rles = mask_map.encode(pasted.numpy())
                xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()
                for box, s, lab, rle in zip(xywh, scores[i][keep].tolist(), labels[i][keep].tolist(), rles):
                    c = int(lab) - 1
                    records.append([*(round(v, 2) for v in box), round(s, 5), cats[c] if c < len(cats) else -1,
                                    rle["counts"]])
            responses.append(np.frombuffer(json.dumps(records).encode(), dtype=np.uint8))
        return responses

    def accuracy(self, responses: dict[int, bytes], store: ArrayStore) -> dict[str, float]:
        """Box and mask mAP (pycocotools ``bbox`` and ``segm``) over the images the responses belong to."""
        if not responses:
            return {"segm_mAP": 0.0, "bbox_mAP": 0.0, "samples": 0}
        dets, ids = [], []
        for i, raw in responses.items():
            image_id, w, h = store.label(int(i))
            ids.append(image_id)
            records = json.loads(bytes(raw).decode())
            require_finite(np.asarray([r[:6] for r in records], dtype=np.float64),
                           f"values of the detections of image {image_id} (boxes, scores)")
            for x, y, bw, bh, s, cat, counts in records:
                dets.append({"image_id": image_id, "category_id": int(cat), "bbox": [x, y, bw, bh], "score": s,
                             "segmentation": {"size": [int(h), int(w)], "counts": counts}})
        self.dataset()
        return {**mask_map.score(self._index.raw, dets, ids), "samples": len(ids)}

    # ------------------------------------------------------------------ model
    def model(self) -> nn.Module:
        from mlbench.benchmarks.maskrcnn.model import build_model

        net = build_model(self.bench, backbone_weights=False)  # the full weights below replace the backbone's
        if not random_weights(self.bench, self.opts):
            load_weights(net, self._weights(), what=f"Mask R-CNN {self.bench.size}", hint=WEIGHTS_HINT)
        return MaskRCNNCore(net.eval(), self.bench.hparams["detections_per_img"]).eval()

    def model_id(self) -> str:
        return "random" if random_weights(self.bench, self.opts) else download.sha256_file(self._weights())[:12]

    def _weights(self) -> Path:
        return find_weights(self.bench, self.opts, files=".pth/.pt", reference=self._reference_weights)

    def _reference_weights(self) -> Path:
        raise MlbenchError("Mask R-CNN reference inference needs trained weights",
                           "pass --weights FILE (a Mask R-CNN ResNet-50 FPN state dict with 81 classes, e.g. the "
                           "checkpoint.pt of `mlbench train maskrcnn --size reference`), or --weights random "
                           "for throughput only")
