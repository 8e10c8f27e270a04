"""course_utils.metrics: COCO evaluation against pycocotools (the oracle), VOC AP and
segmentation metrics against hand-worked examples."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_utils.data.coco import encode_mask
from course_utils.metrics import (
    STAT_NAMES,
    coco_eval,
    confusion_matrix,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    precision_recall_curve,
    voc_ap,
    voc_eval,
)

# --------------------------------------------------------------------------- helpers


def pycocotools_eval(gt: dict, dt: list, iou_type: str = "bbox") -> COCOeval:
    """The oracle, on deep copies (loadRes writes into the result dicts)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dt)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def assert_same_as_pycocotools(gt: dict, dt: list, iou_type: str = "bbox"):
    expected = pycocotools_eval(gt, dt, iou_type)
    result = coco_eval(gt, dt, iou_type)
    assert result.precision.shape == expected.eval["precision"].shape
    assert np.array_equal(result.precision, expected.eval["precision"])
    assert np.array_equal(result.recall, expected.eval["recall"])
    assert np.array_equal(result.stats, np.asarray(expected.stats))
    return result, expected


def grid(rng, low, high, size=None):
    """Numbers on a 0.25 px grid in [low, high)."""
    return rng.integers(int(low * 4), int(high * 4), size) / 4


def random_box_set(seed: int, num_images: int = 12, num_categories: int = 4,
                   gt_per_image: int = 4, dt_per_image: int = 25, crowd: float = 0.1,
                   size: int = 160) -> tuple[dict, list]:
    """A COCO-like set with the cases that decide exactness.

    0.25 px grid, scores with 2-3 decimals (ties), crowd GT, GT area != box area, a category
    without GT, detections of a category unknown to the GT, images without GT or detections.
    """
    rng = np.random.default_rng(seed)
    images = [{"id": 3 * i + 2, "width": size, "height": size} for i in range(num_images)]
    category_ids = [2 * c + 1 for c in range(num_categories)]
    categories = [{"id": c, "name": f"cat{c}"} for c in category_ids + [100]]  # 100: no GT
    annotations, detections = [], []
    for image in images:
        image_gt = []
        for _ in range(rng.integers(0, 2 * gt_per_image)):
            w, h = grid(rng, 0.25, 110, 2)
            x, y = grid(rng, 0, size, 2)
            ann = {"id": len(annotations) + 1, "image_id": image["id"],
                   "category_id": int(rng.choice(category_ids)), "bbox": [x, y, w, h],
                   "area": float(w * h * rng.choice([1.0, 1.0, 0.6, 1.7])),
                   "iscrowd": int(rng.random() < crowd)}
            annotations.append(ann)
            image_gt.append(ann)
        for _ in range(rng.integers(0, 2 * dt_per_image)):
            if image_gt and rng.random() < 0.6:  # near a GT box
                ann = image_gt[rng.integers(len(image_gt))]
                x, y, w, h = ann["bbox"]
                x, y = x + grid(rng, -5, 5), y + grid(rng, -5, 5)
                w, h = max(0.25, w + grid(rng, -5, 5)), max(0.25, h + grid(rng, -5, 5))
                category = ann["category_id"]
                if rng.random() < 0.1:  # right place, wrong category
                    category = int(rng.choice(category_ids))
            else:  # anywhere, sometimes of a category the GT does not know
                w, h = grid(rng, 0.25, 110, 2)
                x, y = grid(rng, 0, size, 2)
                category = int(rng.choice(category_ids + [99]))
            score = round(float(rng.random()), int(rng.choice([2, 3])))
            detections.append({"image_id": image["id"], "category_id": category,
                               "bbox": [x, y, w, h], "score": score})
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return gt, detections


def hand_set():
    """One image, one category, two large GT; detections right, wrong, right.

    Precision after each detection: 1, 1/2, 2/3; recall: 1/2, 1/2, 1. Interpolated precision:
    1 for recall levels 0..0.50 (51 levels), 2/3 for 0.51..1 (50 levels), at every IoU threshold
    (the matches have IoU 1). So AP = (51 + 50 * 2/3) / 101.
    """
    gt = {
        "images": [{"id": 1, "width": 400, "height": 400}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100],
             "area": 10000.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100],
             "area": 10000.0, "iscrowd": 0},
        ],
    }
    dt = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [300, 0, 100, 100], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100], "score": 0.7},
    ]
    return gt, dt


# --------------------------------------------------------------------------- COCO: hand-worked


