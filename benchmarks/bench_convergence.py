"""How much of a model's quality fast mode reaches: the fast-mode recipe against k x its steps.

    python benchmarks/bench_convergence.py                          # every model, its default k (hours on a CPU)
    python benchmarks/bench_convergence.py --models yolo unet --k 4 # what a 2-core CPU affords
    python benchmarks/bench_convergence.py --tiny                   # every model, a few steps: a test, seconds
    make bench-convergence [ARGS="--models detr --out results/convergence.json"]

For every model that labs 02-06 and 08 train in fast mode (:data:`RECIPES`) it trains the lab's fast-mode
recipe (synthetic shapes, the lab's image size, data set sizes, batch, optimiser, one-cycle schedule
where the lab has one, gradient clipping) once with the fast-mode steps and once with ``k`` times
as many (the one-cycle schedule stretched to the longer run), on the best device, and evaluates
both on the lab's test set: COCO mAP50 and mAP for detectors (``course_utils.metrics.coco_eval``),
mIoU for segmentation, accuracy for lab 05's crop classifier, COCO keypoint AP (OKS) for lab 08's
keypoint hourglass. It prints, per model, both qualities
with their steps and seconds, and the ratio fast / longest run; what the labs train that is not
measured here, and why, is printed after (:data:`NOT_MEASURED`).

The models come from the library (``build_detector``, ``UNet``, ``StackedHourglass``) with the
library's losses, so YOLO trains with ``course_utils.models``' YOLO loss and DETR with its set
loss, weighted as lab 06 weights it (class 2, L1 5, GIoU 2). Lab 05's FCN-32s and crop classifier
are rebuilt here as the lab defines them. The run sets ``COURSE_MODE=fast`` (the fast-mode recipe;
smoke mode would cap every run at 3 steps) and refuses ``COURSE_MAX_STEPS``. The exit status is 1
if a model failed (its line says why; the others still run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from course_utils.config import MAX_STEPS_ENV, MODE_ENV, get_device
from course_utils.data import (
    IGNORE_INDEX,
    NUM_KEYPOINTS,
    SHAPE_KEYPOINT_SIGMAS,
    ShapesDataset,
    collate_detection,
    detections_to_coco,
    object_crops,
    semantic_tensors,
    shapes_to_coco,
)
from course_utils.metrics import coco_eval, confusion_matrix, mean_iou
from course_utils.models import (
    DetectorWrapper,
    SmallBackbone,
    StackedHourglass,
    UNet,
    build_detector,
    heatmap_focal_loss,
)
from course_utils.models.detr import build_small_detr, detr_loss, detr_targets, postprocess
from course_utils.tensors import plain
from course_utils.train import fit, predict

K_CHOICES = (4, 10, 30)
TINY_K = 4


@dataclass(frozen=True)
class Recipe:
    """A lab's fast-mode training run of one model (the numbers are the lab's; ``tests/test_bench_convergence.py``
    holds the steps, learning rates and batches against ``notebook_src/``)."""

    lab: str
    model: str
    task: str  # "detection", "segmentation" or "classification"
    image_size: int
    n_train: int
    n_test: int
    batch_size: int
    fast_steps: int
    lr: float
    pct_start: float | None  # None: no schedule (a constant learning rate), as in the lab
    grad_clip: float | None
    default_k: int
    optimizer: str = "adamw"  # "adamw" (weight decay 1e-4) or "adam"
    shapes: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {r.model: r for r in (
    Recipe("02_yolo", "yolo", "detection", 128, 4000, 300, 32, 300, 2e-3, 0.15, None, 30),
    Recipe("03_retinanet", "retinanet", "detection", 128, 2000, 300, 16, 300, 5e-3, 0.15, 10.0, 10,
           shapes=dict(preset="small", size_range=(0.07, 0.35), min_objects=2, max_objects=8),
           options=dict(levels=(3, 4, 5, 6, 7), anchor_scale=1.5, aspect_ratios=(0.5, 1.0, 2.0))),
    Recipe("04_rcnn", "mask_rcnn", "detection", 128, 1600, 200, 8, 200, 2e-3, 0.15, 10.0, 10),
    Recipe("05_segmentation", "crop_classifier", "classification", 64, 600, 0, 64, 200, 3e-3, None, None, 30,
           optimizer="adam"),
    Recipe("05_segmentation", "unet", "segmentation", 64, 1200, 200, 16, 200, 5e-3, 0.2, None, 30),
    Recipe("05_segmentation", "unet_noskip", "segmentation", 64, 1200, 200, 16, 200, 5e-3, 0.2, None, 30),
    Recipe("05_segmentation", "hourglass", "segmentation", 64, 1200, 200, 16, 250, 5e-3, 0.2, None, 30,
           options=dict(num_stacks=2)),
    Recipe("05_segmentation", "fcn32s", "segmentation", 64, 1200, 200, 16, 60, 1e-3, 0.2, None, 30),
    Recipe("06_detr", "detr", "detection", 64, 4000, 300, 32, 500, 1e-3, 0.1, 0.1, 30,
           options=dict(num_queries=9)),
    Recipe("08_heatmaps", "keypoint_hourglass", "keypoints", 64, 800, 200, 16, 300, 2e-3, None, None, 10,
           optimizer="adam", shapes=dict(preset="single")),
    Recipe("08_heatmaps", "centernet", "detection", 64, 1200, 200, 16, 300, 2e-3, None, None, 10,
           optimizer="adam", shapes=dict(preset="easy"), options=dict(channels=24)),
)}

# what labs 02-06 train that has no fast-mode recipe to converge, and why (printed with the results)
NOT_MEASURED: dict[str, str] = {
    "03_retinanet / COCO retinanet_resnet50_fpn fine-tuned on Penn-Fudan (steps(fast=3, full=600))":
        "full mode's pretrained model on real data; its 3 fast-mode steps only exercise the code",
    "04_rcnn / COCO maskrcnn_resnet50_fpn fine-tuned on PennFudanPed (600 steps)":
        "full mode only (pretrained weights, real data)",
    "04_rcnn / Faster R-CNN from scratch and with a pretrained backbone (steps(fast=100, full=0))":
        "a comparison at equal steps (the take-away on pretraining), fast mode only",
    "05_segmentation / torchvision fcn_resnet50": "used as is: no training in the lab",
    "06_detr / small DETR overfitting one batch (steps(fast=150, full=300))":
        "a pipeline check that memorises 8 images: no test-set quality",
}


def tiny_recipe(recipe: Recipe) -> Recipe:
    """``--tiny`` (a test of the code path, not a measurement): 1 fast step on a batch of 2, 4 training and
    2 test images (8 crop images), the lab's image size and model."""
    return dataclasses.replace(recipe, n_train=8 if recipe.task == "classification" else 4,
                               n_test=2, batch_size=2, fast_steps=1)


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
    if not isinstance(fast_steps, int) or isinstance(fast_steps, bool) or fast_steps < 1:
        raise ValueError(f"fast_steps must be a positive int, got {fast_steps!r}")
    return fast_steps * k


