"""The synthetic shapes set: determinism, target format, occlusion, presets, COCO export."""

from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.transforms import v2

from course_utils.data import PRESETS, ShapesDataset, collate_detection, detections_to_coco, single_object_tensors
from course_utils.tensors import plain


def assert_items_equal(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        va, vb = a[1][k], b[1][k]
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, k


def test_same_seed_same_tensors_in_any_order():
    ds1, ds2 = ShapesDataset(20, seed=3), ShapesDataset(20, seed=3)
    forward = [ds1[i] for i in range(20)]
    backward = [ds2[i] for i in reversed(range(20))][::-1]
    for a, b in zip(forward, backward):
        assert_items_equal(a, b)
    # an item does not depend on the dataset length either
    assert_items_equal(ShapesDataset(5, seed=3)[4], forward[4])


def test_different_seeds_differ():
    assert not torch.equal(ShapesDataset(1, seed=0)[0][0], ShapesDataset(1, seed=1)[0][0])


def test_item_format():
    ds = ShapesDataset(10, image_size=96)
    for i in range(10):
        image, t = ds[i]
        assert isinstance(image, tv_tensors.Image) and image.shape == (3, 96, 96)
        assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
        n = len(t["labels"])
        assert 1 <= n <= 4
        assert isinstance(t["boxes"], tv_tensors.BoundingBoxes)
        assert t["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
        assert tuple(t["boxes"].canvas_size) == (96, 96) and t["boxes"].shape == (n, 4)
        assert t["labels"].dtype == torch.int64 and t["labels"].min() >= 1
        assert t["labels"].max() <= ds.num_classes
        assert isinstance(t["masks"], tv_tensors.Mask) and t["masks"].shape == (n, 96, 96)
        assert t["masks"].dtype == torch.uint8
        assert isinstance(t["semantic_mask"], tv_tensors.Mask) and t["semantic_mask"].shape == (96, 96)
        assert t["image_id"] == i and t["iscrowd"].tolist() == [0] * n
    assert ds.class_names == ["circle", "square", "triangle"] and ds.num_classes == 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_boxes_are_tight_around_visible_masks(preset):
    ds = ShapesDataset(15, preset=preset, seed=5)
    for i in range(len(ds)):
        _, t = ds[i]
        masks = t["masks"].bool()
        assert (masks.sum(dim=0) <= 1).all(), "visible masks must not overlap"
        assert torch.equal(t["area"], masks.sum(dim=(1, 2)).float())
        for box, m in zip(t["boxes"], masks):
            ys, xs = torch.nonzero(m, as_tuple=True)
            expected = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.equal(plain(box), expected)
        semantic = torch.zeros_like(t["semantic_mask"])
        for m, lab in zip(masks, t["labels"]):
            semantic[m] = lab
        assert torch.equal(semantic, plain(t["semantic_mask"]))


def test_occlusion_keeps_min_visible_fraction():
    ds = ShapesDataset(40, preset="crowded", seed=2)
    occluded = 0
    for i in range(len(ds)):
        _, t = ds[i]
        box_area = (t["boxes"][:, 2] - t["boxes"][:, 0]) * (t["boxes"][:, 3] - t["boxes"][:, 1])
        assert (t["area"] <= box_area).all()
        # two objects' boxes overlap somewhere -> occlusion really happens in this preset
        b = plain(t["boxes"])
        from torchvision.ops import box_iou

        iou = box_iou(b, b).fill_diagonal_(0)
        occluded += int((iou > 0).any())
    assert occluded > 0


def test_presets_differ_as_documented():
    def stats(preset):
        ds = ShapesDataset(60, preset=preset, seed=0)
        n, sides = [], []
        for i in range(len(ds)):
            b = ds[i][1]["boxes"]
            n.append(len(b))
            sides += torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).tolist()
        return np.mean(n), np.median(sides), ds.num_classes

    easy, single, small, crowded, hard = (stats(p) for p in ("easy", "single", "small", "crowded", "hard"))
    assert single[0] == 1
    assert small[1] < easy[1] / 2  # small objects are small
    assert crowded[0] > 2 * easy[0]  # crowded is crowded
    assert hard[2] == 6 and easy[2] == 3


def test_overrides_and_validation():
    ds = ShapesDataset(5, preset="easy", max_objects=1, classes=("ring", "cross"))
    assert ds.class_names == ["ring", "cross"]
    assert all(len(ds[i][1]["labels"]) == 1 for i in range(5))
    with pytest.raises(ValueError, match="preset='huge'"):
        ShapesDataset(5, preset="huge")
    with pytest.raises(ValueError, match="unknown option"):
        ShapesDataset(5, colour="red")
    with pytest.raises(ValueError, match="classes"):
        ShapesDataset(5, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="size_range"):
        ShapesDataset(5, size_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="min_objects"):
        ShapesDataset(5, min_objects=3, max_objects=2)
    with pytest.raises(IndexError):
        ShapesDataset(5)[5]


def test_paired_transforms_move_boxes_and_masks():
    flip = v2.RandomHorizontalFlip(p=1.0)
    unflipped, flipped = ShapesDataset(3, seed=4), ShapesDataset(3, seed=4, transforms=flip)
    for i in range(3):
        (img, t), (fimg, ft) = unflipped[i], flipped[i]
        assert torch.equal(fimg, img.flip(-1))
        assert torch.equal(ft["masks"], t["masks"].flip(-1))
        assert torch.equal(ft["semantic_mask"], t["semantic_mask"].flip(-1))
        w = img.shape[-1]
        expected = torch.stack([w - t["boxes"][:, 2], t["boxes"][:, 1], w - t["boxes"][:, 0], t["boxes"][:, 3]], 1)
        assert torch.equal(plain(ft["boxes"]), plain(expected))


def test_to_coco_loads_in_pycocotools():
    ds = ShapesDataset(12, preset="crowded", seed=1)
    coco_dict = ds.to_coco()
    coco = COCO()
    coco.dataset = coco_dict
    coco.createIndex()
    assert sorted(coco.getImgIds()) == list(range(12))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ds.class_names
    for i in range(12):
        _, t = ds[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=i))
        assert len(anns) == len(t["labels"])
        for ann, box, lab, m in zip(anns, t["boxes"], t["labels"], t["masks"]):
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == box.tolist()
            assert ann["category_id"] == lab.item()
            assert ann["area"] == m.sum().item()  # mask area, not box area
            decoded = coco.annToMask(ann)
            assert np.array_equal(decoded, m.numpy())
            assert mask_utils.area(ann["segmentation"]) == ann["area"]
    assert len({a["id"] for a in coco_dict["annotations"]}) == len(coco_dict["annotations"])


