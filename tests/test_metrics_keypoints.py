"""coco_eval(..., "keypoints"): OKS evaluation bit-identical to pycocotools (the oracle)."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_utils.data import SHAPE_KEYPOINT_SIGMAS, ShapesDataset
from course_utils.metrics import COCO_KEYPOINT_SIGMAS, KEYPOINT_STAT_NAMES, coco_eval


def pycocotools_keypoints(gt: dict, dt: list, sigmas=None) -> COCOeval:
    """The oracle, on deep copies (loadRes writes into the result dicts)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dt)), "keypoints")
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def assert_same(gt: dict, dt: list, sigmas=None):
    expected = pycocotools_keypoints(gt, dt, sigmas)
    result = coco_eval(gt, dt, "keypoints", kpt_oks_sigmas=sigmas)
    assert result.precision.shape == expected.eval["precision"].shape
    assert np.array_equal(result.precision, expected.eval["precision"])
    assert np.array_equal(result.recall, expected.eval["recall"])
    assert np.array_equal(result.stats, np.asarray(expected.stats))
    return result, expected


def random_keypoint_set(seed: int, num_keypoints: int = 17, num_images: int = 10, with_bbox: bool = False,
                        size: int = 400) -> tuple[dict, list]:
    """GT of every area range, some without labelled points (ignored), some crowd, partly visible;
    detections near GT (jittered), elsewhere, of an unknown category, tied scores."""
    rng = np.random.default_rng(seed)
    k = num_keypoints
    images = [{"id": 2 * i + 1, "width": size, "height": size} for i in range(num_images)]
    categories = [{"id": c, "name": f"c{c}", "keypoints": [f"p{j}" for j in range(k)]} for c in (1, 4, 7)]
    annotations, detections = [], []
    for image in images:
        image_gt = []
        for _ in range(rng.integers(0, 7)):
            w, h = rng.uniform(5, 180, 2).round(2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            xs, ys = x + rng.uniform(0, w, k), y + rng.uniform(0, h, k)
            v = rng.choice([0, 1, 2], k, p=[0.3, 0.2, 0.5])
            if rng.random() < 0.15:
                v[:] = 0  # nothing labelled: ignored, and OKS falls back to the enlarged box
            points = np.stack([np.where(v > 0, xs, 0), np.where(v > 0, ys, 0), v], axis=1).round(2)
            ann = {"id": len(annotations) + 1, "image_id": image["id"], "category_id": int(rng.choice([1, 4, 7])),
                   "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h * rng.uniform(0.4, 1)),
                   "iscrowd": int(rng.random() < 0.08), "keypoints": points.reshape(-1).tolist(),
                   "num_keypoints": int((v > 0).sum())}
            annotations.append(ann)
            image_gt.append((ann, xs, ys))
        for _ in range(rng.integers(0, 30)):
            if image_gt and rng.random() < 0.7:
                ann, xs, ys = image_gt[rng.integers(len(image_gt))]
                jitter = rng.choice([0.5, 2, 6, 20])
                dx, dy = xs + rng.normal(0, jitter, k), ys + rng.normal(0, jitter, k)
                category = ann["category_id"] if rng.random() < 0.9 else int(rng.choice([1, 4, 7, 99]))
            else:
                cx, cy = rng.uniform(0, size, 2)
                dx, dy = cx + rng.normal(0, 30, k), cy + rng.normal(0, 30, k)
                category = int(rng.choice([1, 4, 7, 99]))
            det = {"image_id": image["id"], "category_id": category,
                   "keypoints": np.stack([dx, dy, np.ones(k)], axis=1).round(2).reshape(-1).tolist(),
                   "score": round(float(rng.random()), int(rng.choice([1, 2, 3])))}
            if with_bbox:
                x0, y0 = float(dx.min()), float(dy.min())
                det["bbox"] = [x0, y0, float(dx.max()) - x0 + 3, float(dy.max()) - y0 + 3]
            detections.append(det)
    return {"images": images, "annotations": annotations, "categories": categories}, detections


@pytest.mark.parametrize("seed", range(8))
def test_random_sets_match_pycocotools_exactly(seed):
    gt, dt = random_keypoint_set(seed)
    result, _ = assert_same(gt, dt)
    assert result.stats.shape == (10,) and list(result.named) == list(KEYPOINT_STAT_NAMES)


@pytest.mark.parametrize("seed", range(4))
def test_custom_sigmas_and_five_keypoints_match_pycocotools(seed):
    gt, dt = random_keypoint_set(100 + seed, num_keypoints=5)
    assert_same(gt, dt, sigmas=SHAPE_KEYPOINT_SIGMAS)
    assert_same(gt, dt, sigmas=[0.02, 0.05, 0.1, 0.3, 0.07])


@pytest.mark.parametrize("seed", range(3))
def test_results_with_boxes_take_the_box_area_like_load_res(seed):
    gt, dt = random_keypoint_set(200 + seed, with_bbox=True)
    assert_same(gt, dt)


def test_more_than_20_detections_per_image_are_cut_like_pycocotools():
    gt, dt = random_keypoint_set(7, num_images=2)
    image = gt["images"][0]["id"]
    base = [d for d in dt if d["image_id"] == image][:1] or dt[:1]
    extra = [dict(base[0], image_id=image, score=0.01 * i) for i in range(40)]
    assert_same(gt, dt + extra)


def test_shapes_ground_truth_scores_one_and_jitter_lowers_it():
    gt = ShapesDataset(12, preset="crowded", seed=4).to_coco()
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                "score": 0.9} for a in gt["annotations"]]
    result, _ = assert_same(gt, perfect, sigmas=SHAPE_KEYPOINT_SIGMAS)
    assert result.named["AP"] == 1.0
    rng = np.random.default_rng(0)
    noisy = [dict(d, keypoints=(np.array(d["keypoints"]) + rng.normal(0, 1.5, 15) * np.tile([1, 1, 0], 5)).tolist())
             for d in perfect]
    result, _ = assert_same(gt, noisy, sigmas=SHAPE_KEYPOINT_SIGMAS)
    assert 0 < result.named["AP"] < 1


