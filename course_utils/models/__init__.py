"""Models: backbones (pretrained torchvision weights in full mode, a small from-scratch net otherwise),
RetinaNet builders (a small one from scratch, torchvision's COCO-pretrained one)."""

from .backbones import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained, pretrained_state_dict
from .retinanet import (
    anchors_per_level,
    build_retinanet,
    load_pretrained_retinanet,
    octave_sizes,
    only_levels,
    replace_classifier,
)

__all__ = [
    "SmallBackbone",
    "WeightsUnavailable",
    "anchors_per_level",
    "build_retinanet",
    "load_backbone",
    "load_pretrained",
    "load_pretrained_retinanet",
    "octave_sizes",
    "only_levels",
    "pretrained_state_dict",
    "replace_classifier",
]