def test_hand_worked_ap():
    gt, dt = hand_set()
    result = coco_eval(gt, dt)
    expected_ap = (51 + 50 * 2 / 3) / 101
    assert result.named["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert result.named["AP50"] == pytest.approx(expected_ap, abs=1e-12)
    assert result.named["AR100"] == 1.0
    assert result.named["AR1"] == 0.5  # the best detection finds one of two objects
    assert result.named["APs"] == -1 and result.named["APm"] == -1  # no small / medium GT
    assert result.named["APl"] == pytest.approx(expected_ap, abs=1e-12)
    assert result.per_category_ap == {1: pytest.approx(expected_ap, abs=1e-12)}


def test_hand_worked_precision_recall_curve():
    gt, dt = hand_set()
    curve = precision_recall_curve(gt, dt, category_id=1)
    np.testing.assert_allclose(curve.scores, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3], atol=1e-12)
    np.testing.assert_allclose(curve.recall, [0.5, 0.5, 1])
    np.testing.assert_allclose(curve.interpolated, [1, 2 / 3, 2 / 3], atol=1e-12)
    assert curve.num_gt == 2


def test_precision_recall_curve_threshold_and_category_checks():
    gt, dt = hand_set()
    dt[0]["bbox"] = [0, 0, 100, 60]  # IoU 0.6 with the first GT
    assert precision_recall_curve(gt, dt, 1, iou_threshold=0.6).recall[0] == 0.5
    curve = precision_recall_curve(gt, dt, 1, iou_threshold=0.65)
    np.testing.assert_allclose(curve.recall, [0, 0, 0.5])
    with pytest.raises(ValueError, match="category_id 7"):
        precision_recall_curve(gt, dt, 7)


@pytest.mark.parametrize("seed", range(4))
def test_precision_recall_curve_gives_pycocotools_precision_at_recall_levels(seed):
    gt, dt = random_box_set(seed, crowd=0.2)
    expected = pycocotools_eval(gt, dt).eval["precision"]  # (T, R, K, A, M)
    category_ids = sorted(c["id"] for c in gt["categories"])
    recall_levels = np.linspace(0, 1, 101)
    for k, category_id in enumerate(category_ids):
        curve = precision_recall_curve(gt, dt, category_id, iou_threshold=0.75)
        if curve.num_gt == 0:
            assert (expected[5, :, k, 0, 2] == -1).all()
            continue
        first = np.searchsorted(curve.recall, recall_levels, side="left")  # (R,)
        reached = first < len(curve.recall)  # (R,)
        at_levels = np.zeros(101)
        at_levels[reached] = curve.interpolated[first[reached]]
        assert np.array_equal(at_levels, expected[5, :, k, 0, 2])  # IoU 0.75, all, 100


def test_empty_detection_list_means_nothing_detected():
    # pycocotools crashes here (loadRes reads anns[0]); we return zeros where there is GT
    gt, _ = hand_set()
    gt["categories"].append({"id": 2, "name": "never annotated"})
    result = coco_eval(gt, [])
    assert result.precision.shape == (10, 101, 2, 4, 3)
    assert (result.precision[:, :, 0, [0, 3], :] == 0).all()  # category 1: all, large
    assert (result.precision[:, :, 0, [1, 2], :] == -1).all()  # no small / medium GT
    assert (result.precision[:, :, 1] == -1).all()  # category 2 has no GT
    assert (result.recall[:, 0, [0, 3], :] == 0).all()
    expected = [0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1, 0]
    assert result.stats.tolist() == expected


def test_empty_detection_list_segm():
    gt, _ = random_mask_set(1)
    result = coco_eval(gt, [], "segm")
    has_gt = [(a, k) for a in range(4) for k in range(2)
              if (result.recall[0, k, a, 2] > -1)]
    assert has_gt and all((result.precision[:, :, k, a] == 0).all() for a, k in has_gt)
    assert set(result.stats.tolist()) <= {0.0, -1.0} and result.stats[0] == 0


def test_detections_are_not_modified_and_inputs_may_be_paths_or_coco(tmp_path):
    gt, dt = random_box_set(3)
    dt_before = copy.deepcopy(dt)
    gt_before = copy.deepcopy(gt)
    result = coco_eval(gt, dt)
    assert dt == dt_before and gt == gt_before
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    from_files = coco_eval(str(tmp_path / "gt.json"), tmp_path / "dt.json")
    assert np.array_equal(from_files.precision, result.precision)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_object = COCO(str(tmp_path / "gt.json"))
    assert np.array_equal(coco_eval(coco_object, dt).stats, result.stats)
    with contextlib.redirect_stdout(io.StringIO()):
        results_object = coco_object.loadRes(copy.deepcopy(dt))
    assert np.array_equal(coco_eval(coco_object, results_object).precision, result.precision)


