"""Real datasets for full mode, yielding the same items as :class:`~course_utils.data.ShapesDataset`.

Fetch them first with ``python -m data_scripts.download NAME`` (or ``make data NAME=...``); each
class takes the folder that command prints, ``<root>/<NAME>``:

=====================  ===============  ======================================================
class                  NAME             what the target holds
=====================  ===============  ======================================================
:class:`OxfordPets`        oxford_pets      one head box + breed (or species); trimap optional
:class:`PennFudan`         pennfudan        pedestrians with instance masks
:class:`VOCDetection2007`  voc2007          20 classes, boxes + ``difficult`` flags
:class:`COCOSubset`        coco_val2017     80 classes, boxes + instance masks (pycocotools)
:class:`COCOKeypoints`     coco_keypoints_val2017   persons: boxes + 17 keypoints (x, y, v)
=====================  ===============  ======================================================

Every item is ``(image, target)``: ``image`` a ``tv_tensors.Image`` (3, H, W) float32 in [0, 1];
``target`` with ``boxes`` (``BoundingBoxes`` XYXY in pixel edges, (N, 4)), ``labels`` (N,) int64 in
1..num_classes, ``masks`` (``Mask`` (N, H, W) uint8), ``semantic_mask`` (``Mask`` (H, W) int64),
``area`` (N,) float32 (mask pixels), ``iscrowd`` (N,) int64, ``image_id`` int. :class:`COCOKeypoints`
differs: ``keypoints`` (N, 17, 3) instead of masks, and an optional resize (see the class).

Datasets without instance masks (the Pet head boxes, VOC detection) use each *filled box* as its
mask, so ``area`` is the box area and ``semantic_mask`` paints the boxes in order. XML boxes are
1-based inclusive pixel indices (the VOC convention) and become pixel edges:
``(xmin - 1, ymin - 1, xmax, ymax)``.
"""

from __future__ import annotations

import contextlib
import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from ..config import course_root
from .coco import encode_mask

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index


@dataclass
class _Record:
    """One image's annotation, read without decoding the image."""

    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy pixel edges
    labels: np.ndarray  # (N,) int64
    image_id: int
    masks: np.ndarray | None = None  # (N, H, W) uint8; None: the filled boxes
    semantic: np.ndarray | None = None  # (H, W) int64; None: painted from the masks
    iscrowd: np.ndarray | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # per-object extras, e.g. difficult
    coco_annotations: list[dict] | None = None  # COCO's own annotations, exported unchanged


def data_root() -> Path:
    """The parent folder of every dataset: ``$COURSE_DATA`` if set, else ``data/`` in the course
    folder holding the current folder (:func:`course_utils.config.course_root`; a lab notebook runs
    in ``labs/NN_topic/``), else ``./data``."""
    if os.environ.get("COURSE_DATA"):
        return Path(os.environ["COURSE_DATA"])
    root = course_root()
    return root / "data" if root is not None else Path("data")


def dataset_root(name: str) -> Path:
    """Where ``make data NAME=name`` puts a dataset: ``<data_root()>/<name>``."""
    return data_root() / name


def _missing(path: Path, name: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path} not found: is the {name} dataset downloaded? Run `python -m data_scripts.download {name} "
        f"--root DIR` (or `make data NAME={name}`) and pass DIR/{name} as root"
    )


def _load_coco(ann_path: Path, name: str):
    """pycocotools' ``COCO`` of the annotation file ``ann_path`` (of dataset ``name``), without its timing prints."""
    from pycocotools.coco import COCO

    if not ann_path.is_file():
        raise _missing(ann_path, name)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints timing lines
        return COCO(str(ann_path))


