"""Detection as keypoint estimation (lab 08): Gaussian heatmaps, the heatmap focal loss, peaks, CenterNet.

* H. Law, J. Deng, *CornerNet: Detecting Objects as Paired Keypoints*, ECCV 2018 - a box as a
  pair of corner keypoints, found on heatmaps trained with a focal loss whose negatives near a
  true keypoint are down-weighted by a Gaussian of radius fixed by the box size.
* X. Zhou, D. Wang, P. Krähenbühl, *Objects as Points*, 2019 (CenterNet) - one heatmap peak per
  object centre, plus its size and the sub-cell offset of the centre, read at the peak. Peaks are
  local maxima of a 3x3 max-pool: no anchors and no NMS.

Coordinates: an output of stride R covers the input with cells of R x R pixels; cell (i, j) spans
``[j, j + 1) x [i, i + 1)`` in output coordinates, i.e. input pixels ``[R j, R (j + 1))``. An object
centred at input point (x, y) belongs to cell ``(floor(y / R), floor(x / R))``; the offset head
predicts ``(x / R - j, y / R - i)`` in [0, 1).

:func:`build_centernet` returns a :class:`~course_utils.models.detectors.DetectorWrapper`-style
module with the contract of :func:`~course_utils.models.detectors.build_detector` (``"centernet"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tensors import plain
from .segmentation import Hourglass, conv_block

PRIOR_PROBABILITY = 0.1  # initial heatmap probability (CenterNet's bias -2.19)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet's radius: how far a corner may move so that the box keeps IoU >= ``min_overlap``.

    The smallest root of the three quadratics of CornerNet's code (both corners moved inwards,
    outwards, or one of each), as CenterNet uses it for its centres.

    Args:
        height, width: the box size (in output cells).
        min_overlap: the IoU a box shifted by the radius still reaches.

    Returns:
        the radius (>= 0), in the same unit as ``height`` and ``width``.
    """
    if height < 0 or width < 0 or not 0 < min_overlap < 1:
        raise ValueError(f"height, width must be >= 0 and min_overlap in (0, 1), got "
                         f"{(height, width, min_overlap)!r}")
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return max(0.0, min(r1, r2, r3))


def draw_gaussian(heatmap: torch.Tensor, cx: int, cy: int, sigma: float) -> torch.Tensor:
    """Put ``exp(-((j - cx)^2 + (i - cy)^2) / (2 sigma^2))`` into ``heatmap`` by element-wise max.

    Args:
        heatmap: (H, W) float tensor, changed in place.
        cx, cy: the peak's cell (column, row); it may lie outside the map (its tail still enters).
        sigma: standard deviation in cells, > 0.

    Returns:
        ``heatmap``.
    """
    h, w = heatmap.shape
    ys = torch.arange(h, dtype=heatmap.dtype, device=heatmap.device)[:, None]  # (H, 1)
    xs = torch.arange(w, dtype=heatmap.dtype, device=heatmap.device)[None, :]  # (1, W)
    bump = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))  # (H, W)
    return torch.maximum(heatmap, bump, out=heatmap)


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                       beta: float = 4.0) -> torch.Tensor:
    """CornerNet / CenterNet's penalty-reduced focal loss on heatmaps.

    With p = sigmoid(logits) and y the Gaussian target, summed over all cells and divided by the
    number N of positive cells (y == 1; N = 1 when there are none):

        -(1 - p)^alpha log(p)                 where y == 1
        -(1 - y)^beta p^alpha log(1 - p)      elsewhere

    Args:
        logits: (B, C, H, W) raw scores.
        target: (B, C, H, W) Gaussian targets in [0, 1], exactly 1 at the keypoints.
        alpha, beta: the focusing and the penalty-reduction exponents (2 and 4 in the papers).

    Returns:
        scalar loss.
    """
    positive = target == 1
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos = -((1 - p) ** alpha * log_p)[positive].sum()
    neg = -((1 - target) ** beta * p**alpha * log_not_p)[~positive].sum()
    return (pos + neg) / positive.sum().clamp(min=1)