def test_named_and_summary():
    gt, dt = hand_set()
    result = coco_eval(gt, dt)
    assert list(result.named) == list(STAT_NAMES)
    assert result.named["AP"] == result.stats[0] and result.named["ARl"] == result.stats[11]
    text = result.summary()
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.835" in text
    assert "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.500" in text
    assert "thing" in text


def test_summary_lines_are_pycocotools_lines():
    gt, dt = random_box_set(2)
    evaluator = pycocotools_eval(gt, dt)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.summarize()
    assert coco_eval(gt, dt).summary().splitlines()[:12] == printed.getvalue().splitlines()


# --------------------------------------------------------------------------- COCO: exactness


@pytest.mark.parametrize("seed", range(6))
def test_random_box_sets_match_pycocotools(seed):
    gt, dt = random_box_set(seed)
    assert_same_as_pycocotools(gt, dt)


@pytest.mark.parametrize("seed", range(6, 30))
def test_more_random_box_sets_match_pycocotools(seed):
    gt, dt = random_box_set(seed, num_images=25, crowd=0.2 if seed % 2 else 0.0)
    assert_same_as_pycocotools(gt, dt)


@pytest.mark.slow
def test_large_box_set_matches_pycocotools():
    # 400 images, ~28k detections: many crowded groups and long merged score lists
    gt, dt = random_box_set(123, num_images=400, num_categories=10, gt_per_image=8,
                            dt_per_image=70)
    assert_same_as_pycocotools(gt, dt)


def test_mostly_crowd_ground_truth():
    gt, dt = random_box_set(11, crowd=0.6)
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert any(a["iscrowd"] for a in gt["annotations"])


def test_an_ignore_key_is_overridden_by_iscrowd_like_pycocotools():
    gt, dt = random_box_set(12)
    for n, ann in enumerate(gt["annotations"]):
        ann["ignore"] = int(n % 3 == 0)  # pycocotools sets ignore := iscrowd
    with_key, _ = assert_same_as_pycocotools(gt, dt)
    for ann in gt["annotations"]:
        del ann["ignore"]
    assert np.array_equal(with_key.precision, coco_eval(gt, dt).precision)


def test_more_than_100_detections_per_image_and_category_with_ties():
    rng = np.random.default_rng(0)
    gt = {"images": [{"id": 1, "width": 500, "height": 500}, {"id": 2, "width": 9, "height": 9}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": []}
    for n in range(40):
        x, y = grid(rng, 0, 400, 2)
        w, h = grid(rng, 2, 100, 2)
        gt["annotations"].append({"id": n + 1, "image_id": 1, "category_id": 1 + n % 2,
                                  "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    dt = []
    for n in range(260):  # 130 per category on image 1: the 100 cut matters
        ann = gt["annotations"][n % 40]
        x, y, w, h = ann["bbox"]
        dt.append({"image_id": 1, "category_id": ann["category_id"],
                   "bbox": [x + grid(rng, -3, 3), y, w, max(0.25, h + grid(rng, -3, 3))],
                   "score": round(float(rng.choice([0.5, 0.25, rng.random()])), 3)})
    assert_same_as_pycocotools(gt, dt)


def test_duplicate_ground_truth_and_detections():
    gt, dt = hand_set()
    gt["annotations"].append(dict(gt["annotations"][0], id=3))  # a duplicate GT box
    gt["annotations"].append(dict(gt["annotations"][1], id=4, iscrowd=1))  # same box, crowd
    dt = dt + [dict(d) for d in dt] + [dict(dt[0], score=0.95)]  # duplicate detections
    assert_same_as_pycocotools(gt, dt)


def test_iou_exactly_on_thresholds():
    # det height h over a 10x10 GT at the same corner: IoU = h / 10 exactly for h = 5 .. 10
    heights = np.arange(4.5, 10.25, 0.25)
    gt = {"images": [{"id": i, "width": 50, "height": 50} for i in range(len(heights))],
          "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": i + 1, "image_id": i, "category_id": 1, "bbox": [5, 5, 10, 10],
                           "area": 100.0, "iscrowd": 0} for i in range(len(heights))]}
    dt = [{"image_id": i, "category_id": 1, "bbox": [5, 5, 10, float(h)], "score": 0.5}
          for i, h in enumerate(heights)]
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert result.recall[0, 0, 0, 2] == 21 / 23  # IoU >= 0.5: heights 5 .. 10


def test_iou_tie_goes_to_the_last_ground_truth():
    # the first detection has IoU 9/11 with both GT; taking the second (the last) leaves the
    # first GT free for the second detection (IoU 8/12 with GT 1, 6/14 with GT 2)
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
               "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10], "area": 100,
               "iscrowd": 0}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [-2, 0, 10, 10], "score": 0.8}]
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert result.recall[0, 0, 0, 2] == 1.0  # IoU 0.5: both found
    assert result.recall[4, 0, 0, 2] == 0.5  # IoU 0.7: only the first


