"""Models: backbones (pretrained torchvision weights in full mode, a small from-scratch net otherwise);
the detectors of the course behind one contract (``detectors``: :func:`build_detector`,
:func:`load_pretrained_detector`): YOLO v1 (``yolo``), RetinaNet (``retinanet``), Faster and Mask
R-CNN (``rcnn``), a small DETR (``detr``), CenterNet (``centernet``, lab 08); segmentation networks
(U-Net, stacked hourglass)."""

from .backbones import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained, pretrained_state_dict
from .centernet import (
    CenterNet,
    build_centernet,
    centernet_decode,
    centernet_loss,
    centernet_targets,
    draw_gaussian,
    gaussian_radius,
    heatmap_focal_loss,
    local_peaks,
    top_peaks,
)
from .detectors import (
    DETECTOR_NAMES,
    DetectorWrapper,
    build_detector,
    build_detr_detector,
    load_pretrained_detector,
    load_pretrained_keypoint_rcnn,
)
from .detr import SmallDETR, build_small_detr, detr_loss, detr_targets, load_detr_resnet50
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
from .yolo import TinyYOLO, YOLOv1, build_yolo

__all__ = [
    "CenterNet",
    "build_centernet",
    "centernet_decode",
    "centernet_loss",
    "centernet_targets",
    "draw_gaussian",
    "gaussian_radius",
    "heatmap_focal_loss",
    "local_peaks",
    "top_peaks",
    "DETECTOR_NAMES",
    "DetectorWrapper",
    "Hourglass",
    "RCNNBackbone",
    "SmallBackbone",
    "SmallDETR",
    "StackedHourglass",
    "TinyYOLO",
    "UNet",
    "WeightsUnavailable",
    "YOLOv1",
    "anchors_per_level",
    "build_detector",
    "build_detr_detector",
    "build_faster_rcnn",
    "build_mask_rcnn",
    "build_pretrained_mask_rcnn",
    "build_retinanet",
    "build_small_detr",
    "build_yolo",
    "detr_loss",
    "detr_targets",
    "load_backbone",
    "load_detr_resnet50",
    "load_pretrained",
    "load_pretrained_detector",
    "load_pretrained_keypoint_rcnn",
    "load_pretrained_retinanet",
    "octave_sizes",
    "only_levels",
    "pretrained_state_dict",
    "replace_classifier",
]
