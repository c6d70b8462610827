"""The batched RetinaNet post-processing gives torchvision's detections exactly, image by image."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from mlbench.benchmarks.retinanet import decode, definition, model


def _torchvision(net, cls, reg, anchors, per_level, size):
    n = cls.shape[0]
    head = {"cls_logits": list(cls.split(per_level, 1)), "bbox_regression": list(reg.split(per_level, 1))}
    return net.postprocess_detections(head, [list(anchors.split(per_level))] * n, [(size, size)] * n)


def _anchors(net, size):
    x = torch.zeros(1, 3, size, size)
    feats = list(net.backbone(x).values())
    anchors = net.anchor_generator(ImageList(x, [(size, size)]), feats)[0]
    a = net.anchor_generator.num_anchors_per_location()[0]
    return anchors, [f.shape[-2] * f.shape[-1] * a for f in feats]


@pytest.mark.parametrize("bench", [definition.TINY, definition.MINI], ids=["tiny", "mini"])
@pytest.mark.parametrize("case", ["spread", "empty-image", "no-candidates", "many-candidates"])
def test_batch_detections_equal_torchvision(bench, case):
    torch.manual_seed(3)
    size = bench.hparams["image_size"]
    net = model.build_model(bench, backbone_weights=False).eval()
    anchors, per_level = _anchors(net, size)
    n, total, classes = 5, anchors.shape[0], bench.num_classes
    cls = torch.randn(n, total, classes) * 3 - 3  # some scores above 0.05, most below
    reg = torch.randn(n, total, 4) * 0.5
    settings = decode.DecodeSettings.of(net, size)
    if case == "empty-image":
        cls[1] = -20.0  # no score above the threshold in image 1
    elif case == "no-candidates":
        cls[:] = -20.0
    elif case == "many-candidates":  # every score above the threshold: top-k and the per-class NMS path
        cls = torch.rand(n, total, classes) * 4
        net.detections_per_img = 10_000
        settings = dataclasses.replace(settings, detections_per_img=10_000)
    with torch.no_grad():
        want = _torchvision(net, cls, reg, anchors, per_level, size)
        boxes, scores, labels, counts = decode.batch_detections(cls, reg, anchors, per_level, settings,
                                                                net.box_coder)
    assert counts == [len(d["scores"]) for d in want]
    if case == "empty-image":
        assert counts[1] == 0 and sum(counts) > 0
    if case == "no-candidates":
        assert sum(counts) == 0 and boxes.shape == (0, 4)
    start = 0
    for c, d in zip(counts, want):
        got = _rows(boxes[start:start + c], scores[start:start + c], labels[start:start + c])
        # the same detections; equal scores may come in another order, and the sigmoid of k logits or of
        # all of them may differ by an ulp (a vectorised tail)
        torch.testing.assert_close(got, _rows(d["boxes"], d["scores"], d["labels"]), rtol=0, atol=1e-5)
        assert torch.all(scores[start + 1:start + c] <= scores[start:start + c - 1]), "not in decreasing score"
        start += c


def _rows(boxes, scores, labels):
    """[label, x0, y0, x1, y1, score] rows in a canonical order."""
    rows = torch.cat([labels[:, None].to(boxes), boxes, scores[:, None]], 1).double()
    for col in reversed(range(6)):  # lexicographic: stable sorts from the last key to the first
        rows = rows[torch.sort(rows[:, col], stable=True).indices]
    return rows