def test_ground_truth_id_zero_is_never_matched_like_pycocotools():
    gt, dt = hand_set()
    gt["annotations"][0]["id"] = 0
    result, _ = assert_same_as_pycocotools(gt, dt)
    assert result.named["AR100"] == 0.5


def test_images_without_ground_truth_or_detections():
    gt, dt = random_box_set(5)
    gt["images"] += [{"id": 1000 + i, "width": 160, "height": 160} for i in range(3)]
    dt.append({"image_id": 1001, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.999})
    assert_same_as_pycocotools(gt, dt)


def test_boxes_off_the_quarter_pixel_grid():
    rng = np.random.default_rng(7)
    gt, dt = random_box_set(7)
    for record in gt["annotations"] + dt:
        record["bbox"] = [v + float(rng.normal(0, 0.3)) * (i < 2) + abs(rng.normal(0, 0.3))
                          * (i >= 2) for i, v in enumerate(record["bbox"])]
    assert_same_as_pycocotools(gt, dt)


# --------------------------------------------------------------------------- COCO: segm


def random_mask_set(seed: int, num_images: int = 6, size: int = 48, with_boxes: bool = True):
    """Masks as RLE (and a few polygons / uncompressed RLE GT); detections near the GT."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = [{"id": i + 1, "width": size, "height": size} for i in range(num_images)]
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    annotations, detections = [], []

    def blob():
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(1, size / 3, 2)
        return (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)

    for image in images:
        masks = []
        for _ in range(rng.integers(0, 5)):
            mask = blob()
            if mask.sum() == 0:
                continue
            rle = encode_mask(mask)
            ann = {"id": len(annotations) + 1, "image_id": image["id"],
                   "category_id": int(rng.integers(1, 3)), "segmentation": rle,
                   "area": float(mask.sum()), "bbox": [0, 0, 1, 1],
                   "iscrowd": int(rng.random() < 0.15)}
            kind = rng.integers(3)
            if kind == 1 and not ann["iscrowd"]:  # polygon GT
                x, y, w, h = (float(v) for v in rng.uniform(0, size / 2, 4))
                ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            elif kind == 2:  # uncompressed RLE GT
                flat = mask.T.reshape(-1)  # column-major, as COCO's RLE
                boundaries = np.flatnonzero(np.diff(flat)) + 1
                runs = np.diff(np.r_[0, boundaries, len(flat)])  # alternating 0-runs, 1-runs
                counts = np.r_[0, runs] if flat[0] else runs  # RLE starts with a 0-run
                ann["segmentation"] = {"size": [size, size], "counts": counts.tolist()}
            annotations.append(ann)
            masks.append((mask, ann["category_id"]))
        for _ in range(rng.integers(0, 12)):
            if masks and rng.random() < 0.7:
                mask, category = masks[rng.integers(len(masks))]
                mask = np.roll(mask, rng.integers(-3, 4, 2), axis=(0, 1))
            else:
                mask, category = blob(), int(rng.integers(1, 3))
            det = {"image_id": image["id"], "category_id": category,
                   "segmentation": encode_mask(mask), "score": round(float(rng.random()), 2)}
            if with_boxes:
                ys, xs = np.nonzero(mask)
                det["bbox"] = ([float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                float(ys.max() - ys.min() + 1)] if len(xs) else [0.0, 0, 0, 0])
            detections.append(det)
    return {"images": images, "annotations": annotations, "categories": categories}, detections


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_boxes", [True, False])
def test_segm_matches_pycocotools(seed, with_boxes):
    gt, dt = random_mask_set(seed, with_boxes=with_boxes)
    assert len(dt) > 0
    assert_same_as_pycocotools(gt, dt, "segm")


@pytest.mark.parametrize("seed", range(3, 9))
def test_more_segm_sets_match_pycocotools(seed):
    gt, dt = random_mask_set(seed, num_images=15, with_boxes=bool(seed % 2))
    assert_same_as_pycocotools(gt, dt, "segm")


def test_larger_segm_set_matches_pycocotools():
    gt, dt = random_mask_set(99, num_images=300, size=96)
    assert_same_as_pycocotools(gt, dt, "segm")


# --------------------------------------------------------------------------- COCO: bad input


def _bad(change):
    gt, dt = hand_set()
    change(gt, dt)
    return gt, dt


@pytest.mark.parametrize("change, message", [
    (lambda gt, dt: dt[1].pop("score"), r"detection 1 .* has no 'score'"),
    (lambda gt, dt: dt[2].pop("image_id"), r"detection 2 .* has no 'image_id'"),
    (lambda gt, dt: dt[0].update(bbox=[1, 2, 3]), r"detection 0 .*bbox must be 4 numbers"),
    (lambda gt, dt: dt[1].update(bbox=[1, 2, -3, 4]), r"detection 1 .*w, h >= 0"),
    (lambda gt, dt: dt[1].update(bbox=[1, 2, "a", 4]), r"detection 1 .*bbox must be 4 numbers"),
    (lambda gt, dt: dt[2].update(bbox=["1", "2", "3", "4"]), r"detection 2 .*bbox must be 4"),
    (lambda gt, dt: dt[2].update(score="high"), r"detection 2 .*score must be a number"),
    (lambda gt, dt: dt[2].update(image_id=77), r"detection 2 .*image_id 77 is not in gt"),
    (lambda gt, dt: dt[0].update(score=float("nan")), r"detection 0 .*score must be a finite"),
    (lambda gt, dt: gt["annotations"][1].pop("area"), r"gt annotation 1 .* has no 'area'"),
    (lambda gt, dt: gt["annotations"][0].update(bbox=[0, 0, 5, -1]), r"gt annotation 0 .*w, h"),
    (lambda gt, dt: gt["annotations"][1].update(image_id=5), r"gt annotation 1 .*image_id 5"),
    (lambda gt, dt: gt["annotations"][1].update(category_id=9), r"gt annotation 1 .*category_id"),
    (lambda gt, dt: gt["annotations"][1].update(id=1), r"gt annotation 1 .*duplicate"),
    (lambda gt, dt: gt.pop("categories"), r"gt has no 'categories'"),
])
def test_bad_input_names_the_record(change, message):
    gt, dt = _bad(change)
    with pytest.raises(ValueError, match=message):
        coco_eval(gt, dt)


def test_bad_iou_type():
    gt, dt = hand_set()
    with pytest.raises(ValueError, match="iou_type"):
        coco_eval(gt, dt, "keypoint")


# --------------------------------------------------------------------------- VOC


def test_voc_ap_all_points_hand_worked():
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    # envelope 1 up to recall 0.5, then 2/3 up to 1: area 0.5 + 0.5 * 2/3
    assert voc_ap(recall, precision) == pytest.approx(0.5 + 1 / 3)
    # 11 points: recall 0..0.5 (6 points) -> 1, 0.6..1 (5 points) -> 2/3
    assert voc_ap(recall, precision, "11_points") == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_voc_ap_edge_cases():
    assert voc_ap(np.array([]), np.array([])) == 0.0
    assert voc_ap(np.array([0.25]), np.array([1.0])) == pytest.approx(0.25)
    assert voc_ap(np.array([0.25]), np.array([1.0]), "11_points") == pytest.approx(3 / 11)
    with pytest.raises(ValueError, match="method"):
        voc_ap(np.array([1.0]), np.array([1.0]), "101_points")
    with pytest.raises(ValueError, match="same shape"):
        voc_ap(np.array([1.0, 1.0]), np.array([1.0]))


def reference_voc_ap(gt: dict, dt: list, category_id, iou_threshold=0.5):
    """The VOC devkit's voc_eval loop, one detection at a time (continuous IoU, stable sort)."""
    boxes = {}
    for ann in gt["annotations"]:
        if ann["category_id"] == category_id:
            boxes.setdefault(ann["image_id"], []).append(ann)
    taken = {image: [False] * len(anns) for image, anns in boxes.items()}
    num_gt = sum(not a.get("difficult", 0) for anns in boxes.values() for a in anns)
    mine = [d for d in dt if d["category_id"] == category_id]
    mine = [mine[i] for i in np.argsort([-d["score"] for d in mine], kind="stable")]
    tp, fp = np.zeros(len(mine)), np.zeros(len(mine))
    for i, det in enumerate(mine):
        x, y, w, h = det["bbox"]
        best, best_j = -np.inf, -1
        for j, ann in enumerate(boxes.get(det["image_id"], [])):
            gx, gy, gw, gh = ann["bbox"]
            iw = min(x + w, gx + gw) - max(x, gx)
            ih = min(y + h, gy + gh) - max(y, gy)
            iou = iw * ih / (w * h + gw * gh - iw * ih) if iw > 0 and ih > 0 else 0.0
            if iou > best:
                best, best_j = iou, j
        if best > iou_threshold:
            ann = boxes[det["image_id"]][best_j]
            if ann.get("difficult", 0):
                continue
            if not taken[det["image_id"]][best_j]:
                tp[i], taken[det["image_id"]][best_j] = 1, True
            else:
                fp[i] = 1
        else:
            fp[i] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    if num_gt == 0:
        return float("nan")
    return voc_ap(tp / num_gt, tp / np.maximum(tp + fp, np.finfo(np.float64).eps))


