"""benchmarks/bench_keypoint_eval.py: a tiny run, exact against pycocotools, with its ratios printed."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_keypoint_eval as bk  # noqa: E402


def test_a_tiny_run_matches_pycocotools_and_prints_the_ratios(capsys):
    assert bk.bench(20, 1, set()) is True
    out = capsys.readouterr().out
    assert "coco_eval         identical to pycocotools: stats True, precision True" in out
    assert "ratio pycocotools / coco_eval" in out and "ratio faster-coco-eval / coco_eval" in out


def test_the_set_has_ignored_crowd_and_cut_detections():
    arrays = bk.make_arrays(200)
    labelled = (arrays["gt_points"][:, :, 2] > 0).sum(axis=1)
    assert (labelled == 0).any() and arrays["gt_crowd"].any() and (labelled[arrays["gt_crowd"]] == 0).all()
    assert bk.DETECTIONS_PER_IMAGE > 20  # more than maxDets: the cut is exercised
    gt, dt = bk.make_dicts(arrays)
    assert len(dt) == 200 * bk.DETECTIONS_PER_IMAGE and all(len(d["keypoints"]) == 51 for d in dt[:5])
    assert all(a["num_keypoints"] == sum(v > 0 for v in a["keypoints"][2::3]) for a in gt["annotations"])
