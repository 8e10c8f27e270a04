"""Datasets: the synthetic shapes (offline default) and COCO export."""

from .coco import detections_to_coco, encode_mask, shapes_to_coco
from .shapes import (
    PRESETS,
    SHAPE_CLASSES,
    ShapesConfig,
    ShapesDataset,
    collate_detection,
    generate_scene,
    single_object_tensors,
)

__all__ = [
    "PRESETS",
    "SHAPE_CLASSES",
    "ShapesConfig",
    "ShapesDataset",
    "collate_detection",
    "detections_to_coco",
    "encode_mask",
    "generate_scene",
    "shapes_to_coco",
    "single_object_tensors",
]
