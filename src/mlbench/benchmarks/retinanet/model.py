"""Models: torchvision's RetinaNet with the MLPerf ResNeXt50_32x4d FPN backbone, and a light RetinaNet.

Both are torchvision ``RetinaNet`` (focal loss, box coder, anchor matching, NMS): only the backbone and
the sizes differ. Images are resized to a fixed square (``fixed_size``), as the MLPerf reference does.

Backbone weights for the reference come from ``$MLBENCH_RETINANET_BACKBONE`` (a .pth state dict of
torchvision's resnext50_32x4d) or are downloaded from torchvision's address and checked against the hash in
its file name. ``MLBENCH_RETINANET_BACKBONE=random`` starts from random weights (for tests; such a
run will not converge like the reference).
"""

from __future__ import annotations

from torch import nn

from mlbench.definition import Benchmark
from mlbench.detection.backbones import SmallBackbone, imagenet_state

BACKBONE_ENV = "MLBENCH_RETINANET_BACKBONE"


def build_model(bench: Benchmark, *, backbone_weights: bool = True) -> nn.Module:
    """The RetinaNet of ``bench`` (training mode; ``model(images, targets)`` returns the loss parts).

    ``backbone_weights=False`` skips the reference's ImageNet backbone (when full weights follow)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    hp = bench.hparams
    size = hp["image_size"]
    if hp["backbone"] == "resnext50_32x4d":
        backbone = reference_backbone(hp, backbone_weights)
        base_sizes = (32, 64, 128, 256, 512)  # P3-P7, as torchvision's retinanet_resnet50_fpn
    else:
        backbone = SmallBackbone(hp["width"], hp["fpn_channels"])
        base_sizes = (16, 32, 64)  # P3-P5 for objects of 10-90 px
    anchors = AnchorGenerator(
        tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in base_sizes),
        (tuple(hp.get("aspect_ratios", (0.5, 1.0, 2.0))),) * len(base_sizes))
    head = None
    if hp.get("head_groupnorm"):  # GroupNorm in the head (torchvision's RetinaNet v2): steadier from scratch
        from functools import partial

        from torchvision.models.detection.retinanet import RetinaNetHead

        head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], bench.num_classes,
                             norm_layer=partial(nn.GroupNorm, 8))
    model = RetinaNet(backbone, num_classes=bench.num_classes, min_size=size, max_size=size,
                      fixed_size=(size, size), anchor_generator=anchors, head=head,
                      score_thresh=hp.get("score_thresh", 0.05),
                      detections_per_img=hp.get("detections_per_img", 300))
    convs = hp.get("head_convs", 4)
    if convs != 4:  # the light model: fewer 3x3 convolutions in each head branch (torchvision has 4)
        for branch in (model.head.classification_head, model.head.regression_head):
            branch.conv = nn.Sequential(*list(branch.conv)[:convs])
    return model


def reference_backbone(hp: dict, load_weights: bool = True) -> nn.Module:
    """ResNeXt50_32x4d with frozen batch norm, 3 trainable stages, FPN on C3-C5 plus P6/P7."""
    import torchvision
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    body = torchvision.models.resnext50_32x4d(weights=None, norm_layer=FrozenBatchNorm2d)
    state = backbone_state() if load_weights else None
    if state is not None:
        body.load_state_dict(state)
    return _resnet_fpn_extractor(body, hp["trainable_backbone_layers"], returned_layers=[2, 3, 4],
                                 extra_blocks=LastLevelP6P7(2048, 256))


def backbone_state() -> dict | None:
    """ImageNet weights of the ResNeXt50 backbone: a file, a verified download, or None (``random``)."""
    def url() -> str:
        from torchvision.models import ResNeXt50_32X4D_Weights

        return ResNeXt50_32X4D_Weights.IMAGENET1K_V1.url

    return imagenet_state(BACKBONE_ENV, "ResNeXt50", "resnext50_32x4d-7cdf4587.pth", url)


