"""RetinaNet detections for a whole batch at once: the same result as torchvision's
``RetinaNet.postprocess_detections``, without its loop over images and levels.

torchvision decodes image by image: per pyramid level it takes the scores above ``score_thresh``, keeps the
``topk_candidates`` best, decodes their boxes, then runs class-wise NMS per image and keeps the
``detections_per_img`` best. Here the selection and decoding run on the whole batch: the threshold on all
logits at once (when no image has more candidates than the top-k keeps, which is the usual case, that is the
whole selection; otherwise top-k per image and level in one call each), one box decode for all candidates.
NMS stays per image, torchvision's ``batched_nms`` (one call over the batch would cost quadratically more),
so the kept detections are torchvision's, in decreasing score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# torchvision's batched_nms: above this many coordinates (CPU, GPU) it runs NMS class by class, without shifts
SHIFT_LIMIT = {"cpu": 4000, "cuda": 100_000}


@dataclass(frozen=True)
class DecodeSettings:
    image_size: int  # the square input the boxes are clipped to
    score_thresh: float
    nms_thresh: float
    topk_candidates: int
    detections_per_img: int

    @classmethod
    def of(cls, net: torch.nn.Module, image_size: int) -> DecodeSettings:
        """The settings of a torchvision RetinaNet."""
        return cls(image_size, float(net.score_thresh), float(net.nms_thresh), int(net.topk_candidates),
                   int(net.detections_per_img))


def batch_detections(cls_logits: torch.Tensor, box_regression: torch.Tensor, anchors: torch.Tensor,
                     per_level: Sequence[int], s: DecodeSettings, box_coder: Any,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Detections of a batch: (boxes [M, 4], scores [M], labels [M], detections per image).

    ``cls_logits`` [N, A, C] and ``box_regression`` [N, A, 4] are the head's outputs for N images of the
    same size, ``anchors`` [A, 4] the anchors of one image, ``per_level`` how many of them each pyramid level
    has, ``box_coder`` the network's (torchvision's ``BoxCoder`` decodes any number of boxes at once).
    The rows of image i are the i-th block of ``counts`` rows, in decreasing score."""
    from torchvision.ops import batched_nms, nms

    n, _, classes = cls_logits.shape
    # A logit above this has a score above the threshold (less a margin: the exact test is on the scores).
    floor = math.log(s.score_thresh / (1 - s.score_thresh)) - 1e-4 if 0 < s.score_thresh < 1 else -math.inf
    above = cls_logits.reshape(n, -1) > floor
    if int(above.sum(1).max()) <= s.topk_candidates:
        # No level of any image has more candidates than the top-k keeps: all of them, no top-k needed
        # (the usual case; NMS orders them by score). nonzero() is row-major: by image, levels in order.
        image, flat = above.nonzero(as_tuple=True)
        score = torch.sigmoid(cls_logits.reshape(n, -1)[image, flat])
        keep = score > s.score_thresh
        image, score, flat = image[keep], score[keep], flat[keep]
    else:
        image, score, flat = _topk_candidates(cls_logits, per_level, s, floor)
    anchor = torch.div(flat, classes, rounding_mode="floor")
    label = flat % classes
    box = box_coder.decode_single(box_regression[image, anchor], anchors[anchor]).clamp(min=0, max=s.image_size)
    # NMS image by image (one call over the whole batch costs quadratically more: the CPU kernel compares
    # every pair of kept boxes, whatever their image), class-wise as torchvision's batched_nms does it: an
    # image's boxes shifted by label x (the image's largest coordinate + 1) so that no two labels overlap, the
    # shifts made for the whole batch at once; an image with more boxes than batched_nms shifts (CPU: 1,000)
    # goes through batched_nms itself, which then runs NMS class by class.
    counts = torch.bincount(image, minlength=n)
    top = torch.zeros(n, dtype=box.dtype, device=box.device).scatter_reduce(0, image, box.amax(1), "amax", include_self=False)
    shifted = box + (label.to(box) * (top + 1)[image])[:, None]
    limit = SHIFT_LIMIT.get(box.device.type, SHIFT_LIMIT["cuda"])
    keep, per_image, begin = [], [], 0
    for count in counts.tolist():
        end = begin + count
        if count * 4 > limit:
            k = batched_nms(box[begin:end], score[begin:end], label[begin:end], s.nms_thresh)
        else:
            k = nms(shifted[begin:end], score[begin:end], s.nms_thresh)
        k = k[:s.detections_per_img]
        keep.append(k + begin)
        per_image.append(len(k))
        begin = end
    keep = torch.cat(keep)
    return box[keep], score[keep], label[keep], per_image


def _topk_candidates(cls_logits: torch.Tensor, per_level: Sequence[int], s: DecodeSettings, floor: float,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, score, index into the image's [A * C] logits) of the candidates, by image and level:
    per image and level the ``topk_candidates`` best scores above the threshold."""
    n, _, classes = cls_logits.shape
    scores, images, flat_idx = [], [], []
    start = 0
    for count in per_level:
        flat = cls_logits[:, start:start + count].reshape(n, -1)
        # top-k of the logits (the order of the scores), only as deep as any image has candidates
        k = min(s.topk_candidates, int((flat > floor).sum(1).max()))
        top, idx = flat.topk(k, dim=1)
        top = torch.sigmoid(top)
        keep = top > s.score_thresh
        images.append(torch.arange(n).unsqueeze(1).expand(n, k)[keep])
        scores.append(top[keep])
        flat_idx.append(idx[keep] + start * classes)
        start += count
    image, score, flat = torch.cat(images), torch.cat(scores), torch.cat(flat_idx)
    order = torch.sort(image, stable=True).indices  # by image, levels in order (torchvision's cat order)
    return image[order], score[order], flat[order]