@pytest.mark.parametrize("seed", range(5))
def test_voc_eval_matches_a_per_detection_loop(seed):
    gt, dt = random_box_set(seed, crowd=0.0)
    rng = np.random.default_rng(seed)
    for ann in gt["annotations"]:
        ann["difficult"] = int(rng.random() < 0.15)
    result = voc_eval(gt, dt)
    for category in gt["categories"]:
        expected = reference_voc_ap(gt, dt, category["id"])
        assert result.ap[category["id"]] == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_voc_eval_hand_worked():
    gt, dt = hand_set()
    result = voc_eval(gt, dt)
    assert result.ap == {1: pytest.approx(0.5 + 1 / 3)}
    assert result.map == pytest.approx(0.5 + 1 / 3)


def test_voc_eval_differs_from_coco_ap50():
    # a detection that overlaps two GT: VOC gives it its best-IoU GT even if already taken
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
              {"id": 2, "image_id": 1, "category_id": 1, "bbox": [2, 0, 10, 10], "area": 100}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8}]
    # second detection: IoU 9/11 with GT 1 (taken), 9/11 with GT 2 -> VOC's argmax is GT 1
    # (first max) -> false positive. COCO takes the free GT 2 -> true positive.
    assert voc_eval(gt, dt).map == pytest.approx(0.5)
    assert coco_eval(gt, dt).named["AP50"] == pytest.approx(1.0, abs=1e-12)


