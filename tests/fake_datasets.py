"""Tiny fake copies of the real datasets, laid out exactly as ``data_scripts.download`` leaves them.

That includes the ``.dataset.json`` record written last by ``fetch_dataset`` (with the registry's
sha256 of each archive; unverified ones get a placeholder), so ``course_utils.data.ensure_dataset``
takes a fake as complete and fetches nothing.

Each builder writes into ``<parent>/<NAME>`` and returns that folder, ready for the matching
``course_utils.data`` class. The annotations are fixed constants (below) so tests can compare
what a loader reads against numbers written here, not numbers the loader computed. The images
are flat colour with the objects painted in, a few tens of pixels a side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from course_utils.data.download import DEFAULT_IMAGES, write_ready_record
from course_utils.data.registry import get_entry


def _complete(root: Path, name: str) -> Path:
    """Write the record that marks ``root`` as a complete ``name`` dataset; returns ``root``."""
    entry = get_entry(name)
    digests = {f.name: f.sha256 or "0" * 64 for f in entry.files}
    write_ready_record(root, entry, digests, DEFAULT_IMAGES if any(f.limit for f in entry.files) else None)
    return root

# --------------------------------------------------------------------------- Oxford-IIIT Pet

# name, class id (breed, 1-based), species (1 cat, 2 dog), breed id, split, head box (VOC 1-based inclusive)
PETS = [
    ("Abyssinian_1", 1, 1, 1, "trainval", (11, 6, 30, 20)),
    ("american_bulldog_10", 2, 2, 1, "trainval", (21, 11, 40, 30)),
    ("Bengal_3", 3, 1, 2, "test", None),  # like the real test split: no head box
]
PETS_SIZE = (48, 40)  # width, height
PETS_PET_REGION = (5, 4, 44, 36)  # x0, y0, x1, y1 (edges) of the whole pet in the trimap


def _voc_xml(filename: str, width: int, height: int, objects: list[tuple[str, tuple, int]]) -> str:
    parts = [f"<annotation><folder>VOC</folder><filename>{filename}</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size><segmented>0</segmented>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Frontal</pose><truncated>0</truncated>"
                     f"<occluded>0</occluded><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                     f"<ymax>{y1}</ymax></bndbox><difficult>{difficult}</difficult></object>")
    return "".join(parts) + "</annotation>\n"


def _image(width: int, height: int, boxes: list[tuple], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    array = np.full((height, width, 3), rng.integers(0, 80, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:  # pixel edges
        array[y0:y1, x0:x1] = rng.integers(150, 256, 3)
    return Image.fromarray(array)


def make_oxford_pets(parent: str | Path) -> Path:
    """``oxford_pets/{images/*.jpg, annotations/{list,trainval,test}.txt, xmls/*.xml, trimaps/*.png}``."""
    root = Path(parent) / "oxford_pets"
    ann = root / "annotations"
    for d in (root / "images", ann / "xmls", ann / "trimaps"):
        d.mkdir(parents=True, exist_ok=True)
    width, height = PETS_SIZE
    header = ("#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n"
              "#BREED ID: 1-25:Cat 1:12:Dog\n")
    rows = {split: [] for split in ("trainval", "test")}
    for i, (name, class_id, species, breed_id, split, box) in enumerate(PETS):
        rows[split].append(f"{name} {class_id} {species} {breed_id}")
        _image(width, height, [PETS_PET_REGION], seed=i).save(root / "images" / f"{name}.jpg", quality=95)
        trimap = np.full((height, width), 2, dtype=np.uint8)  # 2 background
        x0, y0, x1, y1 = PETS_PET_REGION
        trimap[y0:y1, x0:x1] = 3  # border ring
        trimap[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = 1  # pet
        Image.fromarray(trimap).save(ann / "trimaps" / f"{name}.png")
        if box is not None:
            species_name = "cat" if species == 1 else "dog"
            (ann / "xmls" / f"{name}.xml").write_text(_voc_xml(f"{name}.jpg", width, height, [(species_name, box, 0)]))
    (ann / "list.txt").write_text(header + "\n".join(rows["trainval"] + rows["test"]) + "\n")
    for split, lines in rows.items():
        (ann / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return _complete(root, "oxford_pets")


# --------------------------------------------------------------------------- PennFudan

# image stem -> (width, height, person boxes as pixel edges); the mask paints person k with value k
PENNFUDAN = {
    "FudanPed00001": (40, 50, [(2, 5, 12, 45), (20, 8, 33, 48)]),
    "PennPed00001": (36, 44, [(10, 4, 26, 40)]),
}


def make_pennfudan(parent: str | Path) -> Path:
    """``pennfudan/PennFudanPed/{PNGImages/*.png, PedMasks/*_mask.png, Annotation/*.txt}``."""
    root = Path(parent) / "pennfudan"
    base = root / "PennFudanPed"
    for d in ("PNGImages", "PedMasks", "Annotation"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for i, (stem, (width, height, boxes)) in enumerate(PENNFUDAN.items()):
        _image(width, height, boxes, seed=10 + i).save(base / "PNGImages" / f"{stem}.png")
        ids = np.zeros((height, width), dtype=np.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes, start=1):
            ids[y0:y1, x0:x1] = k
        Image.fromarray(ids, mode="L").save(base / "PedMasks" / f"{stem}_mask.png")
        (base / "Annotation" / f"{stem}.txt").write_text(
            f'# Compatible with PASCAL Annotation Version 1.00\nImage filename : "PennFudanPed/PNGImages/{stem}.png"\n'
            f"Image size (X x Y x C) : {width} x {height} x 3\nObjects with ground truth : {len(boxes)}\n")
    return _complete(root, "pennfudan")


# --------------------------------------------------------------------------- VOC 2007

# id -> (split, width, height, [(class, VOC 1-based inclusive box, difficult)])
VOC = {
    "000005": ("trainval", 50, 40, [("chair", (3, 5, 20, 30), 0), ("person", (25, 2, 48, 38), 1)]),
    "000007": ("trainval", 44, 36, [("car", (1, 1, 44, 20), 0)]),
    "000001": ("test", 40, 40, [("dog", (10, 12, 30, 35), 0)]),
}


def make_voc2007(parent: str | Path) -> Path:
    """``voc2007/VOCdevkit/VOC2007/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/*.txt}``."""
    root = Path(parent) / "voc2007"
    base = root / "VOCdevkit" / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / d).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"trainval": [], "test": []}
    for i, (image_id, (split, width, height, objects)) in enumerate(VOC.items()):
        splits[split].append(image_id)
        edges = [(x0 - 1, y0 - 1, x1, y1) for _, (x0, y0, x1, y1), _ in objects]
        _image(width, height, edges, seed=20 + i).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (base / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(f"{image_id}.jpg", width, height, objects))
    trainval = splits["trainval"]
    splits["train"], splits["val"] = trainval[:1], trainval[1:]
    for split, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return _complete(root, "voc2007")


# --------------------------------------------------------------------------- COCO val2017

COCO_CATEGORIES = [  # COCO's ids have gaps: labels must map 1, 3, 18 -> 1, 2, 3
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]
# image id -> (width, height, [(category id, box xywh, iscrowd)]); boxes are exact rectangles
COCO_IMAGES = {
    139: (40, 30, [(18, (4, 6, 10, 12), 0), (1, (20, 2, 16, 24), 0), (1, (0, 20, 8, 10), 1)]),
    285: (32, 32, [(3, (2, 2, 20, 10), 0)]),
    632: (30, 40, []),
}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (used for crowd regions): run lengths of the column-major pixels."""
    flat = mask.flatten(order="F").astype(np.int64)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"counts": counts, "size": list(mask.shape)}


def make_coco_val2017(parent: str | Path) -> Path:
    """``coco_val2017/{annotations/instances_val2017.json, val2017/<12-digit id>.jpg}``."""
    root = Path(parent) / "coco_val2017"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (image_id, (width, height, objects)) in enumerate(COCO_IMAGES.items()):
        file_name = f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height,
                       "license": 4, "coco_url": f"http://images.cocodataset.org/val2017/{file_name}"})
        edges = [(x, y, x + w, y + h) for _, (x, y, w, h), _ in objects]
        _image(width, height, edges, seed=30 + i).save(root / "val2017" / file_name, quality=95)
        for category_id, (x, y, w, h), iscrowd in objects:
            if iscrowd:
                mask = np.zeros((height, width), dtype=np.uint8)
                mask[y:y + h, x:x + w] = 1
                segmentation = _uncompressed_rle(mask)
            else:
                segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            annotations.append({"id": 1000 + len(annotations), "image_id": image_id, "category_id": category_id,
                                "bbox": [x, y, w, h], "area": float(w * h), "iscrowd": iscrowd,
                                "segmentation": segmentation})
    data = {"info": {"description": "fake COCO val2017"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": COCO_CATEGORIES}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return _complete(root, "coco_val2017")


# --------------------------------------------------------------------------- COCO val2017 person keypoints

COCO_KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
]
COCO_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
                 [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # COCO's, 1-based
# image id -> (width, height, on disk, [(box xywh, visibility of the 17 keypoints, iscrowd)]).
# 139: one trainable person, a crowd and a person without keypoints (both left out of the targets);
# 285: two trainable persons; 632: only a person without keypoints and 724: nobody (both skipped);
# 776: a trainable person but its image is not on disk (skipped).
COCO_KP_IMAGES = {
    139: (160, 120, True, [((20, 10, 60, 100), "22222222221111222", 0), ((100, 0, 50, 40), "0" * 17, 1),
                           ((110, 70, 30, 40), "0" * 17, 0)]),
    285: (128, 160, True, [((30, 20, 64, 128), "22220000222211110", 0), ((4, 100, 20, 40), "10000000000000022", 0)]),
    632: (40, 30, True, [((5, 5, 20, 20), "0" * 17, 0)]),
    724: (30, 30, True, []),
    776: (64, 64, False, [((10, 10, 30, 40), "2" * 17, 0)]),
}


def fake_person_keypoints(box: tuple, visibility: str) -> np.ndarray:
    """(17, 3) rows (x, y, v) of a fake person: a 4 x 5 grid inside its box; unlabelled (v = 0) at (0, 0)."""
    x, y, w, h = box
    v = np.array([int(c) for c in visibility], dtype=np.float64)
    j = np.arange(17)
    xs = x + (j % 4 + 0.5) * w / 4
    ys = y + (j // 4 + 0.5) * h / 5
    return np.stack([np.where(v > 0, xs, 0), np.where(v > 0, ys, 0), v], axis=1)


def make_coco_keypoints_val2017(parent: str | Path) -> Path:
    """``coco_keypoints_val2017/{annotations/person_keypoints_val2017.json, val2017/<12-digit id>.jpg}``.

    Laid out as the real file: every image listed (also those without persons), one ``person``
    category with keypoint names and skeleton, crowds with ``num_keypoints`` 0 and all-zero
    keypoints, ``area`` (the segment's) smaller than the box.
    """
    root = Path(parent) / "coco_keypoints_val2017"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (image_id, (width, height, on_disk, persons)) in enumerate(COCO_KP_IMAGES.items()):
        file_name = f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height, "license": 4})
        if on_disk:
            edges = [(x, y, x + w, y + h) for (x, y, w, h), _, _ in persons]
            _image(width, height, edges, seed=40 + i).save(root / "val2017" / file_name, quality=95)
        for (x, y, w, h), visibility, iscrowd in persons:
            points = fake_person_keypoints((x, y, w, h), visibility)
            annotations.append({"id": 2000 + len(annotations), "image_id": image_id, "category_id": 1,
                                "bbox": [x, y, w, h], "area": float(w * h) * 0.6, "iscrowd": iscrowd,
                                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                                "keypoints": [float(v) if k % 3 < 2 else int(v) for k, v in
                                              enumerate(points.reshape(-1))],
                                "num_keypoints": int((points[:, 2] > 0).sum())})
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": COCO_KEYPOINT_NAMES,
                   "skeleton": COCO_SKELETON}]
    data = {"info": {"description": "fake COCO val2017 person keypoints"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    return _complete(root, "coco_keypoints_val2017")
