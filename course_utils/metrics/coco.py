"""COCO detection evaluation: the mAP papers report, bit-identical to pycocotools' ``COCOeval``.

``coco_eval(gt, dt)`` gives the same ``precision``, ``recall`` and ``stats`` arrays as

    E = COCOeval(COCO(gt), COCO(gt).loadRes(dt), iou_type)
    E.evaluate(); E.accumulate(); E.summarize()

(checked with ``np.array_equal`` in tests/test_metrics.py), but works on whole arrays instead of
one (image, category) pair at a time. The steps, top to bottom in this file:

1. **Tables.** Ground truth and detections become flat NumPy arrays; every record is checked.
2. **Groups.** A *group* is one (image, category) pair. Detections are sorted by decreasing
   score inside their group (stable, so ties keep the input order) and only the 100 best of each
   group are kept - before any matching.
3. **Pairs and IoU.** Every detection is paired with every ground truth (GT) box of its group;
   one IoU per pair.
4. **Matching.** At each IoU threshold t and area range a, detections, best first, take the
   free GT with the highest IoU >= t (the *last* one on ties). GT that is crowd or outside the
   area range is *ignored*: it is only taken when no regular GT is available, and a detection
   that takes it is neither right nor wrong. A crowd GT can be taken any number of times.
   Matching is sequential only inside a group, so we loop over the rank in the group (at most
   100 steps) and handle all groups, thresholds and area ranges at once in every step.
5. **Accumulation.** Per category, detections of all images are merged by decreasing score;
   precision at the k-th true positive is k / (k + false positives so far). The precision
   curve is made non-increasing (the best precision at any higher recall) and read at 101
   recall levels 0, 0.01, ..., 1. AP is the mean of those 101 numbers.
6. **Summary.** The 12 numbers of ``COCOeval.summarize()``: means over thresholds, recall
   levels and categories, ignoring the -1 entries (categories without GT in that area range).

Conventions (T thresholds, R recall levels, K categories, A area ranges, M max-detection cuts):
``precision`` is (T, R, K, A, M) and ``recall`` (T, K, A, M), -1 where a category has no
non-ignored GT in that area range. Category k is the k-th smallest category id of the GT.

Where pycocotools stops or is ambiguous, we choose and document:

* An empty detection list crashes pycocotools (``loadRes`` reads ``anns[0]``). Here it means
  "nothing detected": precision and recall are 0 wherever there is GT, -1 elsewhere.
* ``iscrowd`` may be missing from a GT annotation (pycocotools raises KeyError): it means 0.
* Bad input raises ``ValueError`` naming the record: missing keys, a ``bbox`` that is not 4
  finite numbers, negative width or height, non-finite scores, detections or GT on image ids
  absent from ``gt["images"]``, GT of a category absent from ``gt["categories"]``, duplicate GT
  annotation ids. Detections of categories absent from the GT are dropped, as pycocotools does.
* Like pycocotools, a detection matched to a GT whose annotation ``id`` is 0 counts as a false
  positive (pycocotools stores "matched GT id" and reads 0 as "no match"); COCO ids start at 1.
* Keypoints (``iou_type="keypoints"``): the IoU is the object keypoint similarity (OKS) of
  pycocotools' ``computeOks``, with one sigma per keypoint slot (``kpt_oks_sigmas``, COCO's 17
  person sigmas by default), 20 detections per image, area ranges all / medium / large and the
  10 summary numbers of ``summarizeKps``. A GT with ``num_keypoints == 0`` is ignored, like a
  crowd. A detection's area is its box area when the results carry a ``bbox`` and the area of
  the box around its keypoints otherwise (``loadRes`` again, decided on the first result). Every
  GT and detection must carry ``keypoints`` (pycocotools needs them only where it pairs them).
* Segmentation: a detection's ``area`` (for small/medium/large) is its *box* area when the
  results carry a ``bbox`` and its mask area otherwise - pycocotools' ``loadRes`` decides from
  the first result, and so do we.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # (T,) float64, exactly pycocotools' iouThrs
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # (R,) float64, exactly pycocotools' recThrs
MAX_DETS = (1, 10, 100)  # (M,) detections kept per image (and category)
AREA_RANGES = {  # (A,) object area ranges in pixels, bounds included
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}
STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
IOU_TYPES = ("bbox", "segm", "keypoints")
# keypoints (pycocotools' setKpParams): other cuts, area ranges and summary numbers
KEYPOINT_MAX_DETS = (20,)
KEYPOINT_AREA_RANGES = {
    "all": AREA_RANGES["all"],
    "medium": AREA_RANGES["medium"],
    "large": AREA_RANGES["large"],
}
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# COCO's per-keypoint OKS sigmas of the 17 person keypoints (nose, eyes, ears, shoulders, ...)
COCO_KEYPOINT_SIGMAS = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
) / 10.0


# --------------------------------------------------------------------------- 1. tables


@dataclass
class _GroundTruth:
    """The GT annotations that take part in the evaluation, in input order.

    ``image`` and ``category`` are positions in the sorted image / category ids, not ids.
    """

    image: np.ndarray  # (G,) int64
    category: np.ndarray  # (G,) int64
    ann_id: np.ndarray  # (G,) int64 annotation ids
    box: np.ndarray  # (G, 4) float64 xywh
    area: np.ndarray  # (G,) float64, the annotation's ``area`` (not the box area)
    crowd: np.ndarray  # (G,) bool
    difficult: np.ndarray  # (G,) bool, PASCAL VOC's flag (not used by COCO)
    rle: list | None = None  # G compressed RLEs (segm only)
    keypoints: np.ndarray | None = None  # (G, 3 K) float64 x, y, v triplets (keypoints only)
    ignore: np.ndarray | None = None  # (G,) bool, ignored in every area range (default: crowd)


@dataclass
class _Detections:
    """The detections that take part in the evaluation, in input order."""

    image: np.ndarray  # (D,) int64
    category: np.ndarray  # (D,) int64
    score: np.ndarray  # (D,) float64
    box: np.ndarray  # (D, 4) float64 xywh
    area: np.ndarray  # (D,) float64
    rle: list | None = None  # D compressed RLEs (segm only)
    keypoints: np.ndarray | None = None  # (D, 3 K) float64 (keypoints only)


def _describe(kind: str, index: int, record) -> str:
    """'detection 3 ({...})': how error messages name a record (long records shortened)."""
    text = repr(record)
    return f"{kind} {index} ({text[:160] + '...' if len(text) > 160 else text})"


def _column(records: list, key: str, kind: str) -> list:
    """``[r[key] for r in records]``; ValueError naming the first record without ``key``."""
    try:
        return [r[key] for r in records]
    except (KeyError, TypeError):
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise ValueError(f"{_describe(kind, i, r)} is not a dict") from None
            if key not in r:
                raise ValueError(f"{_describe(kind, i, r)} has no {key!r}") from None
        raise


def _numbers(records: list, key: str, kind: str, width: int | None = None) -> np.ndarray:
    """The ``key`` column as float64, (N,) or (N, width).

    ValueError naming the first record whose value is not a number (not ``width`` numbers).
    """
    values = _column(records, key, kind)
    want = (len(values),) if width is None else (len(values), width)
    if not values:
        return np.zeros(want)
    try:
        array = np.array(values)  # no dtype: strings or ragged lists do not pass as numbers
    except (ValueError, TypeError):
        array = None
    if array is None or array.shape != want or array.dtype.kind not in "iuf":
        what = "a number" if width is None else f"{width} numbers"
        for i, value in enumerate(values):
            try:
                one = np.array(value)
            except (ValueError, TypeError):
                one = None
            if one is None or one.shape != want[1:] or one.dtype.kind not in "iuf":
                raise ValueError(f"{_describe(kind, i, records[i])}: {key} must be {what}")
        raise ValueError(f"{kind} {key}s must be {what} each")  # mixed types, e.g. bool
    return array.astype(np.float64)


def _boxes(records: list, kind: str) -> np.ndarray:
    """(N, 4) float64 ``bbox`` column; ValueError naming the first bad box."""
    boxes = _numbers(records, "bbox", kind, width=4)  # (N, 4)
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)  # (N,)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{_describe(kind, i, records[i])}: bbox must be finite [x, y, w, h] with w, h >= 0"
        )
    return boxes


def _positions(ids: list, known: np.ndarray, records: list, kind: str, key: str) -> np.ndarray:
    """Position of each id in the sorted array ``known``; ValueError on an unknown id."""
    values = np.asarray(ids)
    where = np.searchsorted(known, values)  # (N,)
    found = where < len(known)
    found[found] = known[where[found]] == values[found]
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise ValueError(f"{_describe(kind, i, records[i])}: {key} {ids[i]!r} is not in gt")
    return where.astype(np.int64)


def _to_rle(segmentation, height: int, width: int) -> dict:
    """Polygons, uncompressed RLE or compressed RLE -> compressed RLE (pycocotools' annToRLE)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def _rles(records: list, image_pos: np.ndarray, images: list, kind: str) -> list:
    """Compressed RLE of every record's ``segmentation``; polygons need the image's size.

    Args:
        records: N annotation or result dicts.
        image_pos: (N,) position of each record's image in ``images``.
        images: image records with ``height`` and ``width``.
        kind: how to name a record in errors.

    Returns:
        N RLE dicts.
    """
    segmentations = _column(records, "segmentation", kind)
    rles = []
    for i, (segm, pos) in enumerate(zip(segmentations, image_pos, strict=True)):
        try:
            image = images[pos]
            rles.append(_to_rle(segm, image.get("height"), image.get("width")))
        except Exception as error:  # pycocotools raises TypeError / ValueError on bad masks
            where = _describe(kind, i, records[i])
            raise ValueError(f"{where}: bad segmentation ({error})") from None
    return rles


def _load_json(source):
    """A json path -> its content; a COCO object -> its ``dataset`` dict; anything else as is."""
    if isinstance(source, (str, os.PathLike)):
        with open(source) as f:
            return json.load(f)
    if hasattr(source, "dataset"):  # a pycocotools / faster-coco-eval COCO object
        return source.dataset
    return source


def _keypoints(records: list, kind: str, num_keypoints: int) -> np.ndarray:
    """(N, 3 K) float64 ``keypoints`` column; ValueError naming the first bad record.

    Args:
        records: N annotation or result dicts.
        kind: how to name a record in errors.
        num_keypoints: K, the length of ``kpt_oks_sigmas``.
    """
    try:
        points = _numbers(records, "keypoints", kind, width=3 * num_keypoints)  # (N, 3 K)
    except ValueError as error:
        if "must be" not in str(error):
            raise
        raise ValueError(f"{error} (x, y, v for each of the {num_keypoints} keypoints that "
                         f"kpt_oks_sigmas has)") from None
    bad = ~np.isfinite(points).all(axis=1)  # (N,)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{_describe(kind, i, records[i])}: keypoints must be finite numbers")
    return points


def _ground_truth(gt, iou_type: str, num_keypoints: int = 0
                  ) -> tuple[_GroundTruth, np.ndarray, np.ndarray, dict, list]:
    """Read a COCO GT dict into a table (``num_keypoints``: K, for iou_type "keypoints").

    Returns:
        (table, image_ids (I,) sorted, category_ids (K,) sorted, {category id: name},
        images (I,) image records in the order of image_ids).
    """
    gt = _load_json(gt)
    if not isinstance(gt, dict):
        raise ValueError(f"gt must be a COCO dict, a json path or a COCO object, got {type(gt)}")
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"gt has no {key!r} list")
    image_id_column = np.asarray(_column(gt["images"], "id", "gt image"))
    image_ids, first = np.unique(image_id_column, return_index=True)  # (I,), (I,)
    images = [gt["images"][i] for i in first]
    category_ids = np.unique(np.asarray(_column(gt["categories"], "id", "gt category")))
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt["categories"]}

    anns = gt["annotations"]
    ann_ids = np.asarray(_column(anns, "id", "gt annotation"), dtype=np.int64)  # (G,)
    unique_ids, first_of = np.unique(ann_ids, return_index=True)
    if len(unique_ids) < len(ann_ids):
        dup = np.setdiff1d(np.arange(len(ann_ids)), first_of)[0]
        raise ValueError(f"{_describe('gt annotation', dup, anns[dup])}: duplicate annotation id")
    image = _positions(_column(anns, "image_id", "gt annotation"), image_ids, anns,
                       "gt annotation", "image_id")
    category = _positions(_column(anns, "category_id", "gt annotation"), category_ids, anns,
                          "gt annotation", "category_id")
    area = _numbers(anns, "area", "gt annotation")  # (G,)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)  # (G,)
    difficult = np.array([bool(a.get("difficult", 0)) for a in anns], dtype=bool)  # (G,)
    has_box = iou_type in ("bbox", "keypoints")  # OKS reads the GT box when no point is labelled
    box = _boxes(anns, "gt annotation") if has_box else np.zeros((len(anns), 4))
    rle = _rles(anns, image, images, "gt annotation") if iou_type == "segm" else None
    keypoints, ignore = None, crowd
    if iou_type == "keypoints":
        keypoints = _keypoints(anns, "gt annotation", num_keypoints).reshape(-1, 3 * num_keypoints)
        ignore = crowd | (_numbers(anns, "num_keypoints", "gt annotation") == 0)  # (G,)
    table = _GroundTruth(image, category, ann_ids, box.reshape(-1, 4), area, crowd, difficult,
                         rle, keypoints, ignore)
    return table, image_ids, category_ids, names, images