def _box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W) uint8 masks of the filled boxes (pixels whose square overlaps the box)."""
    masks = np.zeros((len(boxes), height, width), dtype=np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = 1
    return masks


def _paint(masks: np.ndarray, labels: np.ndarray, height: int, width: int) -> np.ndarray:
    semantic = np.zeros((height, width), dtype=np.int64)
    for mask, label in zip(masks, labels):
        semantic[mask.astype(bool)] = label
    return semantic


def read_voc_xml(path: Path) -> tuple[int, int, list[dict]]:
    """Read a VOC-style annotation file (VOC 2007, Oxford-IIIT Pet head boxes).

    Args:
        path: the ``.xml`` file.

    Returns:
        width, height, and one ``{"name", "box" (xyxy pixel edges), "difficult" (bool)}`` per object.
    """
    root = ET.parse(path).getroot()
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    objects = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append({"name": obj.findtext("name").strip(), "box": (x0 - 1, y0 - 1, x1, y1),
                        "difficult": obj.findtext("difficult", "0").strip() == "1"})
    return width, height, objects


def _read_split(path: Path) -> list[list[str]]:
    """Rows of a whitespace-separated list file, skipping blanks and ``#`` comments."""
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


class _RealDataset(Dataset):
    """Shared item assembly, transforms and COCO export; subclasses implement :meth:`_record`."""

    name = "real"
    class_names: list[str]
    transforms = None

    @property
    def num_classes(self) -> int:
        """Number of object classes, background not included."""
        return len(self.class_names)

    def _record(self, index: int) -> _Record:
        raise NotImplementedError

    def _checked_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return index % len(self)

    def __getitem__(self, index: int):
        rec = self._record(self._checked_index(index))
        with Image.open(rec.image_path) as pil:
            array = np.asarray(pil.convert("RGB"))
        if array.shape[:2] != (rec.height, rec.width):
            raise ValueError(f"{rec.image_path} is {array.shape[1]}x{array.shape[0]} but its annotation says "
                             f"{rec.width}x{rec.height}")
        image = tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255))
        masks = rec.masks if rec.masks is not None else _box_masks(rec.boxes, rec.height, rec.width)
        semantic = rec.semantic if rec.semantic is not None else _paint(masks, rec.labels, rec.height, rec.width)
        n = len(rec.labels)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(rec.boxes.reshape(-1, 4)), format="XYXY",
                                              canvas_size=(rec.height, rec.width)),
            "labels": torch.from_numpy(rec.labels.astype(np.int64)),
            "masks": tv_tensors.Mask(torch.from_numpy(masks.astype(np.uint8))),
            "semantic_mask": tv_tensors.Mask(torch.from_numpy(semantic.astype(np.int64))),
            "area": torch.from_numpy(masks.sum(axis=(1, 2)).astype(np.float32)),
            "iscrowd": torch.from_numpy(rec.iscrowd if rec.iscrowd is not None else np.zeros(n, dtype=np.int64)),
            "image_id": rec.image_id,
            **rec.extra,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def to_coco(self) -> dict:
        """The ground truth as a COCO dict for ``pycocotools`` / ``course_utils.metrics.coco_eval``.

        Category ids are the dataset's labels (1..num_classes), so a model's predicted labels can
        be used as ``category_id`` directly. Read from the annotations only (no image decoding),
        so the export is the same whatever ``transforms``.
        """
        images, annotations = [], []
        for index in range(len(self)):
            rec = self._record(index)
            images.append({"id": rec.image_id, "width": rec.width, "height": rec.height,
                           "file_name": rec.image_path.name})
            if rec.coco_annotations is not None:
                for ann in rec.coco_annotations:
                    annotations.append({**ann, "id": len(annotations) + 1})
                continue
            masks = rec.masks if rec.masks is not None else _box_masks(rec.boxes, rec.height, rec.width)
            iscrowd = rec.iscrowd if rec.iscrowd is not None else np.zeros(len(rec.labels), dtype=np.int64)
            for k, (box, label, mask) in enumerate(zip(rec.boxes, rec.labels, masks)):
                x0, y0, x1, y1 = (float(v) for v in box)
                ann = {"id": len(annotations) + 1, "image_id": rec.image_id, "category_id": int(label),
                       "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(mask.sum()), "iscrowd": int(iscrowd[k]),
                       "segmentation": encode_mask(mask)}
                for key, values in rec.extra.items():
                    ann[key] = values[k].item()
                annotations.append(ann)
        categories = [{"id": i + 1, "name": n, "supercategory": self.name} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}


