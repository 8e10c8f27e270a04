"""COCOKeypoints on a fake COCO person-keypoint folder, its COCO export evaluated by pycocotools and
coco_eval, and keypoint_detections_to_coco."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision import tv_tensors

from course_utils.data import COCOKeypoints, keypoint_detections_to_coco
from course_utils.metrics import coco_eval
from tests.fake_datasets import (
    COCO_KEYPOINT_NAMES,
    COCO_KP_IMAGES,
    COCO_SKELETON,
    fake_person_keypoints,
    make_coco_keypoints_val2017,
    make_coco_val2017,
)


@pytest.fixture
def root(tmp_path):
    return make_coco_keypoints_val2017(tmp_path)


def coco_of(gt: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def pycocotools_stats(gt: dict, dt: list) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_of(gt)
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dt)), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def predictions_of(ds: COCOKeypoints, noise: float = 0.0, seed: int = 0) -> tuple[list[int], list[dict]]:
    """Each target's persons as a keypoint R-CNN's output (+ Gaussian noise), plus a stray detection."""
    rng = torch.Generator().manual_seed(seed)
    ids, preds = [], []
    for i in range(len(ds)):
        _, target = ds[i]
        points = target["keypoints"].clone()
        points[..., :2] += noise * torch.randn(points[..., :2].shape, generator=rng)
        points[..., 2] = 1  # torchvision writes visibility 1
        scores = torch.linspace(0.9, 0.5, len(points))
        if noise:
            points = torch.cat([points, points[:1, :, :] + torch.tensor([40.0, 0, 0])])  # a false positive
            scores = torch.cat([scores, torch.tensor([0.95])])
        ids.append(target["image_id"])
        preds.append({"boxes": target["boxes"], "keypoints": points, "scores": scores,
                      "labels": torch.ones(len(points), dtype=torch.int64),
                      "keypoints_scores": torch.ones(points.shape[:2])})
    return ids, preds


# --------------------------------------------------------------------------- items


def test_items_hold_the_trainable_persons_of_the_images_on_disk(root):
    ds = COCOKeypoints(root)
    # 632: only a person without keypoints; 724: nobody; 776: not on disk
    assert ds.ids == [139, 285] and len(ds) == 2
    assert ds.num_classes == 1 and ds.class_names == ["person"] and ds.num_keypoints == 17
    assert ds.keypoint_names == COCO_KEYPOINT_NAMES and ds.skeleton == COCO_SKELETON
    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, 120, 160) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].format.name == "XYXY"
    assert target["boxes"].canvas_size == (120, 160)
    # 139: the crowd and the person without keypoints are not targets
    assert target["boxes"].tolist() == [[20, 10, 80, 110]]
    assert target["labels"].tolist() == [1] and target["labels"].dtype == torch.int64
    assert target["keypoints"].dtype == torch.float32 and target["keypoints"].shape == (1, 17, 3)
    box, visibility, _ = COCO_KP_IMAGES[139][3][0]
    assert np.array_equal(target["keypoints"][0].numpy(), fake_person_keypoints(box, visibility))
    assert target["area"].tolist() == [pytest.approx(60 * 100 * 0.6)] and target["iscrowd"].tolist() == [0]
    assert target["image_id"] == 139 and ds[-1][1]["image_id"] == 285
    _, second = ds[1]
    assert second["boxes"].tolist() == [[30, 20, 94, 148], [4, 100, 24, 140]]
    assert second["keypoints"][:, :, 2].tolist() == [[int(c) for c in v] for _, v, _ in COCO_KP_IMAGES[285][3]]
    with pytest.raises(IndexError, match="out of range for 2 images"):
        ds[2]


def test_max_images_keeps_the_lowest_ids(root):
    assert COCOKeypoints(root, max_images=1).ids == [139]
    assert COCOKeypoints(root, max_images=10).ids == [139, 285]


@pytest.mark.parametrize("image_size, size", [((80, 30), (80, 30)), (64, (64, 64))])
def test_resize_moves_keypoints_and_boxes_with_the_pixels(root, image_size, size):
    plain, resized = COCOKeypoints(root), COCOKeypoints(root, image_size=image_size)
    for index in range(len(plain)):
        (image0, t0), (image1, t1) = plain[index], resized[index]
        h, w = image0.shape[-2:]
        sx, sy = size[1] / w, size[0] / h
        assert image1.shape == (3, *size) and t1["boxes"].canvas_size == size
        assert torch.allclose(t1["boxes"], t0["boxes"] * torch.tensor([sx, sy, sx, sy]))
        labelled = t0["keypoints"][..., 2] > 0
        expected = t0["keypoints"] * torch.tensor([sx, sy, 1.0])
        assert torch.allclose(t1["keypoints"], expected)
        assert torch.equal(t1["keypoints"][..., 2], t0["keypoints"][..., 2])  # v unchanged
        assert (t1["keypoints"][~labelled][:, :2] == 0).all()  # unlabelled stay at (0, 0)
        assert torch.allclose(t1["area"], t0["area"] * sx * sy)
        for x0, y0, x1, y1 in t1["boxes"].tolist():  # the painted person moved with its box
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            assert image1[:, cy, cx].mean() > 0.5 > image1[:, 0, 0].mean()  # bright person, dark background


def test_to_coco_loads_in_pycocotools_and_keeps_crowds_and_zero_keypoint_persons(root):
    ds = COCOKeypoints(root)
    coco = coco_of(ds.to_coco())
    assert sorted(coco.getImgIds()) == [139, 285]
    assert coco.imgs[139]["width"] == 160 and coco.imgs[139]["height"] == 120
    anns = coco.loadAnns(coco.getAnnIds(imgIds=139))
    assert [a["iscrowd"] for a in anns] == [0, 1, 0] and [a["num_keypoints"] for a in anns] == [17, 0, 0]
    assert [a["bbox"] for a in anns] == [[20, 10, 60, 100], [100, 0, 50, 40], [110, 70, 30, 40]]
    assert anns[0]["area"] == pytest.approx(3600) and all(a["category_id"] == 1 for a in anns)
    assert len({a["id"] for a in coco.dataset["annotations"]}) == 5 and min(coco.getAnnIds()) >= 1
    category = coco.loadCats(1)[0]
    assert category["name"] == "person" and category["keypoints"] == COCO_KEYPOINT_NAMES
    assert category["skeleton"] == COCO_SKELETON


def test_resized_to_coco_matches_the_items(root):
    ds = COCOKeypoints(root, image_size=(80, 30))
    gt = ds.to_coco()
    assert all((i["width"], i["height"]) == (30, 80) for i in gt["images"])
    for index in range(len(ds)):
        _, target = ds[index]
        anns = [a for a in gt["annotations"] if a["image_id"] == target["image_id"] and a["num_keypoints"] > 0
                and not a["iscrowd"]]
        points = np.array([a["keypoints"] for a in anns]).reshape(-1, 17, 3)
        assert np.allclose(points, target["keypoints"].numpy(), atol=1e-4)
        boxes = np.array([a["bbox"] for a in anns])
        boxes[:, 2:] += boxes[:, :2]
        assert np.allclose(boxes, target["boxes"].numpy(), atol=1e-4)
        assert np.allclose([a["area"] for a in anns], target["area"].numpy())


@pytest.mark.parametrize("image_size", [None, (80, 30)])
def test_perfect_and_perturbed_predictions_score_the_same_in_pycocotools_and_coco_eval(root, image_size):
    ds = COCOKeypoints(root, image_size=image_size)
    gt = ds.to_coco()
    for noise in (0.0, 1.5):
        ids, preds = predictions_of(ds, noise)
        dt = keypoint_detections_to_coco(ids, preds)
        expected = pycocotools_stats(gt, dt)
        result = coco_eval(gt, dt, "keypoints")
        assert np.array_equal(result.stats, expected), (noise, result.stats, expected)
        if noise == 0:
            assert result.stats[0] == pytest.approx(1.0)
        else:
            assert result.stats[0] < 1.0


# --------------------------------------------------------------------------- keypoint_detections_to_coco


def test_keypoint_detections_round_trip():
    points = torch.tensor([[[10.0, 20.0, 1.0], [30.5, 40.25, 0.0]], [[1.0, 2.0, 1.0], [3.0, 4.0, 1.0]]])
    preds = [{"keypoints": points, "scores": torch.tensor([0.75, 0.5]), "labels": torch.tensor([1, 2]),
              "boxes": torch.zeros(2, 4)},
             {"keypoints": torch.zeros(0, 2, 3), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
             {"keypoints": np.array([[[5.0, 6.0], [7.0, 8.0]]]), "scores": [0.25]}]  # (P, K, 2), no labels
    dt = keypoint_detections_to_coco([7, np.int64(8), torch.tensor(9)], preds)
    assert dt == [
        {"image_id": 7, "category_id": 1, "keypoints": [10.0, 20.0, 1.0, 30.5, 40.25, 1.0], "score": 0.75},
        {"image_id": 7, "category_id": 2, "keypoints": [1.0, 2.0, 1.0, 3.0, 4.0, 1.0], "score": 0.5},
        {"image_id": 9, "category_id": 1, "keypoints": [5.0, 6.0, 1.0, 7.0, 8.0, 1.0], "score": 0.25},
    ]
    gt = {"images": [{"id": i, "width": 50, "height": 50} for i in (7, 8, 9)],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [5, 15, 30, 30], "area": 900.0,
                           "iscrowd": 0, "keypoints": [10, 20, 2, 30.5, 40.25, 2], "num_keypoints": 2}],
          "categories": [{"id": c, "name": f"c{c}", "keypoints": ["p", "q"]} for c in (1, 2)]}
    result = coco_eval(gt, dt, "keypoints", kpt_oks_sigmas=[0.05, 0.05])
    assert np.array_equal(result.stats, pycocotools_stats_sigmas(gt, dt, [0.05, 0.05]))
    assert result.stats[0] == pytest.approx(1.0)


def pycocotools_stats_sigmas(gt: dict, dt: list, sigmas) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_of(gt)
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dt)), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


@pytest.mark.parametrize("ids, preds, expected", [
    ([1, 2], [{"keypoints": torch.zeros(0, 17, 3), "scores": torch.zeros(0)}], "predictions: got 1 predictions for 2"),
    ([1], [{"scores": torch.zeros(1)}], r"predictions: .*image 1 lacks \['keypoints'\]"),
    ([1], [{"keypoints": torch.zeros(1, 17, 3)}], r"lacks \['scores'\]"),
    ([1], [{"keypoints": torch.zeros(1, 51), "scores": torch.ones(1)}], r"keypoints of image 1 must be \(P, K, 3\)"),
    ([1], [{"keypoints": torch.zeros(2, 17, 3), "scores": torch.ones(1)}], "2 keypoint sets but 1 scores"),
    ([1], [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1), "labels": torch.ones(3)}], "3 labels"),
    ([1], [{"keypoints": torch.full((1, 17, 3), float("nan")), "scores": torch.ones(1)}], "must be finite"),
    (["a"], [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1)}], "image_ids: expected int"),
    ([1.5], [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1)}], "image_ids: expected int"),
    ([True], [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1)}], "image_ids: expected int"),
    ([1], [torch.zeros(1, 17, 3)], "predictions: expected one dict per image"),
])
def test_bad_predictions_are_named(ids, preds, expected):
    with pytest.raises(ValueError, match=expected):
        keypoint_detections_to_coco(ids, preds)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_images": 0}, "max_images must be None or a positive int"),
    ({"max_images": True}, "max_images"),
    ({"max_images": "3"}, "max_images"),
    ({"image_size": 0}, "image_size must be None, a positive int"),
    ({"image_size": (10,)}, "image_size"),
    ({"image_size": (10, -1)}, "image_size"),
    ({"image_size": 2.5}, "image_size"),
    ({"image_size": "64"}, "image_size"),
])
def test_bad_arguments_are_named(root, kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        COCOKeypoints(root, **kwargs)


def test_missing_dataset_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data NAME=coco_keypoints_val2017"):
        COCOKeypoints(tmp_path / "nowhere")


def test_an_instances_file_is_refused_with_the_reason(tmp_path):
    root = make_coco_val2017(tmp_path)
    with pytest.raises(ValueError, match="person_keypoints_.*not instances_"):
        COCOKeypoints(root, ann_file="annotations/instances_val2017.json")


def test_no_person_with_keypoints_on_disk_is_an_error(root):
    for path in (root / "val2017").iterdir():
        if path.name.startswith(("000000000139", "000000000285")):
            path.unlink()
    with pytest.raises(ValueError, match="no image .* shows a person with labelled keypoints"):
        COCOKeypoints(root)