def test_voc_eval_difficult_and_strict_threshold():
    gt, dt = hand_set()
    gt["annotations"][1]["difficult"] = 1
    # the third detection hits the difficult GT: ignored, neither TP nor FP
    # -> one regular GT, found by the first detection: precision 1 at recall 1
    assert voc_eval(gt, dt).map == pytest.approx(1.0)
    gt, dt = hand_set()
    dt[0]["bbox"] = [0, 0, 100, 50]  # IoU exactly 0.5: VOC needs > 0.5
    curve_ap = voc_eval(gt, dt).map
    assert curve_ap == pytest.approx(0.5 * 1 / 3)  # only the third detection is a TP
    assert coco_eval(gt, dt).named["AP50"] > curve_ap  # COCO accepts IoU >= 0.5


# --------------------------------------------------------------------------- segmentation


def test_confusion_matrix_and_derived_metrics():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, target, num_classes=3, ignore_index=255)
    expected = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 1]])  # rows: target, columns: prediction
    assert np.array_equal(cm, expected)
    np.testing.assert_allclose(per_class_iou(cm), [1 / 2, 2 / 3, 1])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert pixel_accuracy(cm) == pytest.approx(4 / 5)


def test_segmentation_metrics_accept_tensors_and_skip_absent_classes():
    target = torch.tensor([[0, 0], [1, 1]])
    pred = torch.tensor([[0, 0], [1, 0]])
    cm = confusion_matrix(pred, target, num_classes=4)
    iou = per_class_iou(cm)
    assert np.isnan(iou[2]) and np.isnan(iou[3])  # neither in target nor predicted
    np.testing.assert_allclose(iou[:2], [2 / 3, 1 / 2])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_segmentation_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), num_classes=2)
    with pytest.raises(ValueError, match="target .*5"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 5), num_classes=2)
    with pytest.raises(ValueError, match="pred .*-1"):
        confusion_matrix(np.full((2, 2), -1), np.zeros((2, 2), int), num_classes=2)
