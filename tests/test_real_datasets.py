"""Real-dataset loaders on tiny fakes laid out like the real downloads (see tests/fake_datasets.py).

Expected numbers are written out by hand from the fake annotations: XML boxes are 1-based
inclusive, so (xmin, ymin, xmax, ymax) = (11, 6, 30, 20) must load as pixel edges (10, 5, 30, 20).
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision import tv_tensors
from torchvision.transforms import v2

from course_utils.data import IGNORE_INDEX, COCOSubset, OxfordPets, PennFudan, VOCDetection2007
from tests.fake_datasets import make_coco_val2017, make_oxford_pets, make_pennfudan, make_voc2007


def check_format(image, target, height: int, width: int, n: int) -> None:
    """The ShapesDataset item format, as in course_utils/data/shapes.py."""
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, height, width)
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].shape == (n, 4)
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(target["boxes"].canvas_size) == (height, width)
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == (n,)
    assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (n, height, width)
    assert target["masks"].dtype == torch.uint8
    assert isinstance(target["semantic_mask"], tv_tensors.Mask) and target["semantic_mask"].shape == (height, width)
    assert target["semantic_mask"].dtype == torch.int64
    assert target["area"].dtype == torch.float32 and target["iscrowd"].dtype == torch.int64
    assert isinstance(target["image_id"], int)


def coco_of(dataset) -> COCO:
    coco = COCO()
    coco.dataset = dataset.to_coco()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def self_ap(coco: COCO, iou_type: str = "bbox") -> float:
    """COCO AP of the ground truth scored against itself (non-crowd objects as detections): 1.0 if consistent."""
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
             "segmentation": a["segmentation"]} for a in coco.dataset["annotations"] if not a["iscrowd"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


# --------------------------------------------------------------------------- Oxford-IIIT Pet


def test_oxford_pets_head_boxes_breeds_and_species(tmp_path):
    root = make_oxford_pets(tmp_path)
    pets = OxfordPets(root)
    assert len(pets) == 2 and pets.num_classes == 3
    assert pets.class_names == ["Abyssinian", "american_bulldog", "Bengal"]
    image, target = pets[1]
    check_format(image, target, 40, 48, 1)
    assert target["boxes"].tolist() == [[20.0, 10.0, 40.0, 30.0]]
    assert target["labels"].tolist() == [2]
    assert target["area"].tolist() == [400.0]  # the filled head box: 20 x 20
    assert OxfordPets(root, labels="species").class_names == ["cat", "dog"]
    assert [OxfordPets(root, labels="species")[i][1]["labels"].item() for i in range(2)] == [1, 2]


def test_oxford_pets_trimap_semantic_mask(tmp_path):
    root = make_oxford_pets(tmp_path)
    semantic = OxfordPets(root, trimap=True)[0][1]["semantic_mask"]
    assert (semantic == 1).sum() == 39 * 32 and (semantic == 0).sum() == 48 * 40 - 39 * 32
    ignored = OxfordPets(root, trimap=True, border="ignore")[0][1]["semantic_mask"]
    assert (ignored == 1).sum() == 37 * 30 and (ignored == IGNORE_INDEX).sum() == 39 * 32 - 37 * 30


def test_oxford_pets_test_split_has_no_head_boxes_and_says_so(tmp_path):
    with pytest.raises(ValueError, match="trainval only"):
        OxfordPets(make_oxford_pets(tmp_path), split="test")


def test_missing_dataset_error_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_scripts.download oxford_pets"):
        OxfordPets(tmp_path / "nowhere")


# --------------------------------------------------------------------------- PennFudan


def test_pennfudan_instance_masks_and_boxes(tmp_path):
    ds = PennFudan(make_pennfudan(tmp_path))
    assert len(ds) == 2 and ds.class_names == ["person"]
    image, target = ds[0]  # FudanPed00001
    check_format(image, target, 50, 40, 2)
    assert target["boxes"].tolist() == [[2, 5, 12, 45], [20, 8, 33, 48]]
    assert target["labels"].tolist() == [1, 1]
    assert target["area"].tolist() == [400.0, 520.0]
    assert target["masks"][1, 8:48, 20:33].all() and target["masks"][1].sum() == 520
    assert (target["semantic_mask"] == 1).sum() == 920
    assert PennFudan(tmp_path / "pennfudan" / "PennFudanPed")[1][1]["boxes"].tolist() == [[10, 4, 26, 40]]


def test_pennfudan_to_coco_loads_in_pycocotools(tmp_path):
    coco = coco_of(PennFudan(make_pennfudan(tmp_path)))
    assert [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=0))] == [[2, 5, 10, 40], [20, 8, 13, 40]]
    assert self_ap(coco, "segm") == pytest.approx(1.0)


# --------------------------------------------------------------------------- VOC 2007


def test_voc_boxes_labels_and_difficult_flags(tmp_path):
    root = make_voc2007(tmp_path)
    voc = VOCDetection2007(root)
    assert len(voc) == 2 and voc.num_classes == 20
    image, target = voc[0]  # 000005
    check_format(image, target, 40, 50, 2)
    assert target["boxes"].tolist() == [[2, 4, 20, 30], [24, 1, 48, 38]]
    assert target["labels"].tolist() == [9, 15]  # chair, person
    assert [voc.class_names[i - 1] for i in target["labels"]] == ["chair", "person"]
    assert target["difficult"].tolist() == [False, True]
    easy = VOCDetection2007(root, keep_difficult=False)[0][1]
    assert easy["labels"].tolist() == [9] and easy["difficult"].tolist() == [False]
    test = VOCDetection2007(root, split="test")
    assert len(test) == 1 and test[0][1]["boxes"].tolist() == [[9, 11, 30, 35]]
    assert test[0][1]["labels"].tolist() == [12]  # dog
    assert len(VOCDetection2007(root, split="train")) == 1 and len(VOCDetection2007(root, split="val")) == 1


def test_voc_to_coco_loads_in_pycocotools_and_keeps_difficult(tmp_path):
    coco = coco_of(VOCDetection2007(make_voc2007(tmp_path)))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=0))
    assert [a["bbox"] for a in anns] == [[2, 4, 18, 26], [24, 1, 24, 37]]
    assert [a["difficult"] for a in anns] == [False, True]
    assert coco.loadCats(9)[0]["name"] == "chair"
    assert self_ap(coco) == pytest.approx(1.0)


def test_a_flip_moves_boxes_and_masks_with_the_image(tmp_path):
    root = make_voc2007(tmp_path)
    plain_image, plain = VOCDetection2007(root)[0]
    image, target = VOCDetection2007(root, transforms=v2.RandomHorizontalFlip(p=1.0))[0]
    assert torch.equal(image, plain_image.flip(-1))
    assert target["boxes"].tolist() == [[30, 4, 48, 30], [2, 1, 26, 38]]  # x -> 50 - x
    assert torch.equal(target["masks"], plain["masks"].flip(-1))
    assert target["difficult"].tolist() == [False, True]


# --------------------------------------------------------------------------- COCO


def test_coco_subset_maps_category_ids_and_reads_masks(tmp_path):
    ds = COCOSubset(make_coco_val2017(tmp_path))
    assert len(ds) == 3 and ds.class_names == ["person", "car", "dog"]
    image, target = ds[0]  # image 139; the crowd region is left out by default
    check_format(image, target, 30, 40, 2)
    assert target["image_id"] == 139
    assert target["boxes"].tolist() == [[4, 6, 14, 18], [20, 2, 36, 26]]
    assert target["labels"].tolist() == [3, 1]  # dog (COCO id 18), person (COCO id 1)
    for mask, (x0, y0, x1, y1) in zip(target["masks"], target["boxes"].int().tolist()):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1  # polygon inside its box
        assert mask.sum() >= 0.8 * (x1 - x0) * (y1 - y0)
    crowd = COCOSubset(tmp_path / "coco_val2017", include_crowd=True)[0][1]
    assert crowd["iscrowd"].tolist() == [0, 0, 1]
    assert crowd["masks"][2].sum() == 80 and crowd["masks"][2, 20:30, 0:8].all()  # the uncompressed RLE
    empty = ds[2][1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 40, 30)


def test_coco_subset_uses_only_images_on_disk_and_max_images(tmp_path):
    root = make_coco_val2017(tmp_path)
    (root / "val2017" / "000000000285.jpg").unlink()
    ds = COCOSubset(root)
    assert [ds[i][1]["image_id"] for i in range(len(ds))] == [139, 632]
    assert len(COCOSubset(root, max_images=1)) == 1


def test_coco_subset_to_coco_loads_in_pycocotools(tmp_path):
    coco = coco_of(COCOSubset(make_coco_val2017(tmp_path)))
    assert sorted(coco.getImgIds()) == [139, 285, 632]
    assert [c["name"] for c in coco.loadCats([1, 2, 3])] == ["person", "car", "dog"]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=139))
    assert [(a["category_id"], a["iscrowd"]) for a in anns] == [(3, 0), (1, 0), (1, 1)]
    assert self_ap(coco) == pytest.approx(1.0)
    assert self_ap(coco, "segm") == pytest.approx(1.0)


def test_every_fake_dataset_is_complete_for_ensure_dataset(tmp_path, monkeypatch):
    """The notebooks' one "already downloaded?" check takes the fakes as they are: no fetch."""
    import course_utils.data.download as downloads
    from course_utils.data import ensure_dataset

    def no_fetch(*args, **kwargs):
        raise AssertionError(f"ensure_dataset fetched {args[0]!r}")

    monkeypatch.setattr(downloads, "fetch_dataset", no_fetch)
    for make in (make_oxford_pets, make_pennfudan, make_voc2007, make_coco_val2017):
        folder = make(tmp_path)
        assert ensure_dataset(folder.name, tmp_path) == folder