def quality_ratio(fast: float, longest: float) -> float:
    """Fast-mode quality as a share of the longest run's (nan when the longest run scored 0).

    Args:
        fast: quality after the fast-mode steps (mAP50, mAP, mIoU or accuracy).
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


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Lab 05's (channels, channels, 2f, 2f) transposed-convolution weight that upsamples by ``factor`` bilinearly."""
    k = 2 * factor
    tent = 1 - (torch.arange(k, dtype=torch.float32) - (k - 1) / 2).abs() / factor
    weight = torch.zeros(channels, channels, k, k)
    weight[range(channels), range(channels)] = tent[:, None] * tent[None, :]
    return weight


class FCN32s(nn.Module):
    """Lab 05's FCN-32s: backbone (stride 32) -> 1x1 conv -> transposed conv x32 with bilinear initialisation.
    Fast mode has no pretrained weights: the backbone is :class:`SmallBackbone` from scratch, as in the lab."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classify = nn.Conv2d(backbone.out_channels, num_classes, kernel_size=1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, stride=32, padding=16, bias=False)
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(num_classes, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.classify(self.backbone(x)))


def crop_classifier() -> nn.Module:
    """Lab 05's classifier of 32 px crops: three conv-pool stages, two linear layers, 4 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 4))


def lab06_detr(num_classes: int, image_size: int, num_queries: int) -> DetectorWrapper:
    """The library's small DETR with lab 06's loss weights (class 2, L1 5, GIoU 2; ``build_detector``'s are 1, 5, 2)."""
    size = (image_size, image_size)

    def move(targets: list[dict], device: torch.device) -> list[dict]:
        return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]

    def loss(outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        normalised = detr_targets(move(targets, torch.device("cpu")), size)
        return detr_loss(outputs, move(normalised, outputs["pred_logits"].device), num_classes,
                         eos_coef=0.1, weights=(2.0, 5.0, 2.0))

    return DetectorWrapper(build_small_detr(num_classes, num_queries), loss, lambda out: postprocess(out, size))


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
        if recipe.model == "detr":
            return lab06_detr(num_classes, recipe.image_size, **options)
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
        if recipe.model in ("unet", "unet_noskip"):
            return UNet(num_classes, widths=(8, 32, 64, 128), skips=recipe.model == "unet")
        if recipe.model == "hourglass":
            return StackedHourglass(num_classes, channels=16, depth=3, **recipe.options)
        return FCN32s(SmallBackbone(), num_classes)

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits, _ = predict(model, DataLoader(TensorDataset(test_images, test_masks), batch_size=100), device=device)
        last = logits[-1] if isinstance(logits, tuple) else logits  # the hourglass's answer: its last stack
        return {"mIoU": mean_iou(confusion_matrix(last.argmax(1), test_masks, num_classes, IGNORE_INDEX))}

    loader = DataLoader(TensorDataset(train_images, train_masks), batch_size=recipe.batch_size, shuffle=True)
    return Task(new_model, loss_fn, loader, evaluate)


def _classification_task(recipe: Recipe, device: torch.device) -> Task:
    """Lab 05's crop classifier: 32 px crops of ``n_train`` 64 px images (seed 10), the first fifth held out."""
    crops, labels = object_crops(ShapesDataset(recipe.n_train, recipe.image_size, seed=10), 32,
                                 backgrounds_per_image=1, seed=0)
    n_val = max(len(crops) // 5, 1)

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits, _ = predict(model, DataLoader(TensorDataset(crops[:n_val], labels[:n_val]), batch_size=256),
                            device=device)
        return {"accuracy": float((logits.argmax(1) == labels[:n_val]).float().mean())}

    loader = DataLoader(TensorDataset(crops[n_val:], labels[n_val:]), batch_size=recipe.batch_size, shuffle=True)
    return Task(crop_classifier, F.cross_entropy, loader, evaluate)


KEYPOINT_STRIDE, KEYPOINT_SIGMA = 4, 1.0  # lab 08: heatmap cells of 4x4 pixels, the Gaussian's sigma in cells


def keypoint_tensors(dataset: ShapesDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab 08's keypoint targets of a ``keypoints=True`` shapes set: (N, 3, H, W) images and (N, C * 5, H/4, W/4)
    heatmaps (channel = 5 (label - 1) + slot): the max of the labelled points' Gaussians (sigma 1 cell), the
    cell holding each point set to 1 (the focal loss's positive)."""
    num_classes, cells = len(dataset.class_names), dataset.config.image_size // KEYPOINT_STRIDE
    centres = torch.arange(cells, dtype=torch.float32) + 0.5  # (cells,) cell centres
    images, maps = [], torch.zeros(len(dataset), num_classes * NUM_KEYPOINTS, cells, cells)
    for i in range(len(dataset)):
        image, target = dataset[i]
        images.append(plain(image))
        in_cells = target["keypoints"] / torch.tensor([KEYPOINT_STRIDE, KEYPOINT_STRIDE, 1])  # (n, 5, 3)
        for label, points in zip(target["labels"].tolist(), in_cells):
            for j, (x, y, v) in enumerate(points.tolist()):
                if v > 0:
                    channel = (label - 1) * NUM_KEYPOINTS + j
                    d2 = (centres[None] - x) ** 2 + (centres[:, None] - y) ** 2  # (cells, cells)
                    gaussian = torch.exp(-d2 / (2 * KEYPOINT_SIGMA**2))
                    maps[i, channel] = torch.maximum(maps[i, channel], gaussian)  # (cells, cells)
                    if 0 <= x < cells and 0 <= y < cells:
                        maps[i, channel, int(y), int(x)] = 1.0
    return torch.stack(images), maps


def keypoint_hourglass(num_maps: int) -> StackedHourglass:
    """Lab 08's keypoint hourglass: 2 stacks of 32 channels at stride 4, heatmap logits at H/4, every head
    starting at probability 0.1 (CenterNet's bias)."""
    model = StackedHourglass(num_maps, num_stacks=2, channels=32, depth=2, stride=KEYPOINT_STRIDE, upsample=False)
    for head in model.heads:
        nn.init.constant_(head.bias, -2.19)
    return model


def stacked_focal_loss(outputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
    """Intermediate supervision: the heatmap focal loss on every stack's logits, summed."""
    return sum(heatmap_focal_loss(o, target) for o in outputs)


def _keypoint_task(recipe: Recipe, device: torch.device) -> Task:
    """Lab 08's keypoint hourglass: :func:`keypoint_tensors` targets, :func:`stacked_focal_loss`, decoded with
    the quarter offset; COCO keypoint AP (OKS)."""
    stride, num_keypoints = KEYPOINT_STRIDE, NUM_KEYPOINTS
    cells = recipe.image_size // stride
    train_set, test_set = (ShapesDataset(n, recipe.image_size, seed=seed, keypoints=True, **recipe.shapes)
                           for n, seed in ((recipe.n_train, 0), (recipe.n_test, 1)))
    num_classes = len(train_set.class_names)
    train_images, train_maps = keypoint_tensors(train_set)
    test_images, _ = keypoint_tensors(test_set)
    gt = test_set.to_coco()

    def new_model() -> nn.Module:
        return keypoint_hourglass(num_classes * num_keypoints)

    def evaluate(model: nn.Module) -> dict[str, float]:
        logits, _ = predict(model, DataLoader(TensorDataset(test_images, test_images[:, 0, 0, 0]), batch_size=100),
                            device=device)
        maps = torch.sigmoid(logits[-1])  # (N, 15, cells, cells)
        n = len(maps)
        score, index = maps.flatten(2).max(dim=2)  # (N, 15)
        iy, ix = index // cells, index % cells
        padded = F.pad(maps, (1, 1, 1, 1))  # the quarter offset towards the higher neighbour, none on the border

        def at(dy: int, dx: int) -> torch.Tensor:  # (N, 15): the value next to each argmax
            return padded.flatten(2).gather(2, ((iy + 1 + dy) * (cells + 2) + ix + 1 + dx)[..., None])[..., 0]

        x = ix + 0.5 + torch.where((ix > 0) & (ix < cells - 1), 0.25 * torch.sign(at(0, 1) - at(0, -1)), 0.0)
        y = iy + 0.5 + torch.where((iy > 0) & (iy < cells - 1), 0.25 * torch.sign(at(1, 0) - at(-1, 0)), 0.0)
        points = torch.stack([x * stride, y * stride, score], dim=2).reshape(n, num_classes, num_keypoints, 3)
        classes = points[..., 2].mean(dim=2).argmax(dim=1)  # (N,)
        best = points[torch.arange(n), classes]  # (N, 5, 3)
        dts = [{"image_id": i, "category_id": int(classes[i]) + 1, "score": float(best[i, :, 2].mean()),
                "keypoints": torch.cat([best[i, :, :2], torch.ones(num_keypoints, 1)], 1).reshape(-1).tolist()}
               for i in range(n)]
        named = coco_eval(gt, dts, "keypoints", kpt_oks_sigmas=SHAPE_KEYPOINT_SIGMAS).named
        return {"kAP": named["AP"], "kAP50": named["AP50"]}

    loader = DataLoader(TensorDataset(train_images, train_maps), batch_size=recipe.batch_size, shuffle=True)
    return Task(new_model, stacked_focal_loss, loader, evaluate)


TASKS = {"detection": _detection_task, "segmentation": _segmentation_task, "classification": _classification_task,
         "keypoints": _keypoint_task}
METRICS = {"detection": "mAP50", "segmentation": "mIoU", "classification": "accuracy", "keypoints": "kAP"}


def train_and_evaluate(recipe: Recipe, task: Task, steps: int, device: torch.device) -> dict[str, Any]:
    """Train a fresh model for ``steps`` with the recipe's optimiser and schedule; evaluate it.

    Returns:
        ``{"steps", "seconds", <metric>: value, ...}``; ``seconds`` is the training time.
    """
    torch.manual_seed(0)
    model = task.new_model()
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    scheduler = None
    if recipe.pct_start is not None:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=max(steps, 3),
                                                        pct_start=recipe.pct_start)
    start = time.perf_counter()
    history = fit(model, task.train_loader, optimizer, steps, loss_fn=task.loss_fn, scheduler=scheduler,
                  grad_clip=recipe.grad_clip, seed=0, device=device, progress=False)
    seconds = time.perf_counter() - start
    trained = int(history["step"][-1]) if "step" in history and history["step"] else 0
    if trained != steps:
        raise RuntimeError(f"fit ran {trained} steps, not {steps}: is the step budget capped?")
    return {"steps": steps, "seconds": seconds, **task.evaluate(model)}


def run(recipe: Recipe, k: int, device: torch.device) -> dict[str, Any]:
    """The fast-mode run and the ``k`` x run of one model, and the ratio of their main metric."""
    task = TASKS[recipe.task](recipe, device)
    fast = train_and_evaluate(recipe, task, recipe.fast_steps, device)
    longest = train_and_evaluate(recipe, task, long_steps(recipe.fast_steps, k), device)
    metric = METRICS[recipe.task]
    return {"model": recipe.model, "lab": recipe.lab, "k": k, "metric": metric, "fast": fast, "longest": longest,
            "ratio": quality_ratio(fast[metric], longest[metric])}


def format_row(result: dict[str, Any]) -> str:
    """One printed line: lab, model, metric, fast and longest quality with steps and seconds, the ratio."""
    if "error" in result:
        return f"{result['lab']:<16} {result['model']:<16} FAILED: {result['error']}"
    fast, longest, metric = result["fast"], result["longest"], result["metric"]
    extra = f"  (mAP {fast['mAP']:.3f} / {longest['mAP']:.3f})" if "mAP" in fast else ""
    return (f"{result['lab']:<16} {result['model']:<16} {metric:<8} fast {fast[metric]:.3f} "
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
    parser.add_argument("--tiny", action="store_true",
                        help=f"a test, not a measurement: every recipe with 1 fast step and {TINY_K} long ones, "
                             "batches of 2, a handful of images (seconds on a CPU)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if os.environ.get(MAX_STEPS_ENV):
        parser.error(f"unset {MAX_STEPS_ENV}: it would cap the training runs")
    os.environ[MODE_ENV] = "fast"  # the fast-mode recipe (get_mode() is read at each call); smoke would cap fit
    device = get_device()
    print(f"convergence on {device}, torch threads {torch.get_num_threads()}"
          f"{' (--tiny: a test, not a measurement)' if args.tiny else ''}: quality after the fast-mode steps"
          " / after k x the steps")
    results = []
    for name in args.models:
        recipe = tiny_recipe(RECIPES[name]) if args.tiny else RECIPES[name]
        k = TINY_K if args.tiny else args.k or recipe.default_k
        try:
            result = run(recipe, k, device)
        except Exception as err:  # noqa: BLE001 - a failure is a finding: reported, the other models still run
            result = {"model": recipe.model, "lab": recipe.lab, "k": k, "error": f"{type(err).__name__}: {err}"}
        results.append(result)
        print(format_row(result), flush=True)
    for what, why in NOT_MEASURED.items():
        print(f"not measured: {what}: {why}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"tiny": args.tiny, "device": str(device), "results": results,
                                        "not_measured": NOT_MEASURED}, indent=2) + "\n")
        print(f"results: {args.out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
