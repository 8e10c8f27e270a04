"""Plumbing of the closing benchmark (lab 07): size, compute, speed and accuracy of detectors.

* :func:`count_flops` - forward FLOPs per image with ``torch.utils.flop_counter.FlopCounterMode``;
* :func:`measure_throughput` - the reference images-per-second measurement (lab 07's exercise);
* :class:`ThroughputProbe` - a fake detector, clock and GPU to *test* a throughput measurement
  without timing anything real;
* :func:`coco_ap_row` - the COCO AP figures of one detector, with AP small / medium / large
  measured on the scale COCO defines them (see :func:`coco_ap_row`);
* :func:`markdown_table` - a results table without pandas;

``DetectorWrapper`` (now in :mod:`course_utils.models`), ``count_parameters`` and the checkpoint cache
(``checkpoint_path``, ``load_cached``, ``save_cached``, ``warm_start``, now in :mod:`course_utils.train`)
are re-exported here for the notebooks that import them from this module.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import timeit
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .metrics import coco_eval
from .models import DetectorWrapper
from .train import checkpoint_path, count_parameters, load_cached, save_cached, warm_start

# --------------------------------------------------------------------------- compute


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# fused attention kernels the counter has no formula for (on the CPU): count Q K^T and the weighted sum of V
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def count_flops(model: nn.Module, images: Sequence[torch.Tensor] | torch.Tensor) -> float:
    """Forward FLOPs per image of ``model`` in eval mode, counted by ``FlopCounterMode``.

    What is counted: the operators with a FLOP formula in ``torch.utils.flop_counter`` - matrix
    products (``mm``, ``addmm``, ``bmm``, ``baddbmm``: linear layers, attention) and convolutions,
    at ``2 * multiply-adds`` (so MACs = FLOPs / 2) - plus PyTorch's fused CPU attention kernel,
    which the counter does not know (its two matrix products, as for the GPU kernels). What is
    **not** counted: everything else - BatchNorm, activations, pooling, interpolation, softmax, box
    decoding, NMS (``torchvision::nms``), RoIAlign (``torchvision::roi_align``), anchor generation.
    For convolutional detectors these are a small part of the arithmetic but not of the time: NMS
    and RoIAlign are sequential and memory-bound, which is why measured speed and FLOPs disagree.

    Args:
        model: a detector (called as ``model(images)``); its train/eval mode is restored.
        images: a list of (3, H, W) tensors or a (N, 3, H, W) tensor, on the model's device.

    Returns:
        FLOPs per image (float).
    """
    if len(images) == 0:
        raise ValueError("images is empty: pass at least one image")
    was_training = model.training
    model.eval()
    try:
        # gradients stay enabled (nothing is backpropagated): under no_grad, PyTorch's transformer layers take
        # a fused "fast path" the counter cannot see through (and its module tracker then fails)
        with torch.enable_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / len(images)


# --------------------------------------------------------------------------- speed


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(model: nn.Module, images: Sequence[torch.Tensor], batch_size: int, warmup: int = 3,
                       repeats: int = 10, device: torch.device | str = "cpu") -> float:
    """Images per second of ``model`` on one batch, measured the careful way.

    * the batch ``images[:batch_size]`` is built once, before timing (no data loading in the timing);
    * eval mode (BatchNorm/dropout as at test time, detectors post-process) and ``torch.no_grad``
      (no autograd graph), the model's mode restored afterwards;
    * ``warmup`` untimed calls first (lazy initialisation, allocator, cuDNN autotuning, caches);
    * each of ``repeats`` calls timed with ``time.perf_counter``; on CUDA, ``torch.cuda.synchronize``
      before starting and before stopping the clock (kernels run asynchronously);
    * the **median** time per call (robust to a hiccup), converted to images per second.

    Args:
        model: the detector, already on ``device``; called as ``model(batch)``.
        images: a list of (3, H, W) tensors, already on ``device``; at least ``batch_size`` of them.
        batch_size: images per call.
        warmup: untimed calls before timing (>= 0).
        repeats: timed calls (>= 1).
        device: where model and images are (decides whether to synchronise).

    Returns:
        ``batch_size / median(seconds per call)``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if len(images) < batch_size:
        raise ValueError(f"batch_size={batch_size} but only {len(images)} images were given")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup!r}, {repeats!r}")
    device = torch.device(device)
    batch = images[:batch_size]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(batch)
            seconds = [_timed_call(model, batch, device) for _ in range(repeats)]
    finally:
        model.train(was_training)
    return batch_size / statistics.median(seconds)