def test_detections_to_coco_roundtrip():
    ds = ShapesDataset(4, seed=6)
    outputs = []
    for i in range(4):
        _, t = ds[i]
        outputs.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                        "masks": t["masks"][:, None].float()})
    dets = detections_to_coco(list(range(4)), outputs)
    gt = ds.to_coco()["annotations"]
    assert [d["bbox"] for d in dets] == [a["bbox"] for a in gt]
    assert [d["segmentation"] for d in dets] == [a["segmentation"] for a in gt]
    with pytest.raises(ValueError, match="lacks"):
        detections_to_coco([0], [{"boxes": torch.zeros(0, 4)}])
    with pytest.raises(ValueError, match="image_ids"):
        detections_to_coco([0, 1], outputs[:1])


def test_torchvision_detector_accepts_a_batch():
    from torch.utils.data import DataLoader
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    ds = ShapesDataset(2, image_size=64)
    images, targets = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_detection)))
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU())
    backbone.out_channels = 8
    model = FasterRCNN(backbone, num_classes=ds.num_classes + 1, min_size=64, max_size=64,
                       rpn_anchor_generator=AnchorGenerator(((16, 32),), ((1.0,),)))
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_cache_returns_identical_items():
    ds = ShapesDataset(3, cache=True)
    image, target = ds[1]
    assert_items_equal((image, target), ShapesDataset(3)[1])
    image.zero_()  # a caller changing what it got in place does not corrupt the cache
    target["masks"].zero_()
    assert_items_equal(ds[1], ShapesDataset(3)[1])


def test_single_object_tensors():
    ds = ShapesDataset(6, image_size=48, preset="single", seed=2)
    images, classes, boxes = single_object_tensors(ds)
    assert images.shape == (6, 3, 48, 48) and classes.shape == (6,) and boxes.shape == (6, 4)
    for i in range(6):
        image, t = ds[i]
        assert torch.equal(images[i], plain(image))
        assert classes[i] == t["labels"][0] - 1
        assert torch.equal(boxes[i], plain(t["boxes"][0]))
    with pytest.raises(ValueError, match="one-object"):
        single_object_tensors(ShapesDataset(3, min_objects=2, max_objects=2))


class ItemsOnly:
    """A dataset seen only through __len__ / __getitem__ (like the real datasets)."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]


def test_single_object_tensors_on_any_dataset():
    ds = ShapesDataset(5, image_size=40, preset="single", seed=8)
    direct, generic = single_object_tensors(ds), single_object_tensors(ItemsOnly(ds))
    for a, b in zip(direct, generic):
        assert torch.equal(a, b)
    mixed = ItemsOnly([ds[0], ShapesDataset(1, image_size=48, preset="single")[0]])
    with pytest.raises(ValueError, match="differ in size"):
        single_object_tensors(mixed)


def test_dataset_root(monkeypatch, tmp_path):
    from course_utils.data import dataset_root

    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert dataset_root("oxford_pets") == tmp_path / "oxford_pets"
    monkeypatch.delenv("COURSE_DATA")
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo / "labs")
    assert dataset_root("voc2007") == repo / "data" / "voc2007"
