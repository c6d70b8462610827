"""RetinaNet training speed levers that keep the model, the loss and the timing of the MLPerf reference.

:class:`DetectorTrainer` is the training forward of a torchvision ``RetinaNet`` with the same inputs and
outputs (``trainer(images, targets) -> {"classification", "bbox_regression"}``) and the same loss values,
computed faster:

- anchor matching and the focal / regression losses run over the whole batch at once on the device
  (:func:`match` and :func:`losses`; torchvision loops over the images in Python, with a device sync per
  image in its degenerate-box check);
- the anchors are made once per input shape (every image has the model's fixed size) instead of per step;
- the model's transform (normalise, resize to the fixed size, scale the boxes) without torchvision's four
  waits for the device per image;
- frozen batch norm is folded: into the preceding convolution where that one is frozen too (exact up to
  rounding), else into a precomputed per-channel affine (the same arithmetic as ``FrozenBatchNorm2d``);
- channels_last input when the model's weights are channels_last (``--channels-last``); on CUDA cuDNN picks
  its fastest convolution algorithms for the static input size (``cudnn.benchmark``);
- ``--compile`` compiles backbone+head (static input: the fixed 800x800 size) and the loss (boxes padded to
  a few bucket sizes) instead of the whole model, whose per-image resize would recompile.

The wrapped detector keeps its parameters (the trainer shares the trainable ones), so checkpoints,
evaluation and inference see the plain torchvision model. What was chosen is recorded in result.json
(``speed``). ``MLBENCH_RETINANET_LEVERS=off`` trains the plain torchvision model instead.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

LEVERS_ENV = "MLBENCH_RETINANET_LEVERS"


def levers_enabled() -> bool:
    """The automatic levers are on unless ``$MLBENCH_RETINANET_LEVERS`` is off/0/false/no."""
    value = os.environ.get(LEVERS_ENV, "on").strip().lower()
    if value in ("", "on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    from mlbench.errors import ConfigError

    raise ConfigError(f"{LEVERS_ENV}={value!r} is not understood", f"set {LEVERS_ENV}=on or off (or unset it)")


# ---------------------------------------------------------------------------------------------- matching
def box_iou(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of ``boxes [B, M, 4]`` with ``anchors [A, 4]`` (xyxy): ``[B, M, A]``, torchvision's arithmetic (in the
    same dtypes: under autocast its anchors are bf16/fp16, upcast to fp32 as torchvision does)."""
    if anchors.dtype not in (torch.float32, torch.float64):
        anchors = anchors.float()
    if boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    area_b = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # [B, M]
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])  # [A]
    w = (torch.min(boxes[..., None, 2], anchors[:, 2]) - torch.max(boxes[..., None, 0], anchors[:, 0])).clamp(min=0)
    h = (torch.min(boxes[..., None, 3], anchors[:, 3]) - torch.max(boxes[..., None, 1], anchors[:, 1])).clamp(min=0)
    inter = w * h
    union = area_b[..., None] + area_a - inter
    return inter / union


#: images per chunk of :func:`match` keep its [images, boxes, anchors] temporaries near 2^28 elements
MATCH_CHUNK_ELEMENTS = 1 << 28


