"""Time pycocotools, faster-coco-eval and course_utils.metrics.coco_eval on the same person keypoints.

A seeded COCO-person-like set: one category (person), 17 keypoints with COCO's OKS sigmas, about
3 GT persons per image (Poisson) of every size (area 10^2 to 400^2 px), 40 % of their keypoints
unlabelled (v = 0), a tenth of the persons with no labelled keypoint (ignored, as COCO's
zero-keypoint persons are) and 1 % crowd; 30 detections per image (more than the 20 the keypoint
evaluation keeps, so the cut matters): 70 % of them near a GT person, each keypoint jittered by a
person-scale noise of 2-40 % of the box side, the rest anywhere; keypoints on a 0.01 px grid and
scores rounded to 3 decimals, so there are many score ties.

Each evaluator gets the ground-truth dict and the result list in memory (results in COCO's
keypoint format, no ``bbox``) and runs to the 10 keypoint summary numbers (pycocotools: COCO +
loadRes + evaluate + accumulate + summarize with ``iouType="keypoints"``). Every run gets freshly
built dicts, since pycocotools' loadRes writes into them. Median of ``--repeats`` runs per
evaluator; the ratios are evaluator time / coco_eval time (> 1: coco_eval is faster). The run
fails (exit status 1) unless coco_eval's stats equal pycocotools' exactly.

    python benchmarks/bench_keypoint_eval.py              # 100, 1000 and 3000 images, 3 runs each, < 1 min
    python benchmarks/bench_keypoint_eval.py --quick      # 100 and 1000 images, 1 run each
    python benchmarks/bench_keypoint_eval.py --images 5000 --repeats 1
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from bench_coco_eval import EVALUATOR_NAMES, compare, evaluators  # the same three evaluators and harness

from course_utils.metrics import COCO_KEYPOINT_SIGMAS

NUM_KEYPOINTS = 17
GT_PER_IMAGE = 3
DETECTIONS_PER_IMAGE = 30
IMAGE_SIZE = 640


def make_arrays(num_images: int, seed: int = 0) -> dict:
    """The benchmark set as arrays (cheap to turn into fresh dicts for every run)."""
    rng = np.random.default_rng(seed)
    K = NUM_KEYPOINTS
    gt_count = rng.poisson(GT_PER_IMAGE, num_images)  # (I,)
    gt_image = np.repeat(np.arange(num_images), gt_count)  # (G,)
    G = len(gt_image)
    gt_wh = np.round(np.exp(rng.uniform(np.log(10), np.log(400), (G, 2))), 2)  # (G, 2)
    gt_xy = np.round(rng.uniform(0, 1, (G, 2)) * (IMAGE_SIZE - gt_wh), 2)  # (G, 2)
    gt_box = np.concatenate([gt_xy, gt_wh], axis=1)  # (G, 4) xywh
    gt_area = np.round(gt_wh.prod(axis=1) * rng.uniform(0.4, 0.9, G), 2)  # (G,): a person fills part of its box
    gt_crowd = rng.random(G) < 0.01  # (G,)
    true_x = gt_xy[:, :1] + rng.uniform(0, 1, (G, K)) * gt_wh[:, :1]  # (G, K)
    true_y = gt_xy[:, 1:] + rng.uniform(0, 1, (G, K)) * gt_wh[:, 1:]  # (G, K)
    gt_v = rng.choice([0, 1, 2], (G, K), p=[0.4, 0.1, 0.5])  # (G, K)
    gt_v[(rng.random(G) < 0.1) | gt_crowd] = 0  # no labelled keypoint: ignored (crowds have none in COCO)
    gt_points = np.stack([np.where(gt_v > 0, true_x, 0).round(2), np.where(gt_v > 0, true_y, 0).round(2),
                          gt_v], axis=2)  # (G, K, 3)

    D = num_images * DETECTIONS_PER_IMAGE
    dt_image = np.repeat(np.arange(num_images), DETECTIONS_PER_IMAGE)  # (D,)
    first_gt = np.r_[0, np.cumsum(gt_count)][dt_image]  # (D,)
    n_gt = gt_count[dt_image]  # (D,)
    source = first_gt + (rng.random(D) * np.maximum(n_gt, 1)).astype(np.int64)  # (D,)
    near = (n_gt > 0) & (rng.random(D) < 0.7)  # (D,)
    source = np.where(near, np.minimum(source, max(G - 1, 0)), 0)  # (D,)
    if G:
        scale = np.sqrt(gt_wh[source].prod(axis=1)) * rng.choice([0.02, 0.05, 0.1, 0.4], D)  # (D,)
        near_x = true_x[source] + rng.normal(0, 1, (D, K)) * scale[:, None]  # (D, K)
        near_y = true_y[source] + rng.normal(0, 1, (D, K)) * scale[:, None]  # (D, K)
    else:
        near_x = near_y = np.zeros((D, K))
    center = rng.uniform(0, IMAGE_SIZE, (D, 2))  # (D, 2)
    spread = np.exp(rng.uniform(np.log(5), np.log(150), D))[:, None]  # (D, 1)
    far_x = center[:, :1] + rng.normal(0, 1, (D, K)) * spread  # (D, K)
    far_y = center[:, 1:] + rng.normal(0, 1, (D, K)) * spread  # (D, K)
    dt_x = np.where(near[:, None], near_x, far_x).round(2)  # (D, K)
    dt_y = np.where(near[:, None], near_y, far_y).round(2)  # (D, K)
    dt_points = np.stack([dt_x, dt_y, np.ones((D, K))], axis=2)  # (D, K, 3): v = 1, COCO's result format
    dt_score = np.round(np.where(near, rng.beta(4, 2, D), rng.beta(1, 4, D)), 3)  # (D,)
    return dict(num_images=num_images, gt_image=gt_image, gt_box=gt_box, gt_area=gt_area, gt_crowd=gt_crowd,
                gt_points=gt_points, dt_image=dt_image, dt_points=dt_points, dt_score=dt_score)


def make_dicts(arrays: dict) -> tuple[dict, list[dict]]:
    """Fresh COCO ground-truth dict and keypoint result list from :func:`make_arrays`."""
    images = [{"id": i + 1, "width": IMAGE_SIZE, "height": IMAGE_SIZE} for i in range(arrays["num_images"])]
    annotations = [
        {"id": n + 1, "image_id": i + 1, "category_id": 1, "bbox": b, "area": a, "iscrowd": int(crowd),
         "keypoints": p, "num_keypoints": sum(1 for v in p[2::3] if v > 0)}
        for n, (i, b, a, crowd, p) in enumerate(zip(
            arrays["gt_image"].tolist(), arrays["gt_box"].tolist(), arrays["gt_area"].tolist(),
            arrays["gt_crowd"].tolist(), arrays["gt_points"].reshape(len(arrays["gt_image"]), -1).tolist(),
            strict=True))
    ]
    categories = [{"id": 1, "name": "person", "keypoints": [f"p{k}" for k in range(NUM_KEYPOINTS)]}]
    detections = [
        {"image_id": i + 1, "category_id": 1, "keypoints": p, "score": s}
        for i, p, s in zip(arrays["dt_image"].tolist(), arrays["dt_points"].reshape(len(arrays["dt_image"]), -1)
                           .tolist(), arrays["dt_score"].tolist(), strict=True)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def bench(num_images: int, repeats: int, skip: set[str]) -> bool:
    """Time every evaluator not in ``skip`` on one set; returns whether coco_eval matched pycocotools."""
    arrays = make_arrays(num_images)
    n_gt = len(arrays["gt_image"])
    ignored = int(((arrays["gt_points"][:, :, 2] > 0).sum(axis=1) == 0).sum())
    print(f"== {num_images} images, {n_gt} GT persons ({ignored} without labelled keypoints), "
          f"{len(arrays['dt_image'])} detections, {NUM_KEYPOINTS} keypoints; median of {repeats}")
    # COCO's 17 person sigmas: pycocotools' and coco_eval's default, faster-coco-eval's when given
    return compare(evaluators("keypoints", 10, COCO_KEYPOINT_SIGMAS.tolist()), make_dicts, arrays, repeats, skip)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 and 1000 images, 1 run each")
    parser.add_argument("--skip", nargs="*", default=[], choices=EVALUATOR_NAMES,
                        help="evaluators not to run (e.g. pycocotools on big sets)")
    args = parser.parse_args()
    sizes, repeats = ([100, 1000], 1) if args.quick else (args.images, args.repeats)
    ok = all([bench(num_images, repeats, set(args.skip)) for num_images in sizes])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