class OxfordPets(_RealDataset):
    """Oxford-IIIT Pet: one pet per image, its *head* box and its breed (or species).

    Args:
        root: the dataset folder (holding ``images/`` and ``annotations/``).
        split: ``"trainval"`` or ``"test"`` (the official lists in ``annotations/``). Head boxes
            exist only for (most of) trainval: images without one are skipped.
        labels: ``"breed"`` (37 classes) or ``"species"`` (``cat``, ``dog``).
        trimap: build ``semantic_mask`` from the trimap (the whole pet) instead of the head box.
        border: with ``trimap``, what the trimap's border pixels become: ``"pet"`` (the label) or
            ``"ignore"`` (:data:`IGNORE_INDEX`, which ``cross_entropy`` skips by default).
        transforms: optional ``transforms.v2`` called as ``transforms(image, target)``.

    ``masks`` is the filled head box (the dataset has no head masks), so ``area`` is its area.
    """

    name = "oxford_pets"

    def __init__(self, root: str | os.PathLike, split: str = "trainval", *, labels: str = "breed",
                 trimap: bool = False, border: str = "pet", transforms=None):
        if split not in ("trainval", "test"):
            raise ValueError(f"split must be 'trainval' or 'test', got {split!r}")
        if labels not in ("breed", "species"):
            raise ValueError(f"labels must be 'breed' or 'species', got {labels!r}")
        if border not in ("pet", "ignore"):
            raise ValueError(f"border must be 'pet' or 'ignore', got {border!r}")
        self.root = Path(root)
        ann = self.root / "annotations"
        listing = ann / "list.txt"
        if not listing.is_file():
            raise _missing(listing, self.name)
        breeds: dict[int, str] = {}
        for name, class_id, *_ in _read_split(listing):
            breeds[int(class_id)] = name.rsplit("_", 1)[0]
        if sorted(breeds) != list(range(1, len(breeds) + 1)):
            raise ValueError(f"{listing}: class ids must run 1..{len(breeds)}, got {sorted(breeds)}")
        self.class_names = [breeds[i] for i in range(1, len(breeds) + 1)] if labels == "breed" else ["cat", "dog"]
        self.split, self.labels, self.trimap, self.border, self.transforms = split, labels, trimap, border, transforms
        self.items: list[tuple[str, int]] = []  # (image name, label)
        for name, class_id, species, *_ in _read_split(ann / f"{split}.txt"):
            if (ann / "xmls" / f"{name}.xml").is_file():
                self.items.append((name, int(class_id) if labels == "breed" else int(species)))
        if not self.items:
            raise ValueError(f"no image of split {split!r} has a head box in {ann / 'xmls'} "
                             "(Oxford-IIIT Pet has head boxes for trainval only)")

    def __len__(self) -> int:
        return len(self.items)

    def _record(self, index: int) -> _Record:
        name, label = self.items[index]
        width, height, objects = read_voc_xml(self.root / "annotations" / "xmls" / f"{name}.xml")
        boxes = np.array([objects[0]["box"]], dtype=np.float32)
        labels = np.array([label], dtype=np.int64)
        semantic = None
        if self.trimap:
            with Image.open(self.root / "annotations" / "trimaps" / f"{name}.png") as png:
                tri = np.asarray(png)
            semantic = np.where(tri == 1, label, 0).astype(np.int64)  # 1 pet, 2 background, 3 border
            semantic[tri == 3] = label if self.border == "pet" else IGNORE_INDEX
        return _Record(self.root / "images" / f"{name}.jpg", width, height, boxes, labels, index, semantic=semantic)


