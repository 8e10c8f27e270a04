"""PASCAL VOC average precision - and why it is not COCO's AP50.

Same detections, same IoU 0.5, yet VOC AP and COCO AP50 differ, for five reasons:

1. **Integration.** VOC2010+ integrates the whole non-increasing precision envelope over recall
   ("all_points"); VOC2007 averages it at 11 recall levels 0, 0.1, ..., 1 ("11_points"); COCO
   averages it at 101 levels 0, 0.01, ..., 1.
2. **Matching.** A VOC detection only looks at its best-IoU GT box (the first on ties): if that
   box is already taken, the detection is a false positive, even if another free box overlaps it
   enough. COCO gives it the best *free* box.
3. **Threshold.** VOC needs IoU > 0.5; COCO IoU >= 0.5.
4. **What is ignored.** VOC ignores detections whose best box is marked ``difficult`` (every
   one of them, never "taken"); COCO ignores crowd regions and, per area range, boxes outside it.
5. **Cut.** VOC keeps every detection; COCO the 100 best per image.

This module uses continuous coordinates (IoU of ``xywh`` boxes as in COCO). The original VOC
devkit counts pixels and adds 1 to widths and heights, which changes IoU of small boxes.
Ties in score keep input order (stable sort); the devkit's unstable sort may order them
differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course_utils.metrics.coco import _box_iou_pairs, _detections, _ground_truth, _pairs

VOC_METHODS = ("all_points", "11_points")


def voc_ap(recall: np.ndarray, precision: np.ndarray, method: str = "all_points") -> float:
    """Average precision of one class from its precision-recall points (VOC devkit's ``voc_ap``).

    Args:
        recall: (N,) recall after each detection, by decreasing score (non-decreasing).
        precision: (N,) precision after each detection.
        method: "all_points" - area under the non-increasing envelope of precision (VOC2010+);
            "11_points" - mean over recall levels 0, 0.1, ..., 1 of the best precision at a
            recall >= that level, 0 if the level is never reached (VOC2007).

    Returns:
        AP in [0, 1]; 0 for no points.
    """
    if method not in VOC_METHODS:
        raise ValueError(f"method must be one of {VOC_METHODS}, got {method!r}")
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(f"recall and precision must have the same shape, got "
                         f"{recall.shape} and {precision.shape}")
    if method == "11_points":
        levels = np.arange(11) / 10  # (11,)
        reached = recall[None, :] >= levels[:, None]  # (11, N)
        best = np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0)  # (11,)
        return float(best.mean())
    points_recall = np.r_[0.0, recall, 1.0]  # (N + 2,)
    envelope = np.r_[0.0, precision, 0.0]  # (N + 2,)
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]  # best precision at recall >= r
    steps = np.flatnonzero(points_recall[1:] != points_recall[:-1])  # where recall moves
    return float(np.sum((points_recall[steps + 1] - points_recall[steps]) * envelope[steps + 1]))


@dataclass
class VOCResult:
    """What :func:`voc_eval` returns.

    Attributes:
        ap: {category id: AP}; NaN for a category without non-difficult GT.
        map: mean of the defined APs (NaN if none).
        num_gt: {category id: number of non-difficult GT boxes}.
    """

    ap: dict[int, float]
    map: float
    num_gt: dict[int, int]


def voc_eval(gt, dt, iou_threshold: float = 0.5, method: str = "all_points") -> VOCResult:
    """PASCAL VOC detection AP per category, from COCO-format inputs.

    Args:
        gt: COCO ground truth (dict, json path or COCO object), as for ``coco_eval``. A GT
            annotation with ``"difficult": 1`` is VOC's difficult object.
        dt: COCO result dicts or a json path.
        iou_threshold: a detection matches when IoU > this (strictly, as in VOC).
        method: "all_points" (VOC2010+) or "11_points" (VOC2007), see :func:`voc_ap`.

    Returns:
        a :class:`VOCResult`.
    """
    if method not in VOC_METHODS:
        raise ValueError(f"method must be one of {VOC_METHODS}, got {method!r}")
    gt_table, image_ids, category_ids, _, images = _ground_truth(gt, "bbox")
    difficult = gt_table.difficult  # (G,)
    dets = _detections(dt, image_ids, category_ids, images, "bbox")
    K = len(category_ids)
    order = np.lexsort((-dets.score, dets.category))  # (D,) by category, decreasing score
    group = (dets.image * K + dets.category)[order]  # (D,)
    pair_dt, pair_gt = _pairs(group, gt_table.image * K + gt_table.category)  # (P,), (P,)
    pair_iou = _box_iou_pairs(dets.box[order][pair_dt], gt_table.box[pair_gt],
                              np.zeros(len(pair_gt), dtype=bool))  # (P,)

    # each detection's best GT: highest IoU, the first one on ties
    best_iou = np.zeros(len(order))  # (D,)
    best_gt = np.full(len(order), -1)  # (D,)
    if len(pair_dt):
        det_start = np.flatnonzero(np.r_[True, pair_dt[1:] != pair_dt[:-1]])  # (D',)
        with_gt = pair_dt[det_start]  # (D',) detections that have GT in their group
        best_iou[with_gt] = np.maximum.reduceat(pair_iou, det_start)
        is_best = pair_iou == best_iou[pair_dt]  # (P,)
        first_best = np.minimum.reduceat(np.where(is_best, np.arange(len(pair_dt)), len(pair_dt)),
                                         det_start)  # (D',)
        best_gt[with_gt] = pair_gt[first_best]
    hit = best_iou > iou_threshold  # (D,)
    ignored = hit & difficult[best_gt]  # (D,) on a difficult object: neither TP nor FP
    claims = hit & ~ignored  # (D,)
    # the first (best-scored) claim on a GT is the true positive, later ones are duplicates
    claimed_gt = np.where(claims, best_gt, -1)  # (D,)
    _, first_claim = np.unique(claimed_gt, return_index=True)
    is_tp = np.zeros(len(order), dtype=bool)
    is_tp[first_claim] = claims[first_claim]
    is_fp = ~is_tp & ~ignored  # (D,)

    category = dets.category[order]  # (D,)
    regular = ~difficult  # (G,)
    num_gt = np.bincount(gt_table.category[regular], minlength=K)  # (K,)
    ap = {}
    for k, category_id in enumerate(category_ids.tolist()):  # one curve per category
        mine = category == k  # (D,)
        tp, fp = np.cumsum(is_tp[mine]), np.cumsum(is_fp[mine])  # (D_k,)
        if num_gt[k] == 0:
            ap[category_id] = float("nan")
            continue
        recall = tp / num_gt[k]
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap[category_id] = voc_ap(recall, precision, method)
    defined = [v for v in ap.values() if not np.isnan(v)]
    return VOCResult(ap, float(np.mean(defined)) if defined else float("nan"),
                     dict(zip(category_ids.tolist(), num_gt.tolist(), strict=True)))
