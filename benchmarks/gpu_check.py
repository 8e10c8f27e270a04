"""Full mode, measured: a prepared check of the course on one (CUDA) machine, offline, in a few minutes.

    python benchmarks/gpu_check.py                 # on a GPU machine: at most about 8 minutes (not yet run on one)
    python benchmarks/gpu_check.py --tiny          # the same code with tiny steps, on any machine (a test)
    make gpu-check [ARGS="--steps 50 --out DIR"]

It runs, on the best device (:func:`course_utils.config.get_device`):

1. **the device paths of course_utils**: ``box_iou``, ``generalized_box_iou``, ``nms`` and
   ``batched_nms`` on device tensors against ``torchvision.ops`` on the same device; metric inputs on
   the device (``detections_to_coco`` + ``coco_eval``, ``confusion_matrix``) against the same inputs
   on the CPU; every detector of :func:`course_utils.models.build_detector` forward + backward on
   the device. No lab trains with mixed precision (AMP) and ``fit`` has no AMP switch, so there is
   no AMP path to check; the report says so.
2. **each lab's full-mode training loops** (:data:`LAB_LOOPS`) on the synthetic shapes, through
   :func:`course_utils.train.fit`, for a fixed number of steps after a warm-up: steps/s, images/s,
   peak device memory and the projected time of the lab's full-mode budget (full-mode steps / steps
   per second, summed over the lab's loops). Real datasets are not read (the machine may be
   offline): the images are synthetic, of the size the lab's full mode trains on. Pretrained weights
   come from torch hub's cache or the internet; where they cannot be had, the library's documented
   fallback is timed instead and the report says so on that line (its projection is then the
   fallback's, not full mode's).
3. one **report**, JSON and Markdown (``--out``, default ``results/gpu_check/``), whose paths are printed.

:func:`main` sets ``COURSE_MODE=full`` (it measures full mode; ``--tiny`` too, so that the test runs full
mode's code paths, pretrained-weight fallbacks included; ``get_mode()`` is read at each call, so
setting it in ``main`` is enough) and stops starting new loops after
``--max-seconds`` (default 420), recording what it skipped. The exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from bench_convergence import keypoint_hourglass, keypoint_tensors, stacked_focal_loss  # lab 08's recipe
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import boxes as course_boxes
from course_utils.config import MAX_STEPS_ENV, MODE_ENV, course_root, get_device, get_mode
from course_utils.data import (
    IGNORE_INDEX,
    ShapesDataset,
    collate_detection,
    detections_to_coco,
    semantic_tensors,
    shapes_to_coco,
    single_object_tensors,
)
from course_utils.metrics import coco_eval, confusion_matrix
from course_utils.models import (
    DETECTOR_NAMES,
    StackedHourglass,
    UNet,
    build_detector,
    build_pretrained_mask_rcnn,
    load_backbone,
    load_pretrained_detector,
    load_pretrained_retinanet,
    replace_classifier,
)
from course_utils.train import fit

# --------------------------------------------------------------------------- the labs' full-mode loops


@dataclass(frozen=True)
class LabLoop:
    """One training loop a lab runs in full mode.

    ``fast_steps`` / ``full_steps`` are the lab's ``steps(fast=..., full=...)`` (a test holds them
    against ``notebook_src/``); ``runs`` is how many times the lab trains this loop in full mode.
    """

    lab: str
    loop: str
    builder: str
    image_size: int
    batch_size: int
    fast_steps: int | None
    full_steps: int
    runs: int = 1
    shapes: dict = field(default_factory=dict)


HARD = dict(preset="hard")
LAB03_SHAPES = dict(preset="small", size_range=(0.07, 0.35), min_objects=2, max_objects=8)

LAB_LOOPS: tuple[LabLoop, ...] = (
    LabLoop("01_localisation", "heads on stored features (grid 1 and 4)", "localisation_heads", 160, 64, 600, 1500,
            runs=2, shapes=dict(preset="single")),
    LabLoop("01_localisation", "fine-tuning ResNet-18 + head", "localisation", 160, 32, 400, 3000,
            shapes=dict(preset="single")),
    LabLoop("02_yolo", "tiny YOLO v1", "yolo", 128, 32, 300, 6000),
    LabLoop("03_retinanet", "small RetinaNet (FPN P3-P7)", "retinanet_small", 128, 16, 300, 5000, shapes=LAB03_SHAPES),
    LabLoop("03_retinanet", "COCO retinanet_resnet50_fpn fine-tuning (512 px)", "retinanet_coco", 128, 4, 3, 600),
    LabLoop("04_rcnn", "COCO maskrcnn_resnet50_fpn fine-tuning (800 px)", "mask_rcnn_coco", 128, 2, None, 600),
    LabLoop("05_segmentation", "U-Net with skips", "unet", 128, 16, 200, 3000),
    LabLoop("05_segmentation", "U-Net without skips", "unet_noskip", 128, 16, 200, 3000),
    LabLoop("05_segmentation", "stacked hourglass, 3 stacks", "hourglass", 128, 16, 250, 3000),
    LabLoop("05_segmentation", "FCN-32s on ResNet-18", "fcn32s", 128, 16, 60, 2000),
    LabLoop("06_detr", "small DETR, overfit one batch", "detr_overfit", 64, 8, 150, 300),
    LabLoop("06_detr", "small DETR", "detr", 64, 32, 500, 20000),
    LabLoop("07_benchmark", "YOLO v1", "bench_yolo", 256, 8, 350, 6000, shapes=HARD),
    LabLoop("07_benchmark", "RetinaNet (COCO weights)", "bench_retinanet", 256, 8, 140, 3000, shapes=HARD),
    LabLoop("07_benchmark", "Faster R-CNN (COCO weights)", "bench_faster_rcnn", 256, 8, 160, 3000, shapes=HARD),
    LabLoop("07_benchmark", "Mask R-CNN (COCO weights)", "bench_mask_rcnn", 256, 8, 80, 3000, shapes=HARD),
    LabLoop("07_benchmark", "DETR", "bench_detr", 256, 8, 150, 20000, shapes=HARD),
    LabLoop("07_benchmark", "CenterNet", "bench_centernet", 256, 8, 200, 6000, shapes=HARD),
    LabLoop("08_heatmaps", "keypoint hourglass, 2 stacks at stride 4 (with and without intermediate supervision)",
            "keypoint_hourglass", 64, 16, 300, 3000, runs=2, shapes=dict(preset="single")),
    LabLoop("08_heatmaps", "CenterNet", "centernet", 64, 16, 300, 5000, shapes=dict(preset="easy")),
)

# full-mode steps(...) calls of the notebooks that are not timed, and why (a test checks this list is complete)
NOT_TIMED: dict[tuple[str, int, int], str] = {
    ("05_segmentation", 200, 600): "the crop classifier of section 2 (a 3-layer CNN on 32 px crops): "
                                   "seconds on any device",
}

LAB_NAMES = ("01_localisation", "02_yolo", "03_retinanet", "04_rcnn", "05_segmentation", "06_detr", "07_benchmark",
             "08_heatmaps")


@dataclass
class Trainee:
    """What one timed loop trains: the model, its loss (None: the model returns its losses), the batches,
    and a note on its weights (pretrained or the fallback)."""

    model: nn.Module
    loss_fn: Callable | None
    loader: DataLoader
    weights: str


def _shapes(spec: LabLoop, batch_size: int) -> ShapesDataset:
    return ShapesDataset(2 * batch_size, spec.image_size, seed=0, cache=True, **spec.shapes)


def _detection_loader(spec: LabLoop, batch_size: int) -> DataLoader:
    return DataLoader(_shapes(spec, batch_size), batch_size=batch_size, shuffle=True, collate_fn=collate_detection)


def _num_classes(spec: LabLoop) -> int:
    return len(ShapesDataset(1, spec.image_size, **spec.shapes).class_names)


def _segmentation_loader(spec: LabLoop, batch_size: int) -> DataLoader:
    images, masks = semantic_tensors(_shapes(spec, batch_size))
    return DataLoader(TensorDataset(images, masks), batch_size=batch_size, shuffle=True)


def _weights_note(pretrained: bool, what: str, fallback: str) -> str:
    return f"pretrained ({what})" if pretrained else f"FALLBACK: {fallback} (the {what} weights could not be loaded)"


def _segmentation_loss(logits: torch.Tensor | tuple, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over counted pixels; summed over the stacks of a stacked hourglass."""
    outputs = logits if isinstance(logits, tuple) else (logits,)
    return sum(F.cross_entropy(out, target, ignore_index=IGNORE_INDEX) for out in outputs)


