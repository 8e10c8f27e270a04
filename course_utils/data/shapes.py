"""A synthetic "shapes" dataset: the course's offline default for every lab.

Each image holds coloured shapes (circles, squares, triangles, ...) on a textured, noisy
background. Every item carries what a detector or a segmenter needs:

    image                 tv_tensors.Image (3, H, W) float32 in [0, 1]
    target["boxes"]       tv_tensors.BoundingBoxes (N, 4) XYXY, pixel edges: the tight box of
                          each object's *visible* pixels (occlusion handled)
    target["labels"]      (N,) int64 in 1..num_classes (0 is kept for the background)
    target["masks"]       tv_tensors.Mask (N, H, W) uint8: the visible pixels of each object
    target["semantic_mask"] tv_tensors.Mask (H, W) int64: label of the object on top, 0 elsewhere
    target["area"]        (N,) float32: visible pixels per object (COCO's ``area``)
    target["iscrowd"]     (N,) int64 zeros
    target["image_id"]    int: the index

That is the format torchvision's detection models and ``transforms.v2`` expect, so a paired
transform moves boxes and masks with the image.

The set is deterministic and random-access: item ``i`` of seed ``s`` is generated from its own
random stream ``(s, i)``, so the same seed always gives identical tensors, whatever the order
in which items are read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..boxes import box_iou
from ..tensors import plain

SHAPE_CLASSES = ("circle", "square", "triangle", "diamond", "cross", "ring")


@dataclass(frozen=True)
class ShapesConfig:
    """Knobs of the generator. Sizes are fractions of the image side."""

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    size_range: tuple[float, float] = (0.15, 0.4)  # longer side of an object, fraction of image
    aspect_range: tuple[float, float] = (0.75, 1.33)  # width / height of an object
    max_overlap: float = 0.0  # max IoU between the full boxes of two objects (0: no contact)
    min_visible: float = 0.6  # an occluded object keeps at least this fraction of its pixels
    classes: tuple[str, ...] = SHAPE_CLASSES[:3]
    clutter: int = 0  # unlabelled distractor strokes drawn on the background
    noise: float = 0.04  # std of the per-pixel Gaussian noise


PRESETS: dict[str, dict] = {
    # a few well-separated medium shapes: every detector should do well
    "easy": {},
    # exactly one object, large: localisation as regression (lab 01)
    "single": dict(min_objects=1, max_objects=1, size_range=(0.25, 0.7)),
    # many small objects: where a feature pyramid pays off
    "small": dict(min_objects=3, max_objects=10, size_range=(0.05, 0.14)),
    # crowded small objects touching and occluding each other: several per YOLO grid cell
    "crowded": dict(min_objects=8, max_objects=18, size_range=(0.06, 0.16), max_overlap=0.3),
    # the benchmark preset: small to medium, crowded, occluded, cluttered, six classes
    "hard": dict(
        min_objects=4,
        max_objects=14,
        size_range=(0.05, 0.3),
        aspect_range=(0.6, 1.67),
        max_overlap=0.3,
        min_visible=0.5,
        classes=SHAPE_CLASSES,
        clutter=8,
        noise=0.08,
    ),
}


def _validate(cfg: ShapesConfig) -> None:
    def fail(name, want, got):
        raise ValueError(f"{name} must be {want}, got {got!r}")

    if not isinstance(cfg.image_size, int) or cfg.image_size < 16:
        fail("image_size", "an int >= 16", cfg.image_size)
    if not 1 <= cfg.min_objects <= cfg.max_objects:
        fail("min_objects/max_objects", "1 <= min_objects <= max_objects",
             (cfg.min_objects, cfg.max_objects))
    lo, hi = cfg.size_range
    if not 0 < lo <= hi <= 1:
        fail("size_range", "(lo, hi) with 0 < lo <= hi <= 1", cfg.size_range)
    if lo * cfg.image_size < 3:
        fail("size_range", f"objects of at least 3 px (lo >= {3 / cfg.image_size:.3f})", cfg.size_range)
    a_lo, a_hi = cfg.aspect_range
    if not 0 < a_lo <= a_hi:
        fail("aspect_range", "(lo, hi) with 0 < lo <= hi", cfg.aspect_range)
    if not 0 <= cfg.max_overlap < 1:
        fail("max_overlap", "in [0, 1)", cfg.max_overlap)
    if not 0 < cfg.min_visible <= 1:
        fail("min_visible", "in (0, 1]", cfg.min_visible)
    unknown = [c for c in cfg.classes if c not in SHAPE_CLASSES]
    if not cfg.classes or unknown or len(set(cfg.classes)) != len(cfg.classes):
        fail("classes", f"distinct names from {SHAPE_CLASSES}", cfg.classes)
    if cfg.clutter < 0 or cfg.noise < 0:
        fail("clutter/noise", ">= 0", (cfg.clutter, cfg.noise))


# --------------------------------------------------------------------------- rasterising


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit shape; u, v are coordinates in [-1, 1] relative to the centre."""
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if name == "triangle":  # apex up (image y grows downwards)
        return (v <= 1.0) & (v >= 2.0 * np.abs(u) - 1.0)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.34) & (av <= 1.0)) | ((av <= 0.34) & (au <= 1.0))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    raise ValueError(f"unknown shape {name!r}")


