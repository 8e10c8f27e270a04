"""ShapesDataset keypoints (lab 08): additive (every existing output unchanged), geometric,
visibility from occlusion, and a COCO keypoint export that pycocotools loads and evaluates."""

import contextlib
import copy
import hashlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_utils.data import NUM_KEYPOINTS, PRESETS, SHAPE_KEYPOINT_SIGMAS, SHAPE_KEYPOINTS, ShapesDataset
from course_utils.data.shapes import shape_keypoints

# Keypoints are additive: asking for them must not change a single bit of the scenes. (Digests pinned
# at one commit broke on another torch/numpy version - the generator's float ops are not portable -
# so the comparison is made in the same run: plain scenes against scenes made with keypoints.)


def digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
    return h.hexdigest()


def dataset(preset: str, **kwargs) -> ShapesDataset:
    return ShapesDataset(6, 96 if preset != "single" else 64, preset=preset, seed=11, **kwargs)


def test_keypoints_change_no_bit_of_any_preset():
    for preset in PRESETS:
        expected = digest([x for i in range(6) for x in dataset(preset).scene(i)])
        with_points = dataset(preset, keypoints=True, cache=True)
        arrays = [with_points.scene(i, keypoints=True) for i in range(6)]
        assert all(len(a) == 6 for a in arrays)
        assert digest([x for a in arrays for x in a[:5]]) == expected, f"{preset} with keypoints"
        assert digest([x for i in range(6) for x in with_points.scene(i)]) == expected, f"{preset} cached"
        assert all(a[5].shape[1:] == (NUM_KEYPOINTS, 3) and len(a[5]) == len(a[2]) for a in arrays), preset


def test_targets_gain_keypoints_only_when_asked():
    image, target = ShapesDataset(2, seed=0)[1]
    assert "keypoints" not in target
    image_k, target_k = ShapesDataset(2, seed=0, keypoints=True)[1]
    assert (image_k == image).all()
    points = target_k["keypoints"]
    assert points.shape == (len(target["labels"]), NUM_KEYPOINTS, 3)
    assert set(points[..., 2].unique().tolist()) <= {0.0, 1.0, 2.0}


def test_keypoints_sit_on_the_shape_geometry():
    """Easy preset (no occlusion): the tight box of the visible pixels is the drawn shape's box up to a
    pixel, so a square's corners are the box corners and every centre is the box centre."""
    ds = ShapesDataset(40, preset="easy", seed=5)
    names = ds.class_names
    squares = 0
    for i in range(len(ds)):
        _, boxes, labels, _, _, points = ds.scene(i, keypoints=True)
        for box, label, kp in zip(boxes, labels, points):
            x0, y0, x1, y1 = box
            assert (kp[:, 2] == 2).all()  # nothing is occluded or cropped in this preset
            if names[label - 1] == "square":
                squares += 1
                corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])  # slots 1..4
                assert np.abs(kp[1:, :2] - corners).max() <= 1.0
            if names[label - 1] != "triangle":
                assert np.abs(kp[0, :2] - [(x0 + x1) / 2, (y0 + y1) / 2]).max() <= 1.0
            else:  # the centroid: a third of the way up from the base
                assert abs(kp[0, 1] - (y0 + 2 * (y1 - y0) / 3)) <= 1.0
    assert squares > 5


def test_visibility_is_occlusion_by_later_objects():
    """v = 1 exactly where the point's pixel is covered by an object drawn later (the union of the later
    objects' visible masks), else 2."""
    ds = ShapesDataset(30, preset="hard", seed=2)
    occluded = 0
    for i in range(len(ds)):
        _, _, _, masks, _, points = ds.scene(i, keypoints=True)
        size = masks.shape[-1]
        for k, kp in enumerate(points):
            later = masks[k + 1:].any(axis=0)  # (S, S)
            px = np.clip(np.floor(kp[:, :2]).astype(int), 0, size - 1)
            covered = later[px[:, 1], px[:, 0]]
            assert np.array_equal(kp[:, 2], np.where(covered, 1, 2)), (i, k)
            occluded += int(covered.sum())
    assert occluded > 10  # the hard preset does occlude keypoints


def test_points_outside_the_image_are_not_labelled():
    kp = shape_keypoints("square", cx=2.0, cy=50.0, w=10.0, h=10.0, size=64)
    # top_left and bottom_left lie at x = -3: outside, v = 0 and x = y = 0 as COCO writes them
    assert kp[:, 2].tolist() == [2, 0, 2, 2, 0]
    assert (kp[[1, 4], :2] == 0).all()
    assert kp[2, :2].tolist() == [7.0, 45.0]
    on_edge = shape_keypoints("diamond", cx=59.0, cy=32.0, w=10.0, h=8.0, size=64)
    assert on_edge[2].tolist() == [64.0, 32.0, 2.0]  # the far edge x = 64 is still in the image


def test_every_class_has_named_keypoints_and_a_valid_skeleton():
    for name, spec in SHAPE_KEYPOINTS.items():
        assert len(spec["names"]) == len(spec["uv"]) == NUM_KEYPOINTS == len(SHAPE_KEYPOINT_SIGMAS), name
        assert len(set(spec["names"])) == NUM_KEYPOINTS
        assert all(1 <= a <= NUM_KEYPOINTS and 1 <= b <= NUM_KEYPOINTS and a != b for a, b in spec["skeleton"])


@pytest.mark.parametrize("preset", ["easy", "hard"])
def test_coco_export_has_keypoints_that_pycocotools_loads(preset):
    ds = ShapesDataset(8, preset=preset, seed=3)
    gt = ds.to_coco()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
    for cat in coco.loadCats(coco.getCatIds()):
        assert cat["keypoints"] == list(SHAPE_KEYPOINTS[cat["name"]]["names"])
        assert cat["skeleton"] == [list(e) for e in SHAPE_KEYPOINTS[cat["name"]]["skeleton"]]
    anns = coco.loadAnns(coco.getAnnIds())
    for ann in anns:
        v = np.array(ann["keypoints"]).reshape(NUM_KEYPOINTS, 3)[:, 2]
        assert ann["num_keypoints"] == int((v > 0).sum())
    first = ds.scene(0, keypoints=True)[5]
    image0 = [a for a in anns if a["image_id"] == 0]
    assert np.allclose(np.array(image0[0]["keypoints"]).reshape(-1, 3), first[0])
    # the GT as detections: pycocotools' OKS evaluation gives a perfect score
    dts = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
            "score": 1.0} for a in anns]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(dts), "keypoints")
        evaluator.params.kpt_oks_sigmas = SHAPE_KEYPOINT_SIGMAS
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[1] == 1.0  # AP at OKS 0.5