@torch.no_grad()
def match(anchors: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, high: float = 0.5, low: float = 0.4,
          allow_low_quality: bool = True) -> torch.Tensor:
    """torchvision's ``Matcher`` over a padded batch: for each image and anchor the index of its ground-truth
    box, -1 below ``low``, -2 between ``low`` and ``high``; with ``allow_low_quality`` each box keeps the anchors
    it overlaps most even when below ``high``. Images without boxes match nothing (-1). ``[B, A]`` int64.
    Large batches go in chunks of images (the same result, bounded temporaries)."""
    b, m = valid.shape
    step = max(1, MATCH_CHUNK_ELEMENTS // max(1, m * anchors.shape[0]))
    if b > step:
        return torch.cat([match(anchors, boxes[i:i + step], valid[i:i + step], high, low, allow_low_quality)
                          for i in range(0, b, step)])
    iou = box_iou(boxes, anchors)
    iou = torch.where(valid[..., None], iou, torch.full_like(iou, -1.0))  # padding never wins a maximum
    vals, matches = iou.max(dim=1)  # [B, A]
    all_matches = matches
    matches = torch.where(vals < low, torch.full_like(matches, -1),
                          torch.where(vals < high, torch.full_like(matches, -2), matches))
    if allow_low_quality:
        best_per_box = iou.max(dim=2, keepdim=True).values  # [B, M, 1]
        restore = ((iou == best_per_box) & valid[..., None]).any(dim=1)  # [B, A]
        matches = torch.where(restore, all_matches, matches)
    return matches


def pad_targets(targets: list[dict[str, torch.Tensor]], minimum: int = 8
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes ``[B, M, 4]``, labels ``[B, M]`` and a validity mask ``[B, M]``, M the next power of two at or
    above the most boxes in one image (at least ``minimum``): a few shapes, so that a compiled loss is reused.
    Padding boxes are ``[0, 0, 1, 1]`` (finite box-coder targets; they never match), padding labels -1. Nothing
    here waits for the device (no host-to-device copy of Python values)."""
    counts = [int(t["boxes"].shape[0]) for t in targets]
    m = max(minimum, 1 << max(0, max(counts, default=0) - 1).bit_length())
    device = targets[0]["boxes"].device
    pad_box = torch.zeros(m, 4, device=device)
    pad_box[:, 2:] = 1.0
    boxes = torch.stack([torch.cat([t["boxes"].float(), pad_box[:m - n]]) for t, n in zip(targets, counts)])
    labels = torch.stack([F.pad(t["labels"].to(torch.int64), (0, m - n), value=-1) for t, n in zip(targets, counts)])
    return boxes, labels, labels >= 0


# ---------------------------------------------------------------------------------------------- losses
def losses(cls_logits: torch.Tensor, bbox_regression: torch.Tensor, anchors: torch.Tensor, boxes: torch.Tensor,
           labels: torch.Tensor, matched: torch.Tensor, box_coder, loss_type: str = "l1",
           beta: float = 1.0) -> dict[str, torch.Tensor]:
    """torchvision's RetinaNet head losses over the whole batch: the sigmoid focal loss over anchors that are
    not between the thresholds and the box regression (``l1`` or ``smooth_l1``) over foreground anchors, each
    divided by the image's foreground count (at least 1), averaged over the images."""
    from torchvision.ops import sigmoid_focal_loss

    b, a, _ = cls_logits.shape
    fg = matched >= 0
    per_image_fg = fg.sum(dim=1).clamp(min=1)
    idx = matched.clamp(min=0)
    gt_labels = labels.gather(1, idx).clamp(min=0)  # background anchors may point at padding (-1)
    target = torch.zeros_like(cls_logits).scatter_(2, gt_labels[..., None], fg[..., None].to(cls_logits.dtype))
    focal = sigmoid_focal_loss(cls_logits, target, reduction="none").sum(dim=2)  # [B, A]
    focal = torch.where(matched != -2, focal, torch.zeros_like(focal))
    classification = (focal.sum(dim=1) / per_image_fg).sum() / b

    gt_boxes = boxes.gather(1, idx[..., None].expand(b, a, 4))
    reg_target = box_coder.encode_single(gt_boxes.reshape(-1, 4), anchors.repeat(b, 1)).reshape(b, a, 4)
    if loss_type == "l1":
        err = F.l1_loss(bbox_regression, reg_target, reduction="none")
    else:
        err = F.smooth_l1_loss(bbox_regression, reg_target, reduction="none", beta=beta)
    err = err.sum(dim=2)
    err = torch.where(fg, err, torch.zeros_like(err))
    regression = (err.sum(dim=1) / per_image_fg).sum() / max(1, b)
    return {"classification": classification, "bbox_regression": regression}


# ---------------------------------------------------------------------------------------------- frozen BN
class FrozenAffine(nn.Module):
    """``x * scale + bias`` with the scale and bias a ``FrozenBatchNorm2d`` computes on every call, made once
    (in fp32 as there: under autocast the result is fp32, as torchvision's)."""

    def __init__(self, bn: nn.Module):
        super().__init__()
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).detach().clone())
        self.register_buffer("bias", (bn.bias - bn.running_mean * scale).reshape(1, -1, 1, 1).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, x, self.scale)  # one pass over the activations instead of two


def _folded_conv(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A frozen ``conv`` followed by frozen ``bn`` as one frozen convolution."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    out = copy.deepcopy(conv)
    memory_format = torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) \
        and not conv.weight.is_contiguous() else torch.contiguous_format
    out.weight = nn.Parameter((conv.weight * scale.reshape(-1, 1, 1, 1)).detach()
                              .contiguous(memory_format=memory_format), requires_grad=False)
    out.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return out