class PennFudan(_RealDataset):
    """Penn-Fudan pedestrians: instance masks from ``PedMasks/*_mask.png`` (0 background, k = person k).

    Args:
        root: the dataset folder holding ``PennFudanPed/`` (or ``PennFudanPed/`` itself).
        transforms: optional ``transforms.v2`` called as ``transforms(image, target)``.
    """

    name = "pennfudan"
    class_names = ["person"]

    def __init__(self, root: str | os.PathLike, *, transforms=None):
        root = Path(root)
        self.root = root / "PennFudanPed" if (root / "PennFudanPed").is_dir() else root
        if not (self.root / "PNGImages").is_dir():
            raise _missing(self.root / "PNGImages", self.name)
        self.images = sorted((self.root / "PNGImages").glob("*.png"))
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.images)

    def _record(self, index: int) -> _Record:
        path = self.images[index]
        mask_path = self.root / "PedMasks" / f"{path.stem}_mask.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{mask_path} not found: every image in PNGImages/ needs its mask")
        with Image.open(mask_path) as png:
            ids_map = np.asarray(png)
        ids = np.unique(ids_map)
        ids = ids[ids != 0]
        masks = (ids_map[None] == ids[:, None, None]).astype(np.uint8)
        boxes = masks_to_boxes(torch.from_numpy(masks)).numpy().reshape(-1, 4)  # inclusive pixel indices
        boxes[:, 2:] += 1  # to pixel edges
        h, w = ids_map.shape
        return _Record(path, w, h, boxes.astype(np.float32), np.ones(len(ids), dtype=np.int64), index, masks=masks)


class VOCDetection2007(_RealDataset):
    """PASCAL VOC 2007 detection: 20 classes; ``target["difficult"]`` (N,) bool flags hard objects.

    Args:
        root: the dataset folder holding ``VOCdevkit/VOC2007``.
        split: ``"trainval"``, ``"train"``, ``"val"`` or ``"test"`` (``ImageSets/Main/<split>.txt``).
        keep_difficult: keep objects marked difficult (VOC's AP ignores them; flags tell which).
        transforms: optional ``transforms.v2`` called as ``transforms(image, target)``.

    ``masks`` are the filled boxes (VOC detection has no masks). ``to_coco()`` keeps ``difficult``
    as an extra annotation field; pycocotools ignores it and counts those objects.
    """

    name = "voc2007"
    class_names = list(VOC_CLASSES)

    def __init__(self, root: str | os.PathLike, split: str = "trainval", *, keep_difficult: bool = True,
                 transforms=None):
        if split not in ("trainval", "train", "val", "test"):
            raise ValueError(f"split must be one of trainval, train, val, test; got {split!r}")
        self.root = Path(root) / "VOCdevkit" / "VOC2007"
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            raise _missing(split_file, self.name)
        self.ids = [row[0] for row in _read_split(split_file)]
        self.split, self.keep_difficult, self.transforms = split, keep_difficult, transforms

    def __len__(self) -> int:
        return len(self.ids)

    def _record(self, index: int) -> _Record:
        image_id = self.ids[index]
        xml = self.root / "Annotations" / f"{image_id}.xml"
        width, height, objects = read_voc_xml(xml)
        unknown = {o["name"] for o in objects} - set(VOC_CLASSES)
        if unknown:
            raise ValueError(f"{xml}: unknown class(es) {sorted(unknown)}; expected VOC's 20 classes")
        objects = [o for o in objects if self.keep_difficult or not o["difficult"]]
        boxes = np.array([o["box"] for o in objects], dtype=np.float32).reshape(-1, 4)
        labels = np.array([VOC_CLASSES.index(o["name"]) + 1 for o in objects], dtype=np.int64)
        difficult = torch.tensor([o["difficult"] for o in objects], dtype=torch.bool)
        return _Record(self.root / "JPEGImages" / f"{image_id}.jpg", width, height, boxes, labels, index,
                       extra={"difficult": difficult})


