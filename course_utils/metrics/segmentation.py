"""Semantic segmentation metrics from a confusion matrix.

Everything starts from the (C, C) confusion matrix ``cm``: ``cm[i, j]`` is the number of pixels
of true class i predicted as class j. Pixels whose target is ``ignore_index`` (e.g. 255 for
"void" borders in VOC) are not counted at all.

* IoU of class c = cm[c, c] / (pixels of c in target + pixels predicted as c - cm[c, c]);
  NaN when class c appears in neither.
* mIoU = mean of the defined per-class IoUs.
* pixel accuracy = correctly labelled pixels / counted pixels.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_labels(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise ValueError(f"{name} must hold integer class labels, got dtype {x.dtype}")
    return x.astype(np.int64)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None
                     ) -> np.ndarray:
    """Count pixels per (true class, predicted class).

    Args:
        pred: (...) predicted labels in [0, num_classes), NumPy or torch, any shape.
        target: (...) true labels, same shape; ``ignore_index`` marks pixels not to count.
        num_classes: C.
        ignore_index: label of the pixels to skip (None: none).

    Returns:
        (C, C) int64, rows = true class, columns = predicted class.
    """
    pred, target = _as_labels(pred, "pred"), _as_labels(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}")
    counted = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    pred, target = pred[counted], target[counted]  # (N,) counted pixels
    for name, labels in (("target", target), ("pred", pred)):
        outside = (labels < 0) | (labels >= num_classes)
        if outside.any():
            raise ValueError(f"{name} contains {labels[outside][0]}, outside [0, {num_classes}) "
                             f"(ignore_index={ignore_index})")
    pairs = target * num_classes + pred  # (N,)
    return np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """(C,) IoU per class from a (C, C) confusion matrix; NaN for a class absent from both."""
    cm = np.asarray(cm, dtype=np.float64)
    true_positive = np.diag(cm)  # (C,)
    union = cm.sum(axis=1) + cm.sum(axis=0) - true_positive  # (C,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of the defined per-class IoUs (NaN if no class is defined)."""
    iou = per_class_iou(cm)
    return float(np.mean(iou[~np.isnan(iou)])) if (~np.isnan(iou)).any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels labelled correctly (NaN if no pixel is counted)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")