def fold_frozen_bn(module: nn.Module) -> dict[str, int]:
    """Fold every ``FrozenBatchNorm2d`` of ``module`` in place: into the convolution before it when that one is
    frozen (names ``convK``/``bnK`` or consecutive in a Sequential, as torchvision's ResNets), else into a
    :class:`FrozenAffine`. Returns the counts of each."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    counts = {"into_frozen_conv": 0, "affine": 0}

    def frozen(conv: nn.Module) -> bool:
        return all(not p.requires_grad for p in conv.parameters(recurse=False))

    for parent in list(module.modules()):
        children = dict(parent.named_children())
        pairs: list[tuple[str, str]] = []
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs = [(names[i - 1], names[i]) for i in range(1, len(names))]
        else:
            pairs = [(f"conv{n[2:]}", n) for n in children if n.startswith("bn")]
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if not isinstance(bn, FrozenBatchNorm2d):
                continue
            if isinstance(conv, nn.Conv2d) and frozen(conv):
                setattr(parent, conv_name, _folded_conv(conv, bn))
                setattr(parent, bn_name, nn.Identity())
                counts["into_frozen_conv"] += 1
            else:
                setattr(parent, bn_name, FrozenAffine(bn))
                counts["affine"] += 1
        for name, child in parent.named_children():  # any left (not after a convolution)
            if isinstance(child, FrozenBatchNorm2d):
                setattr(parent, name, FrozenAffine(child))
                counts["affine"] += 1
    return counts


def _share_trainable(copy_: nn.Module, original: nn.Module) -> None:
    """Make the trainable parameters of ``copy_`` the very tensors of ``original`` (same structure)."""
    originals = dict(original.named_modules())
    for name, mod in copy_.named_modules():
        src = originals[name]
        for pname, p in list(mod._parameters.items()):
            if p is not None and p.requires_grad:
                mod._parameters[pname] = src._parameters[pname]


# ---------------------------------------------------------------------------------------------- trainer
class _Core(nn.Module):
    """Backbone and head: the part with a static input shape (what ``--compile`` compiles first)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor):
        features = self.backbone(x)
        features = list(features.values()) if isinstance(features, dict) else [features]
        out = self.head(features)
        return out["cls_logits"], out["bbox_regression"], features


