"""Models: torchvision's Mask R-CNN with a ResNet-50 FPN backbone as the MLPerf reference configures it, and a
light Mask R-CNN for mini and tiny.

Both are torchvision ``MaskRCNN`` (RPN, RoIAlign box and mask heads, the losses ``loss_classifier``,
``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``): only the backbone and the sizes differ.

Reference (maskrcnn-benchmark's ``e2e_mask_rcnn_R_50_FPN_1x`` as MLPerf runs it): ResNet-50 with frozen batch
norm, stem and first stage frozen (3 trainable stages), FPN P2-P6 with 256 channels, anchors 32-512 with ratios
0.5/1/2, images resized to a shorter side of 800 (longer at most 1333) and padded to a multiple of 32, 1000
post-NMS proposals per image in training (``num_image_candidates``), 512 RoIs per image for the box head, 7x7
box and 14x14 mask RoIAlign, 28x28 masks, 81 classes (80 COCO categories plus background). Backbone weights:
``$MLBENCH_MASKRCNN_BACKBONE`` (torchvision's resnet50 .pth), else downloaded from torchvision and checked
against the hash in its name; ``random`` starts from random weights (tests; such a run cannot converge). MLPerf's
own reference loads MSRA's Caffe2 R-50; torchvision's ImageNet ResNet-50 is the PyTorch equivalent.

Light (mini, tiny): RetinaNet's small conv backbone (five stride-2 stages, FPN P3-P5) with narrow heads, one
anchor shape at two scales per level, fewer proposals and RoIs, one RoIAlign sample per bin (torchvision's
CPU RoIAlign backward dominates a light model's step: 2x2 samples per bin made it 4x slower), and the image size
fixed.
"""

from __future__ import annotations

from torch import nn

from mlbench.definition import Benchmark

BACKBONE_ENV = "MLBENCH_MASKRCNN_BACKBONE"


def build_model(bench: Benchmark, *, backbone_weights: bool = True) -> nn.Module:
    """The Mask R-CNN of ``bench`` (training mode: ``model(images, targets)`` returns the loss parts)."""
    if bench.hparams["backbone"] == "resnet50":
        return reference_model(bench, backbone_weights)
    return light_model(bench)


def reference_model(bench: Benchmark, load_weights: bool = True) -> nn.Module:
    import torchvision
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    hp = bench.hparams
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    state = backbone_state() if load_weights else None
    if state is not None:
        body.load_state_dict(state)
    backbone = _resnet_fpn_extractor(body, hp["trainable_backbone_layers"])  # P2-P5 + pool (P6), 256 ch
    return MaskRCNN(backbone, num_classes=bench.num_classes,
                    min_size=hp["min_image_size"], max_size=hp["max_image_size"],
                    rpn_pre_nms_top_n_train=hp["rpn_pre_nms_top_n_train"],
                    rpn_post_nms_top_n_train=hp["num_image_candidates"],
                    rpn_pre_nms_top_n_test=hp["rpn_pre_nms_top_n_test"],
                    rpn_post_nms_top_n_test=hp["rpn_post_nms_top_n_test"],
                    box_batch_size_per_image=hp["box_batch_size_per_image"],
                    box_detections_per_img=hp["detections_per_img"],
                    box_score_thresh=hp["score_thresh"])


def light_model(bench: Benchmark) -> nn.Module:
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    from mlbench.detection.backbones import SmallBackbone

    hp = bench.hparams
    size, ch, k = hp["image_size"], hp["fpn_channels"], bench.num_classes
    backbone = SmallBackbone(hp["width"], ch)  # features p3, p4, p5 (strides 8, 16, 32)
    levels = ["p3", "p4", "p5"]
    anchors = AnchorGenerator(tuple((s, int(s * 1.5)) for s in (16, 32, 64)), ((1.0,),) * 3)
    rep = hp["box_representation"]
    return MaskRCNN(
        backbone, num_classes=None, min_size=size, max_size=size, fixed_size=(size, size),
        rpn_anchor_generator=anchors, rpn_head=RPNHead(ch, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=hp["rpn_pre_nms_top_n_train"], rpn_post_nms_top_n_train=hp["num_image_candidates"],
        rpn_pre_nms_top_n_test=hp["rpn_pre_nms_top_n_test"], rpn_post_nms_top_n_test=hp["rpn_post_nms_top_n_test"],
        rpn_batch_size_per_image=hp["rpn_batch_size_per_image"],
        box_roi_pool=MultiScaleRoIAlign(levels, 7, hp["roi_sampling_ratio"]), box_head=TwoMLPHead(ch * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, k), box_batch_size_per_image=hp["box_batch_size_per_image"],
        box_detections_per_img=hp["detections_per_img"], box_score_thresh=hp["score_thresh"],
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, hp["roi_sampling_ratio"]), mask_head=MaskRCNNHeads(ch, (ch,) * hp["mask_convs"], 1),
        mask_predictor=MaskRCNNPredictor(ch, ch, k))


def backbone_state() -> dict | None:
    """ImageNet weights of the ResNet-50 backbone: a file, a verified download, or None (``random``)."""
    from mlbench.detection.backbones import imagenet_state

    def url() -> str:
        from torchvision.models import ResNet50_Weights

        return ResNet50_Weights.IMAGENET1K_V1.url

    return imagenet_state(BACKBONE_ENV, "ResNet-50", "resnet50-0676ba61.pth", url)
