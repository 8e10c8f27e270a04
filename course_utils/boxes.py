"""Bounding boxes: formats, areas, IoU, GIoU and non-maximum suppression.

Readable reference implementations; tests hold them against ``torchvision.ops``. Every function
takes torch tensors or NumPy arrays and returns the same kind.

Box formats (one box = 4 numbers, in pixels unless said otherwise):

* ``xyxy``   - (x1, y1, x2, y2): top-left and bottom-right corners, x2 >= x1, y2 >= y1.
* ``xywh``   - (x1, y1, w, h): top-left corner, width and height (COCO's ``bbox``).
* ``cxcywh`` - (cx, cy, w, h): centre, width and height (YOLO, DETR).

In all three, columns 0 and 2 measure along x and columns 1 and 3 along y.

Conventions where ``torchvision.ops`` leaves a NaN: the IoU of two zero-area boxes is 0 (their
union is empty), and so is the enclosing-box penalty of GIoU when the enclosing box is empty.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

Array = TypeVar("Array", torch.Tensor, np.ndarray)


# --------------------------------------------------------------------------- input checks


def _to_tensor(x, name: str) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy); floats keep their dtype, integers become the default float dtype."""
    if isinstance(x, np.ndarray):
        t, was_numpy = torch.from_numpy(np.ascontiguousarray(x)), True
    elif isinstance(x, torch.Tensor):
        t, was_numpy = x, False
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t, was_numpy


def _back(t: torch.Tensor, was_numpy: bool):
    return t.numpy() if was_numpy else t


def _check_format(fmt: str, name: str) -> None:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{name}={fmt!r} is not a box format; expected one of {BOX_FORMATS}")


def _check_boxes(t: torch.Tensor, name: str, fmt: str = "xyxy", ndim: int | None = None) -> None:
    """Raise ValueError naming ``name`` unless ``t`` holds valid boxes in ``fmt``."""
    if ndim is not None and t.dim() != ndim:
        want = "(N, 4)" if ndim == 2 else f"{ndim} dimensions"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if t.dim() == 0 or t.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 numbers per box (last dim 4), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        return
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    flat = t.reshape(-1, 4)
    if fmt == "xyxy":
        bad = (flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])
        what = "x2 >= x1 and y2 >= y1 (format xyxy)"
    else:
        bad = (flat[:, 2] < 0) | (flat[:, 3] < 0)
        what = f"non-negative width and height (format {fmt})"
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{i}] = {flat[i].tolist()} is not a valid box: expected {what}")


# --------------------------------------------------------------------------- formats


def convert_boxes(boxes: Array, in_fmt: str, out_fmt: str) -> Array:
    """Convert boxes between ``xyxy``, ``xywh`` and ``cxcywh``.

    Args:
        boxes: (..., 4) boxes in ``in_fmt``.
        in_fmt: format of ``boxes``.
        out_fmt: wanted format.

    Returns:
        (..., 4) boxes in ``out_fmt``, same kind (tensor/array) as the input.
    """
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    t, was_numpy = _to_tensor(boxes, "boxes")
    _check_boxes(t, "boxes", in_fmt)
    a, b, c, d = t.unbind(-1)
    # first to xyxy ...
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    # ... then to out_fmt
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return _back(torch.stack([a, b, c, d], dim=-1), was_numpy)


