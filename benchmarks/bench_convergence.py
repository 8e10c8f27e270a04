"""How much of a model's quality fast mode reaches: the fast-mode recipe against k x its steps.

    python benchmarks/bench_convergence.py                          # every model, its default k (a GPU job)
    python benchmarks/bench_convergence.py --models yolo unet --k 4 # what a 2-core CPU affords

For each detector and segmentation model of labs 02-06 (:data:`RECIPES`) it trains the lab's
fast-mode recipe (synthetic shapes, the lab's image size, data set sizes, batch, AdamW + one-cycle
schedule, gradient clipping) once with the fast-mode steps and once with ``k`` times as many (the
one-cycle schedule stretched to the longer run), on the best device, and evaluates both on the
lab's test set: COCO mAP50 and mAP for detectors (``course_utils.metrics.coco_eval``), mIoU for
segmentation. It prints, per model, both qualities with their steps and seconds, and the ratio
fast / longest run. The models come from the library (``build_detector``, ``UNet``,
``StackedHourglass``) with the library's losses, so YOLO and DETR train with
``course_utils.models``' YOLO and set losses (the labs use the students' own; lab 06 weights the
set loss's class term 2 where the library's ``detr_loss`` defaults to 1).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("COURSE_MODE", "fast")  # the fast-mode recipe; fit must not be capped by smoke mode

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from course_utils.config import get_device  # noqa: E402
from course_utils.data import (  # noqa: E402
    IGNORE_INDEX,
    ShapesDataset,
    collate_detection,
    detections_to_coco,
    semantic_tensors,
    shapes_to_coco,
)
from course_utils.metrics import coco_eval, confusion_matrix, mean_iou  # noqa: E402
from course_utils.models import StackedHourglass, UNet, build_detector  # noqa: E402
from course_utils.train import fit, predict  # noqa: E402

K_CHOICES = (4, 10, 30)


@dataclass(frozen=True)
class Recipe:
    """A lab's fast-mode training run of one model (the numbers are the lab's; a test holds the steps
    against ``notebook_src/``)."""

    lab: str
    model: str
    task: str  # "detection" or "segmentation"
    image_size: int
    n_train: int
    n_test: int
    batch_size: int
    fast_steps: int
    lr: float
    pct_start: float
    grad_clip: float | None
    default_k: int
    shapes: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {r.model: r for r in (
    Recipe("02_yolo", "yolo", "detection", 128, 4000, 300, 32, 300, 2e-3, 0.15, None, 30),
    Recipe("03_retinanet", "retinanet", "detection", 128, 2000, 300, 16, 300, 5e-3, 0.15, 10.0, 10,
           shapes=dict(preset="small", size_range=(0.07, 0.35), min_objects=2, max_objects=8),
           options=dict(levels=(3, 4, 5, 6, 7), anchor_scale=1.5, aspect_ratios=(0.5, 1.0, 2.0))),
    Recipe("04_rcnn", "mask_rcnn", "detection", 128, 1600, 200, 8, 200, 2e-3, 0.15, 10.0, 10),
    Recipe("05_segmentation", "unet", "segmentation", 64, 1200, 200, 16, 200, 5e-3, 0.2, None, 30),
    Recipe("05_segmentation", "hourglass", "segmentation", 64, 1200, 200, 16, 250, 5e-3, 0.2, None, 30),
    Recipe("06_detr", "detr", "detection", 64, 4000, 300, 32, 500, 1e-3, 0.1, 0.1, 30,
           options=dict(num_queries=9)),
)}


def long_steps(fast_steps: int, k: int) -> int:
    """Steps of the long run: ``k`` times the fast-mode steps.

    Args:
        fast_steps: the lab's fast-mode steps (> 0).
        k: one of :data:`K_CHOICES`.

    Returns:
        ``fast_steps * k``.

    Raises:
        ValueError: ``k`` is not in :data:`K_CHOICES`, or ``fast_steps`` is not positive.
    """
    if k not in K_CHOICES:
        raise ValueError(f"k must be one of {K_CHOICES}, got {k!r}")
    if not isinstance(fast_steps, int) or fast_steps < 1:
        raise ValueError(f"fast_steps must be a positive int, got {fast_steps!r}")
    return fast_steps * k


def quality_ratio(fast: float, longest: float) -> float:
    """Fast-mode quality as a share of the longest run's (nan when the longest run scored 0).

    Args:
        fast: quality after the fast-mode steps (mAP50, mAP or mIoU).
        longest: quality after the longest run.

    Returns:
        ``fast / longest``.
    """
    return fast / longest if longest > 0 else math.nan


def class_weights(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Lab 05's class weights: ``1 / sqrt(pixel share)`` of each class, scaled to mean 1.

    Args:
        masks: (N, H, W) int64 class maps; :data:`IGNORE_INDEX` pixels are not counted.
        num_classes: classes, background included.

    Returns:
        (num_classes,) float32.
    """
    counted = masks[masks != IGNORE_INDEX]
    share = torch.bincount(counted, minlength=num_classes).double() / max(counted.numel(), 1)
    weights = share.clamp_min(1e-4).rsqrt().float()
    return weights * num_classes / weights.sum()


@dataclass
class Task:
    """One model ready to train: a factory for a fresh model, its loss, loaders and an evaluator."""

    new_model: Callable[[], nn.Module]
    loss_fn: Callable | None
    train_loader: DataLoader
    evaluate: Callable[[nn.Module], dict[str, float]]


