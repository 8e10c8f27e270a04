"""Faster R-CNN and Mask R-CNN (torchvision's classes) on a small from-scratch backbone, sized for CPU.

The two builders return torchvision's own :class:`~torchvision.models.detection.FasterRCNN` and
:class:`~torchvision.models.detection.MaskRCNN`; only the parts are small:

* :class:`RCNNBackbone`: three conv stages, one feature map at stride 8 (a 128-px image gives a
  16x16 map) named ``"0"``, as torchvision's RoI poolers expect;
* anchors of a few sizes (default 16, 32, 64 px) and 3 aspect ratios at every map position;
* fewer proposals and smaller sampled batches in the RPN and the RoI heads than the defaults
  (tuned for 800-px COCO images);
* a narrow box head (``TwoMLPHead`` with ``representation_size`` features) and a mask head of
  ``mask_layers`` narrow 3x3 convs, then the usual 2x up-sampling to 28x28 mask logits;
* ``min_size = max_size = image_size``: the model's transform does not rescale the images.

Mask R-CNN's box branch *is* a Faster R-CNN: :func:`build_mask_rcnn` makes the same backbone, RPN
and box head as :func:`build_faster_rcnn` with the same arguments, plus the mask branch.

:func:`build_pretrained_mask_rcnn` is the full-mode model: ``maskrcnn_resnet50_fpn`` with COCO
weights, its box and mask predictors replaced for a new number of classes.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from .backbones import NOTICE, WeightsUnavailable, pretrained_state_dict

# pixel statistics of the synthetic shapes (roughly mid-grey, spread ~0.25)
SHAPES_MEAN = (0.5, 0.5, 0.5)
SHAPES_STD = (0.25, 0.25, 0.25)


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class RCNNBackbone(nn.Sequential):
    """A small conv net for two-stage detectors: (B, 3, H, W) -> (B, C, H/8, W/8).

    Three stages, each a stride-2 3x3 conv then a stride-1 3x3 conv (BatchNorm + ReLU).

    Args:
        widths: channels of the three stages; ``out_channels`` (C) is the last.
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 48, 64)):
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be 3 positive channel counts, got {widths!r}")
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in widths:
            layers += [_conv(c_in, c_out, stride=2), _conv(c_out, c_out, stride=1)]
            c_in = c_out
        super().__init__(*layers)
        self.out_channels = widths[-1]
        self.stride = 8


def _check(num_classes: int, image_size: int, anchor_sizes: tuple[int, ...]) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (object classes, background not included), "
                         f"got {num_classes!r}")
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32 (pixels), got {image_size!r}")
    if not anchor_sizes or any(s <= 0 for s in anchor_sizes):
        raise ValueError(f"anchor_sizes must be positive pixel sizes, got {anchor_sizes!r}")


def _small_parts(num_classes: int, image_size: int, widths: tuple[int, int, int], anchor_sizes: tuple[int, ...],
                 representation_size: int, sampling_ratio: int) -> dict:
    """Keyword arguments shared by the Faster and Mask R-CNN builders."""
    _check(num_classes, image_size, anchor_sizes)
    backbone = RCNNBackbone(widths)
    c = backbone.out_channels
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=((0.5, 1.0, 2.0),))
    return dict(
        backbone=backbone,
        min_size=image_size,
        max_size=image_size,
        image_mean=list(SHAPES_MEAN),
        image_std=list(SHAPES_STD),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=sampling_ratio),
        box_head=TwoMLPHead(c * 7 * 7, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),  # + background, class 0
        box_batch_size_per_image=64,
        box_detections_per_img=50,
    )


def build_faster_rcnn(
    num_classes: int,
    image_size: int = 128,
    *,
    widths: tuple[int, int, int] = (32, 48, 64),
    anchor_sizes: tuple[int, ...] = (16, 32, 64),
    representation_size: int = 256,
    sampling_ratio: int = 1,
) -> FasterRCNN:
    """torchvision's ``FasterRCNN`` on :class:`RCNNBackbone`, sized for small images on a CPU.

    Args:
        num_classes: object classes, background not included (labels 1..num_classes).
        image_size: side of the (square) input images in pixels; the model does not rescale them.
        widths: channels of the backbone's three stages (the feature map has ``widths[-1]``).
        anchor_sizes: anchor sides in pixels, each with aspect ratios 0.5, 1 and 2, at every
            position of the stride-8 feature map.
        representation_size: width of the two fully connected layers of the box head.
        sampling_ratio: RoIAlign's bilinear samples per bin side (1 on a stride-8 map of small
            images: a bin is under a feature cell; RoIAlign's backward pass dominates a CPU step).

    Returns:
        a ``FasterRCNN``: in train mode ``model(images, targets)`` -> dict of the four losses
        (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``); in eval
        mode ``model(images)`` -> per image ``{"boxes": (K, 4) xyxy, "scores": (K,), "labels": (K,)}``.
    """
    parts = _small_parts(num_classes, image_size, widths, anchor_sizes, representation_size, sampling_ratio)
    return FasterRCNN(**parts)


