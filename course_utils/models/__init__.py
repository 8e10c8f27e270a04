"""Models: backbones (pretrained torchvision weights in full mode, a small from-scratch net otherwise);
torchvision detectors on small backbones: RetinaNet (``retinanet``), Faster and Mask R-CNN (``rcnn``),
and their COCO-pretrained versions for full mode; segmentation networks (U-Net, stacked hourglass)."""

from .backbones import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained, pretrained_state_dict
from .rcnn import RCNNBackbone, build_faster_rcnn, build_mask_rcnn, build_pretrained_mask_rcnn
from .retinanet import (
    anchors_per_level,
    build_retinanet,
    load_pretrained_retinanet,
    octave_sizes,
    only_levels,
    replace_classifier,
)
from .segmentation import Hourglass, StackedHourglass, UNet

__all__ = [
    "Hourglass",
    "StackedHourglass",
    "UNet",
    "RCNNBackbone",
    "SmallBackbone",
    "WeightsUnavailable",
    "anchors_per_level",
    "build_faster_rcnn",
    "build_mask_rcnn",
    "build_pretrained_mask_rcnn",
    "build_retinanet",
    "load_backbone",
    "load_pretrained",
    "load_pretrained_retinanet",
    "octave_sizes",
    "only_levels",
    "pretrained_state_dict",
    "replace_classifier",
]
