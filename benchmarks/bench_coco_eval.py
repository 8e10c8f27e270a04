"""Time pycocotools, faster-coco-eval and course_utils.metrics.coco_eval on the same boxes.

A seeded COCO-like set: 80 categories, about 7 GT boxes per image (Poisson), 100 detections per
image (most near a GT box, some of them with the wrong category, the rest anywhere), box
coordinates on a 0.25 px grid and scores rounded to 3 decimals, so there are many score ties.

Each evaluator gets the ground-truth dict and the detection list in memory and runs to the 12
summary numbers (pycocotools: COCO + loadRes + evaluate + accumulate + summarize). Every run
gets freshly built dicts, since pycocotools' loadRes writes into them. Median of ``--repeats``
runs per evaluator; the ratios are evaluator time / coco_eval time (> 1: coco_eval is faster).

    python benchmarks/bench_coco_eval.py                 # 100, 1000 and 5000 images
    python benchmarks/bench_coco_eval.py --quick         # 100 and 1000 images, 1 run each
    python benchmarks/bench_coco_eval.py --images 200 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable

import numpy as np

from course_utils.metrics import coco_eval

NUM_CATEGORIES = 80
GT_PER_IMAGE = 7
DETECTIONS_PER_IMAGE = 100
IMAGE_SIZE = 640


def make_arrays(num_images: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The benchmark set as arrays (cheap to turn into fresh dicts for every run)."""
    rng = np.random.default_rng(seed)
    gt_count = rng.poisson(GT_PER_IMAGE, num_images)  # (I,)
    gt_image = np.repeat(np.arange(num_images), gt_count)  # (G,)
    G = len(gt_image)
    gt_wh = np.round(np.exp(rng.uniform(np.log(4), np.log(400), (G, 2))) * 4) / 4  # (G, 2)
    gt_xy = np.floor(rng.uniform(0, 1, (G, 2)) * (IMAGE_SIZE - gt_wh) * 4) / 4  # (G, 2)
    gt_box = np.concatenate([gt_xy, gt_wh], axis=1)  # (G, 4)
    gt_category = rng.integers(1, NUM_CATEGORIES + 1, G)  # (G,)
    gt_crowd = rng.random(G) < 0.01  # (G,)

    D = num_images * DETECTIONS_PER_IMAGE
    dt_image = np.repeat(np.arange(num_images), DETECTIONS_PER_IMAGE)  # (D,)
    # a detection near a random GT of its image, or (if the image has none, or 40%) anywhere
    first_gt = np.r_[0, np.cumsum(gt_count)][dt_image]  # (D,)
    n_gt = gt_count[dt_image]  # (D,)
    source = first_gt + (rng.random(D) * np.maximum(n_gt, 1)).astype(np.int64)  # (D,)
    near = (n_gt > 0) & (rng.random(D) < 0.6)  # (D,)
    source = np.where(near, np.minimum(source, G - 1), 0)  # (D,)
    jitter = rng.normal(0, 0.1, (D, 4)) * np.tile(gt_wh[source], 2)  # (D, 4)
    near_box = gt_box[source] + jitter  # (D, 4)
    far_wh = np.exp(rng.uniform(np.log(4), np.log(400), (D, 2)))  # (D, 2)
    far_box = np.concatenate([rng.uniform(0, IMAGE_SIZE - far_wh), far_wh], axis=1)  # (D, 4)
    dt_box = np.where(near[:, None], near_box, far_box)  # (D, 4)
    dt_box[:, 2:] = np.maximum(dt_box[:, 2:], 1)
    dt_box = np.round(dt_box * 4) / 4
    wrong_category = rng.random(D) < 0.2  # (D,)
    dt_category = np.where(near & ~wrong_category, gt_category[source],
                           rng.integers(1, NUM_CATEGORIES + 1, D))  # (D,)
    dt_score = np.round(np.where(near, rng.beta(4, 2, D), rng.beta(1, 4, D)), 3)  # (D,)
    return dict(num_images=num_images, gt_image=gt_image, gt_box=gt_box,
                gt_category=gt_category, gt_crowd=gt_crowd, dt_image=dt_image, dt_box=dt_box,
                dt_category=dt_category, dt_score=dt_score)