class _LocalisationHead(nn.Module):
    """Stand-in for lab 01's ``LocalisationNet``: backbone -> grid x grid pooling -> class logits and a box."""

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int, grid: int = 4):
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(channels * grid * grid, 256), nn.ReLU(),
                                 nn.Linear(256, num_classes + 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.out(self.pool(self.backbone(x)))
        return out[:, : self.num_classes], out[:, self.num_classes:].sigmoid()


def _localisation_loss(outputs, targets) -> torch.Tensor:
    (logits, box), (classes, target_box) = outputs, targets
    return F.cross_entropy(logits, classes) + F.l1_loss(box, target_box)


def _localisation(spec: LabLoop, batch_size: int, heads_only: bool) -> Trainee:
    images, classes, xyxy = single_object_tensors(_shapes(spec, batch_size))
    target_box = course_boxes.convert_boxes(xyxy / spec.image_size, "xyxy", "cxcywh")
    backbone = load_backbone("resnet18")
    note = _weights_note(backbone.pretrained, "ImageNet resnet18", "SmallBackbone from scratch")
    num_classes = int(classes.max()) + 1
    if heads_only:  # lab 01 trains its heads on features of the frozen backbone, computed once
        with torch.no_grad():
            inputs = backbone.eval()(images)
        model = _LocalisationHead(nn.Identity(), backbone.out_channels, num_classes)
    else:
        inputs, model = images, _LocalisationHead(backbone, backbone.out_channels, num_classes)
    loader = DataLoader(TensorDataset(inputs, classes, target_box), batch_size=batch_size, shuffle=True,
                        collate_fn=lambda b: (torch.stack([x[0] for x in b]),
                                              (torch.stack([x[1] for x in b]), torch.stack([x[2] for x in b]))))
    return Trainee(model, _localisation_loss, loader, note)


class _FCN32s(nn.Module):
    """Stand-in for lab 05's FCN-32s: stride-32 backbone -> 1x1 conv -> transposed conv x32."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classify = nn.Conv2d(backbone.out_channels, num_classes, kernel_size=1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, stride=32, padding=16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.classify(self.backbone(x)))


def _segmenter(spec: LabLoop, batch_size: int) -> Trainee:
    num_classes = _num_classes(spec) + 1  # background included
    note = "from scratch (as in the lab)"
    if spec.builder == "unet":
        model = UNet(num_classes, widths=(8, 32, 64, 128), skips=True)
    elif spec.builder == "unet_noskip":
        model = UNet(num_classes, widths=(8, 32, 64, 128), skips=False)
    elif spec.builder == "hourglass":
        model = StackedHourglass(num_classes, num_stacks=3, channels=16, depth=3)
    else:
        backbone = load_backbone("resnet18")
        note = _weights_note(backbone.pretrained, "ImageNet resnet18", "SmallBackbone from scratch")
        model = _FCN32s(backbone, num_classes)
    return Trainee(model, _segmentation_loss, _segmentation_loader(spec, batch_size), note)


def _keypoint_hourglass(spec: LabLoop, batch_size: int) -> Trainee:
    """Lab 08's keypoint hourglass on its targets, with its loss (as bench_convergence builds them)."""
    data = ShapesDataset(2 * batch_size, spec.image_size, seed=0, keypoints=True, **spec.shapes)
    images, maps = keypoint_tensors(data)
    loader = DataLoader(TensorDataset(images, maps), batch_size=batch_size, shuffle=True)
    return Trainee(keypoint_hourglass(maps.shape[1]), stacked_focal_loss, loader, "from scratch (as in the lab)")


def _detector(spec: LabLoop, batch_size: int) -> Trainee:
    num_classes = _num_classes(spec)
    scratch = "from scratch (as in the lab)"
    name = spec.builder
    if name == "yolo":
        return Trainee(build_detector("yolo", num_classes, spec.image_size), None,
                       _detection_loader(spec, batch_size), scratch)
    if name == "retinanet_small":
        model = build_detector("retinanet", num_classes, spec.image_size, levels=(3, 4, 5, 6, 7), anchor_scale=1.5,
                               aspect_ratios=(0.5, 1.0, 2.0))
        return Trainee(model, None, _detection_loader(spec, batch_size), scratch)
    if name == "centernet":  # lab 08's
        return Trainee(build_detector("centernet", num_classes, spec.image_size, channels=24), None,
                       _detection_loader(spec, batch_size), scratch)
    if name in ("detr", "detr_overfit"):
        model = build_detector("detr", num_classes, spec.image_size, num_queries=9)
        return Trainee(model, None, _detection_loader(spec, batch_size), scratch)
    if name == "retinanet_coco":
        model = load_pretrained_retinanet(min_size=512, max_size=853, progress=False)
        model = replace_classifier(model, num_classes + 1)
        note = _weights_note(model.pretrained, "COCO retinanet_resnet50_fpn", "a small RetinaNet from scratch")
        return Trainee(model, None, _detection_loader(spec, batch_size), note)
    if name == "mask_rcnn_coco":
        model, pretrained = build_pretrained_mask_rcnn(num_classes, progress=False)  # the lab: 1 class (person)
        note = _weights_note(pretrained, "COCO maskrcnn_resnet50_fpn", "the same architecture, random weights")
        return Trainee(model, None, _detection_loader(spec, batch_size), note)
    detector = name.removeprefix("bench_")  # lab 07: its BUILDERS options, COCO weights for the three that have them
    options = {"retinanet": dict(anchor_scale=1.5, levels=(3, 4, 5), detections_per_img=100),
               "detr": dict(num_queries=25), "centernet": dict(channels=24)}.get(detector, {})
    if detector in ("retinanet", "faster_rcnn", "mask_rcnn"):
        model = load_pretrained_detector(detector, num_classes, spec.image_size, progress=False, fallback=options)
        note = _weights_note(model.pretrained, f"COCO {detector}", f"the lab's small {detector} from scratch")
    else:
        model, note = build_detector(detector, num_classes, spec.image_size, **options), scratch
    return Trainee(model, None, _detection_loader(spec, batch_size), note)


def build_trainee(spec: LabLoop, batch_size: int) -> Trainee:
    """The model, loss, synthetic batches and weights note of one lab loop.

    Args:
        spec: a row of :data:`LAB_LOOPS`.
        batch_size: images per step (the lab's, or fewer in ``--tiny`` runs).

    Returns:
        a :class:`Trainee`.
    """
    if spec.builder.startswith("localisation"):
        return _localisation(spec, batch_size, heads_only=spec.builder == "localisation_heads")
    if spec.builder in ("unet", "unet_noskip", "hourglass", "fcn32s"):
        return _segmenter(spec, batch_size)
    if spec.builder == "keypoint_hourglass":
        return _keypoint_hourglass(spec, batch_size)
    return _detector(spec, batch_size)


def _shrink_for_tiny(model: nn.Module, size: int = 64) -> None:
    """``--tiny`` only (a test of the code path, not a measurement): a torchvision detector resizes its
    images to ``size`` px instead of 512-800 px and samples fewer proposals, so a CPU step takes seconds."""
    transform = getattr(model, "transform", None)
    if transform is not None and hasattr(transform, "min_size"):
        transform.min_size, transform.max_size = (size,), size
    rpn, roi_heads = getattr(model, "rpn", None), getattr(model, "roi_heads", None)
    if rpn is not None:
        rpn._pre_nms_top_n, rpn._post_nms_top_n = dict(training=200, testing=200), dict(training=100, testing=100)
    if roi_heads is not None:
        roi_heads.fg_bg_sampler.batch_size_per_image = 64


# --------------------------------------------------------------------------- timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def projected_seconds(full_steps: int, runs: int, steps_per_s: float) -> float:
    """Projected wall time of a loop's full-mode budget.

    Args:
        full_steps: the loop's full-mode steps per run.
        runs: how many times the lab trains it.
        steps_per_s: measured optimisation steps per second.

    Returns:
        ``full_steps * runs / steps_per_s`` seconds (inf when nothing was measured).
    """
    if steps_per_s <= 0:
        return math.inf
    return full_steps * runs / steps_per_s


def time_loop(spec: LabLoop, device: torch.device, *, steps: int, warmup: int, tiny: bool) -> dict[str, Any]:
    """Train one lab loop with :func:`course_utils.train.fit`: ``warmup`` steps, then ``steps`` timed.

    Returns:
        the report row: the spec, ``weights``, ``steps_per_s``, ``images_per_s``, ``peak_memory_mib``
        (None off CUDA), ``projected_s`` and ``seconds`` (the whole row, building included).
    """
    start = time.perf_counter()
    batch_size = min(spec.batch_size, 2) if tiny else spec.batch_size
    torch.manual_seed(0)
    trainee = build_trainee(spec, batch_size)
    if tiny:
        _shrink_for_tiny(trainee.model)
    params = [p for p in trainee.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    run = dict(loss_fn=trainee.loss_fn, grad_clip=10.0, device=device, progress=False)
    fit(trainee.model, trainee.loader, optimizer, warmup, **run)  # cuDNN autotuning, allocator, lazy inits
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    history = fit(trainee.model, trainee.loader, optimizer, steps, **run)
    _synchronize(device)
    elapsed = time.perf_counter() - began
    steps_per_s = steps / elapsed
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {**asdict(spec), "batch_size": batch_size, "lab_batch_size": spec.batch_size, "weights": trainee.weights,
            "timed_steps": steps, "steps_per_s": steps_per_s, "images_per_s": steps_per_s * batch_size,
            "peak_memory_mib": peak, "final_loss": history.last("loss"),
            "projected_s": projected_seconds(spec.full_steps, spec.runs, steps_per_s),
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- device paths of course_utils


def _random_boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 3 + 1
    return torch.cat([xy, xy + wh], dim=1)


def check_boxes(device: torch.device) -> list[dict[str, Any]]:
    """course_utils.boxes on ``device`` against torchvision.ops on the same device.

    Returns:
        one ``{"check", "ok", "detail"}`` row per function.
    """
    g = torch.Generator().manual_seed(0)
    a, b = _random_boxes(300, g).to(device), _random_boxes(200, g).to(device)
    scores, idxs = torch.rand(300, generator=g).to(device), torch.randint(0, 5, (300,), generator=g).to(device)
    rows = []
    for name, ours, theirs in [
        ("box_iou", course_boxes.box_iou(a, b), torchvision.ops.box_iou(a, b)),
        ("generalized_box_iou", course_boxes.generalized_box_iou(a, b), torchvision.ops.generalized_box_iou(a, b)),
    ]:
        ok = ours.device == a.device and torch.allclose(ours, theirs, atol=1e-5)
        rows.append({"check": f"boxes.{name} on {device.type}", "ok": bool(ok),
                     "detail": f"max |diff| {float((ours - theirs).abs().max()):.2e} on {ours.device}"})
    for name, ours, theirs in [
        ("nms", course_boxes.nms(a, scores, 0.5), torchvision.ops.nms(a, scores, 0.5)),
        ("batched_nms", course_boxes.batched_nms(a, scores, idxs, 0.5),
         torchvision.ops.batched_nms(a, scores, idxs, 0.5)),
    ]:
        ok = ours.device == a.device and torch.equal(ours, theirs)
        rows.append({"check": f"boxes.{name} on {device.type}", "ok": bool(ok),
                     "detail": f"kept {len(ours)} (torchvision {len(theirs)}) on {ours.device}"})
    return rows


def check_metrics(device: torch.device) -> list[dict[str, Any]]:
    """Metric inputs on ``device``: the same numbers as with the same inputs on the CPU.

    Returns:
        rows for ``detections_to_coco`` + ``coco_eval`` and for ``confusion_matrix``.
    """
    data = ShapesDataset(8, 64, seed=3)
    gt = shapes_to_coco(data)
    g = torch.Generator().manual_seed(1)
    detections = []
    for _, target in data:
        boxes = target["boxes"].as_subclass(torch.Tensor) + torch.randn(len(target["boxes"]), 4, generator=g)
        detections.append({"boxes": boxes, "scores": torch.rand(len(boxes), generator=g), "labels": target["labels"]})
    on_device = [{k: v.to(device) for k, v in d.items()} for d in detections]
    ids = list(range(len(data)))
    ap_cpu = coco_eval(gt, detections_to_coco(ids, detections)).named["AP"]
    ap_dev = coco_eval(gt, detections_to_coco(ids, on_device)).named["AP"]
    pred, target = torch.randint(0, 4, (2, 32, 32), generator=g), torch.randint(0, 4, (2, 32, 32), generator=g)
    cm_cpu = confusion_matrix(pred, target, 4)
    cm_dev = confusion_matrix(pred.to(device), target.to(device), 4)
    return [{"check": f"metrics.coco_eval of detections on {device.type}", "ok": ap_cpu == ap_dev,
             "detail": f"AP {ap_dev:.4f} (CPU inputs {ap_cpu:.4f})"},
            {"check": f"metrics.confusion_matrix of tensors on {device.type}", "ok": bool((cm_cpu == cm_dev).all()),
             "detail": f"{int(cm_dev.sum())} pixels counted"}]


def check_detectors(device: torch.device, image_size: int = 128) -> list[dict[str, Any]]:
    """Every detector of :func:`build_detector` on ``device``: losses, backward, finite gradients, detections.

    Returns:
        one row per name of :data:`DETECTOR_NAMES`.
    """
    data = ShapesDataset(2, image_size, seed=4)
    images, targets = collate_detection([data[0], data[1]])
    images = [im.as_subclass(torch.Tensor).to(device) for im in images]
    targets = [{k: v.as_subclass(torch.Tensor).to(device) for k, v in t.items() if isinstance(v, torch.Tensor)}
               for t in targets]
    rows = []
    for name in DETECTOR_NAMES:
        torch.manual_seed(0)
        model = build_detector(name, len(data.class_names), image_size).to(device).train()
        try:
            losses = model(images, targets)
            sum(losses.values()).backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            finite = bool(grads) and all(torch.isfinite(g).all() for g in grads)
            on_device = all(g.device.type == device.type for g in grads)
            with torch.no_grad():
                detections = model.eval()(images)
            out_device = {d["boxes"].device.type for d in detections}
            ok = finite and on_device and out_device == {device.type} and len(detections) == len(images)
            detail = (f"losses {', '.join(sorted(losses))}; {len(grads)} gradients, finite={finite}; "
                      f"detections on {sorted(out_device)}")
        except Exception as err:  # noqa: BLE001 - a failure is a finding: reported, the run goes on
            ok, detail = False, f"{type(err).__name__}: {err}"
        rows.append({"check": f"build_detector({name!r}) forward+backward on {device.type}", "ok": ok,
                     "detail": detail})
    return rows


AMP_NOTE = "no lab trains with mixed precision and fit() has no AMP option: no AMP path to check"


# --------------------------------------------------------------------------- report


def lab_totals(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Projected full-mode training time per lab: the sum of its timed loops (None if one was not timed).

    Args:
        rows: the timed rows (``lab``, ``projected_s``; a skipped row has no ``projected_s``).

    Returns:
        ``{lab: seconds or None}`` for every lab in :data:`LAB_NAMES`.
    """
    totals: dict[str, float | None] = {}
    for lab in LAB_NAMES:
        mine = [r for r in rows if r["lab"] == lab]
        known = [r.get("projected_s") for r in mine]
        totals[lab] = sum(known) if mine and all(k is not None for k in known) else None
    return totals


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: environment, checks, one line per lab loop, totals per lab.

    Args:
        report: the dict :func:`main` writes as JSON.

    Returns:
        the Markdown text.
    """
    env = report["environment"]
    lines = [f"# GPU check ({'tiny steps: a test, not a measurement' if report['tiny'] else 'measured'})", "",
             f"{env['device_name']} ({env['device']}), torch {env['torch']}, torchvision {env['torchvision']}, "
             f"python {env['python']}, COURSE_MODE={report['mode']}, {report['started']}; "
             f"{report['seconds']:.0f} s in all.", "",
             "## Device paths of course_utils", "", "| check | ok | detail |", "|---|---|---|"]
    lines += [f"| {c['check']} | {'yes' if c['ok'] else '**NO**'} | {c['detail']} |" for c in report["checks"]]
    lines += ["", f"AMP: {report['amp']}.", "", "## Full-mode training loops (synthetic images)", "",
              "| lab | loop | px | batch | steps/s | images/s | peak MiB | full-mode steps | projected | weights |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["loops"]:
        if "skipped" in r:
            lines.append(f"| {r['lab']} | {r['loop']} | {r['image_size']} | {r['batch_size']} | - | - | - | "
                         f"{r['runs']} x {r['full_steps']} | - | not timed: {r['skipped']} |")
            continue
        peak = "-" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}"
        lines.append(f"| {r['lab']} | {r['loop']} | {r['image_size']} | {r['batch_size']} | {r['steps_per_s']:.2f} | "
                     f"{r['images_per_s']:.1f} | {peak} | {r['runs']} x {r['full_steps']} | "
                     f"{_fmt_time(r['projected_s'])} | {r['weights']} |")
    lines += ["", "## Projected full-mode training time per lab", "", "| lab | projected |", "|---|---:|"]
    lines += [f"| {lab} | {_fmt_time(s)} |" for lab, s in report["lab_totals"].items()]
    lines += ["", "Not timed: " + "; ".join(f"{lab} steps(fast={fa}, full={fu}): {why}"
                                            for (lab, fa, fu), why in NOT_TIMED.items()) + ".",
              "Training time only: data loading of the real datasets, downloads and evaluation are not included; "
              "a FALLBACK line times the fallback model, not full mode's."]
    return "\n".join(lines) + "\n"


def _environment(device: torch.device) -> dict[str, str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "cuda": str(torch.version.cuda), "threads": str(torch.get_num_threads())}


def default_out() -> Path:
    """``results/gpu_check/`` of the course folder (git ignores ``results/``), else of the working directory."""
    return (course_root() or Path.cwd()) / "results" / "gpu_check"


def run_check(*, steps: int, warmup: int, tiny: bool, max_seconds: float, labs: tuple[str, ...] = LAB_NAMES
              ) -> dict[str, Any]:
    """Run the device checks and the timed lab loops; return the report dict (see :func:`markdown_report`)."""
    if os.environ.get(MAX_STEPS_ENV):
        raise SystemExit(f"unset {MAX_STEPS_ENV}: it would cap the timed loops")
    started, clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), time.perf_counter()
    device = get_device()
    print(f"gpu_check on {device}: {'tiny steps' if tiny else f'{warmup} warm-up + {steps} timed steps per loop'}")
    checks = check_boxes(device) + check_metrics(device) + check_detectors(device)
    for c in checks:
        print(f"  {'ok ' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}")
    loops = []
    for spec in (s for s in LAB_LOOPS if s.lab in labs):
        if time.perf_counter() - clock > max_seconds:
            loops.append({**asdict(spec), "skipped": f"the run passed --max-seconds {max_seconds:.0f}"})
            print(f"  skip {spec.lab} / {spec.loop}: past --max-seconds")
            continue
        try:
            row = time_loop(spec, device, steps=steps, warmup=warmup, tiny=tiny)
        except Exception as err:  # noqa: BLE001 - reported as a failed check; the other labs still run
            loops.append({**asdict(spec), "skipped": f"failed: {type(err).__name__}: {err}"})
            checks.append({"check": f"{spec.lab} / {spec.loop} trains", "ok": False, "detail": str(err)})
            print(f"  FAIL {spec.lab} / {spec.loop}: {type(err).__name__}: {err}")
            continue
        loops.append(row)
        print(f"  {spec.lab:16} {spec.loop:48} {row['steps_per_s']:7.2f} steps/s {row['images_per_s']:8.1f} img/s "
              f"projected {_fmt_time(row['projected_s'])}  [{row['weights']}]")
    return {"tiny": tiny, "mode": get_mode(), "started": started, "environment": _environment(device),
            "checks": checks,
            "amp": AMP_NOTE, "loops": loops, "lab_totals": lab_totals(loops),
            "not_timed": [{"lab": lab, "fast": fa, "full": fu, "why": why} for (lab, fa, fu), why in NOT_TIMED.items()],
            "seconds": time.perf_counter() - clock}


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``gpu_check.json`` and ``gpu_check.md`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(markdown_report(report))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="a test, not a measurement: 1 warm-up + 1 timed step, batches of 2, "
                             "torchvision detectors at 64 px with fewer proposals")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per loop (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing (default 5)")
    parser.add_argument("--max-seconds", type=float, default=420.0,
                        help="start no new loop after this many seconds (default 420)")
    parser.add_argument("--labs", nargs="+", choices=LAB_NAMES, default=list(LAB_NAMES), metavar="LAB",
                        help=f"only these labs (default all: {' '.join(LAB_NAMES)})")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default results/gpu_check/)")
    args = parser.parse_args(argv)
    for name in ("steps", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    steps, warmup = (1, 1) if args.tiny else (args.steps, args.warmup)
    os.environ[MODE_ENV] = "full"  # it measures full mode, --tiny included (tests start without COURSE_MODE)
    socket.setdefaulttimeout(15)  # an offline machine that drops packets must not hang the weight downloads
    report = run_check(steps=steps, warmup=warmup, tiny=args.tiny, max_seconds=args.max_seconds,
                       labs=tuple(args.labs))
    json_path, md_path = write_report(report, args.out or default_out())
    print(f"report: {json_path}\nreport: {md_path}")
    failed = [c["check"] for c in report["checks"] if not c["ok"]]
    if failed:
        print(f"{len(failed)} check(s) failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