def _image_scale(size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (height, width) with both > 0, got {size!r}")
    h, w = size
    return torch.tensor([w, h, w, h], dtype=like.dtype, device=like.device)  # (4,)


def normalize_boxes(boxes: Array, size: tuple[int, int]) -> Array:
    """Pixels -> fractions of the image: divide x-columns by the width, y-columns by the height.

    Args:
        boxes: (..., 4) boxes in any of the three formats.
        size: (height, width) of the image.

    Returns:
        (..., 4) boxes with coordinates in [0, 1] for boxes inside the image.
    """
    t, was_numpy = _to_tensor(boxes, "boxes")
    _check_boxes(t, "boxes", "xywh")  # sign checks on columns 2,3 hold for xyxy inside the image too
    return _back(t / _image_scale(size, t), was_numpy)


def denormalize_boxes(boxes: Array, size: tuple[int, int]) -> Array:
    """Fractions of the image -> pixels; the inverse of :func:`normalize_boxes`."""
    t, was_numpy = _to_tensor(boxes, "boxes")
    _check_boxes(t, "boxes", "xywh")
    return _back(t * _image_scale(size, t), was_numpy)


def clip_boxes(boxes: Array, size: tuple[int, int]) -> Array:
    """Clip (..., 4) ``xyxy`` boxes to an image of ``size`` = (height, width)."""
    t, was_numpy = _to_tensor(boxes, "boxes")
    _check_boxes(t, "boxes", "xyxy")
    scale = _image_scale(size, t)
    return _back(torch.minimum(t.clamp(min=0), scale), was_numpy)


# --------------------------------------------------------------------------- areas and overlaps


def box_area(boxes: Array) -> Array:
    """Areas of (..., 4) ``xyxy`` boxes, shape (...)."""
    t, was_numpy = _to_tensor(boxes, "boxes")
    _check_boxes(t, "boxes", "xyxy")
    return _back((t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1]), was_numpy)


def _inter_union(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection and union areas of ``xyxy`` boxes that broadcast: (..., 4) and (..., 4) -> (...)."""
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    top_left = torch.maximum(b1[..., :2], b2[..., :2])
    bottom_right = torch.minimum(b1[..., 2:], b2[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    return inter, union


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den == 0 (no NaN, no NaN gradient)."""
    nonzero = den > 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), 0.0)


def _pair(boxes1, boxes2) -> tuple[torch.Tensor, torch.Tensor, bool]:
    b1, was_numpy = _to_tensor(boxes1, "boxes1")
    b2, _ = _to_tensor(boxes2, "boxes2")
    _check_boxes(b1, "boxes1", "xyxy", ndim=2)
    _check_boxes(b2, "boxes2", "xyxy", ndim=2)
    dtype = torch.promote_types(b1.dtype, b2.dtype)
    return b1.to(dtype), b2.to(dtype), was_numpy


def box_iou(boxes1: Array, boxes2: Array) -> Array:
    """Pairwise intersection over union of two sets of ``xyxy`` boxes.

    IoU(A, B) = |A ∩ B| / |A ∪ B|; 0 when the union is empty (two zero-area boxes).

    Args:
        boxes1: (N, 4) boxes.
        boxes2: (M, 4) boxes.

    Returns:
        (N, M) IoU values in [0, 1].
    """
    b1, b2, was_numpy = _pair(boxes1, boxes2)
    inter, union = _inter_union(b1[:, None], b2[None, :])  # (N, M), (N, M)
    return _back(_safe_div(inter, union), was_numpy)


def paired_box_iou(boxes1: Array, boxes2: Array) -> Array:
    """Intersection over union of matched pairs of ``xyxy`` boxes: ``boxes1[i]`` with ``boxes2[i]``.

    The same IoU as :func:`box_iou` (0 when the union is empty), element by element instead of
    every pair: e.g. a detector's predicted box against the target box of the same cell.

    Args:
        boxes1: (..., 4) boxes.
        boxes2: (..., 4) boxes, broadcastable against ``boxes1``.

    Returns:
        (...) IoU values in [0, 1], the broadcast shape without the last dimension.
    """
    b1, was_numpy = _to_tensor(boxes1, "boxes1")
    b2, _ = _to_tensor(boxes2, "boxes2")
    _check_boxes(b1, "boxes1", "xyxy")
    _check_boxes(b2, "boxes2", "xyxy")
    inter, union = _inter_union(b1, b2)
    return _back(_safe_div(inter, union), was_numpy)