def make_dicts(arrays: dict) -> tuple[dict, list[dict]]:
    """Fresh COCO ground-truth dict and detection list from :func:`make_arrays`."""
    images = [{"id": i + 1, "width": IMAGE_SIZE, "height": IMAGE_SIZE}
              for i in range(arrays["num_images"])]
    annotations = [
        {"id": n + 1, "image_id": i + 1, "category_id": c, "bbox": b, "area": b[2] * b[3],
         "iscrowd": int(crowd)}
        for n, (i, c, b, crowd) in enumerate(zip(
            arrays["gt_image"].tolist(), arrays["gt_category"].tolist(),
            arrays["gt_box"].tolist(), arrays["gt_crowd"].tolist(), strict=True))
    ]
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, NUM_CATEGORIES + 1)]
    detections = [
        {"image_id": i + 1, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(arrays["dt_image"].tolist(), arrays["dt_category"].tolist(),
                              arrays["dt_box"].tolist(), arrays["dt_score"].tolist(), strict=True)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def evaluators(iou_type: str, num_stats: int, kpt_oks_sigmas=None) -> dict[str, Callable]:
    """The three evaluators for ``iou_type``, each ``run(gt, dt) -> (stats, precision)``.

    Args:
        iou_type: "bbox" or "keypoints".
        num_stats: how many summary numbers the evaluation has (12 for boxes, 10 for keypoints).
        kpt_oks_sigmas: keypoint sigmas for faster-coco-eval (pycocotools and coco_eval default to COCO's).
    """

    def run_pycocotools(gt: dict, dt: list) -> tuple[np.ndarray, np.ndarray]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            evaluator = COCOeval(coco_gt, coco_gt.loadRes(dt), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return np.asarray(evaluator.stats), evaluator.eval["precision"]

    def run_faster_coco_eval(gt: dict, dt: list) -> tuple[np.ndarray, np.ndarray]:
        from faster_coco_eval import COCO, COCOeval_faster

        options = {} if kpt_oks_sigmas is None else {"kpt_oks_sigmas": list(kpt_oks_sigmas)}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(gt)
            evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(dt), iou_type, print_function=print, **options)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return np.asarray(evaluator.stats)[:num_stats], evaluator.eval["precision"]

    def run_course_utils(gt: dict, dt: list) -> tuple[np.ndarray, np.ndarray]:
        result = coco_eval(gt, dt, iou_type)
        return result.stats, result.precision

    return {"pycocotools": run_pycocotools, "faster-coco-eval": run_faster_coco_eval, "coco_eval": run_course_utils}


EVALUATOR_NAMES = ("pycocotools", "faster-coco-eval", "coco_eval")


def compare(runs: dict[str, Callable], make_dicts: Callable, arrays: dict, repeats: int, skip: set[str]) -> bool:
    """Time every evaluator of ``runs`` not in ``skip`` on fresh dicts from ``make_dicts(arrays)`` (not timed);
    print the medians, whether each result is identical to pycocotools' and the ratios to coco_eval.

    Returns:
        False when coco_eval's stats differ from pycocotools' (True when either did not run).
    """
    times, results = {}, {}
    for name, run in runs.items():
        if name in skip:
            continue
        durations = []
        for _ in range(repeats):
            gt, dt = make_dicts(arrays)  # fresh dicts, not timed: pycocotools' loadRes writes into them
            start = time.perf_counter()
            results[name] = run(gt, dt)  # (stats, precision)
            durations.append(time.perf_counter() - start)
        times[name] = statistics.median(durations)
        print(f"  {name:<17} {times[name]:8.3f} s   AP={results[name][0][0]:.4f}")
    ok = True
    if "pycocotools" in results:
        reference = results["pycocotools"]
        for name in results:
            if name != "pycocotools":
                same = [np.array_equal(mine, theirs) for mine, theirs in zip(results[name], reference, strict=True)]
                print(f"  {name:<17} identical to pycocotools: stats {same[0]}, precision {same[1]}")
                if name == "coco_eval" and not same[0]:
                    print(f"  MISMATCH coco_eval stats {results[name][0]} != pycocotools {reference[0]}")
                    ok = False
    if "coco_eval" in times:
        for name in times:
            if name != "coco_eval":
                print(f"  ratio {name} / coco_eval = {times[name] / times['coco_eval']:.2f}")
    return ok


def bench(num_images: int, repeats: int, skip: set[str]) -> bool:
    """Time every evaluator not in ``skip`` on one set; returns whether coco_eval matched pycocotools."""
    arrays = make_arrays(num_images)
    print(f"== {num_images} images, {len(arrays['gt_image'])} GT, {len(arrays['dt_image'])} "
          f"detections, {NUM_CATEGORIES} categories; median of {repeats}")
    return compare(evaluators("bbox", 12), make_dicts, arrays, repeats, skip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 and 1000 images, 1 run each")
    parser.add_argument("--skip", nargs="*", default=[], choices=EVALUATOR_NAMES,
                        help="evaluators not to run (e.g. pycocotools on big sets)")
    args = parser.parse_args()
    sizes, repeats = ([100, 1000], 1) if args.quick else (args.images, args.repeats)
    for num_images in sizes:
        bench(num_images, repeats, set(args.skip))


if __name__ == "__main__":
    main()
