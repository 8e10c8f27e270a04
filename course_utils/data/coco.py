"""COCO-format export: ground truth from a dataset, detections from a model.

The COCO dict is what ``pycocotools.coco.COCO`` and ``course_utils.metrics.coco_eval`` read:

    {"images": [{"id", "width", "height", "file_name"}],
     "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area",
                      "iscrowd", "segmentation": RLE, "keypoints": [x1, y1, v1, ...],
                      "num_keypoints"}],
     "categories": [{"id", "name", "supercategory", "keypoints": [names], "skeleton": [[i, j]]}]}

Masks are run-length encoded by ``pycocotools.mask`` (COCO's own RLE); ``area`` is the number of
mask pixels, as in COCO, not the box area.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils

from .shapes import SHAPE_KEYPOINTS


def encode_mask(mask) -> dict:
    """(H, W) binary mask -> COCO RLE with a JSON-friendly ``counts`` string."""
    arr = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if arr.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {arr.shape}")
    rle = mask_utils.encode(arr)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    out = boxes.astype(np.float64).copy()
    out[:, 2:] -= out[:, :2]
    return out


def shapes_to_coco(dataset) -> dict:
    """Ground truth of a :class:`~course_utils.data.shapes.ShapesDataset` as a COCO dict.

    Uses the untransformed scenes, so the export is the same whatever ``dataset.transforms``.
    """
    size = dataset.config.image_size
    images, annotations = [], []
    for index in range(len(dataset)):
        _, boxes, labels, masks, _, keypoints = dataset.scene(index, keypoints=True)
        images.append({"id": index, "width": size, "height": size, "file_name": f"shapes_{index:06d}.png"})
        for box, label, mask, points in zip(_xyxy_to_xywh(boxes), labels, masks, keypoints):
            annotations.append({
                "id": len(annotations) + 1,  # COCO ids start at 1
                "image_id": index,
                "category_id": int(label),
                "bbox": [float(v) for v in box],
                "area": float(mask.sum()),
                "iscrowd": 0,
                "segmentation": encode_mask(mask),
                "keypoints": [float(v) for v in points.reshape(-1)],  # x1, y1, v1, x2, ...
                "num_keypoints": int((points[:, 2] > 0).sum()),
            })
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape",
         "keypoints": list(SHAPE_KEYPOINTS[name]["names"]),
         "skeleton": [list(edge) for edge in SHAPE_KEYPOINTS[name]["skeleton"]]}
        for i, name in enumerate(dataset.class_names)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(
    image_ids: Sequence[int],
    outputs: Iterable[dict],
    *,
    mask_threshold: float = 0.5,
) -> list[dict]:
    """Model outputs -> COCO result dicts for ``coco_eval``.

    Args:
        image_ids: the image id of each output, in order.
        outputs: one dict per image as torchvision detection models return in eval mode:
            ``boxes`` (K, 4) xyxy, ``scores`` (K,), ``labels`` (K,) and optionally ``masks``
            (K, 1, H, W) or (K, H, W) probabilities, binarised at ``mask_threshold``.

    Returns:
        a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts, plus
        ``"segmentation"`` (RLE) when masks are given.
    """
    results = []
    outputs = list(outputs)
    if len(outputs) != len(image_ids):
        raise ValueError(f"got {len(outputs)} outputs for {len(image_ids)} image_ids")
    for image_id, out in zip(image_ids, outputs):
        missing = {"boxes", "scores", "labels"} - set(out)
        if missing:
            raise ValueError(f"output for image {image_id} lacks {sorted(missing)}")
        boxes = torch.as_tensor(out["boxes"]).detach().cpu().numpy().reshape(-1, 4)
        scores = torch.as_tensor(out["scores"]).detach().cpu().numpy().reshape(-1)
        labels = torch.as_tensor(out["labels"]).detach().cpu().numpy().reshape(-1)
        masks = out.get("masks")
        if masks is not None:
            masks = torch.as_tensor(masks).detach().cpu()
            masks = (masks.reshape(len(boxes), *masks.shape[-2:]) > mask_threshold).numpy()
        for k, (box, score, label) in enumerate(zip(_xyxy_to_xywh(boxes), scores, labels)):
            det = {
                "image_id": int(image_id),
                "category_id": int(label),
                "bbox": [float(v) for v in box],
                "score": float(score),
            }
            if masks is not None:
                det["segmentation"] = encode_mask(masks[k])
            results.append(det)
    return results


def keypoint_detections_to_coco(image_ids: Sequence[int], predictions: Iterable[dict]) -> list[dict]:
    """Keypoint-detector outputs -> COCO keypoint result dicts for ``coco_eval(..., "keypoints")``.

    Args:
        image_ids: the image id of each prediction, in order.
        predictions: one dict per image as torchvision's ``keypointrcnn_resnet50_fpn`` returns in
            eval mode: ``keypoints`` (P, K, 3) rows ``(x, y, visibility)`` or (P, K, 2) in pixels,
            ``scores`` (P,) and ``labels`` (P,) (optional: every prediction is category 1 without).
            Other keys (``boxes``, ``keypoints_scores``) are not used.

    Returns:
        one ``{"image_id", "category_id", "keypoints": [x1, y1, 1, x2, y2, 1, ...], "score"}`` per
        predicted instance: COCO's keypoint result format, ``v`` written as 1 (COCO's evaluation
        reads only x and y of a result), ``score`` the detection score. No ``bbox``, so the
        evaluation takes a result's area from the box around its keypoints, as for a COCO submission.

    Raises:
        ValueError: naming the argument (``image_ids``, ``predictions``) and, for a bad prediction,
            its image id and key.
    """
    image_ids = list(image_ids)
    predictions = list(predictions)
    if len(predictions) != len(image_ids):
        raise ValueError(f"predictions: got {len(predictions)} predictions for {len(image_ids)} image_ids")
    results = []
    for image_id, pred in zip(image_ids, predictions):
        try:
            if isinstance(image_id, bool):
                raise TypeError
            image_id = operator.index(image_id)  # int, NumPy or 0-d integer tensor
        except TypeError:
            raise ValueError(f"image_ids: expected int image ids, got {image_id!r}") from None
        if not isinstance(pred, dict):
            raise ValueError(f"predictions: expected one dict per image, got {type(pred).__name__} for image "
                             f"{image_id}")
        missing = {"keypoints", "scores"} - set(pred)
        if missing:
            raise ValueError(f"predictions: the prediction for image {image_id} lacks {sorted(missing)}")
        points = torch.as_tensor(pred["keypoints"]).detach().cpu().double()
        if points.ndim != 3 or points.shape[-1] not in (2, 3):
            raise ValueError(f"predictions: keypoints of image {image_id} must be (P, K, 3) or (P, K, 2), "
                             f"got shape {tuple(points.shape)}")
        scores = torch.as_tensor(pred["scores"]).detach().cpu().double().reshape(-1)
        labels = (torch.as_tensor(pred["labels"]).detach().cpu().reshape(-1) if "labels" in pred
                  else torch.ones(len(points), dtype=torch.int64))
        for key, values in (("scores", scores), ("labels", labels)):
            if len(values) != len(points):
                raise ValueError(f"predictions: image {image_id} has {len(points)} keypoint sets but "
                                 f"{len(values)} {key}")
        if not (torch.isfinite(points[..., :2]).all() and torch.isfinite(scores).all()):
            raise ValueError(f"predictions: keypoints and scores of image {image_id} must be finite")
        xy1 = torch.cat([points[..., :2], torch.ones_like(points[..., :1])], dim=-1)  # (P, K, 3), v = 1
        for kp, score, label in zip(xy1.flatten(1).tolist(), scores.tolist(), labels.tolist()):
            results.append({"image_id": int(image_id), "category_id": int(label), "keypoints": kp,
                            "score": float(score)})
    return results
