"""Models: backbones (pretrained torchvision weights in full mode, a small from-scratch net otherwise);
torchvision two-stage detectors on small backbones (``rcnn``)."""

from .backbones import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained
from .rcnn import RCNNBackbone, build_faster_rcnn, build_mask_rcnn, build_pretrained_mask_rcnn

__all__ = [
    "RCNNBackbone",
    "SmallBackbone",
    "WeightsUnavailable",
    "build_faster_rcnn",
    "build_mask_rcnn",
    "build_pretrained_mask_rcnn",
    "load_backbone",
    "load_pretrained",
]