class COCOSubset(_RealDataset):
    """The COCO images present on disk (e.g. the ``--images N`` fetched from val2017), read by pycocotools.

    Args:
        root: the dataset folder holding ``annotations/`` and the image folder.
        ann_file: annotation file, relative to ``root``.
        image_dir: image folder, relative to ``root``.
        max_images: use at most this many (by ascending image id).
        include_crowd: keep ``iscrowd=1`` regions in the targets (``to_coco`` always has them,
            as COCO's evaluation needs them to ignore detections there).
        transforms: optional ``transforms.v2`` called as ``transforms(image, target)``.

    Labels are 1..80 in the order of COCO's category ids (COCO's ids have gaps); ``image_id`` is
    COCO's own image id; ``masks`` come from ``COCO.annToMask``.
    """

    name = "coco_val2017"

    def __init__(self, root: str | os.PathLike, *, ann_file: str = "annotations/instances_val2017.json",
                 image_dir: str = "val2017", max_images: int | None = None, include_crowd: bool = False,
                 transforms=None):
        self.root = Path(root)
        ann_path, self.image_dir = self.root / ann_file, self.root / image_dir
        self.coco = _load_coco(ann_path, self.name)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.class_names = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self._label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        present = [i for i in sorted(self.coco.getImgIds())
                   if (self.image_dir / self.coco.imgs[i]["file_name"]).is_file()]
        if not present:
            raise _missing(self.image_dir, self.name)
        self.ids = present[:max_images] if max_images is not None else present
        self.include_crowd, self.transforms = include_crowd, transforms

    def __len__(self) -> int:
        return len(self.ids)

    def _record(self, index: int) -> _Record:
        info = self.coco.imgs[self.ids[index]]
        h, w = info["height"], info["width"]
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"]))
                if a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
        exported = [{k: a[k] for k in ("image_id", "bbox", "area", "iscrowd", "segmentation")}
                    | {"category_id": self._label[a["category_id"]]} for a in anns]
        if not self.include_crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = np.array([self.coco.annToMask(a) for a in anns], dtype=np.uint8).reshape(-1, h, w)
        labels = np.array([self._label[a["category_id"]] for a in anns], dtype=np.int64)
        iscrowd = np.array([a.get("iscrowd", 0) for a in anns], dtype=np.int64)
        return _Record(self.image_dir / info["file_name"], w, h, boxes, labels, info["id"], masks=masks,
                       iscrowd=iscrowd, coco_annotations=exported)


def _check_image_size(image_size) -> tuple[int, int] | None:
    """``None``, a side ``s`` -> ``(s, s)``, or ``(height, width)``; ValueError naming ``image_size``."""
    if image_size is None:
        return None
    sides = (image_size, image_size) if isinstance(image_size, int) else image_size
    try:
        height, width = sides
    except (TypeError, ValueError):
        height = width = None
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in (height, width)):
        raise ValueError(f"image_size must be None, a positive int (square images) or (height, width) of "
                         f"positive ints, got {image_size!r}")
    return height, width