def _detection_task(recipe: Recipe, device: torch.device) -> Task:
    flip = v2.RandomHorizontalFlip() if recipe.model == "detr" else None  # lab 06 flips its training images
    train_set = ShapesDataset(recipe.n_train, recipe.image_size, seed=0, cache=True, transforms=flip, **recipe.shapes)
    test_set = ShapesDataset(recipe.n_test, recipe.image_size, seed=1, cache=True, **recipe.shapes)
    num_classes, gt = len(train_set.class_names), shapes_to_coco(test_set)
    options = dict(recipe.options)

    def new_model() -> nn.Module:
        return build_detector(recipe.model, num_classes, recipe.image_size, **options)

    def evaluate(model: nn.Module) -> dict[str, float]:
        detections, _ = predict(model, DataLoader(test_set, batch_size=25, collate_fn=collate_detection),
                                device=device)
        named = coco_eval(gt, detections_to_coco(list(range(len(test_set))), detections)).named
        return {"mAP50": named["AP50"], "mAP": named["AP"]}

    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, collate_fn=collate_detection)
    return Task(new_model, None, loader, evaluate)


def _segmentation_task(recipe: Recipe, device: torch.device) -> Task:
    train_images, train_masks = semantic_tensors(ShapesDataset(recipe.n_train, recipe.image_size, seed=0))
    test_images, test_masks = semantic_tensors(ShapesDataset(recipe.n_test, recipe.image_size, seed=1))
    num_classes = len(ShapesDataset(1).class_names) + 1
    weights = class_weights(train_masks, num_classes)

    def loss_fn(outputs, target: torch.Tensor) -> torch.Tensor:
        stacks = outputs if isinstance(outputs, tuple) else (outputs,)  # a stacked hourglass: every stack
        return sum(F.cross_entropy(o, target, weight=weights.to(o.device), ignore_index=IGNORE_INDEX) for o in stacks)

    def new_model() -> nn.Module:
        if recipe.model == "unet":
            return UNet(num_classes, widths=(8, 32, 64, 128), skips=True)
        return StackedHourglass(num_classes, num_stacks=2, channels=16, depth=3)

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits, _ = predict(model, DataLoader(TensorDataset(test_images, test_masks), batch_size=100), device=device)
        last = logits[-1] if isinstance(logits, tuple) else logits
        return {"mIoU": mean_iou(confusion_matrix(last.argmax(1), test_masks, num_classes, IGNORE_INDEX))}

    loader = DataLoader(TensorDataset(train_images, train_masks), batch_size=recipe.batch_size, shuffle=True)
    return Task(new_model, loss_fn, loader, evaluate)


def train_and_evaluate(recipe: Recipe, task: Task, steps: int, device: torch.device) -> dict[str, Any]:
    """Train a fresh model for ``steps`` with the recipe's optimiser and schedule; evaluate it.

    Returns:
        ``{"steps", "seconds", <metric>: value, ...}``.
    """
    torch.manual_seed(0)
    model = task.new_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=max(steps, 3),
                                                    pct_start=recipe.pct_start)
    start = time.perf_counter()
    fit(model, task.train_loader, optimizer, steps, loss_fn=task.loss_fn, scheduler=scheduler,
        grad_clip=recipe.grad_clip, seed=0, device=device, progress=False)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, **task.evaluate(model)}


def run(recipe: Recipe, k: int, device: torch.device) -> dict[str, Any]:
    """The fast-mode run and the ``k`` x run of one model, and the ratio of their main metric."""
    task = (_detection_task if recipe.task == "detection" else _segmentation_task)(recipe, device)
    fast = train_and_evaluate(recipe, task, recipe.fast_steps, device)
    longest = train_and_evaluate(recipe, task, long_steps(recipe.fast_steps, k), device)
    metric = "mAP50" if recipe.task == "detection" else "mIoU"
    return {"model": recipe.model, "lab": recipe.lab, "k": k, "metric": metric, "fast": fast, "longest": longest,
            "ratio": quality_ratio(fast[metric], longest[metric])}


def format_row(result: dict[str, Any]) -> str:
    """One printed line: model, metric, fast and longest quality with steps and seconds, the ratio."""
    fast, longest, metric = result["fast"], result["longest"], result["metric"]
    extra = (f"  (mAP {fast['mAP']:.3f} / {longest['mAP']:.3f})" if "mAP" in fast else "")
    return (f"{result['model']:<10} {metric:<5} fast {fast[metric]:.3f} "
            f"({fast['steps']} steps, {fast['seconds']:.0f} s)"
            f" | {result['k']}x {longest[metric]:.3f} ({longest['steps']} steps, {longest['seconds']:.0f} s)"
            f" | ratio {result['ratio']:.2f}{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(RECIPES), default=list(RECIPES), metavar="MODEL",
                        help=f"only these models (default all: {' '.join(RECIPES)})")
    parser.add_argument("--k", type=int, choices=K_CHOICES, default=None,
                        help="steps multiplier for every model (default: each model's own, "
                             + ", ".join(f"{m} {r.default_k}" for m, r in RECIPES.items()) + ")")
    args = parser.parse_args(argv)
    device = get_device()
    print(f"convergence on {device}, torch threads {torch.get_num_threads()}: quality after the fast-mode steps"
          " / after k x the steps")
    for name in args.models:
        recipe = RECIPES[name]
        print(format_row(run(recipe, args.k or recipe.default_k, device)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