def _timed_call(model: nn.Module, batch: Sequence[torch.Tensor], device: torch.device) -> float:
    """Seconds of one ``model(batch)``, the device's queued work included (CUDA runs asynchronously)."""
    _synchronize(device)
    start = time.perf_counter()
    model(batch)
    _synchronize(device)
    return time.perf_counter() - start


class _ProbeModel(nn.Module):
    def __init__(self, probe: ThroughputProbe):
        super().__init__()
        self.probe = probe

    def forward(self, images, targets=None):
        return self.probe._call(self.training, len(images))


class _SlowImages(list):
    """A list whose item access costs ``load_cost`` seconds of the fake clock (reading from disk)."""

    def __init__(self, probe: ThroughputProbe, items):
        super().__init__(items)
        self.probe = probe

    def __getitem__(self, index):
        self.probe.clock += self.probe.load_cost
        return super().__getitem__(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class ThroughputProbe:
    """A fake detector, clock and GPU for testing a throughput measurement deterministically.

    Inside ``with probe:``, ``time.perf_counter``, ``time.monotonic``, ``time.time`` and
    ``timeit.default_timer`` read a fake clock, and ``torch.cuda.synchronize`` is a fake. A call of
    ``probe.model`` on a batch of ``n`` images costs ``batch_cost + image_cost * n`` fake seconds,
    plus ``cold_cost`` for each of the first ``cold_calls`` calls (a cold start) and ``spike_cost``
    on call number ``spike_call`` (0-based; a hiccup). Reading ``probe.images[...]`` costs
    ``load_cost``. With ``cuda=True`` the model behaves like a GPU: a call returns after
    ``launch_cost`` and its work is only waited for by ``torch.cuda.synchronize``.

    Every call is logged in ``probe.calls`` as ``{"training", "grad_enabled", "batch_size"}``;
    ``probe.synchronize_calls`` counts synchronisations; ``probe.expected(batch_size)`` is the true
    steady-state images per second.
    """

    def __init__(self, num_images: int = 16, *, cuda: bool = False, batch_cost: float = 0.2,
                 image_cost: float = 0.05, cold_calls: int = 2, cold_cost: float = 5.0,
                 spike_call: int | None = None, spike_cost: float = 4.0, load_cost: float = 1.0,
                 launch_cost: float = 1e-4):
        self.device = torch.device("cuda" if cuda else "cpu")
        self.batch_cost, self.image_cost, self.load_cost, self.launch_cost = batch_cost, image_cost, load_cost, \
            launch_cost
        self.cold_calls, self.cold_cost, self.spike_call, self.spike_cost = cold_calls, cold_cost, spike_call, \
            spike_cost
        self.clock, self.pending = 1000.0, 0.0
        self.calls: list[dict[str, Any]] = []
        self.synchronize_calls = 0
        self.model = _ProbeModel(self)
        self.images = _SlowImages(self, [torch.full((3, 4, 4), float(i)) for i in range(num_images)])
        self._saved: list[tuple[Any, str, Any]] = []

    def expected(self, batch_size: int) -> float:
        """The steady-state images per second a correct measurement finds."""
        return batch_size / (self.batch_cost + self.image_cost * batch_size)

    def _call(self, training: bool, n: int) -> list[dict[str, torch.Tensor]]:
        index = len(self.calls)
        self.calls.append({"training": training, "grad_enabled": torch.is_grad_enabled(), "batch_size": n})
        cost = self.batch_cost + self.image_cost * n
        cost += self.cold_cost if index < self.cold_calls else 0.0
        cost += self.spike_cost if index == self.spike_call else 0.0
        if self.device.type == "cuda":
            self.clock += self.launch_cost
            self.pending += cost - self.launch_cost
        else:
            self.clock += cost
        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
        return [dict(empty) for _ in range(n)]

    def _now(self, *args) -> float:
        return self.clock

    def _synchronize(self, device=None) -> None:
        self.synchronize_calls += 1
        self.clock += self.pending
        self.pending = 0.0

    def __enter__(self) -> ThroughputProbe:
        patches = [(time, "perf_counter", self._now), (time, "monotonic", self._now), (time, "time", self._now),
                   (timeit, "default_timer", self._now), (torch.cuda, "synchronize", self._synchronize)]
        for obj, name, fake in patches:
            self._saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, fake)
        return self

    def __exit__(self, *exc) -> None:
        for obj, name, real in reversed(self._saved):
            setattr(obj, name, real)
        self._saved.clear()