def _detections(dt, image_ids: np.ndarray, category_ids: np.ndarray, images: list,
                iou_type: str, num_keypoints: int = 0) -> _Detections:
    """Read COCO result dicts into a table; drops detections of categories absent from the GT."""
    dts = _load_json(dt)
    if isinstance(dts, dict) and "annotations" in dts:  # a COCO object from loadRes
        dts = dts["annotations"]
    if not isinstance(dts, list):
        raise ValueError(f"dt must be a list of result dicts or a json path, got {type(dts)}")
    image = _positions(_column(dts, "image_id", "detection"), image_ids, dts, "detection",
                       "image_id")
    score = _numbers(dts, "score", "detection")  # (D,)
    if not np.isfinite(score).all():
        i = int(np.flatnonzero(~np.isfinite(score))[0])
        raise ValueError(f"{_describe('detection', i, dts[i])}: score must be a finite number")
    # a result with a bbox has the box area, as in pycocotools' loadRes (decided on the first one)
    has_box = iou_type == "bbox" or (len(dts) > 0 and dts[0].get("bbox", []) != [])
    box = _boxes(dts, "detection") if has_box else np.zeros((len(dts), 4))
    rle = _rles(dts, image, images, "detection") if iou_type == "segm" else None
    keypoints = None
    if iou_type == "keypoints":
        keypoints = _keypoints(dts, "detection", num_keypoints).reshape(-1, 3 * num_keypoints)
    if has_box:
        area = box[:, 2] * box[:, 3]  # (D,)
    elif keypoints is not None:  # the box around the keypoints, as loadRes computes it
        x, y = keypoints[:, 0::3], keypoints[:, 1::3]  # (D, K) each
        area = (x.max(axis=1, initial=-np.inf) - x.min(axis=1, initial=np.inf)) * (
            y.max(axis=1, initial=-np.inf) - y.min(axis=1, initial=np.inf))  # (D,)
    else:
        area = np.array(mask_utils.area(rle) if rle else [], dtype=np.float64)  # (D,)

    category = np.asarray(_column(dts, "category_id", "detection"))  # (D,)
    where = np.minimum(np.searchsorted(category_ids, category), len(category_ids) - 1)
    known = category_ids[where] == category if len(category_ids) else np.zeros(len(dts), bool)
    keep = np.flatnonzero(known)  # (D',) detections of GT categories
    return _Detections(
        image=image[keep],
        category=where[keep].astype(np.int64),
        score=score[keep],
        box=box.reshape(-1, 4)[keep],
        area=np.asarray(area, dtype=np.float64).reshape(-1)[keep],
        rle=[rle[i] for i in keep] if rle is not None else None,
        keypoints=keypoints[keep] if keypoints is not None else None,
    )