def build_mask_rcnn(
    num_classes: int,
    image_size: int = 128,
    *,
    widths: tuple[int, int, int] = (32, 48, 64),
    anchor_sizes: tuple[int, ...] = (16, 32, 64),
    representation_size: int = 256,
    sampling_ratio: int = 1,
    mask_layers: tuple[int, ...] = (64, 64),
) -> MaskRCNN:
    """torchvision's ``MaskRCNN``: :func:`build_faster_rcnn`'s detector plus a mask branch.

    Args:
        num_classes, image_size, widths, anchor_sizes, representation_size, sampling_ratio: as
            :func:`build_faster_rcnn`.
        mask_layers: channels of the mask head's 3x3 convs, applied to 14x14 RoIAlign features;
            the predictor then up-samples 2x to one 28x28 mask logit map per class.

    Returns:
        a ``MaskRCNN``: in train mode the Faster R-CNN losses plus ``loss_mask``; in eval mode each
        image's dict also holds ``"masks"`` (K, 1, H, W) probabilities pasted into the image.
    """
    if not mask_layers or any(int(w) < 1 for w in mask_layers):
        raise ValueError(f"mask_layers must be positive channel counts, got {mask_layers!r}")
    parts = _small_parts(num_classes, image_size, widths, anchor_sizes, representation_size, sampling_ratio)
    c = parts["backbone"].out_channels
    return MaskRCNN(
        **parts,
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=sampling_ratio),
        mask_head=MaskRCNNHeads(c, list(mask_layers), dilation=1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], num_classes + 1),
    )


def build_pretrained_mask_rcnn(num_classes: int, *, weights: str = "DEFAULT", progress: bool = True,
                               **kwargs) -> tuple[MaskRCNN, bool]:
    """``maskrcnn_resnet50_fpn`` with COCO weights, its predictors replaced for ``num_classes``.

    This is torchvision's fine-tuning recipe (the PennFudan tutorial): keep the backbone, FPN, RPN
    and heads, replace the last layers of the box branch (``FastRCNNPredictor``) and of the mask
    branch (``MaskRCNNPredictor``) with freshly initialised ones for the new classes.

    Args:
        num_classes: object classes, background not included.
        weights: name of the COCO weights (``"DEFAULT"`` = ``COCO_V1``).
        progress: show a download progress bar.
        **kwargs: passed to ``MaskRCNN`` (e.g. ``min_size``, ``max_size``, ``box_detections_per_img``).

    Returns:
        (model, pretrained): when the weights cannot be downloaded, the same architecture with a
        random-initialised backbone and ``pretrained=False``, after a printed notice.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    try:
        state = pretrained_state_dict("maskrcnn_resnet50_fpn", weights, progress=progress)
        # as torchvision's builder does for pretrained weights: frozen BatchNorm (eps 0, the weights'
        # training setting), the first two ResNet stages frozen
        backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                       trainable_layers=3)
        model = MaskRCNN(backbone, num_classes=len(state["roi_heads.box_predictor.cls_score.bias"]))
        model.load_state_dict(state)
        overwrite_eps(model, 0.0)
        pretrained = True
    except WeightsUnavailable as err:
        print(f"{NOTICE} offline? {err}\n{NOTICE} falling back to maskrcnn_resnet50_fpn with random weights "
              "(expect far lower accuracy than with COCO weights)")
        model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        pretrained = False
    for name, value in kwargs.items():
        _set_option(model, name, value)
    box_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_features, num_classes + 1)
    mask_features = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_features, 256, num_classes + 1)
    return model, pretrained


def _set_option(model: MaskRCNN, name: str, value) -> None:
    if name in ("min_size", "max_size"):
        setattr(model.transform, name, (value,) if name == "min_size" else value)
    elif name == "box_detections_per_img":
        model.roi_heads.detections_per_img = value
    elif name == "box_score_thresh":
        model.roi_heads.score_thresh = value
    else:
        raise ValueError(f"unknown option {name!r}; expected min_size, max_size, box_detections_per_img "
                         "or box_score_thresh")


def count_by_part(model: nn.Module) -> dict[str, int]:
    """Parameters of a torchvision two-stage detector per part: backbone, rpn, box head, mask head.

    Returns:
        ``{"backbone": n, "rpn": n, "box branch": n, "mask branch": n}`` (mask branch 0 for Faster R-CNN).
    """
    def n(module: nn.Module | None) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    heads = model.roi_heads
    return {
        "backbone": n(model.backbone),
        "rpn": n(model.rpn),
        "box branch": n(heads.box_head) + n(heads.box_predictor),
        "mask branch": n(getattr(heads, "mask_head", None)) + n(getattr(heads, "mask_predictor", None)),
    }


__all__ = ["RCNNBackbone", "build_faster_rcnn", "build_mask_rcnn", "build_pretrained_mask_rcnn", "count_by_part"]