# --------------------------------------------------------------------------- accuracy

COCO_IMAGE_SIDE = 640  # COCO images are at most 640 px on their longer side: where its area ranges are defined


def rescale_coco(gt: dict, dt: list[dict], factor: float) -> tuple[dict, list[dict]]:
    """Copies of a COCO ground truth and detections with every coordinate multiplied by ``factor``
    (boxes, areas by ``factor**2``, image sizes). IoUs, hence AP, do not change; only which
    objects count as small, medium or large does."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    gt = copy.deepcopy(gt)
    for image in gt["images"]:
        image["width"], image["height"] = image["width"] * factor, image["height"] * factor
    for ann in gt["annotations"]:
        ann["bbox"] = [v * factor for v in ann["bbox"]]
        ann["area"] = ann["area"] * factor**2
        ann.pop("segmentation", None)
    dt = [{**d, "bbox": [v * factor for v in d["bbox"]]} for d in dt]
    for d in dt:
        d.pop("segmentation", None)
        d.pop("area", None)
    return gt, dt


def coco_ap_row(gt: dict, dt: list[dict], image_size: int) -> dict[str, float]:
    """COCO box AP figures of one detector: ``AP`` (mAP@[.5:.95]), ``AP50``, ``AP75``, ``APs``,
    ``APm``, ``APl``.

    COCO's size ranges (small < 32² px, medium < 96² px, large above) are defined on COCO images,
    about 640 px a side. On 128-px images nearly every object is "small" by those numbers, so the
    evaluation is run with every coordinate scaled by ``640 / image_size``: an object is small,
    medium or large when it covers the same *fraction of the image* as a small, medium or large
    COCO object. AP, AP50 and AP75 do not change (IoU does not depend on the scale).

    Args:
        gt: COCO ground truth (``ShapesDataset.to_coco()``).
        dt: COCO detections (``detections_to_coco``).
        image_size: side of the images in pixels.

    Returns:
        the six figures; -1 where a size range holds no ground truth (COCO's convention).
    """
    scaled_gt, scaled_dt = rescale_coco(gt, dt, COCO_IMAGE_SIDE / image_size)
    named = coco_eval(scaled_gt, scaled_dt, "bbox").named
    return {k: named[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def size_counts(gt: dict, image_size: int) -> dict[str, int]:
    """How many ground-truth objects fall in COCO's small / medium / large ranges after the rescaling
    of :func:`coco_ap_row`."""
    scale2 = (COCO_IMAGE_SIDE / image_size) ** 2
    areas = [a["area"] * scale2 for a in gt["annotations"] if not a.get("iscrowd", 0)]
    return {"small": sum(a < 32**2 for a in areas), "medium": sum(32**2 <= a < 96**2 for a in areas),
            "large": sum(a >= 96**2 for a in areas)}


# --------------------------------------------------------------------------- tables


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str | Callable[[Any], str]]) -> str:
    """A Markdown table (display it with ``IPython.display.Markdown``).

    Args:
        rows: one mapping per row.
        columns: ``{key: format}``; a format is a ``str.format`` spec such as ``".3f"`` or a
            function of the value; missing values and negative AP (undefined, -1) print as "-".

    Returns:
        the table as Markdown text.
    """
    def cell(value, fmt):
        if value is None or (isinstance(value, float) and (math.isnan(value) or value == -1.0)):
            return "–"
        return fmt(value) if callable(fmt) else format(value, fmt)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(k), f) for k, f in columns.items()) + " |" for row in rows]
    return "\n".join(lines)


__all__ = [
    "COCO_IMAGE_SIDE",
    "DetectorWrapper",
    "ThroughputProbe",
    "checkpoint_path",
    "coco_ap_row",
    "count_flops",
    "count_parameters",
    "load_cached",
    "markdown_table",
    "measure_throughput",
    "rescale_coco",
    "save_cached",
    "size_counts",
    "warm_start",
]