def local_peaks(heatmap: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Cells that equal the max of their ``kernel x kernel`` neighbourhood (CenterNet's "NMS").

    Args:
        heatmap: (B, C, H, W) scores.
        kernel: odd window size.

    Returns:
        (B, C, H, W) bool, True at local maxima (plateaus keep all their cells).
    """
    pooled = F.max_pool2d(heatmap, kernel, stride=1, padding=kernel // 2)
    return pooled == heatmap


def top_peaks(heatmap: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """The ``k`` best local peaks of each image, over all channels.

    Args:
        heatmap: (B, C, H, W) scores (probabilities).
        k: peaks kept per image (fewer when the map has fewer cells).

    Returns:
        scores, channels, ys, xs: (B, k') each, best first.
    """
    b, c, h, w = heatmap.shape
    peaks = torch.where(local_peaks(heatmap), heatmap, torch.zeros_like(heatmap))
    scores, index = peaks.reshape(b, -1).topk(min(k, c * h * w), dim=1)  # (B, k')
    channels, cell = index // (h * w), index % (h * w)
    return scores, channels, cell // w, cell % w


class CenterNet(nn.Module):
    """A small CenterNet: (B, 3, H, W) -> heatmap logits, sizes and offsets at stride 4.

    A strided stem (stride 4), one hourglass (lab 05's), then three 3x3 + 1x1 heads.

    Args:
        num_classes: object classes (one heatmap each).
        channels: feature channels.
        depth: poolings of the hourglass (H / 4 must be divisible by 2^depth).
    """

    stride = 4

    def __init__(self, num_classes: int, channels: int = 32, depth: int = 3):
        super().__init__()
        self.depth = depth

        def stem_conv(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self.stem = nn.Sequential(stem_conv(3, channels), stem_conv(channels, channels),
                                  conv_block(channels, channels))  # (B, C, H/4, W/4)
        self.hourglass = Hourglass(channels, depth)

        def head(c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, c_out, 1))

        self.heatmap, self.size, self.offset = head(num_classes), head(2), head(2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        factor = self.stride * 2**self.depth
        if x.dim() != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"input must be (B, 3, H, W) with H and W divisible by {factor}, "
                             f"got {tuple(x.shape)}")
        f = self.hourglass(self.stem(x))  # (B, C, H/4, W/4)
        return {"heatmap": self.heatmap(f), "size": self.size(f), "offset": self.offset(f)}


def centernet_targets(targets: list[dict], num_classes: int, output_size: int, stride: int,
                      min_overlap: float = 0.7) -> dict[str, torch.Tensor]:
    """Training targets of CenterNet from torchvision-style targets.

    Args:
        targets: B dicts with ``boxes`` (N, 4) xyxy input pixels and ``labels`` (N,) in 1..C.
        num_classes: C.
        output_size: side of the output maps (input side / stride).
        stride: R.
        min_overlap: IoU of :func:`gaussian_radius`; sigma = (2 radius + 1) / 6 as CenterNet.

    Returns:
        ``heatmap`` (B, C, h, w) Gaussians with 1 at every centre cell; ``batch``, ``ys``, ``xs``
        (P,) the centre cell of every object; ``size`` (P, 2) width, height in cells; ``offset``
        (P, 2) centre / R minus the cell.
    """
    heatmap = torch.zeros(len(targets), num_classes, output_size, output_size)
    batch, ys, xs, sizes, offsets = [], [], [], [], []
    for b, target in enumerate(targets):
        boxes = plain(target["boxes"]).float().cpu() / stride  # (N, 4) in cells
        for box, label in zip(boxes, plain(target["labels"]).cpu().tolist(), strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            centre = torch.stack([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])  # (2,)
            cell = centre.floor().clamp(0, output_size - 1)
            radius = gaussian_radius(h, w, min_overlap)
            draw_gaussian(heatmap[b, label - 1], int(cell[0]), int(cell[1]), (2 * radius + 1) / 6)
            batch.append(b)
            xs.append(int(cell[0]))
            ys.append(int(cell[1]))
            sizes.append((w, h))
            offsets.append((centre - cell).tolist())
    long = dict(dtype=torch.int64)
    return {"heatmap": heatmap, "batch": torch.tensor(batch, **long), "ys": torch.tensor(ys, **long),
            "xs": torch.tensor(xs, **long), "size": torch.tensor(sizes).reshape(-1, 2),
            "offset": torch.tensor(offsets).reshape(-1, 2)}


def centernet_loss(outputs: dict[str, torch.Tensor], encoded: dict[str, torch.Tensor],
                   size_weight: float = 0.1) -> dict[str, torch.Tensor]:
    """CenterNet's loss: heatmap focal loss + 0.1 L1 on sizes + L1 on offsets (at the centres).

    Args:
        outputs: the network's ``heatmap`` (B, C, h, w), ``size`` and ``offset`` (B, 2, h, w).
        encoded: :func:`centernet_targets`, on the outputs' device.
        size_weight: weight of the size term.

    Returns:
        ``{"heatmap", "size", "offset"}`` scalar losses (sum them to train).
    """
    b, y, x = encoded["batch"], encoded["ys"], encoded["xs"]
    n = max(len(b), 1)
    size = outputs["size"][b, :, y, x]  # (P, 2)
    offset = outputs["offset"][b, :, y, x]  # (P, 2)
    return {
        "heatmap": heatmap_focal_loss(outputs["heatmap"], encoded["heatmap"]),
        "size": size_weight * F.l1_loss(size, encoded["size"], reduction="sum") / n,
        "offset": F.l1_loss(offset, encoded["offset"], reduction="sum") / n,
    }


def centernet_decode(outputs: dict[str, torch.Tensor], stride: int, k: int = 100) -> list[dict]:
    """Detections from CenterNet's outputs: the top-k 3x3 peaks, no NMS.

    Args:
        outputs: ``heatmap`` logits (B, C, h, w), ``size`` and ``offset`` (B, 2, h, w).
        stride: R, to go back to input pixels.
        k: detections per image.

    Returns:
        B dicts ``{"boxes" (k, 4) xyxy input pixels, "scores" (k,), "labels" (k,) in 1..C}``.
    """
    heat = torch.sigmoid(outputs["heatmap"])
    scores, channels, ys, xs = top_peaks(heat, k)  # (B, k) each
    detections = []
    for b in range(len(heat)):
        y, x = ys[b], xs[b]
        size = outputs["size"][b, :, y, x].clamp(min=0)  # (2, k) cells; an untrained head may go negative
        w, h = size[0], size[1]
        cx = x + outputs["offset"][b, 0, y, x]
        cy = y + outputs["offset"][b, 1, y, x]
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1) * stride
        detections.append({"boxes": boxes, "scores": scores[b], "labels": channels[b] + 1})
    return detections


def build_centernet(num_classes: int, image_size: int = 128, *, channels: int = 32, depth: int = 3,
                    max_detections: int = 100) -> nn.Module:
    """The course's CenterNet behind :func:`~course_utils.models.detectors.build_detector`'s contract.

    Args:
        num_classes: object classes, background not counted (labels 1..num_classes).
        image_size: side of the square inputs; divisible by ``4 * 2**depth``.
        channels, depth: of :class:`CenterNet`.
        max_detections: peaks kept per image.

    Returns:
        a :class:`~course_utils.models.detectors.DetectorWrapper` whose ``model`` is the
        :class:`CenterNet`: losses ``{"heatmap", "size", "offset"}`` in train mode, detections in
        eval mode.
    """
    from .detectors import DetectorWrapper  # detectors imports this module for its registry

    if image_size % (CenterNet.stride * 2**depth):
        raise ValueError(f"image_size must be divisible by {CenterNet.stride * 2**depth}, got {image_size!r}")
    output_size = image_size // CenterNet.stride

    def loss(outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        device = outputs["heatmap"].device
        encoded = centernet_targets(targets, num_classes, output_size, CenterNet.stride)
        return centernet_loss(outputs, {k: v.to(device) for k, v in encoded.items()})

    def decode(outputs: dict) -> list[dict]:
        return centernet_decode(outputs, CenterNet.stride, max_detections)

    return DetectorWrapper(CenterNet(num_classes, channels, depth), loss, decode)
