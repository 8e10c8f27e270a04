"""YOLO v1 (Redmon et al., CVPR 2016) on a small grid: network, targets, loss, decoding, and a
wrapper that behaves like a torchvision detector.

This is the reference implementation of lab 02's exercises (same semantics as the solution
cells of ``notebook_src/02_yolo.py``), packaged so that other labs (the benchmark, lab 07) can
train and run YOLO like the torchvision detectors:

    model = build_yolo(num_classes=6, image_size=128)        # YOLOv1 wrapper, S=8, B=2
    losses = model(images, targets)      # train mode: {"coord", "size", "obj", "noobj", "cls"}
    detections = model.eval()(images)    # eval mode: [{"boxes" (K, 4) xyxy px, "scores", "labels"}]

so :func:`course_utils.train.fit` and :func:`~course_utils.train.predict` treat it like any other
detector. Conventions (as in lab 02):

* the network outputs ``(N, S, S, 5B + C)``: per cell, ``B`` groups ``(x, y, w, h, conf)``
  squashed by a sigmoid, then ``C`` class probabilities (softmax);
* ``x, y`` are the box centre's offset inside its cell in [0, 1); ``w, h`` are fractions of the
  image side;
* targets are ``(S, S, 5 + C)``: ``(x, y, w, h, 1, one-hot class)`` in the cell holding the
  object's centre, zeros elsewhere; one object per cell (the largest wins);
* labels run 1..C (0 is the background, as in torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import ops

from ..boxes import paired_box_iou
from ..tensors import plain

# --------------------------------------------------------------------------- network


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) + BatchNorm + LeakyReLU(0.1), as in YOLO."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.1))


class TinyYOLO(nn.Module):
    """Lab 02's small fully convolutional YOLO v1: (N, 3, H, W) -> (N, S, S, 5B + C).

    A stride-2 conv and three 2x2 max-poolings (stride 16), an adaptive average pooling to the
    ``S x S`` grid, then a 1x1 conv predicting ``5B + C`` numbers per cell: sigmoid on
    ``(x, y, w, h, conf)``, softmax on the class probabilities.

    Args:
        S: grid side.
        B: boxes per cell.
        num_classes: C, object classes.
        width: channels of the first layer (the widest layers have ``8 * width``).
    """

    def __init__(self, S: int, B: int, num_classes: int, width: int = 16):
        super().__init__()
        for name, value in (("S", S), ("B", B), ("num_classes", num_classes), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.S, self.B, self.C = S, B, num_classes
        self.features = nn.Sequential(
            conv_block(3, width, stride=2), conv_block(width, 2 * width), nn.MaxPool2d(2),
            conv_block(2 * width, 4 * width), nn.MaxPool2d(2), conv_block(4 * width, 8 * width), nn.MaxPool2d(2),
            conv_block(8 * width, 8 * width), nn.AdaptiveAvgPool2d(S), conv_block(8 * width, 8 * width))
        self.head = nn.Conv2d(8 * width, 5 * B + num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) -> (N, S, S, 5B + C)."""
        out = self.head(self.features(images)).permute(0, 2, 3, 1)  # (N, S, S, 5B + C)
        return torch.cat([out[..., :5 * self.B].sigmoid(), out[..., 5 * self.B:].softmax(-1)], dim=-1)


# --------------------------------------------------------------------------- targets and decoding


def encode_yolo_targets(boxes: torch.Tensor, labels: torch.Tensor, S: int, num_classes: int,
                        image_size: int) -> torch.Tensor:
    """Ground truth of one image -> the YOLO v1 target grid.

    Args:
        boxes: (N, 4) xyxy in pixels.
        labels: (N,) int in 1..num_classes.
        S: grid side; image_size: side of the square image in pixels.

    Returns:
        (S, S, 5 + num_classes) float32: in the cell ``(row, col)`` holding a centre,
        ``(x, y, w, h, 1, one-hot(label - 1))`` with ``x, y`` the offset in the cell and ``w, h``
        fractions of the image; zeros elsewhere. Several centres in one cell: the largest box
        (by area) is kept. A centre on the right/bottom edge belongs to the last cell.
    """
    boxes = plain(boxes).detach().float().cpu().reshape(-1, 4)
    labels = torch.as_tensor(labels).cpu().reshape(-1).long()
    if len(boxes) != len(labels):
        raise ValueError(f"boxes and labels must have one entry per object, got {len(boxes)} and {len(labels)}")
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(f"labels must be in 1..num_classes={num_classes}, got {labels.tolist()}")
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2  # (N,)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # (N,)
    col = (cx / image_size * S).long().clamp(max=S - 1)  # (N,): a centre on the last edge is in the last cell
    row = (cy / image_size * S).long().clamp(max=S - 1)
    cell = row * S + col  # (N,)
    # one object per cell: the largest; among equal areas the last given (a stable sort by area)
    rank = torch.empty_like(cell)
    rank[torch.argsort(w * h, stable=True)] = torch.arange(len(cell))  # (N,) position by increasing area
    best = torch.full((S * S,), -1, dtype=torch.long).scatter_reduce(0, cell, rank, "amax")  # (S*S,)
    won = rank == best[cell]  # (N,) exactly one winner per occupied cell
    target = torch.zeros(S, S, 5 + num_classes)
    r, c = row[won], col[won]
    target[r, c, 0] = (cx / image_size * S - col)[won]
    target[r, c, 1] = (cy / image_size * S - row)[won]
    target[r, c, 2] = (w / image_size)[won]
    target[r, c, 3] = (h / image_size)[won]
    target[r, c, 4] = 1
    target[r, c, 5 + labels[won] - 1] = 1
    return target


