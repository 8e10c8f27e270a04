"""Evaluation metrics: COCO detection (bit-identical to pycocotools), PASCAL VOC, segmentation.

* :func:`coco_eval` - COCO AP / AR for boxes, masks or keypoints (OKS), and :func:`precision_recall_curve`.
* :func:`voc_ap`, :func:`voc_eval` - PASCAL VOC average precision (a different number from
  COCO's AP50; :mod:`course_utils.metrics.voc` says why).
* :func:`confusion_matrix`, :func:`per_class_iou`, :func:`mean_iou`, :func:`pixel_accuracy` -
  semantic segmentation.
"""

from course_utils.metrics.coco import (
    AREA_RANGES,
    COCO_KEYPOINT_SIGMAS,
    IOU_THRESHOLDS,
    KEYPOINT_AREA_RANGES,
    KEYPOINT_MAX_DETS,
    KEYPOINT_STAT_NAMES,
    MAX_DETS,
    RECALL_THRESHOLDS,
    STAT_NAMES,
    COCOEvalResult,
    PRCurve,
    coco_eval,
    precision_recall_curve,
)
from course_utils.metrics.segmentation import (
    confusion_matrix,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
)
from course_utils.metrics.voc import VOCResult, voc_ap, voc_eval

__all__ = [
    "AREA_RANGES",
    "COCO_KEYPOINT_SIGMAS",
    "IOU_THRESHOLDS",
    "KEYPOINT_AREA_RANGES",
    "KEYPOINT_MAX_DETS",
    "KEYPOINT_STAT_NAMES",
    "MAX_DETS",
    "RECALL_THRESHOLDS",
    "STAT_NAMES",
    "COCOEvalResult",
    "PRCurve",
    "coco_eval",
    "precision_recall_curve",
    "confusion_matrix",
    "mean_iou",
    "per_class_iou",
    "pixel_accuracy",
    "VOCResult",
    "voc_ap",
    "voc_eval",
]