class COCOKeypoints(Dataset):
    """COCO person keypoints: the images on disk that show at least one person with labelled keypoints.

    Fetch it with ``make data NAME=coco_keypoints_val2017`` (``person_keypoints_val2017.json`` and
    the first ``--images N`` val2017 images). Read by pycocotools.

    Args:
        root: the dataset folder holding ``annotations/`` and the image folder.
        max_images: use at most this many images (by ascending image id).
        image_size: resize every image to ``(image_size, image_size)`` (or to ``(height, width)``
            when a pair is given), moving boxes and keypoints with the pixels; ``None`` keeps
            COCO's sizes.
        ann_file: annotation file, relative to ``root``.
        image_dir: image folder, relative to ``root``.

    Each item is ``(image, target)``: ``image`` a ``tv_tensors.Image`` (3, H, W) float32 in [0, 1];
    ``target`` as torchvision's ``keypointrcnn_resnet50_fpn`` trains on it: ``boxes``
    (``BoundingBoxes`` XYXY, (N, 4), COCO's person boxes), ``labels`` (N,) int64, all 1 (person),
    ``keypoints`` (N, K, 3) float32 rows ``(x, y, v)`` in pixels (K = 17 for COCO; v = 0 not
    labelled, with x = y = 0; 1 labelled but hidden; 2 visible), ``area`` (N,) float32 (COCO's
    segment area, scaled with the image), ``iscrowd`` (N,) int64 zeros, ``image_id`` (COCO's id).

    The targets hold only the persons a model can learn from: crowd regions, persons with no
    labelled keypoint (``num_keypoints == 0``) and boxes under 1 px are left out. :meth:`to_coco`
    keeps crowds and zero-keypoint persons, since COCO's keypoint evaluation ignores detections
    matched to them rather than counting them as false positives.

    There is no ``transforms`` argument: a horizontal flip must also swap the left and right
    keypoints (``keypoint_names``), which a generic ``transforms.v2`` pipeline does not do.
    """

    name = "coco_keypoints_val2017"

    def __init__(self, root: str | os.PathLike, *, max_images: int | None = None, image_size=None,
                 ann_file: str = "annotations/person_keypoints_val2017.json", image_dir: str = "val2017"):
        if max_images is not None and (not isinstance(max_images, int) or isinstance(max_images, bool)
                                       or max_images < 1):
            raise ValueError(f"max_images must be None or a positive int, got {max_images!r}")
        self.image_size = _check_image_size(image_size)
        self.root = Path(root)
        ann_path, self.image_dir = self.root / ann_file, self.root / image_dir
        self.coco = _load_coco(ann_path, self.name)
        with_points = [c for c in self.coco.loadCats(self.coco.getCatIds()) if c.get("keypoints")]
        if len(with_points) != 1:
            raise ValueError(f"{ann_path}: expected one category with keypoint names (COCO's person), found "
                             f"{len(with_points)}; is it a person_keypoints_*.json file, not instances_*.json?")
        category = with_points[0]
        self.category_id = category["id"]
        self.class_names = [category["name"]]
        self.supercategory = category.get("supercategory", category["name"])
        self.keypoint_names = list(category["keypoints"])
        self.skeleton = [list(edge) for edge in category.get("skeleton", [])]  # 1-based pairs, as COCO writes them
        if not self.image_dir.is_dir():
            raise _missing(self.image_dir, self.name)
        present = [i for i in sorted(self.coco.getImgIds())
                   if self._annotations(i, trainable=True)
                   and (self.image_dir / self.coco.imgs[i]["file_name"]).is_file()]
        if not present:
            raise ValueError(f"no image in {self.image_dir} shows a person with labelled keypoints in {ann_path}")
        self.ids = present[:max_images] if max_images is not None else present

    @property
    def num_classes(self) -> int:
        """Number of object classes (1: person), background not included."""
        return len(self.class_names)

    @property
    def num_keypoints(self) -> int:
        """K, the keypoints per person (17 for COCO)."""
        return len(self.keypoint_names)

    def __len__(self) -> int:
        return len(self.ids)

    def _annotations(self, image_id: int, *, trainable: bool) -> list[dict]:
        """The image's persons with a box of at least 1 px; ``trainable``: only non-crowd ones with keypoints."""
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, catIds=[self.category_id]))
                if a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
        if trainable:
            anns = [a for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]
        return anns

    def _scale(self, info: dict) -> tuple[float, float]:
        """(x, y) factors from COCO's pixels to the dataset's."""
        if self.image_size is None:
            return 1.0, 1.0
        height, width = self.image_size
        return width / info["width"], height / info["height"]

    def _points(self, anns: list[dict], where: str) -> np.ndarray:
        """(N, K, 3) float32 keypoints of ``anns``; a person with none labelled may omit them (COCO's crowds)."""
        k = self.num_keypoints
        try:
            rows = [a["keypoints"] if "keypoints" in a or a.get("num_keypoints", 0) else [0.0] * (3 * k)
                    for a in anns]
            return np.array(rows, dtype=np.float32).reshape(len(anns), k, 3)
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"{where}: every person needs keypoints as {3 * k} numbers (x, y, v for each of "
                             f"the {k} keypoint names)") from None

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        info = self.coco.imgs[self.ids[index]]
        h, w = info["height"], info["width"]
        path = self.image_dir / info["file_name"]
        with Image.open(path) as pil:
            array = np.asarray(pil.convert("RGB"))
        if array.shape[:2] != (h, w):
            raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]} but its annotation says {w}x{h}")
        anns = self._annotations(info["id"], trainable=True)
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        points = torch.from_numpy(self._points(anns, f"image {info['id']}"))  # (N, K, 3)
        image = tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255))
        box_tv = tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(h, w))
        xy = tv_tensors.KeyPoints(points[..., :2], canvas_size=(h, w))  # (N, K, 2): KeyPoints holds no v
        area = torch.tensor([a["area"] for a in anns], dtype=torch.float32)
        if self.image_size is not None:
            # torchvision 0.23+ resizes KeyPoints with the pixels (x * new_w / w, y * new_h / h, no
            # clamping); v rides along unchanged, unlabelled points stay at (0, 0)
            image, box_tv, xy = v2.Resize(list(self.image_size))(image, box_tv, xy)
            sx, sy = self._scale(info)
            area = area * (sx * sy)
        keypoints = torch.cat([xy.as_subclass(torch.Tensor), points[..., 2:]], dim=-1)  # (N, K, 3)
        n = len(anns)
        target = {
            "boxes": box_tv,
            "labels": torch.ones(n, dtype=torch.int64),
            "keypoints": keypoints,
            "area": area,
            "iscrowd": torch.zeros(n, dtype=torch.int64),
            "image_id": info["id"],
        }
        return image, target

    def to_coco(self) -> dict:
        """The ground truth of the dataset's images as a COCO keypoint dict, for ``pycocotools`` and
        ``course_utils.metrics.coco_eval(..., "keypoints")``.

        In the same pixels as :meth:`__getitem__` (resized when ``image_size`` is set: image sizes,
        keypoints, boxes and areas scaled); category id 1 = label 1 = person, with COCO's keypoint
        names and skeleton. Crowds and zero-keypoint persons are kept (the evaluation ignores
        them); no ``segmentation`` is exported, so the dict serves keypoint and box evaluation.
        """
        images, annotations = [], []
        for image_id in self.ids:
            info = self.coco.imgs[image_id]
            sx, sy = self._scale(info)
            height, width = self.image_size or (info["height"], info["width"])
            images.append({"id": image_id, "width": width, "height": height, "file_name": info["file_name"]})
            anns = self._annotations(image_id, trainable=False)
            points = self._points(anns, f"image {image_id}").astype(np.float64)  # (N, K, 3)
            labelled = points[..., 2] > 0  # (N, K)
            points[..., 0] = np.where(labelled, points[..., 0] * sx, 0)
            points[..., 1] = np.where(labelled, points[..., 1] * sy, 0)
            for ann, kp in zip(anns, points):
                x, y, bw, bh = (float(v) for v in ann["bbox"])
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                    "bbox": [x * sx, y * sy, bw * sx, bh * sy], "area": float(ann["area"]) * sx * sy,
                    "iscrowd": int(ann.get("iscrowd", 0)), "keypoints": [float(v) for v in kp.reshape(-1)],
                    "num_keypoints": int(ann.get("num_keypoints", (kp[:, 2] > 0).sum())),
                })
        categories = [{"id": 1, "name": self.class_names[0], "supercategory": self.supercategory,
                       "keypoints": list(self.keypoint_names), "skeleton": [list(e) for e in self.skeleton]}]
        return {"images": images, "annotations": annotations, "categories": categories}