# --------------------------------------------------------------------------- 2. groups


def _rank_in_group(group: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort detections by group, then by decreasing score (stable: ties keep input order).

    Args:
        group: (D,) int64 group key of each detection.
        score: (D,) float64 scores.

    Returns:
        order: (D,) detection indices in that order.
        rank: (D,) rank of each detection inside its group, 0 for its best-scored detection.
    """
    order = np.lexsort((-score, group))  # (D,) lexsort is stable
    sorted_group = group[order]  # (D,)
    new_group = np.r_[True, sorted_group[1:] != sorted_group[:-1]]  # (D,)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))  # (D,)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - group_start
    return order, rank


# --------------------------------------------------------------------------- 3. pairs and IoU


def _pairs(dt_group: np.ndarray, gt_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, GT) pair of the same group.

    Args:
        dt_group: (D,) group key of each detection.
        gt_group: (G,) group key of each GT, any order.

    Returns:
        pair_dt: (P,) detection index, non-decreasing; pairs of one detection are contiguous.
        pair_gt: (P,) GT index; for each detection its GTs in input (annotation) order.
    """
    gt_order = np.argsort(gt_group, kind="stable")  # (G,) GTs by group, input order inside
    gt_sorted = gt_group[gt_order]  # (G,)
    first = np.searchsorted(gt_sorted, dt_group, side="left")  # (D,) first GT of each det's group
    count = np.searchsorted(gt_sorted, dt_group, side="right") - first  # (D,)
    pair_dt = np.repeat(np.arange(len(dt_group)), count)  # (P,)
    pair_start = np.cumsum(count) - count  # (D,) first pair of each detection
    offset = np.arange(len(pair_dt)) - np.repeat(pair_start, count)  # (P,) 0, 1, .. per det
    pair_gt = gt_order[np.repeat(first, count) + offset]  # (P,)
    return pair_dt, pair_gt


def _box_iou_pairs(dt_box: np.ndarray, gt_box: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of paired ``xywh`` boxes, the same float64 operations as pycocotools' ``bbIou``.

    For a crowd GT the union is the detection's area: IoU = |D ∩ G| / |D|.

    Args:
        dt_box: (P, 4) detection boxes.
        gt_box: (P, 4) GT boxes.
        gt_crowd: (P,) bool.

    Returns:
        (P,) IoU, 0 for disjoint boxes.
    """
    dx, dy, dw, dh = dt_box.T  # each (P,)
    gx, gy, gw, gh = gt_box.T
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)  # (P,)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)  # (P,)
    overlap = (w > 0) & (h > 0)  # (P,)
    inter = w * h  # (P,)
    dt_area = dw * dh  # (P,)
    union = np.where(gt_crowd, dt_area, dt_area + gw * gh - inter)  # (P,)
    return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _oks_pairs(pair_dt: np.ndarray, pair_gt: np.ndarray, dt_points: np.ndarray,
               gt: _GroundTruth, sigmas: np.ndarray) -> np.ndarray:
    """Object keypoint similarity of paired detections and GT, as pycocotools' ``computeOks``.

    OKS = mean over the GT's labelled keypoints (v > 0) of exp(-d^2 / (2 s^2 k^2)), with d the
    distance between the detected and the true point, s^2 the GT's ``area`` and k = 2 sigma.
    A GT without labelled keypoints measures, per detected point, how far it lies outside the
    GT box enlarged by its size on every side (zero inside), over all K points.

    Args:
        pair_dt, pair_gt: (P,) detection and GT of each pair.
        dt_points: (D, 3 K) detected keypoints.
        gt: the GT table (``keypoints``, ``box``, ``area``).
        sigmas: (K,) per-keypoint sigmas.

    Returns:
        (P,) OKS in [0, 1].
    """
    variances = (sigmas * 2) ** 2  # (K,)
    oks = np.zeros(len(pair_dt))
    for g in np.unique(pair_gt):  # one GT at a time: its labelled keypoints fix the shape of e
        pairs = np.flatnonzero(pair_gt == g)  # (n,)
        xg, yg, vg = gt.keypoints[g, 0::3], gt.keypoints[g, 1::3], gt.keypoints[g, 2::3]  # (K,)
        xd, yd = dt_points[pair_dt[pairs], 0::3], dt_points[pair_dt[pairs], 1::3]  # (n, K)
        labelled = vg > 0  # (K,)
        if labelled.any():
            dx, dy = xd - xg, yd - yg  # (n, K)
        else:  # distance to the GT box grown by its width / height on each side
            bx, by, bw, bh = gt.box[g]
            x0, x1, y0, y1 = bx - bw, bx + bw * 2, by - bh, by + bh * 2
            dx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)  # (n, K)
            dy = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)  # (n, K)
        e = (dx**2 + dy**2) / variances / (gt.area[g] + np.spacing(1)) / 2  # (n, K)
        if labelled.any():
            e = e[:, labelled]  # (n, K')
        for row, p in zip(np.ascontiguousarray(e), pairs, strict=True):
            oks[p] = np.sum(np.exp(-row)) / row.shape[0]  # pycocotools' 1-D sum, bit for bit
    return oks


def _mask_iou_pairs(pair_dt: np.ndarray, pair_gt: np.ndarray, pair_group: np.ndarray,
                    dt_rle: list, gt_rle: list, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of paired RLE masks by ``pycocotools.mask.iou``, one call per (image, category).

    Args:
        pair_dt, pair_gt: (P,) as returned by :func:`_pairs`: the pairs of one group form a
            block, detection-major, every detection with the same GT list.
        pair_group: (P,) group of each pair, non-decreasing.
        dt_rle, gt_rle: the masks of all detections / GTs.
        gt_crowd: (G,) bool.

    Returns:
        (P,) IoU.
    """
    iou = np.zeros(len(pair_dt))
    if len(pair_dt) == 0:
        return iou
    bounds = np.flatnonzero(np.r_[True, pair_group[1:] != pair_group[:-1], True])  # (B + 1,)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):  # segm only: a C call per group
        dts = np.unique(pair_dt[start:end])  # (D_b,)
        gts = pair_gt[start : start + (end - start) // len(dts)]  # (G_b,)
        block = mask_utils.iou([dt_rle[d] for d in dts], [gt_rle[g] for g in gts],
                               gt_crowd[gts].astype(np.uint8))  # (D_b, G_b)
        iou[start:end] = np.asarray(block, dtype=np.float64).reshape(-1)
    return iou


# --------------------------------------------------------------------------- 4. matching


def _match(pair_dt: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray, dt_rank: np.ndarray,
           gt_ignore: np.ndarray, gt_crowd: np.ndarray, iou_thresholds: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy COCO matching at every IoU threshold and area range at once.

    Detection after detection (best score first inside each group), take among the GT of the
    group that are free (not yet taken, or crowd) and have IoU >= threshold:
    the regular GT with the highest IoU, or if there is none the ignored GT with the highest IoU;
    ties go to the GT that comes last in annotation order. That is pycocotools' ``evaluateImg``
    loop: GT sorted regular-first, scanned with ``>=`` against the best IoU so far.

    Args:
        pair_dt: (P,) detection of each (detection, GT) pair of the same group.
        pair_gt: (P,) GT of each pair.
        pair_iou: (P,) IoU of each pair.
        dt_rank: (D,) rank of each detection in its group.
        gt_ignore: (A, G) bool, GT ignored in area range a (crowd or area outside the range).
        gt_crowd: (G,) bool.
        iou_thresholds: (T,) float64.

    Returns:
        t, a, dt, gt: (N,) each, one entry per detection that takes a GT at threshold t and area
        range a (indices into iou_thresholds, gt_ignore's rows, detections and GT).
    """
    T, A = len(iou_thresholds), gt_ignore.shape[0]
    thresholds = np.minimum(iou_thresholds, 1 - 1e-10)  # (T,) pycocotools' cap at 1 - 1e-10
    # order pairs by (detection rank, detection, IoU, GT); the position of a pair among its
    # detection's pairs is then a tie-free "goodness" key: higher IoU, then later GT, wins
    order = np.lexsort((pair_gt, pair_iou, pair_dt, dt_rank[pair_dt]))  # (P,)
    pair_dt, pair_gt, pair_iou = pair_dt[order], pair_gt[order], pair_iou[order]  # (P,)
    new_det = np.r_[True, pair_dt[1:] != pair_dt[:-1]]  # (P,)
    det_first_pair = np.maximum.accumulate(np.where(new_det, np.arange(len(pair_dt)), 0))  # (P,)
    goodness = np.arange(len(pair_dt)) - det_first_pair  # (P,)
    # any regular GT beats any ignored one
    regular_bonus = np.where(gt_ignore[:, pair_gt], 0, len(pair_dt) + 1)  # (A, P)
    key = regular_bonus + goodness  # (A, P)
    above = pair_iou >= thresholds[:, None]  # (T, P)

    taken = np.zeros((T, A, len(gt_crowd)), dtype=bool)  # GT already taken at (t, a)
    matches = []  # per rank: (t, a, dt, gt) arrays
    rank_bounds = np.searchsorted(dt_rank[pair_dt], np.arange(dt_rank.max(initial=-1) + 2))
    # one step per rank (<= 100), each step handles every group at once
    for start, stop in zip(rank_bounds[:-1], rank_bounds[1:], strict=True):
        if start == stop:
            continue
        gts, dts = pair_gt[start:stop], pair_dt[start:stop]  # (P_r,)
        det_start = np.flatnonzero(new_det[start:stop])  # (n_r,) first pair of each detection
        det_of_pair = np.cumsum(new_det[start:stop]) - 1  # (P_r,) 0..n_r-1
        free = ~taken[:, :, gts] | gt_crowd[gts]  # (T, A, P_r)
        eligible = free & above[:, None, start:stop]  # (T, A, P_r)
        candidate_key = np.where(eligible, key[None, :, start:stop], -1)  # (T, A, P_r)
        best = np.maximum.reduceat(candidate_key, det_start, axis=2)  # (T, A, n_r)
        chosen = eligible & (candidate_key == best[:, :, det_of_pair])  # (T, A, P_r) one per det
        t, a, p = np.nonzero(chosen)  # (N_r,) each
        taken[t, a, gts[p]] = True
        matches.append((t, a, dts[p], gts[p]))
    if not matches:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
    return tuple(np.concatenate(column) for column in zip(*matches, strict=True))


@dataclass
class _Outcomes:
    """What each detection is at each (threshold, area range): true positive, false positive or
    ignored. Stored sparsely: a detection that takes no GT is a false positive if its area is in
    the range and ignored otherwise, so only the matched ones need an entry.

    pycocotools' rules for a detection d at (t, a), with ``in_area`` its area in range a:

    * takes no GT: false positive if ``in_area`` else ignored;
    * takes a regular GT: true positive;
    * takes an ignored GT (crowd or outside range a): ignored;
    * exception: pycocotools reads GT id 0 as "no match", so taking the GT with id 0 is treated
      like taking none - unless that GT is ignored, in which case d is ignored.
    """

    dets: _Detections  # the D detections kept (<= max_dets[-1] per group)
    rank: np.ndarray  # (D,) rank in group
    merge_order: np.ndarray  # (D,) by category, decreasing score, image, rank
    in_area: np.ndarray  # (A, D) bool, detection area inside range a
    match_t: np.ndarray  # (N,) threshold index of each match
    match_a: np.ndarray  # (N,) area range index
    match_dt: np.ndarray  # (N,) detection
    match_is_tp: np.ndarray  # (N,) bool, the match makes d a true positive
    match_is_fp: np.ndarray  # (N,) bool, d is still a false positive (the GT-id-0 exception)
    num_gt: np.ndarray  # (K, A) regular GT per category and area range

    def dense(self, t: int, a: int) -> tuple[np.ndarray, np.ndarray]:
        """(D,) bool is_tp and (D,) bool is_fp at threshold index t and area range index a."""
        here = (self.match_t == t) & (self.match_a == a)  # (N,)
        is_tp = np.zeros(len(self.rank), dtype=bool)
        is_fp = self.in_area[a].copy()  # (D,) unmatched detections
        is_tp[self.match_dt[here]] = self.match_is_tp[here]
        is_fp[self.match_dt[here]] = self.match_is_fp[here]
        return is_tp, is_fp


def _outcomes(gt: _GroundTruth, dets: _Detections, num_categories: int, iou_type: str,
              iou_thresholds: np.ndarray, area_ranges: np.ndarray, max_det: int,
              sigmas: np.ndarray | None = None) -> _Outcomes:
    """Steps 2-4: rank, cut to ``max_det`` per group, pair, IoU, match; then TP / FP rules.

    Args:
        gt, dets: the tables.
        num_categories: K.
        iou_type: "bbox" or "segm".
        iou_thresholds: (T,).
        area_ranges: (A, 2) [low, high] areas, bounds included.
        max_det: detections kept per group.
        sigmas: (K,) per-keypoint OKS sigmas (keypoints only).
    """
    K = num_categories
    group = dets.image * K + dets.category  # (D,)
    order, rank = _rank_in_group(group, dets.score)  # (D,), (D,)
    kept = order[rank[order] < max_det]  # (D',) by group, then rank
    dets = _Detections(dets.image[kept], dets.category[kept], dets.score[kept], dets.box[kept],
                       dets.area[kept], [dets.rle[i] for i in kept] if dets.rle else None,
                       dets.keypoints[kept] if dets.keypoints is not None else None)
    rank, group = rank[kept], group[kept]  # (D',)

    pair_dt, pair_gt = _pairs(group, gt.image * K + gt.category)  # (P,), (P,)
    if iou_type == "bbox":
        pair_iou = _box_iou_pairs(dets.box[pair_dt], gt.box[pair_gt], gt.crowd[pair_gt])  # (P,)
    elif iou_type == "keypoints":
        pair_iou = _oks_pairs(pair_dt, pair_gt, dets.keypoints, gt, sigmas)  # (P,)
    else:
        pair_iou = _mask_iou_pairs(pair_dt, pair_gt, group[pair_dt], dets.rle, gt.rle,
                                   gt.crowd)  # (P,)

    low, high = area_ranges[:, :1], area_ranges[:, 1:]  # (A, 1) each
    flagged = gt.crowd if gt.ignore is None else gt.ignore  # (G,)
    gt_ignore = flagged | (gt.area < low) | (gt.area > high)  # (A, G)
    in_area = (dets.area >= low) & (dets.area <= high)  # (A, D)
    t, a, d, g = _match(pair_dt, pair_gt, pair_iou, rank, gt_ignore, gt.crowd,
                        iou_thresholds)  # (N,) each
    regular = ~gt_ignore[a, g]  # (N,)
    id_zero = gt.ann_id[g] == 0  # (N,)
    num_gt = np.stack([np.bincount(gt.category[~ignore], minlength=K) for ignore in gt_ignore],
                      axis=1)  # (K, A)
    merge_order = np.lexsort((rank, dets.image, -dets.score, dets.category))  # (D',)
    return _Outcomes(dets, rank, merge_order, in_area, t, a, d,
                     match_is_tp=regular & ~id_zero,
                     match_is_fp=id_zero & regular & in_area[a, d],
                     num_gt=num_gt)


# --------------------------------------------------------------------------- 5. accumulation


def _min_true_positives(num_gt: np.ndarray, recall_thresholds: np.ndarray) -> np.ndarray:
    """Fewest true positives whose recall ``tp / num_gt`` (float64) reaches each recall level.

    The same float64 division as pycocotools, so ``searchsorted(recall, r)`` there equals "first
    detection with that many true positives" here.

    Args:
        num_gt: (K, A) int number of regular GT.
        recall_thresholds: (R,).

    Returns:
        (K, A, R) int64, 0 for r = 0.
    """
    n = np.maximum(num_gt, 1).astype(np.float64)[..., None]  # (K, A, 1)
    guess = np.floor(recall_thresholds * n) - 1  # (K, A, R)
    candidates = np.clip(guess[None] + np.arange(4.0)[:, None, None, None], 0, n)  # (4, K, A, R)
    reached = candidates / n >= recall_thresholds  # (4, K, A, R)
    first = np.argmax(reached, axis=0)[None]  # (1, K, A, R)
    return np.take_along_axis(candidates, first, axis=0)[0].astype(np.int64)  # (K, A, R)


def _precision_at_recalls(tp_segment: np.ndarray, tp_precision: np.ndarray, num_segments: int,
                          min_tp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at each recall level, for many precision curves at once.

    Each curve (*segment*) is given by its true positives only: the precision of the curve
    after its j-th TP. The interpolated precision at recall level r is the best precision at any
    recall >= r, i.e. the max over TPs j >= min_tp[r] (0 when there are fewer TPs). Between two
    TPs precision only falls, so maxima over TPs are maxima over the whole curve.

    Args:
        tp_segment: (N,) segment of each TP, non-decreasing; TPs of a segment in score order.
        tp_precision: (N,) precision after each TP.
        num_segments: S.
        min_tp: (S, R) TPs needed for each recall level.

    Returns:
        precision: (S, R) interpolated precision, 0 where the recall level is not reached.
        num_tp: (S,) TPs per segment.
    """
    num_tp = np.bincount(tp_segment, minlength=num_segments)  # (S,)
    first_tp = np.cumsum(num_tp) - num_tp  # (S,) position of the segment's first TP
    needed = np.maximum(min_tp, 1)  # (S, R) recall 0 is read at the first TP too
    reached = needed <= num_tp[:, None]  # (S, R)
    position = (first_tp[:, None] + needed - 1)[reached]  # (V,) non-decreasing
    precision = np.zeros(reached.shape)  # (S, R)
    if len(position):
        # max over TPs from one recall level to the next; the last range of a segment ends where
        # the next non-empty segment starts, because every non-empty segment reaches recall 0
        precision[reached] = np.maximum.reduceat(tp_precision, position)  # (V,)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # (S, R) best at >= r
    return precision, num_tp


def _segment_cumsum(values: np.ndarray, segment: np.ndarray, num_segments: int) -> np.ndarray:
    """Inclusive running sum of ``values`` that restarts at every segment.

    Args:
        values: (N,) numbers (bool counts as 0 / 1).
        segment: (N,) non-decreasing segment of each entry.
        num_segments: S.

    Returns:
        (N,) int64 running sums.
    """
    running = np.cumsum(values, dtype=np.int64)  # (N,)
    first = np.r_[0, np.cumsum(np.bincount(segment, minlength=num_segments))]  # (S + 1,)
    return running - np.r_[0, running][first[segment]]  # (N,)


def _accumulate(out: _Outcomes, num_thresholds: int, max_dets: tuple[int, ...],
                recall_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision / recall tables from the matches (pycocotools' ``accumulate``).

    For each max-detections cut m, category k, threshold t and area range a, the detections of
    all images are merged by decreasing score (ties: image, then rank in group): a *curve*. At
    the position of each true positive we need the TPs and the FPs so far. TPs are matches. FPs
    so far = detections in the area range so far - those of them that took a GT + the GT-id-0
    exception; only the first term needs a pass over all detections, and it does not depend on t.

    Args:
        out: the matching outcomes.
        num_thresholds: T.
        max_dets: (M,) detections kept per image and category.
        recall_thresholds: (R,).

    Returns:
        precision: (T, R, K, A, M), -1 where out.num_gt == 0.
        recall: (T, K, A, M), -1 where out.num_gt == 0.
    """
    T, (A, D) = num_thresholds, out.in_area.shape
    K, R, M = out.num_gt.shape[0], len(recall_thresholds), len(max_dets)
    S = T * A * K  # curves per cut, curve s = (t * A + a) * K + k
    min_tp = _min_true_positives(out.num_gt, recall_thresholds)  # (K, A, R)
    min_tp = np.broadcast_to(min_tp.transpose(1, 0, 2), (T, A, K, R)).reshape(S, R)
    merge_position = np.empty(D, dtype=np.int64)
    merge_position[out.merge_order] = np.arange(D)  # (D,) place in the merge order
    # matches by curve, then merge order (for every cut: a cut only drops some of them)
    k = out.dets.category[out.match_dt]  # (N,)
    segment = (out.match_t * A + out.match_a) * K + k  # (N,)
    by_curve = np.lexsort((merge_position[out.match_dt], segment))  # (N,)
    a, d, k, segment = (x[by_curve] for x in (out.match_a, out.match_dt, k, segment))  # (N,)
    is_tp, is_fp = out.match_is_tp[by_curve], out.match_is_fp[by_curve]  # (N,)
    precision = np.empty((T, R, K, A, M))
    recall = np.empty((T, K, A, M))
    for m, max_det in enumerate(max_dets):  # M = 3
        in_cut = out.rank[out.merge_order] < max_det  # (D,) in merge order
        order = out.merge_order[in_cut]  # (n,) the detections of this cut, merge order
        cut_position = np.cumsum(in_cut) - 1  # (D,) merge position -> position in the cut
        category_start = np.searchsorted(out.dets.category[order], np.arange(K))  # (K,)
        in_area_so_far = np.cumsum(out.in_area[:, order], axis=1)  # (A, n) inclusive
        in_area_before = np.concatenate([np.zeros((A, 1), np.int64), in_area_so_far], axis=1)
        in_area_before = in_area_before[:, category_start]  # (A, K) earlier categories

        keep = out.rank[d] < max_det  # (N,) matches of detections in the cut
        a_m, d_m, k_m, segment_m = a[keep], d[keep], k[keep], segment[keep]  # (N_m,)
        is_tp_m = is_tp[keep]  # (N_m,)
        pos = cut_position[merge_position[d_m]]  # (N_m,)
        tp_count = _segment_cumsum(is_tp_m, segment_m, S)  # (N_m,) TPs so far in the curve
        # FPs so far: the curve's detections in the area range so far ...
        in_range = in_area_so_far[a_m, pos] - in_area_before[a_m, k_m]  # (N_m,)
        # ... minus those of them that took a GT, plus the GT-id-0 exception
        took_gt = _segment_cumsum(out.in_area[a_m, d_m], segment_m, S)  # (N_m,)
        exception = _segment_cumsum(is_fp[keep], segment_m, S)  # (N_m,)
        fp_count = in_range - took_gt + exception  # (N_m,)
        tp_count = tp_count[is_tp_m].astype(float)  # (N_tp,)
        fp_count = fp_count[is_tp_m].astype(float)  # (N_tp,)
        tp_precision = tp_count / (fp_count + tp_count + np.spacing(1))  # (N_tp,) as pycocotools
        curve, num_tp = _precision_at_recalls(segment_m[is_tp_m], tp_precision, S, min_tp)
        precision[..., m] = curve.reshape(T, A, K, R).transpose(0, 3, 2, 1)  # (T, R, K, A)
        num_tp = num_tp.reshape(T, A, K).transpose(0, 2, 1)  # (T, K, A)
        recall[..., m] = num_tp / np.maximum(out.num_gt, 1)  # (T, K, A)
    undefined = out.num_gt == 0  # (K, A)
    precision[:, :, undefined, :] = -1
    recall[:, undefined, :] = -1
    return precision, recall


# --------------------------------------------------------------------------- 6. summary


def _mean_defined(values: np.ndarray) -> float:
    """Mean of the entries > -1, -1 if there are none (pycocotools' ``_summarize``)."""
    defined = values[values > -1]
    return np.mean(defined) if len(defined) else -1


def _summary_stats(precision: np.ndarray, recall: np.ndarray, iou_thresholds: np.ndarray,
                   max_dets: tuple[int, ...], area_names: list[str]) -> np.ndarray:
    """The 12 numbers of ``COCOeval.summarize()``, same order, same float64 arithmetic.

    Args:
        precision: (T, R, K, A, M).
        recall: (T, K, A, M).

    Returns:
        (12,) float64: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl.
    """

    def stat(ap: bool, iou=None, area="all", max_det=100) -> float:
        a, m = [area_names.index(area)], [list(max_dets).index(max_det)]
        values = precision if ap else recall
        if iou is not None:
            values = values[np.where(iou == iou_thresholds)[0]]  # (1, ...)
        values = values[:, :, :, a, m] if ap else values[:, :, a, m]  # indexed as pycocotools
        return _mean_defined(values)

    last = max_dets[-1]
    return np.array([
        stat(True), stat(True, iou=0.5, max_det=last), stat(True, iou=0.75, max_det=last),
        stat(True, area="small", max_det=last), stat(True, area="medium", max_det=last),
        stat(True, area="large", max_det=last),
        stat(False, max_det=max_dets[0]), stat(False, max_det=max_dets[1]),
        stat(False, max_det=last), stat(False, area="small", max_det=last),
        stat(False, area="medium", max_det=last), stat(False, area="large", max_det=last),
    ], dtype=np.float64)


def _keypoint_summary_stats(precision: np.ndarray, recall: np.ndarray,
                            iou_thresholds: np.ndarray, area_names: list[str]) -> np.ndarray:
    """The 10 numbers of pycocotools' ``summarizeKps`` (20 detections per image).

    Args:
        precision: (T, R, K, A, 1).
        recall: (T, K, A, 1).

    Returns:
        (10,) float64: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl.
    """

    def stat(ap: bool, iou=None, area="all") -> float:
        a = [area_names.index(area)]
        values = precision if ap else recall
        if iou is not None:
            values = values[np.where(iou == iou_thresholds)[0]]  # (1, ...)
        values = values[:, :, :, a, [0]] if ap else values[:, :, a, [0]]
        return _mean_defined(values)

    return np.array([
        stat(True), stat(True, iou=0.5), stat(True, iou=0.75), stat(True, area="medium"),
        stat(True, area="large"), stat(False), stat(False, iou=0.5), stat(False, iou=0.75),
        stat(False, area="medium"), stat(False, area="large"),
    ], dtype=np.float64)


@dataclass
class COCOEvalResult:
    """What :func:`coco_eval` returns.

    Attributes:
        stats: (12,) pycocotools' ``COCOeval.stats``; names in :data:`STAT_NAMES` (for
            keypoints (10,), names in :data:`KEYPOINT_STAT_NAMES`).
        precision: (T, R, K, A, M) interpolated precision; -1 where undefined.
        recall: (T, K, A, M) recall at the last detection; -1 where undefined.
        category_ids: (K,) sorted GT category ids, the K axis.
        category_names: K names.
        iou_type: "bbox", "segm" or "keypoints".
        iou_thresholds: (T,), recall_thresholds: (R,), area_names: A names, max_dets: (M,).
    """

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    iou_type: str
    iou_thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS)
    recall_thresholds: np.ndarray = field(default_factory=lambda: RECALL_THRESHOLDS)
    area_names: list[str] = field(default_factory=lambda: list(AREA_RANGES))
    max_dets: tuple[int, ...] = MAX_DETS

    @property
    def stat_names(self) -> tuple[str, ...]:
        """The names of ``stats``: :data:`STAT_NAMES`, or :data:`KEYPOINT_STAT_NAMES`."""
        return KEYPOINT_STAT_NAMES if self.iou_type == "keypoints" else STAT_NAMES

    @property
    def named(self) -> dict[str, float]:
        """``{"AP": .., "AP50": .., ..., "ARl": ..}``: the stats by name."""
        return {name: float(v) for name, v in zip(self.stat_names, self.stats, strict=True)}

    @property
    def per_category_ap(self) -> dict[int, float]:
        """{category id: AP@[.5:.95], all areas, 100 dets}; -1 for categories without GT."""
        values = self.precision[:, :, :, 0, -1]  # (T, R, K)
        return {
            int(c): float(_mean_defined(values[:, :, k])) for k, c in enumerate(self.category_ids)
        }

    def summary(self) -> str:
        """pycocotools' 12 summary lines, then a per-category AP table."""
        lines = []
        for name, value in zip(self.stat_names, self.stats, strict=True):
            kind = "Average Precision  (AP)" if name.startswith("AP") else "Average Recall     (AR)"
            iou = {"50": "0.50", "75": "0.75"}.get(name[2:], "0.50:0.95")
            area = {"s": "small", "m": "medium", "l": "large"}.get(name[-1], "all")
            max_det = {"AR1": 1, "AR10": 10}.get(name, self.max_dets[-1])
            lines.append(f" {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_det:>3d} ]"
                         f" = {value:0.3f}")
        lines.append("")
        lines.append(f" {'category':<20} {'id':>5} {'AP':>6}")
        for (cid, ap), name in zip(self.per_category_ap.items(), self.category_names, strict=True):
            lines.append(f" {name[:20]:<20} {cid:>5} {ap:>6.3f}" if ap > -1 else
                         f" {name[:20]:<20} {cid:>5} {'-':>6}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------- the pipeline


def _check_iou_type(iou_type: str) -> None:
    """ValueError unless ``iou_type`` is "bbox" or "segm"."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")


def _check_sigmas(kpt_oks_sigmas) -> np.ndarray:
    """(K,) float64 sigmas; ValueError unless a non-empty 1-D list of positive numbers."""
    sigmas = COCO_KEYPOINT_SIGMAS if kpt_oks_sigmas is None else kpt_oks_sigmas
    try:
        sigmas = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError):
        sigmas = None
    if sigmas is None or sigmas.ndim != 1 or not len(sigmas) or not (np.isfinite(sigmas)
                                                                     & (sigmas > 0)).all():
        raise ValueError(f"kpt_oks_sigmas must be a 1-D list of positive numbers, one per "
                         f"keypoint, got {kpt_oks_sigmas!r}")
    return sigmas


def coco_eval(gt, dt, iou_type: str = "bbox", *, kpt_oks_sigmas=None) -> COCOEvalResult:
    """COCO mAP and friends, bit-identical to pycocotools' ``COCOeval`` (see the module doc).

    Args:
        gt: COCO ground truth: a dict (``images``, ``annotations``, ``categories``), a json path,
            or a pycocotools ``COCO`` object.
        dt: detections: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
            dicts (``"segmentation"`` RLE for segm), a json path, or the ``COCO`` object of
            ``loadRes``. Not modified.
        iou_type: "bbox" (box IoU), "segm" (mask IoU of RLEs, by ``pycocotools.mask``) or
            "keypoints" (OKS; GT and detections carry ``"keypoints": [x1, y1, v1, ...]``, GT
            also ``num_keypoints``).
        kpt_oks_sigmas: (K,) OKS sigma of each keypoint slot, for "keypoints" (default: COCO's
            17 person sigmas, like pycocotools' ``params.kpt_oks_sigmas``).

    Returns:
        a :class:`COCOEvalResult`; ``.stats`` and ``.named`` hold the summary numbers (12, or
        10 for keypoints).
    """
    _check_iou_type(iou_type)
    if iou_type == "keypoints":
        return _coco_eval_keypoints(gt, dt, _check_sigmas(kpt_oks_sigmas))
    gt_table, image_ids, category_ids, names, images = _ground_truth(gt, iou_type)
    dets = _detections(dt, image_ids, category_ids, images, iou_type)
    area_ranges = np.array(list(AREA_RANGES.values()))  # (A, 2)
    outcomes = _outcomes(gt_table, dets, len(category_ids), iou_type, IOU_THRESHOLDS,
                         area_ranges, MAX_DETS[-1])
    precision, recall = _accumulate(outcomes, len(IOU_THRESHOLDS), MAX_DETS, RECALL_THRESHOLDS)
    stats = _summary_stats(precision, recall, IOU_THRESHOLDS, MAX_DETS, list(AREA_RANGES))
    return COCOEvalResult(stats, precision, recall, category_ids,
                          [names.get(c, str(c)) for c in category_ids.tolist()], iou_type)


def _coco_eval_keypoints(gt, dt, sigmas: np.ndarray) -> COCOEvalResult:
    """:func:`coco_eval` with OKS, pycocotools' keypoint parameters (maxDets 20, 3 area ranges)."""
    K = len(sigmas)
    gt_table, image_ids, category_ids, names, images = _ground_truth(gt, "keypoints", K)
    dets = _detections(dt, image_ids, category_ids, images, "keypoints", K)
    area_ranges = np.array(list(KEYPOINT_AREA_RANGES.values()))  # (3, 2)
    outcomes = _outcomes(gt_table, dets, len(category_ids), "keypoints", IOU_THRESHOLDS,
                         area_ranges, KEYPOINT_MAX_DETS[-1], sigmas)
    precision, recall = _accumulate(outcomes, len(IOU_THRESHOLDS), KEYPOINT_MAX_DETS,
                                    RECALL_THRESHOLDS)
    stats = _keypoint_summary_stats(precision, recall, IOU_THRESHOLDS, list(KEYPOINT_AREA_RANGES))
    return COCOEvalResult(stats, precision, recall, category_ids,
                          [names.get(c, str(c)) for c in category_ids.tolist()], "keypoints",
                          area_names=list(KEYPOINT_AREA_RANGES), max_dets=KEYPOINT_MAX_DETS)


# --------------------------------------------------------------------------- PR curve


@dataclass
class PRCurve:
    """Precision-recall data of one category, one detection per entry in decreasing score.

    Ignored detections (matched to crowd / out-of-range GT, or out-of-range and unmatched) are
    left out. ``interpolated`` is the curve COCO integrates: best precision at any recall >= r.

    Attributes:
        scores: (N,) detection scores, decreasing.
        precision: (N,) precision after each detection.
        recall: (N,) recall after each detection.
        interpolated: (N,) non-increasing envelope of ``precision``.
        num_gt: number of regular GT of the category.
    """

    scores: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    interpolated: np.ndarray
    num_gt: int


def precision_recall_curve(gt, dt, category_id, iou_threshold: float = 0.5,
                           iou_type: str = "bbox", area: str = "all",
                           max_dets: int = 100) -> PRCurve:
    """COCO-matched precision-recall curve of one category, for plots.

    Args:
        gt, dt: as in :func:`coco_eval`.
        category_id: the category (its id in ``gt["categories"]``).
        iou_threshold: minimum IoU of a match, in [0, 1].
        iou_type: "bbox" or "segm" (keypoint curves: read ``coco_eval(...).precision``).
        area: one of ``AREA_RANGES`` ("all", "small", "medium", "large").
        max_dets: detections kept per image.

    Returns:
        a :class:`PRCurve`.
    """
    _check_iou_type(iou_type)
    if iou_type == "keypoints":
        raise ValueError("iou_type='keypoints' is not supported by precision_recall_curve; "
                         "use coco_eval(gt, dt, 'keypoints').precision")
    if area not in AREA_RANGES:
        raise ValueError(f"area must be one of {list(AREA_RANGES)}, got {area!r}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    gt_table, image_ids, category_ids, _, images = _ground_truth(gt, iou_type)
    if category_id not in set(category_ids.tolist()):
        raise ValueError(f"category_id {category_id!r} is not in gt['categories']")
    dets = _detections(dt, image_ids, category_ids, images, iou_type)
    out = _outcomes(gt_table, dets, len(category_ids), iou_type, np.array([iou_threshold]),
                    np.array([AREA_RANGES[area]]), max_dets)
    k = int(np.searchsorted(category_ids, category_id))
    order = out.merge_order[out.dets.category[out.merge_order] == k]  # (n,) by decreasing score
    is_tp, is_fp = out.dense(0, 0)  # (D,) each
    order = order[is_tp[order] | is_fp[order]]  # (N,) not ignored
    tp = np.cumsum(is_tp[order]).astype(np.float64)  # (N,)
    fp = np.cumsum(is_fp[order]).astype(np.float64)  # (N,)
    num_gt = int(out.num_gt[k, 0])
    precision = tp / (fp + tp + np.spacing(1))  # (N,)
    recall = tp / num_gt if num_gt else np.zeros_like(tp)  # (N,)
    interpolated = np.maximum.accumulate(precision[::-1])[::-1]  # (N,)
    return PRCurve(out.dets.score[order], precision, recall, interpolated, num_gt)