def decode_yolo_output(output: torch.Tensor, B: int, image_size: int,
                       score_threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's output for one image -> every predicted box above a score.

    Args:
        output: (S, S, 5B + C).
        B: boxes per cell; image_size: side of the image in pixels.
        score_threshold: keep boxes whose score ``conf * max_c p(c)`` is strictly greater.

    Returns:
        boxes (K, 4) xyxy pixels (not clipped), scores (K,), labels (K,) int64 in 1..C.
    """
    S = output.shape[0]
    cells = output[..., :5 * B].unflatten(-1, (B, 5))  # (S, S, B, 5): x, y, w, h, conf per predictor
    ys, xs = torch.meshgrid(torch.arange(S, dtype=output.dtype, device=output.device),
                            torch.arange(S, dtype=output.dtype, device=output.device), indexing="ij")  # (S, S)
    offset = torch.stack([xs, ys], dim=-1)[:, :, None, :]  # (S, S, 1, 2): the cell's column and row
    centre = (cells[..., :2] + offset) / S * image_size  # (S, S, B, 2) pixels
    size = cells[..., 2:4] * image_size  # (S, S, B, 2) pixels
    boxes = ops.box_convert(torch.cat([centre, size], dim=-1), "cxcywh", "xyxy").reshape(-1, 4)  # (S*S*B, 4)
    class_prob, class_index = output[..., 5 * B:].max(dim=-1)  # (S, S): the best class of each cell
    scores = (cells[..., 4] * class_prob[..., None]).flatten()  # (S*S*B,) conf * p(best class)
    labels = (class_index + 1).repeat_interleave(B)  # (S*S*B,) in 1..C, the cell's class for each predictor
    keep = scores > score_threshold
    return boxes[keep], scores[keep], labels[keep]


# --------------------------------------------------------------------------- loss


def cell_boxes_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., S, S, 4) cell-relative (x, y, w, h) -> (..., S, S, 4) xyxy in fractions of the image."""
    S = boxes.shape[-2]
    cols = torch.arange(S, dtype=boxes.dtype, device=boxes.device)  # (S,)
    cx = (boxes[..., 0] + cols) / S  # the column index varies along the last grid axis
    cy = (boxes[..., 1] + cols[:, None]) / S  # the row index along the first
    w, h = boxes[..., 2], boxes[..., 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def yolo_loss(pred: torch.Tensor, target: torch.Tensor, B: int, lambda_coord: float = 5.0,
              lambda_noobj: float = 0.5) -> dict[str, torch.Tensor]:
    """YOLO v1's loss (equation 3 of the paper), term by term.

    The responsible predictor of an object cell is the one of its ``B`` boxes with the highest IoU
    with the target (ties: the first); its confidence target is that IoU, detached. Every other
    predictor (in empty and object cells) is pushed to confidence 0. Sums over cells and
    predictors, mean over images.

    Args:
        pred: (N, S, S, 5B + C) network output.
        target: (N, S, S, 5 + C) from :func:`encode_yolo_targets`.
        B: boxes per cell.
        lambda_coord, lambda_noobj: the paper's weights (5 and 0.5).

    Returns:
        ``{"coord", "size", "obj", "noobj", "cls"}``: scalar tensors, each already weighted.
    """
    if pred.shape[:3] != target.shape[:3] or pred.shape[-1] - 5 * B != target.shape[-1] - 5:
        raise ValueError(f"pred (N, S, S, 5B + C) and target (N, S, S, 5 + C) do not match for B={B}: "
                         f"{tuple(pred.shape)} vs {tuple(target.shape)}")
    n, S = pred.shape[0], pred.shape[1]
    boxes = pred[..., :5 * B].reshape(n, S, S, B, 5)  # (N, S, S, B, 5)
    has_obj = target[..., 4] > 0  # (N, S, S)
    gt_xyxy = cell_boxes_to_xyxy(target[..., :4])  # (N, S, S, 4)
    pred_xyxy = cell_boxes_to_xyxy(boxes[..., :4].movedim(3, 0))  # (B, N, S, S, 4)
    ious = paired_box_iou(pred_xyxy.detach(), gt_xyxy).movedim(0, -1)  # (N, S, S, B)
    responsible = F.one_hot(ious.argmax(-1), B).bool() & has_obj[..., None]  # (N, S, S, B)
    t = target[..., None, :4]  # (N, S, S, 1, 4)
    coord = ((boxes[..., 0] - t[..., 0]) ** 2 + (boxes[..., 1] - t[..., 1]) ** 2)[responsible].sum()
    size = ((boxes[..., 2].sqrt() - t[..., 2].sqrt()) ** 2
            + (boxes[..., 3].sqrt() - t[..., 3].sqrt()) ** 2)[responsible].sum()
    obj = ((ious.detach() - boxes[..., 4]) ** 2)[responsible].sum()
    noobj = (boxes[..., 4] ** 2)[~responsible].sum()
    cls = ((target[..., 5:] - pred[..., 5 * B:]) ** 2).sum(-1)[has_obj].sum()
    return {"coord": lambda_coord * coord / n, "size": lambda_coord * size / n, "obj": obj / n,
            "noobj": lambda_noobj * noobj / n, "cls": cls / n}


# --------------------------------------------------------------------------- detector wrapper


def _stack(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, 3, H, W) or a list of (3, H, W), got shape {tuple(images.shape)}")
        return plain(images)
    images = [plain(im) for im in images]
    if not images:
        raise ValueError("images is empty")
    if len({tuple(im.shape) for im in images}) > 1:
        raise ValueError(f"all images must share one size, got {sorted({tuple(im.shape) for im in images})}")
    return torch.stack(images)


class YOLOv1(nn.Module):
    """:class:`TinyYOLO` with its targets, loss and post-processing, called like a torchvision detector.

    * train mode: ``model(images, targets)`` -> the dict of :func:`yolo_loss` terms (targets are
      torchvision-style dicts with ``"boxes"`` (N_i, 4) xyxy pixels and ``"labels"`` (N_i,) in
      1..C; they are encoded with :func:`encode_yolo_targets`);
    * eval mode: ``model(images)`` -> one dict per image ``{"boxes": (K, 4) xyxy pixels clipped to
      the image, "scores": (K,), "labels": (K,) int64 in 1..C}``: boxes above ``score_thresh``,
      per-class NMS at ``nms_thresh``, the best ``detections_per_img``.

    ``images`` is a (N, 3, H, W) tensor or a list of (3, H, W) tensors of one size, values in [0, 1].

    Args:
        num_classes: C, object classes (background not counted).
        image_size: side of the square input images in pixels.
        S, B, width: grid side, boxes per cell, width of :class:`TinyYOLO`.
        lambda_coord, lambda_noobj: the loss weights.
        score_thresh, nms_thresh, detections_per_img: post-processing in eval mode.
    """

    def __init__(self, num_classes: int, image_size: int = 128, *, S: int = 8, B: int = 2, width: int = 16,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5, score_thresh: float = 0.01,
                 nms_thresh: float = 0.5, detections_per_img: int = 100):
        super().__init__()
        if not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16 (pixels), got {image_size!r}")
        self.net = TinyYOLO(S, B, num_classes, width)
        self.num_classes, self.image_size, self.S, self.B = num_classes, image_size, S, B
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    def encode(self, targets: Sequence[dict]) -> torch.Tensor:
        """Torchvision-style targets -> (N, S, S, 5 + C) grids (on the CPU)."""
        return torch.stack([encode_yolo_targets(t["boxes"], t["labels"], self.S, self.num_classes, self.image_size)
                            for t in targets])

    def postprocess(self, output: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """(N, S, S, 5B + C) network output -> one detection dict per image (see the class doc)."""
        detections = []
        for out in output:
            boxes, scores, labels = decode_yolo_output(out, self.B, self.image_size, self.score_thresh)
            boxes = boxes.clamp(0, self.image_size)
            keep = ops.batched_nms(boxes, scores, labels, self.nms_thresh)[:self.detections_per_img]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections

    def forward(self, images, targets: Sequence[dict] | None = None):
        x = _stack(images)  # (N, 3, H, W)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"images must be {self.image_size}x{self.image_size}, got {tuple(x.shape[-2:])}")
        output = self.net(x)  # (N, S, S, 5B + C)
        if self.training:
            if targets is None:
                raise ValueError("in training mode, pass targets: model(images, targets) returns the losses")
            if len(targets) != len(x):
                raise ValueError(f"got {len(x)} images but {len(targets)} targets")
            grid = self.encode(targets).to(output.device, output.dtype)
            return yolo_loss(output, grid, self.B, self.lambda_coord, self.lambda_noobj)
        return self.postprocess(output)


def build_yolo(num_classes: int, image_size: int = 128, **kwargs) -> YOLOv1:
    """A :class:`YOLOv1` detector trained from scratch (``kwargs``: ``S``, ``B``, ``width``, loss weights,
    post-processing; see the class)."""
    return YOLOv1(num_classes, image_size, **kwargs)


__all__ = ["TinyYOLO", "YOLOv1", "build_yolo", "cell_boxes_to_xyxy", "conv_block", "decode_yolo_output",
           "encode_yolo_targets", "yolo_loss"]