def generalized_box_iou(boxes1: Array, boxes2: Array) -> Array:
    """Pairwise generalized IoU (Rezatofighi et al., CVPR 2019) of ``xyxy`` boxes.

    GIoU(A, B) = IoU(A, B) - |C \\ (A ∪ B)| / |C|, with C the smallest box enclosing A and B.
    It lies in [-1, 1] and, unlike IoU, still says how far apart two disjoint boxes are.

    Args:
        boxes1: (N, 4) boxes.
        boxes2: (M, 4) boxes.

    Returns:
        (N, M) GIoU values.
    """
    b1, b2, was_numpy = _pair(boxes1, boxes2)
    inter, union = _inter_union(b1[:, None], b2[None, :])  # (N, M)
    iou = _safe_div(inter, union)
    top_left = torch.minimum(b1[:, None, :2], b2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.maximum(b1[:, None, 2:], b2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    enclosing = wh[..., 0] * wh[..., 1]  # (N, M)
    return _back(iou - _safe_div(enclosing - union, enclosing), was_numpy)


# --------------------------------------------------------------------------- suppression


def _check_scores(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> None:
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have shape ({boxes.shape[0]},), one per box, got {tuple(scores.shape)}"
        )
    if not torch.isfinite(scores).all():
        raise ValueError("scores contains NaN or infinite values")
    if not isinstance(iou_threshold, (int, float)) or not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be a number in [0, 1], got {iou_threshold!r}")


def nms(boxes: Array, scores: Array, iou_threshold: float) -> Array:
    """Greedy non-maximum suppression.

    Repeatedly keep the highest-scoring remaining box and discard every box whose IoU with it is
    strictly greater than ``iou_threshold`` (as ``torchvision.ops.nms`` does).

    Args:
        boxes: (N, 4) ``xyxy`` boxes.
        scores: (N,) scores.
        iou_threshold: boxes overlapping a kept box by more than this are discarded.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    b, was_numpy = _to_tensor(boxes, "boxes")
    s, _ = _to_tensor(scores, "scores")
    _check_boxes(b, "boxes", "xyxy", ndim=2)
    _check_scores(b, s, iou_threshold)
    order = torch.argsort(s, descending=True, stable=True)  # (N,)
    iou = box_iou(b[order], b[order])  # (N, N), rows and columns in score order
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=b.device)  # on the boxes' device (CUDA too)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    kept = order[torch.tensor(keep, dtype=torch.long, device=b.device)]  # (K,)
    return _back(kept.to(torch.int64), was_numpy)


def batched_nms(boxes: Array, scores: Array, idxs: Array, iou_threshold: float) -> Array:
    """Non-maximum suppression within each category: boxes of different ``idxs`` never suppress
    each other.

    Args:
        boxes: (N, 4) ``xyxy`` boxes.
        scores: (N,) scores.
        idxs: (N,) integer category (or image) of each box.
        iou_threshold: as in :func:`nms`.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    b, was_numpy = _to_tensor(boxes, "boxes")
    s, _ = _to_tensor(scores, "scores")
    groups = torch.from_numpy(np.asarray(idxs)) if isinstance(idxs, np.ndarray) else idxs
    if not isinstance(groups, torch.Tensor) or groups.shape != s.shape:
        raise ValueError(f"idxs must have shape ({len(s)},), one per box")
    _check_boxes(b, "boxes", "xyxy", ndim=2)
    _check_scores(b, s, iou_threshold)
    kept = [
        torch.nonzero(groups == g).flatten()[nms(b[groups == g], s[groups == g], iou_threshold)]
        for g in torch.unique(groups)
    ]
    kept = torch.cat(kept) if kept else torch.empty(0, dtype=torch.int64)  # (K,)
    kept = kept[torch.argsort(s[kept], descending=True, stable=True)]
    return _back(kept.to(torch.int64), was_numpy)
