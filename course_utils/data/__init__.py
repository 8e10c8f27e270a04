"""Datasets: the synthetic shapes (offline default), real datasets for full mode and their downloads, COCO export."""

from .coco import detections_to_coco, encode_mask, keypoint_detections_to_coco, shapes_to_coco
from .download import ensure_dataset, fetch_dataset, is_ready
from .real import (
    IGNORE_INDEX,
    VOC_CLASSES,
    COCOKeypoints,
    COCOSubset,
    OxfordPets,
    PennFudan,
    VOCDetection2007,
    dataset_root,
)
from .segmentation import object_crops, semantic_tensors
from .shapes import (
    NUM_KEYPOINTS,
    PRESETS,
    SHAPE_CLASSES,
    SHAPE_KEYPOINT_SIGMAS,
    SHAPE_KEYPOINTS,
    ShapesConfig,
    ShapesDataset,
    collate_detection,
    generate_scene,
    single_object_tensors,
)

__all__ = [
    "COCOKeypoints",
    "COCOSubset",
    "IGNORE_INDEX",
    "OxfordPets",
    "PennFudan",
    "VOCDetection2007",
    "VOC_CLASSES",
    "NUM_KEYPOINTS",
    "PRESETS",
    "SHAPE_CLASSES",
    "SHAPE_KEYPOINT_SIGMAS",
    "SHAPE_KEYPOINTS",
    "ShapesConfig",
    "ShapesDataset",
    "collate_detection",
    "dataset_root",
    "detections_to_coco",
    "encode_mask",
    "ensure_dataset",
    "fetch_dataset",
    "generate_scene",
    "is_ready",
    "keypoint_detections_to_coco",
    "object_crops",
    "semantic_tensors",
    "shapes_to_coco",
    "single_object_tensors",
]