def test_hand_worked_oks():
    """One GT (area 100, 2 labelled points of 3), one detection: d = 0 on the first, 3 px on the second.
    k = 2 sigma = 0.2: e = 9 / (0.04 * 100 * 2) = 1.125 -> OKS = (1 + exp(-1.125)) / 2 = 0.662:
    a match at thresholds 0.50..0.65 (4 of 10), AP = 0.4."""
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "p"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100.0,
                           "iscrowd": 0, "keypoints": [2, 2, 2, 5, 5, 1, 0, 0, 0], "num_keypoints": 2}]}
    dt = [{"image_id": 1, "category_id": 1, "keypoints": [2, 2, 1, 5, 8, 1, 50, 50, 1], "score": 1.0}]
    result, _ = assert_same(gt, dt, sigmas=[0.1, 0.1, 0.1])
    assert result.named["AP"] == pytest.approx(0.4)
    assert result.named["AP50"] == pytest.approx(1.0) and result.named["AP75"] == 0.0


def test_default_sigmas_are_cocos_17():
    assert len(COCO_KEYPOINT_SIGMAS) == 17
    gt, dt = random_keypoint_set(3)
    assert np.array_equal(coco_eval(gt, dt, "keypoints").stats,
                          coco_eval(gt, dt, "keypoints", kpt_oks_sigmas=COCO_KEYPOINT_SIGMAS).stats)


def test_no_detections_means_zero_where_there_is_ground_truth():
    gt, _ = random_keypoint_set(1)
    result = coco_eval(gt, [], "keypoints")
    assert result.named["AP"] == 0.0


@pytest.mark.parametrize("sigmas, match", [
    ([], "kpt_oks_sigmas must be"), ([0.1, -0.2], "kpt_oks_sigmas must be"), ("abc", "kpt_oks_sigmas must be"),
    ([[0.1, 0.2]], "kpt_oks_sigmas must be"),
])
def test_bad_sigmas_are_named(sigmas, match):
    gt, dt = random_keypoint_set(0)
    with pytest.raises(ValueError, match=match):
        coco_eval(gt, dt, "keypoints", kpt_oks_sigmas=sigmas)


def test_bad_keypoints_name_the_record():
    gt, dt = random_keypoint_set(0, num_keypoints=5)
    with pytest.raises(ValueError, match=r"gt annotation 0 .*must be 51 numbers .*17 keypoints that kpt_oks_sigmas"):
        coco_eval(gt, dt, "keypoints")  # 17 default sigmas, 5 keypoints each
    bad = copy.deepcopy(dt)
    bad[0]["keypoints"] = bad[0]["keypoints"][:-3]
    with pytest.raises(ValueError, match=r"detection 0 .*keypoints must be 15 numbers"):
        coco_eval(gt, bad, "keypoints", kpt_oks_sigmas=[0.1] * 5)
    missing = copy.deepcopy(gt)
    del missing["annotations"][0]["num_keypoints"]
    with pytest.raises(ValueError, match="gt annotation 0 .*has no 'num_keypoints'"):
        coco_eval(missing, dt, "keypoints", kpt_oks_sigmas=[0.1] * 5)
    nan = copy.deepcopy(dt)
    nan[1]["keypoints"][0] = float("nan")
    with pytest.raises(ValueError, match="detection 1 .*keypoints must be finite"):
        coco_eval(gt, nan, "keypoints", kpt_oks_sigmas=[0.1] * 5)