class DetectorTrainer(nn.Module):
    """The training forward of a torchvision RetinaNet with the levers of this module (see its text)."""

    def __init__(self, detector: nn.Module, fold_bn: bool = True):
        super().__init__()
        self.detector = detector
        backbone = detector.backbone
        self.folded = {"into_frozen_conv": 0, "affine": 0}
        if fold_bn and _has_frozen_bn(backbone):
            backbone = copy.deepcopy(detector.backbone)
            _share_trainable(backbone, detector.backbone)
            self.folded = fold_frozen_bn(backbone)
        self.core = _Core(backbone, detector.head)
        weight = next((m.weight for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
        self.channels_last = weight is not None and weight.dim() == 4 and not weight.is_contiguous() and \
            weight.is_contiguous(memory_format=torch.channels_last)
        head = detector.head.regression_head
        self.loss_type = getattr(head, "_loss_type", "l1")
        self._anchors: dict[Any, torch.Tensor] = {}
        self._norm: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}
        self._run_core = self.core
        self._loss = losses
        self.compiled = False

    def compile_parts(self, **kwargs) -> None:
        """torch.compile backbone+head (static input) and the loss (boxes padded to buckets); the per-image
        resize of the model's transform and the matching stay eager."""
        if not hasattr(torch, "compile"):
            from mlbench.errors import ConfigError

            raise ConfigError(f"--compile needs torch >= 2.0 (this is {torch.__version__})", "drop --compile")
        self._run_core = torch.compile(self.core, **kwargs)
        self._loss = torch.compile(losses, dynamic=False, **kwargs)
        self.compiled = True

    def anchors(self, image_list, features: list[torch.Tensor]) -> torch.Tensor:
        """The anchors of one image (all images share the fixed input size), made once per shape and dtype
        by the model's own generator (so in the same dtype as torchvision makes them)."""
        key = (tuple(image_list.tensors.shape[-2:]), tuple(tuple(f.shape[-2:]) for f in features),
               features[0].dtype, features[0].device)
        got = self._anchors.get(key)
        if got is None:
            got = self._anchors[key] = self.detector.anchor_generator(image_list, features)[0]
        return got

    def prepare(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        """The model's transform (normalise, resize to the fixed size, batch; boxes scaled alike) with the same
        arithmetic as torchvision's ``GeneralizedRCNNTransform``, without its four waits for the device per
        image (it copies the mean, the std and two size ratios from Python values each time). Returns the
        image batch, its ``ImageList`` and the padded boxes and labels (see :func:`pad_targets`)."""
        from torchvision.models.detection.image_list import ImageList
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        t = self.detector.transform
        fixed = getattr(t, "fixed_size", None)
        if (type(t) is not GeneralizedRCNNTransform or fixed is None or getattr(t, "_skip_resize", False)
                or fixed[0] % t.size_divisible or fixed[1] % t.size_divisible):  # the general path
            image_list, targets = t(images, targets)
            return (image_list.tensors, image_list, *pad_targets(targets)[:2])
        h, w = fixed[1], fixed[0]
        first = images[0]
        key = (first.dtype, first.device)
        if key not in self._norm:
            self._norm[key] = (torch.as_tensor(t.image_mean, dtype=first.dtype, device=first.device)[:, None, None],
                               torch.as_tensor(t.image_std, dtype=first.dtype, device=first.device)[:, None, None])
        mean, std = self._norm[key]
        x = first.new_empty((len(images), first.shape[0], h, w))
        ratios = []
        for i, image in enumerate(images):
            if image.dim() != 3 or not image.is_floating_point():
                raise ValueError(f"images must be float tensors [C, H, W] in 0-1, got {image.dtype} {tuple(image.shape)}")
            t.torch_choice(t.min_size)  # torchvision draws one number per image here: the same random stream
            image = (image - mean) / std
            if tuple(image.shape[-2:]) != (h, w):
                image = F.interpolate(image[None], size=[h, w], mode="bilinear", align_corners=False)[0]
            x[i].copy_(image)
            # torchvision's ratios: float32 new size / float32 old size
            rh = float(torch.tensor(h, dtype=torch.float32) / torch.tensor(images[i].shape[-2], dtype=torch.float32))
            rw = float(torch.tensor(w, dtype=torch.float32) / torch.tensor(images[i].shape[-1], dtype=torch.float32))
            ratios.append((rw, rh, rw, rh))
        boxes, labels, _ = pad_targets(targets)
        scale = torch.tensor(ratios, dtype=torch.float32)
        if boxes.is_cuda:
            scale = scale.pin_memory().to(boxes.device, non_blocking=True)
        boxes = boxes * scale.to(boxes.device)[:, None, :]
        return x, ImageList(x, [(h, w)] * len(images)), boxes, labels

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        det = self.detector
        if not self.training:
            return det(images, targets)
        x, image_list, boxes, labels = self.prepare(images, targets)
        valid = labels >= 0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cls_logits, bbox_regression, features = self._run_core(x)
        anchors = self.anchors(image_list, features)
        matcher = det.proposal_matcher
        matched = match(anchors, boxes, valid, matcher.high_threshold, matcher.low_threshold,
                        matcher.allow_low_quality_matches)
        if self.loss_type not in ("l1", "smooth_l1"):  # IoU losses: torchvision's per-image code, our matching
            per_image = [{"boxes": b[v], "labels": lab[v]} for b, lab, v in zip(boxes, labels, valid)]
            return det.head.compute_loss(per_image, {"cls_logits": cls_logits, "bbox_regression": bbox_regression},
                                         [anchors] * len(images), list(matched))
        return self._loss(cls_logits, bbox_regression, anchors, boxes, labels, matched, det.box_coder,
                          self.loss_type)

    def record(self) -> dict[str, Any]:
        return {"batched_matching_and_loss": True, "anchors_cached": True,
                "frozen_bn_folded_into_conv": self.folded["into_frozen_conv"],
                "frozen_bn_as_affine": self.folded["affine"], "channels_last_input": self.channels_last,
                "compiled": "backbone+head and loss" if self.compiled else False}


def _has_frozen_bn(module: nn.Module) -> bool:
    from torchvision.ops.misc import FrozenBatchNorm2d

    return any(isinstance(m, FrozenBatchNorm2d) for m in module.modules())


def check_boxes(targets: list[dict[str, Any]]) -> None:
    """torchvision's degenerate-box check (x2 > x1, y2 > y1), once over the batch on the host (torchvision
    checks each image on the device, a sync each)."""
    boxes = [t["boxes"] for t in targets if t["boxes"].numel()]
    if not boxes:
        return
    allb = torch.cat([b.reshape(-1, 4) for b in boxes])
    bad = (allb[:, 2:] <= allb[:, :2]).any(dim=1)
    if bool(bad.any()):
        from mlbench.errors import DataError

        box = allb[int(bad.nonzero()[0, 0])].tolist()
        raise DataError(f"a training box has no width or height: {box} (x1, y1, x2, y2)",
                        "fix or drop the box in the annotation json")


def adam(params, lr: float, weight_decay: float, fast: bool) -> tuple[torch.optim.Optimizer, str]:
    """Adam, fused on CUDA when ``fast`` and this torch has it (the same update, one kernel for all
    parameters); else torch's default (foreach on CUDA). Returns the optimizer and which it is."""
    params = list(params)
    if fast and params and all(p.is_cuda for p in params):
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True), "fused"
        except (TypeError, RuntimeError):  # older torch: no fused Adam
            pass
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return opt, "default (foreach on CUDA)" if params and params[0].is_cuda else "default"
