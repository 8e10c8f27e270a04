"""Segmentation data as tensors: whole images with their class maps, and classification crops (lab 05)."""

from __future__ import annotations

import numpy as np
import torch

from ..tensors import plain
from .shapes import ShapesDataset


def _window_start(centre: float, size: int, side: int) -> int:
    """Top-left of a ``size`` window centred on ``centre``, shifted to stay inside ``[0, side)``."""
    return int(np.clip(round(centre - size / 2), 0, side - size))


def object_crops(dataset, crop_size: int, *, backgrounds_per_image: int = 1, max_background_fraction: float = 0.02,
                 tries: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crops centred on every object (label = its class) and on empty areas (label 0).

    Args:
        dataset: yields ``(image (3, H, W), target)`` with ``target["boxes"]`` (N, 4) xyxy pixels,
            ``target["labels"]`` (N,) in 1..C and ``target["semantic_mask"]`` (H, W); e.g.
            :class:`~course_utils.data.ShapesDataset`. Images must be at least ``crop_size`` a side.
        crop_size: side of the crops, in pixels.
        backgrounds_per_image: background crops to look for in each image.
        max_background_fraction: a background crop has at most this fraction of object pixels.
        tries: random windows tried per background crop before giving up on it.
        seed: seeds the random background windows.

    Returns:
        crops (M, 3, crop_size, crop_size) float32 and labels (M,) int64, 0 = background.
    """
    if not isinstance(crop_size, int) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for i in range(len(dataset)):
        image, target = dataset[i]
        image = plain(image)  # (3, H, W)
        height, width = image.shape[-2:]
        if height < crop_size or width < crop_size:
            raise ValueError(f"image {i} is {height}x{width}, smaller than crop_size={crop_size}")
        boxes = plain(target["boxes"]).float()  # (N, 4)
        for box, label in zip(boxes.tolist(), target["labels"].tolist()):
            y0 = _window_start((box[1] + box[3]) / 2, crop_size, height)
            x0 = _window_start((box[0] + box[2]) / 2, crop_size, width)
            crops.append(image[:, y0:y0 + crop_size, x0:x0 + crop_size])
            labels.append(int(label))
        foreground = plain(target["semantic_mask"]) != 0  # (H, W)
        for _ in range(backgrounds_per_image):
            for _ in range(tries):
                y0, x0 = int(rng.integers(0, height - crop_size + 1)), int(rng.integers(0, width - crop_size + 1))
                if foreground[y0:y0 + crop_size, x0:x0 + crop_size].float().mean() <= max_background_fraction:
                    crops.append(image[:, y0:y0 + crop_size, x0:x0 + crop_size])
                    labels.append(0)
                    break
    if not crops:
        return torch.zeros(0, 3, crop_size, crop_size), torch.zeros(0, dtype=torch.int64)
    return torch.stack(crops).float(), torch.tensor(labels, dtype=torch.int64)


def semantic_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a segmentation set: images and their per-pixel class maps.

    Args:
        dataset: yields ``(image (3, H, W), target)`` with ``target["semantic_mask"]`` (H, W), all
            of one size (e.g. :class:`~course_utils.data.ShapesDataset`, or ``OxfordPets(trimap=True)``
            with a ``v2.Resize`` transform).

    Returns:
        images (N, 3, H, W) float32 and masks (N, H, W) int64 (0 background, 1..C classes, and the
        dataset's ignore value where it has one).
    """
    images, masks = [], []
    for i in range(len(dataset)):
        if isinstance(dataset, ShapesDataset) and dataset.transforms is None:  # straight from the generator
            image, _, _, _, semantic = dataset.scene(i)
        else:
            image, target = dataset[i]
            semantic = target["semantic_mask"]
        images.append(plain(image).float())
        masks.append(plain(semantic).long())
    if len({tuple(m.shape) for m in masks}) > 1:
        raise ValueError("images differ in size: resize them first (e.g. transforms=v2.Resize((H, W)))")
    if not images:
        raise ValueError("the dataset is empty")
    return torch.stack(images), torch.stack(masks)