def _rasterise(name: str, cx: float, cy: float, w: float, h: float, size: int) -> np.ndarray:
    """(size, size) bool mask of a shape with centre (cx, cy) and extent w x h (pixels)."""
    mask = np.zeros((size, size), dtype=bool)
    x0, x1 = max(int(np.floor(cx - w / 2)), 0), min(int(np.ceil(cx + w / 2)), size)
    y0, y1 = max(int(np.floor(cy - h / 2)), 0), min(int(np.ceil(cy + h / 2)), size)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    u = (xs + 0.5 - cx) / (w / 2)  # pixel centres
    v = (ys + 0.5 - cy) / (h / 2)
    mask[y0:y1, x0:x1] = _shape_mask(name, u, v)
    return mask


def _smooth_field(rng: np.random.Generator, channels: int, size: int, cells: int) -> np.ndarray:
    """(channels, size, size) smooth random field in [-1, 1]: bilinear upsampling of a coarse grid."""
    coarse = torch.from_numpy(rng.uniform(-1, 1, (1, channels, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)[0].numpy()


# --------------------------------------------------------------------------- keypoints

# Every class has NUM_KEYPOINTS named points (COCO evaluates one sigma per keypoint slot, so all
# categories share the count): slot 0 is the centre (the triangle's centroid), slots 1-4 are the
# class's own landmarks. Coordinates are (u, v) in the unit shape's [-1, 1] frame (v down).
SHAPE_KEYPOINTS: dict[str, dict] = {
    "circle": dict(
        names=("centre", "top", "right", "bottom", "left"),
        uv=((0, 0), (0, -1), (1, 0), (0, 1), (-1, 0)),
        skeleton=((1, 2), (1, 3), (1, 4), (1, 5)),
    ),
    "square": dict(
        names=("centre", "top_left", "top_right", "bottom_right", "bottom_left"),
        uv=((0, 0), (-1, -1), (1, -1), (1, 1), (-1, 1)),
        skeleton=((2, 3), (3, 4), (4, 5), (5, 2)),
    ),
    "triangle": dict(
        names=("centroid", "apex", "base_right", "base_left", "base_middle"),
        uv=((0, 1 / 3), (0, -1), (1, 1), (-1, 1), (0, 1)),
        skeleton=((2, 3), (3, 4), (4, 2), (2, 1), (1, 5)),
    ),
    "diamond": dict(
        names=("centre", "top", "right", "bottom", "left"),
        uv=((0, 0), (0, -1), (1, 0), (0, 1), (-1, 0)),
        skeleton=((2, 3), (3, 4), (4, 5), (5, 2)),
    ),
    "cross": dict(
        names=("centre", "top_tip", "right_tip", "bottom_tip", "left_tip"),
        uv=((0, 0), (0, -1), (1, 0), (0, 1), (-1, 0)),
        skeleton=((1, 2), (1, 3), (1, 4), (1, 5)),
    ),
    "ring": dict(
        names=("centre", "top", "right", "bottom", "left"),
        uv=((0, 0), (0, -1), (1, 0), (0, 1), (-1, 0)),
        skeleton=((2, 3), (3, 4), (4, 5), (5, 2)),
    ),
}
NUM_KEYPOINTS = 5
# OKS sigma of each slot (COCO's per-keypoint constants range from 0.025 for eyes to 0.107 for
# hips); our landmarks are sharp corners or centres, so one value in that range for all
SHAPE_KEYPOINT_SIGMAS = np.full(NUM_KEYPOINTS, 0.08)

VISIBLE, OCCLUDED, NOT_LABELLED = 2, 1, 0  # COCO's visibility flags v


def shape_keypoints(name: str, cx: float, cy: float, w: float, h: float, size: int,
                    occluders: list[np.ndarray] = ()) -> np.ndarray:
    """The keypoints of one shape, in COCO's (x, y, v) form.

    Args:
        name: the shape class (a key of :data:`SHAPE_KEYPOINTS`).
        cx, cy, w, h: its centre and extent in pixels (pixel ``i`` spans ``[i, i + 1)``).
        size: side of the image.
        occluders: (size, size) bool masks of the objects drawn on top of this one.

    Returns:
        (NUM_KEYPOINTS, 3) float32 rows (x, y, v): v = 2 visible, 1 under another object,
        0 outside the image (then x = y = 0, as COCO writes unlabelled points).
    """
    uv = np.array(SHAPE_KEYPOINTS[name]["uv"], dtype=np.float64)  # (K, 2)
    xy = np.array([cx, cy]) + uv * np.array([w / 2, h / 2])  # (K, 2)
    inside = (xy >= 0).all(axis=1) & (xy <= size).all(axis=1)  # (K,) the far edge belongs to it
    pixel = np.clip(np.floor(xy).astype(np.int64), 0, size - 1)  # (K, 2) the pixel under a point
    covered = np.zeros(len(xy), dtype=bool)
    for mask in occluders:
        covered |= mask[pixel[:, 1], pixel[:, 0]]
    v = np.where(~inside, NOT_LABELLED, np.where(covered, OCCLUDED, VISIBLE))  # (K,)
    points = np.concatenate([np.where(inside[:, None], xy, 0.0), v[:, None]], axis=1)
    return points.astype(np.float32)


# --------------------------------------------------------------------------- generation


def generate_scene(cfg: ShapesConfig, rng: np.random.Generator, *, keypoints: bool = False):
    """One scene as NumPy arrays.

    Args:
        cfg: the generator's knobs.
        rng: the scene's random stream (item ``i`` of seed ``s`` uses ``default_rng([s, i])``).
        keypoints: also return the objects' keypoints. They are computed from the geometry
            already drawn and consume no random numbers, so everything else is the same either way.

    Returns:
        image (3, S, S) float32 in [0, 1], boxes (N, 4) float32 xyxy, labels (N,) int64 in
        1..len(cfg.classes), masks (N, S, S) bool (visible pixels), semantic (S, S) int64;
        with ``keypoints=True`` a sixth array, (N, K, 3) float32 keypoints (see
        :func:`shape_keypoints`).
    """
    s = cfg.image_size
    # background: a base colour, a smooth colour field and fine texture
    base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
    image = base[:, None, None] + 0.15 * _smooth_field(rng, 3, s, 4) + 0.05 * _smooth_field(rng, 3, s, 16)
    for _ in range(cfg.clutter):  # thin strokes that belong to no class
        length, width = rng.uniform(0.1, 0.5) * s, rng.uniform(1, 2.5)
        w, h = (length, width) if rng.random() < 0.5 else (width, length)
        stroke = _rasterise("square", *rng.uniform(0, s, 2), w, h, s)
        image[:, stroke] = rng.uniform(0, 1, size=(3, 1))

    n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    full_masks, full_boxes, visible, labels, geometry = [], [], [], [], []
    for _ in range(n_target):
        for _attempt in range(30):
            side = rng.uniform(*cfg.size_range) * s
            aspect = np.exp(rng.uniform(*np.log(cfg.aspect_range)))  # w / h
            w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
            w, h = max(w, 3.0), max(h, 3.0)
            cx, cy = rng.uniform(w / 2, s - w / 2), rng.uniform(h / 2, s - h / 2)
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            overlap = box_iou(box[None], np.array(full_boxes).reshape(-1, 4))[0]  # (n_placed,)
            if (overlap > cfg.max_overlap).any():
                continue
            label = int(rng.integers(len(cfg.classes)))
            mask = _rasterise(cfg.classes[label], cx, cy, w, h, s)
            # the new object occludes older ones: each must keep min_visible of its pixels
            occluded = {i: visible[i] & ~mask for i in np.nonzero(overlap > 0)[0]}
            if all(v.sum() >= cfg.min_visible * full_masks[i].sum() for i, v in occluded.items()):
                for i, v in occluded.items():
                    visible[i] = v
                visible.append(mask)
                full_masks.append(mask)
                full_boxes.append(box)
                labels.append(label + 1)
                geometry.append((cx, cy, w, h))
                break

    # paint in order (later objects on top): each its own colour, all under one soft lighting
    shade = 0.06 * _smooth_field(rng, 1, s, 3)[0]
    for mask in full_masks:
        for _ in range(20):
            colour = rng.uniform(0, 1, size=3)
            if np.linalg.norm(colour - image[:, mask].mean(axis=1)) > 0.45:
                break
        image[:, mask] = colour[:, None] + shade[mask][None, :]

    if cfg.noise:
        image += cfg.noise * rng.standard_normal(size=image.shape, dtype=np.float32)
    image = np.clip(image, 0, 1, out=image)  # (3, S, S) float32

    masks = np.array(visible, dtype=bool).reshape(-1, s, s)
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):  # tight box of the visible pixels, in pixel-edge coordinates
        ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
        boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    labels = np.array(labels, dtype=np.int64)
    semantic = np.zeros((s, s), dtype=np.int64)
    for m, lab in zip(masks, labels):
        semantic[m] = lab
    if not keypoints:
        return image, boxes, labels, masks, semantic
    points = np.zeros((len(labels), NUM_KEYPOINTS, 3), dtype=np.float32)
    for i, (label, (cx, cy, w, h)) in enumerate(zip(labels, geometry)):
        points[i] = shape_keypoints(cfg.classes[label - 1], cx, cy, w, h, s, full_masks[i + 1:])
    return image, boxes, labels, masks, semantic, points


class ShapesDataset(Dataset):
    """Deterministic synthetic detection / segmentation data (see the module docstring).

    Args:
        num_images: length of the dataset.
        image_size: side of the square images, in pixels.
        preset: one of :data:`PRESETS` - ``easy``, ``single`` (one object: localisation),
            ``small`` (small objects), ``crowded`` (many touching/occluding objects), ``hard``.
        seed: the whole set is a function of ``seed``.
        transforms: optional ``torchvision.transforms.v2`` transform called as
            ``transforms(image, target)``.
        cache: keep generated items in memory (faster epochs, ~200 MB per 1000 128-px images).
        keypoints: add ``target["keypoints"]``, (N, NUM_KEYPOINTS, 3) float32 rows (x, y, v)
            (torchvision's keypoint format; see :data:`SHAPE_KEYPOINTS`). Off by default, so the
            targets of the other labs are unchanged.
        **overrides: any :class:`ShapesConfig` field, on top of the preset (e.g.
            ``max_objects=8``, ``size_range=(0.05, 0.1)``, ``classes=("circle", "ring")``).
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 128,
        *,
        preset: str = "easy",
        seed: int = 0,
        transforms=None,
        cache: bool = False,
        keypoints: bool = False,
        **overrides,
    ):
        if not isinstance(num_images, int) or num_images < 0:
            raise ValueError(f"num_images must be a non-negative int, got {num_images!r}")
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is unknown; expected one of {tuple(PRESETS)}")
        fields = {f.name for f in dataclasses.fields(ShapesConfig)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; ShapesConfig has {sorted(fields)}")
        options = {**PRESETS[preset], **overrides, "image_size": image_size}
        if "classes" in options:
            options["classes"] = tuple(options["classes"])
        self.config = ShapesConfig(**options)
        _validate(self.config)
        self.num_images = num_images
        self.preset = preset
        self.seed = seed
        self.transforms = transforms
        self.keypoints = bool(keypoints)
        self._cache: dict[int, tuple] | None = {} if cache else None

    @property
    def class_names(self) -> list[str]:
        """Names of labels 1..num_classes (index 0 of this list is label 1)."""
        return list(self.config.classes)

    @property
    def num_classes(self) -> int:
        """Number of object classes, background not included."""
        return len(self.config.classes)

    def __len__(self) -> int:
        return self.num_images

    def scene(self, index: int, keypoints: bool = False):
        """Item ``index`` as NumPy arrays (no transforms); see :func:`generate_scene`.

        Args:
            index: the item, negative counts from the end.
            keypoints: also return the (N, K, 3) keypoints as a sixth array.
        """
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index %= self.num_images
        if self._cache is None:
            return generate_scene(self.config, np.random.default_rng([self.seed, index]),
                                  keypoints=keypoints)
        if index not in self._cache:
            self._cache[index] = generate_scene(self.config, np.random.default_rng([self.seed, index]),
                                                keypoints=True)
        arrays = self._cache[index] if keypoints else self._cache[index][:5]
        return tuple(a.copy() for a in arrays)  # callers may modify theirs

    @property
    def keypoint_names(self) -> dict[str, tuple[str, ...]]:
        """{class name: its NUM_KEYPOINTS keypoint names}, in slot order."""
        return {name: SHAPE_KEYPOINTS[name]["names"] for name in self.config.classes}

    def __getitem__(self, index: int):
        image, boxes, labels, masks, semantic, *points = self.scene(index, keypoints=self.keypoints)
        s = self.config.image_size
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(boxes), format="XYXY", canvas_size=(s, s)
            ),
            "labels": torch.from_numpy(labels),
            "masks": tv_tensors.Mask(torch.from_numpy(masks.astype(np.uint8))),
            "semantic_mask": tv_tensors.Mask(torch.from_numpy(semantic)),
            "area": torch.from_numpy(masks.sum(axis=(1, 2)).astype(np.float32)),
            "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
            "image_id": index % self.num_images,
        }
        if self.keypoints:
            target["keypoints"] = torch.from_numpy(points[0])
        image = tv_tensors.Image(torch.from_numpy(image))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def to_coco(self) -> dict:
        """The ground truth as a COCO dict (see :func:`course_utils.data.coco.shapes_to_coco`)."""
        from .coco import shapes_to_coco

        return shapes_to_coco(self)

    def __repr__(self) -> str:
        return f"ShapesDataset({self.num_images}, preset={self.preset!r}, seed={self.seed}, {self.config})"


def collate_detection(batch):
    """Collate (image, target) pairs into (list of images, list of targets) for detection models."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def single_object_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack a one-object-per-image set for localisation as regression.

    Args:
        dataset: a :class:`ShapesDataset` (e.g. ``preset="single"``) or any dataset of
            ``(image, target)`` in the same format whose images share one size (e.g.
            ``OxfordPets`` with a ``v2.Resize`` transform).

    Returns:
        images (N, 3, H, W) float32, class indices (N,) int64 in 0..C-1 (``label - 1``, ready for
        ``cross_entropy``), boxes (N, 4) float32 xyxy in pixels.
    """
    images, classes, boxes = [], [], []
    for i in range(len(dataset)):
        if isinstance(dataset, ShapesDataset):  # straight from the generator: no tensor wrapping
            image, boxes_i, labels_i, _, _ = dataset.scene(i)
        else:
            image, target = dataset[i]
            boxes_i, labels_i = target["boxes"], target["labels"]
        if len(labels_i) != 1:
            raise ValueError(f"image {i} has {len(labels_i)} objects; use a one-object set (preset='single')")
        images.append(plain(image))
        classes.append(int(labels_i[0]) - 1)
        boxes.append(plain(boxes_i[0]).float())
    if len({tuple(im.shape) for im in images}) > 1:
        raise ValueError("images differ in size: resize them first (e.g. transforms=v2.Resize((H, W)))")
    return torch.stack(images), torch.tensor(classes, dtype=torch.int64), torch.stack(boxes)
