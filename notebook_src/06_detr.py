# %% [markdown] id="intro"
# <!-- COLAB_BADGE: notebook_src/build.py puts the Open-in-Colab badge here -->
#
# # Lab 06 — DETR: detection as set prediction with a transformer
#
# *CNNs part II — beyond image classification.*
#
# Every detector so far produced **many more boxes than objects** — one per grid cell (YOLO), per
# anchor (RetinaNet), per proposal (Faster R-CNN) — assigned them to the ground truth with
# hand-made rules (the cell holding the centre, IoU thresholds with anchors), and removed the
# duplicates afterwards with **non-maximum suppression**. **DETR** (N. Carion, F. Massa, G. Synnaeve,
# N. Usunier, A. Kirillov, S. Zagoruyko, *End-to-End Object Detection with Transformers*, ECCV 2020)
# removes all three:
#
# * a CNN backbone turns the image into an $h \times w$ feature map; a **transformer encoder** lets
#   its $hw$ positions attend to each other;
# * a **transformer decoder** takes a fixed set of $Q$ learned vectors, the **object queries**, and
#   turns each into one prediction: a class among $C$ objects **or "no object"** ($\varnothing$), and
#   a box $(c_x, c_y, w, h)$ normalised to $[0, 1]$;
# * the loss first finds the **best one-to-one assignment** $\hat\sigma$ between the $Q$ predictions and
#   the $N \le Q$ ground-truth objects (Hungarian algorithm), then trains each matched prediction
#   towards its object and every unmatched one towards $\varnothing$. Two queries cannot both be
#   rewarded for the same object, so the network learns **not to produce duplicates**: no NMS.
#
# In this lab you will write the generalized IoU (exercise 1), the matching cost and the Hungarian
# matching (exercise 2) and the set loss (exercise 3); overfit one batch, train a small DETR on the
# synthetic shapes, evaluate it with COCO mAP, and look inside: the decoder's attention, and which
# region and box size each query learns to look for.

# %% id="setup" role="readonly"
# Setup: imports, run mode, device and seed. Run this cell first.
# COLAB_INSTALL: notebook_src/build.py puts the Colab-only install of this release here

try:
    import course_utils  # noqa: F401
except ImportError as err:
    raise ImportError(
        "course_utils is not installed in this kernel. From the course folder run `make lab`, "
        "or `pip install -e .` in the environment of this kernel."
    ) from err

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch.utils.data import DataLoader
from torchvision import ops
from torchvision.transforms import v2

from course_utils import viz
from course_utils.config import by_mode, record, setup, steps
from course_utils.data import ShapesDataset, detections_to_coco
from course_utils.grading import check_close, check_equal, check_grad_flows, check_shape, check_vectorised
from course_utils.metrics import coco_eval
from course_utils.models.detr import build_small_detr, detr_loss, detr_targets, postprocess
from course_utils.tensors import plain
from course_utils.train import checkpoint_path, fit, save_cached

SETUP = setup(seed=0)
MODE, DEVICE = SETUP.mode, SETUP.device

# %% [markdown] id="data-md"
# ## 1. Data
#
# The synthetic shapes with 1 to 4 objects per image, at 64×64 pixels so that a transformer trains on
# a CPU in minutes. DETR works with **normalised** boxes: `detr_targets` turns each target into
# `boxes` $(c_x, c_y, w, h) \in [0, 1]$ and class indices `labels` in $0..C-1$; index $C$ will mean
# "no object".

# %% id="data" role="readonly"
IMAGE_SIZE = 64
N_TRAIN = by_mode(smoke=64, fast=4000, full=20000)
N_TEST = by_mode(smoke=16, fast=300, full=1000)
# random horizontal flips (boxes and masks follow the image: transforms.v2 knows tv_tensors)
train_set = ShapesDataset(N_TRAIN, IMAGE_SIZE, seed=0, cache=True, transforms=v2.RandomHorizontalFlip())
test_set = ShapesDataset(N_TEST, IMAGE_SIZE, seed=1, cache=True)
CLASS_NAMES, NUM_CLASSES = train_set.class_names, train_set.num_classes


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack([plain(im) for im in images]), detr_targets(targets, (IMAGE_SIZE, IMAGE_SIZE))


example_images, example_targets = collate([test_set[i] for i in range(4)])
print("normalised cxcywh boxes of image 0:", example_targets[0]["boxes"], "labels:", example_targets[0]["labels"])
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for i, ax in enumerate(axes):
    viz.show_sample(*test_set[i], class_names=CLASS_NAMES, masks=False, ax=ax)
fig.tight_layout()


# %% [markdown] id="ex1-md"
# ## 2. Generalized IoU (exercise 1, 2 points)
#
# DETR compares boxes with the L1 distance of their $(c_x, c_y, w, h)$ — which depends on the boxes'
# size — and with an overlap measure that does not. IoU is zero for every pair of disjoint boxes, so
# it gives no gradient that says "move closer". The **generalized IoU** (H. Rezatofighi et al.,
# *Generalized Intersection over Union*, CVPR 2019) subtracts the part of the **smallest enclosing
# box** $C$ that neither box covers:
#
# $$\mathrm{GIoU}(A, B) = \mathrm{IoU}(A, B) - \frac{|C| - |A \cup B|}{|C|} \in [-1, 1].$$
#
# Write `generalized_box_iou(boxes1, boxes2)` for `(N, 4)` and `(M, 4)` boxes in `xyxy`, returning
# the `(N, M)` matrix — what `torchvision.ops.generalized_box_iou` returns. Only use basic tensor
# operations (no `ops.box_iou` or `ops.generalized_box_iou`: the tests make them fail), **vectorised**
# (broadcasting `boxes1[:, None]` against `boxes2[None]`; no Python loop or comprehension). Widths and
# heights of intersections are clamped at 0. Either input may hold zero boxes. DETR calls it on
# **normalised** boxes (coordinates in $[0, 1]$, areas far below 1), so add no constant and no
# `clamp(min=1)` to the areas; the result keeps the dtype of the boxes, and the loss trains the boxes
# through it (no `torch.no_grad()`, no `.detach()`).

# %% id="ex1-giou" role="solution"
def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """boxes1 (N, 4), boxes2 (M, 4) xyxy -> (N, M) GIoU."""
    ### BEGIN SOLUTION
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area1[:, None] + area2[None, :] - inter
    iou = inter / union
    enclosing_tl = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    enclosing_br = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    enclosing_wh = (enclosing_br - enclosing_tl).clamp(min=0)
    enclosing = enclosing_wh[..., 0] * enclosing_wh[..., 1]  # (N, M)
    return iou - (enclosing - union) / enclosing
    ### END SOLUTION


# %% id="test-giou" role="tests" points=2
# Exercise 1: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (random, nested, far apart, zero-area boxes), no new requirements.
def without_box_ops(fn, *args):
    """fn(*args) with torchvision's box IoU functions made to fail."""
    def forbidden(*a, **k):
        raise AssertionError("generalized_box_iou: expected basic tensor operations, got a call to torchvision's box "
                             "IoU\nhint: compute the intersection, union and enclosing box yourself")
    saved = [(m, n, getattr(m, n)) for m in (ops, ops.boxes) for n in ("box_iou", "generalized_box_iou", "_box_inter_union")
             if hasattr(m, n)]
    for m, n, _ in saved:
        setattr(m, n, forbidden)
    try:
        return fn(*args)
    finally:
        for m, n, f in saved:
            setattr(m, n, f)


a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [20.0, 0.0, 30.0, 10.0], [2.0, 2.0, 4.0, 4.0]])
check_close(without_box_ops(generalized_box_iou, a, b), ops.generalized_box_iou(a, b), name="generalized_box_iou(a, b)",
            inputs={"a": a, "b": b},
            hint="identical -> 1; disjoint boxes 10 px apart -> 0 - (300 - 200) / 300; GIoU = IoU - (|C| - union) / |C|")
check_shape(without_box_ops(generalized_box_iou, b, a), (4, 1), name="generalized_box_iou(b, a)",
            hint="(N, M) for N boxes1 and M boxes2")
# normalised (sub-pixel) boxes as DETR uses them: every area and union < 1; float64 in, float64 out
g = torch.Generator().manual_seed(5)
xy = torch.rand(6, 2, generator=g, dtype=torch.float64) * 0.6
small1 = torch.cat([xy, xy + 0.02 + 0.3 * torch.rand(6, 2, generator=g, dtype=torch.float64)], 1)
xy = torch.rand(3, 2, generator=g, dtype=torch.float64) * 0.6
small2 = torch.cat([xy, xy + 0.02 + 0.3 * torch.rand(3, 2, generator=g, dtype=torch.float64)], 1)
check_close(without_box_ops(generalized_box_iou, small1, small2), ops.generalized_box_iou(small1, small2), atol=1e-9,
            name="GIoU of normalised float64 boxes (areas < 1)", inputs={"boxes1": small1, "boxes2": small2},
            hint="no clamp(min=1) or + 1 in the areas or the union; keep the dtype of the boxes")
check_shape(generalized_box_iou(torch.zeros(0, 4), b), (0, 4), name="GIoU with no boxes1")
check_shape(generalized_box_iou(b, torch.zeros(0, 4)), (4, 0), name="GIoU with no boxes2")
check_vectorised(generalized_box_iou, name="generalized_box_iou", hint="boxes1[:, None, :2] against boxes2[None, :, :2]")
p1, p2 = small1.clone().requires_grad_(), small2.clone().requires_grad_()
check_grad_flows({"GIoU": generalized_box_iou(p1, p2)}, {"boxes1": p1, "boxes2": p2}, name="generalized_box_iou",
                 hint="the set loss trains the boxes through the GIoU: no torch.no_grad(), no .detach()")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(0)
for n, m in [(1, 1), (5, 7), (30, 2), (64, 64)]:
    xy = torch.rand(n, 2, generator=g) * 50
    b1 = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 40], 1)
    xy = torch.rand(m, 2, generator=g) * 50
    b2 = torch.cat([xy, xy + 1 + torch.rand(m, 2, generator=g) * 40], 1)
    check_close(generalized_box_iou(b1, b2), ops.generalized_box_iou(b1, b2), name=f"GIoU of {n} x {m} random boxes",
                hint="intersection clamped at 0; enclosing box from the min of the top-lefts and max of the bottom-rights")
contained = torch.tensor([[0.0, 0.0, 100.0, 100.0], [40.0, 40.0, 60.0, 60.0]])
check_close(generalized_box_iou(contained, contained), ops.generalized_box_iou(contained, contained),
            name="GIoU of a box and a box inside it")
far = torch.tensor([[0.0, 0.0, 1.0, 1.0], [99.0, 99.0, 100.0, 100.0]])
check_close(generalized_box_iou(far[:1], far[1:]), ops.generalized_box_iou(far[:1], far[1:]),
            name="GIoU of two tiny far-apart boxes", hint="close to -1")
line = torch.tensor([[10.0, 10.0, 10.0, 30.0]])  # zero width
check_close(generalized_box_iou(line, b), ops.generalized_box_iou(line, b), name="GIoU of a zero-area box")
check_shape(generalized_box_iou(torch.zeros(0, 4), b), (0, 4), name="GIoU with no boxes1")
check_shape(generalized_box_iou(b, torch.zeros(0, 4)), (4, 0), name="GIoU with no boxes2")
### END HIDDEN TESTS

# %% [markdown] id="ex2-md"
# ## 3. The matching cost and the Hungarian algorithm (exercise 2, 3 points)
#
# For one image, let prediction $i$ have class probabilities $\hat p_i$ (a softmax over $C + 1$
# classes) and box $\hat b_i$, and target $j$ have class $c_j$ and box $b_j$. DETR's **matching
# cost** (eq. 1 and the appendix of the paper) is
#
# $$\mathcal{C}_{ij} = -\lambda_{\text{class}}\,\hat p_i(c_j)
#  + \lambda_{L1}\,\lVert \hat b_i - b_j \rVert_1
#  - \lambda_{\text{giou}}\,\mathrm{GIoU}(\hat b_i, b_j)$$
#
# with the L1 distance on **normalised** $(c_x, c_y, w, h)$ and the GIoU on the same boxes converted
# to `xyxy` (use `ops.box_convert`). The probability enters with a minus sign (a likely class is a
# cheap match) and, unlike in the loss, not as a log — it keeps the class term on the scale of the
# box terms. The defaults are $\lambda_{\text{class}} = 1$, $\lambda_{L1} = 5$, $\lambda_{\text{giou}} = 2$.
#
# The **optimal assignment** is the permutation $\hat\sigma$ minimising $\sum_j \mathcal{C}_{\hat\sigma(j) j}$:
# the Hungarian algorithm (H. W. Kuhn, 1955) finds it in polynomial time;
# `scipy.optimize.linear_sum_assignment(cost)` implements it for a rectangular `(Q, N)` cost with
# $Q \ge N$ and returns `(row_indices, col_indices)`. Matching is **per image**: each image has its own
# objects.
#
# Write
#
# * `matching_cost(pred_logits (Q, C+1), pred_boxes (Q, 4), tgt_labels (N,), tgt_boxes (N, 4), cost_class,
#   cost_bbox, cost_giou)` → the `(Q, N)` cost (use your `generalized_box_iou`; `torch.cdist(x, y, p=1)`
#   gives pairwise L1 distances);
# * `hungarian_match(pred_logits (B, Q, C+1), pred_boxes (B, Q, 4), targets, cost_class=1, cost_bbox=5,
#   cost_giou=2)` → a list of `B` pairs `(pred_idx, tgt_idx)` of int64 tensors of length $N_b$ —
#   prediction `pred_idx[k]` is matched to target `tgt_idx[k]`. An image without objects gives two
#   empty int64 tensors. No gradient flows through the matching (`torch.no_grad()`): the tests pass
#   predictions that require a gradient, as in training. A loop over the images is fine (the
#   matching is per image); `linear_sum_assignment` needs a numpy array (`cost.cpu().numpy()`).
#
# Each of the three terms of the cost is tested on its own (one weight at a time).

# %% id="ex2-match" role="solution"
def matching_cost(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, tgt_labels: torch.Tensor,
                  tgt_boxes: torch.Tensor, cost_class: float = 1.0, cost_bbox: float = 5.0,
                  cost_giou: float = 2.0) -> torch.Tensor:
    """(Q, C+1) logits, (Q, 4) cxcywh, (N,) labels, (N, 4) cxcywh -> (Q, N) cost."""
    ### BEGIN SOLUTION
    prob = pred_logits.softmax(-1)  # (Q, C + 1)
    c_class = -prob[:, tgt_labels]  # (Q, N)
    c_bbox = torch.cdist(pred_boxes, tgt_boxes, p=1)  # (Q, N)
    c_giou = -generalized_box_iou(ops.box_convert(pred_boxes, "cxcywh", "xyxy"),
                                  ops.box_convert(tgt_boxes, "cxcywh", "xyxy"))  # (Q, N)
    return cost_class * c_class + cost_bbox * c_bbox + cost_giou * c_giou
    ### END SOLUTION


@torch.no_grad()
def hungarian_match(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict],
                    cost_class: float = 1.0, cost_bbox: float = 5.0,
                    cost_giou: float = 2.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, Q, C+1) logits, (B, Q, 4) cxcywh, B targets -> B pairs (pred_idx, tgt_idx) of int64 tensors."""
    ### BEGIN SOLUTION
    indices = []
    for logits, boxes, target in zip(pred_logits, pred_boxes, targets):
        cost = matching_cost(logits, boxes, target["labels"], target["boxes"], cost_class, cost_bbox, cost_giou)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return indices
    ### END SOLUTION


# %% id="test-match" role="tests" points=3
# Exercise 2: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (other weights, a greedy trap, as many targets as queries), no new requirements.
def reference_cost(logits, boxes, labels, tgt_boxes, w_class=1.0, w_bbox=5.0, w_giou=2.0):
    l1 = (boxes[:, None, :] - tgt_boxes[None, :, :]).abs().sum(-1)
    giou = ops.generalized_box_iou(ops.box_convert(boxes, "cxcywh", "xyxy"), ops.box_convert(tgt_boxes, "cxcywh", "xyxy"))
    return -w_class * logits.softmax(-1)[:, labels] + w_bbox * l1 - w_giou * giou


def random_predictions(g, B, Q, C):
    logits = torch.randn(B, Q, C + 1, generator=g) * 2
    boxes = torch.cat([0.2 + 0.6 * torch.rand(B, Q, 2, generator=g), 0.05 + 0.3 * torch.rand(B, Q, 2, generator=g)], -1)
    return logits, boxes


def random_targets(g, counts, C):
    return [{"labels": torch.randint(0, C, (n,), generator=g),
             "boxes": torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g), 0.05 + 0.3 * torch.rand(n, 2, generator=g)], -1)}
            for n in counts]


def check_matching(got, logits, boxes, targets, name, hint=None, **weights):
    assert isinstance(got, (list, tuple)) and len(got) == len(targets), \
        f"{name}: expected a list of {len(targets)} (pred_idx, tgt_idx) pairs, one per image, got {got!r}"
    for b, ((src, tgt), target) in enumerate(zip(got, targets)):
        w = {"w_class": weights.get("cost_class", 1.0), "w_bbox": weights.get("cost_bbox", 5.0),
             "w_giou": weights.get("cost_giou", 2.0)}
        rows, cols = linear_sum_assignment(reference_cost(logits[b], boxes[b], target["labels"], target["boxes"], **w))
        for what, idx in (("pred_idx", src), ("tgt_idx", tgt)):
            assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64, \
                f"{name}, image {b}: expected {what} as an int64 tensor, got {idx!r}\nhint: torch.as_tensor(..., dtype=torch.int64)"
        order = torch.argsort(src)
        check_equal(src[order], torch.as_tensor(rows, dtype=torch.int64), name=f"{name}, image {b}: pred_idx",
                    hint=hint or "the optimal assignment of linear_sum_assignment on this image's cost, not a greedy argmin")
        check_equal(tgt[order], torch.as_tensor(cols, dtype=torch.int64), name=f"{name}, image {b}: tgt_idx", hint=hint)


g = torch.Generator().manual_seed(0)
logits, boxes = random_predictions(g, 3, 6, 3)
targets = random_targets(g, [3, 0, 2], 3)
check_close(matching_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"]),
            reference_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"]), name="matching_cost",
            inputs={"logits": logits[0], "boxes": boxes[0], "target": targets[0]},
            hint="-1 * softmax probability of the target class + 5 * L1 on cxcywh - 2 * GIoU on xyxy")
TERM_HINTS = {"class": "minus the softmax probability (not the log, not the raw logit) of each target's class",
              "L1": "torch.cdist(pred_boxes, tgt_boxes, p=1) on the cxcywh boxes",
              "GIoU": "minus your generalized_box_iou of the boxes converted to xyxy"}
for term, (wc, wb, wg) in {"class": (1.0, 0.0, 0.0), "L1": (0.0, 1.0, 0.0), "GIoU": (0.0, 0.0, 1.0)}.items():
    check_close(matching_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"], cost_class=wc,
                              cost_bbox=wb, cost_giou=wg),
                reference_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"], wc, wb, wg),
                name=f"the {term} term of matching_cost alone (weights {wc}, {wb}, {wg})", hint=TERM_HINTS[term])
check_shape(matching_cost(logits[1], boxes[1], targets[1]["labels"], targets[1]["boxes"]), (6, 0),
            name="matching_cost with no targets")
# as in training: predictions that require a gradient; one image without objects
logits.requires_grad_(True)
boxes.requires_grad_(True)
check_matching(hungarian_match(logits, boxes, targets), logits.detach(), boxes.detach(), targets, "hungarian_match",
               hint="run the matching under torch.no_grad(); match each image on its own cost")
w = dict(cost_class=2.0, cost_bbox=1.0, cost_giou=3.0)
check_matching(hungarian_match(logits, boxes, targets, **w), logits.detach(), boxes.detach(), targets,
               "hungarian_match(cost_class=2, cost_bbox=1, cost_giou=3)", **w)
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(1)
logits, boxes = random_predictions(g, 1, 8, 4)
targets = random_targets(g, [5], 4)
w = dict(cost_class=2.0, cost_bbox=1.0, cost_giou=3.0)
check_close(matching_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"], *w.values()),
            reference_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"], 2.0, 1.0, 3.0),
            name="matching_cost with weights (2, 1, 3)", hint="use cost_class, cost_bbox and cost_giou")
check_matching(hungarian_match(logits, boxes, targets, **w), logits, boxes, targets, "hungarian_match(weights 2, 1, 3)", **w)
# a case where greedy per-row / per-column choice differs from the optimum
logits = torch.zeros(1, 3, 2)
boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]]])
targets = [{"labels": torch.tensor([0, 0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.53, 0.5, 0.2, 0.2]])}]
check_matching(hungarian_match(logits, boxes, targets), logits, boxes, targets, "two predictions near two objects",
               hint="each target gets a different prediction: use linear_sum_assignment")
# batched, with images without targets, as many targets as queries
g = torch.Generator().manual_seed(2)
counts = [0, 4, 1, 0, 6, 2]
logits, boxes = random_predictions(g, len(counts), 6, 3)
targets = random_targets(g, counts, 3)
batched = hungarian_match(logits, boxes, targets)
check_matching(batched, logits, boxes, targets, "hungarian_match on 6 images (two without objects)")
for b in range(len(counts)):
    single = hungarian_match(logits[b:b + 1], boxes[b:b + 1], targets[b:b + 1])[0]
    check_equal(batched[b][0], single[0], name=f"image {b} matched in a batch vs alone",
                hint="match each image on its own cost")
    check_shape(batched[b][0], (counts[b],), name=f"pred_idx of image {b} with {counts[b]} targets")
check_shape(matching_cost(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"]), (6, 0),
            name="matching_cost with no targets")
### END HIDDEN TESTS

# %% [markdown] id="ex3-md"
# ## 4. The set loss (exercise 3, 3 points)
#
# Given the matching $\hat\sigma$, the loss for a batch has three terms:
#
# * **classification**: every one of the $B \cdot Q$ predictions has a target class — its matched
#   object's class, or $\varnothing$ (index $C$) if unmatched. Most queries are unmatched, so the
#   $\varnothing$ class is **down-weighted** by `eos_coef` $= 0.1$: a weighted cross-entropy
#   `F.cross_entropy(logits, classes, weight=w)` with $w = (1, \dots, 1, \texttt{eos\_coef})$, averaged
#   as PyTorch does (divided by the sum of the weights);
# * **L1**: $\sum \lVert \hat b_{\hat\sigma(j)} - b_j \rVert_1$ over the **matched pairs only**, on normalised $(c_x, c_y, w, h)$;
# * **GIoU**: $\sum \big(1 - \mathrm{GIoU}(\hat b_{\hat\sigma(j)}, b_j)\big)$ over the matched pairs (boxes in `xyxy`).
#
# The two box losses are divided by the number of target boxes **in the whole batch** (at least 1),
# not by the number of queries: each object counts the same whatever the batch.
#
# Write `set_criterion(pred_logits, pred_boxes, targets, indices, num_classes, eos_coef=0.1)` returning
# `{"loss_ce": ..., "loss_bbox": ..., "loss_giou": ...}` (unweighted 0-d tensors; `detr_loss` multiplies
# them by $\lambda_{\text{class}}, \lambda_{L1}, \lambda_{\text{giou}}$). Each term is tested on its own,
# with its gradient: `loss_ce` trains the logits, `loss_bbox` and `loss_giou` the boxes (no `.detach()`),
# and an unmatched query gets no box gradient. Use `eos_coef` as given. A batch without any object
# gives box losses of 0. Use your `generalized_box_iou`; loops over the images are fine.

# %% id="ex3-criterion" role="solution"
def set_criterion(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict],
                  indices: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                  eos_coef: float = 0.1) -> dict[str, torch.Tensor]:
    """(B, Q, C+1) logits, (B, Q, 4) cxcywh, B targets, B (pred_idx, tgt_idx) -> dict of 3 scalar losses."""
    ### BEGIN SOLUTION
    B, Q, _ = pred_logits.shape
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])  # (M,)
    src_idx = torch.cat([src for src, _ in indices])  # (M,)
    classes = torch.full((B, Q), num_classes, dtype=torch.int64, device=pred_logits.device)  # (B, Q)
    classes[batch_idx, src_idx] = torch.cat([t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)])
    weight = torch.ones(num_classes + 1, device=pred_logits.device)
    weight[num_classes] = eos_coef
    loss_ce = F.cross_entropy(pred_logits.transpose(1, 2), classes, weight=weight)
    matched = pred_boxes[batch_idx, src_idx]  # (M, 4)
    tgt_boxes = torch.cat([t["boxes"][tgt] for t, (_, tgt) in zip(targets, indices)])  # (M, 4)
    loss_bbox = (matched - tgt_boxes).abs().sum() / num_boxes
    giou = torch.diag(generalized_box_iou(ops.box_convert(matched, "cxcywh", "xyxy"),
                                          ops.box_convert(tgt_boxes, "cxcywh", "xyxy")))  # (M,)
    loss_giou = (1 - giou).sum() / num_boxes
    return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
    ### END SOLUTION


# %% id="test-criterion" role="tests" points=3
# Exercise 3: 3 points, all or nothing. Every term is checked below on its own, with its gradient;
# the hidden tests add more cases (random batches, other eos_coef), no new requirements.
def reference_criterion(logits, boxes, targets, indices, C, eos_coef=0.1):
    B, Q, _ = logits.shape
    classes = torch.full((B, Q), C, dtype=torch.int64)
    l1 = giou_loss = 0.0
    for b, (src, tgt) in enumerate(indices):
        for i, j in zip(src.tolist(), tgt.tolist()):
            classes[b, i] = targets[b]["labels"][j]
            l1 = l1 + (boxes[b, i] - targets[b]["boxes"][j]).abs().sum()
            pair = ops.box_convert(torch.stack([boxes[b, i], targets[b]["boxes"][j]]), "cxcywh", "xyxy")
            giou_loss = giou_loss + 1 - ops.generalized_box_iou(pair[:1], pair[1:])[0, 0]
    weight = torch.ones(C + 1)
    weight[C] = eos_coef
    n = max(sum(len(t["labels"]) for t in targets), 1)
    ce = torch.nn.CrossEntropyLoss(weight=weight)(logits.reshape(B * Q, -1), classes.reshape(-1))
    return {"loss_ce": ce, "loss_bbox": l1 / n, "loss_giou": giou_loss / n}


def check_criterion(logits, boxes, targets, indices, C, name, eos_coef=0.1):
    got = set_criterion(logits, boxes, targets, indices, C, eos_coef)
    want = reference_criterion(logits, boxes, targets, indices, C, eos_coef)
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        check_close(got[key], want[key], name=f"{name}: {key}", inputs={"indices": indices},
                    hint={"loss_ce": "every query has a class (C if unmatched); weight=... with eos_coef for class C",
                          "loss_bbox": "sum of |pred - target| over matched pairs, divided by the number of target boxes",
                          "loss_giou": "sum of 1 - GIoU over matched pairs, divided by the number of target boxes"}[key])


g = torch.Generator().manual_seed(0)
logits = torch.randn(3, 5, 4, generator=g, requires_grad=True)
boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 0.3, 0.1], [0.7, 0.2, 0.1, 0.2], [0.4, 0.6, 0.2, 0.3],
                      [0.2, 0.8, 0.1, 0.1]]).repeat(3, 1, 1).requires_grad_(True)
# image 0: two objects (matched to queries 4 and 0, in that order), image 1: one object, image 2: none
targets = [{"labels": torch.tensor([2, 0]), "boxes": torch.tensor([[0.32, 0.3, 0.2, 0.25], [0.2, 0.8, 0.15, 0.1]])},
           {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.55, 0.3, 0.12]])},
           {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
indices = [(torch.tensor([4, 0]), torch.tensor([1, 0])), (torch.tensor([1]), torch.tensor([0])),
           (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))]
check_criterion(logits, boxes, targets, indices, 3, "set_criterion")
check_criterion(logits, boxes, targets, indices, 3, "set_criterion with eos_coef=0.5", eos_coef=0.5)
losses = set_criterion(logits, boxes, targets, indices, 3)
check_grad_flows({"loss_ce": losses["loss_ce"]}, {"pred_logits": logits}, name="set_criterion's class term",
                 hint="cross-entropy of the logits themselves (no .detach())")
check_grad_flows({"loss_bbox": losses["loss_bbox"], "loss_giou": losses["loss_giou"]}, {"pred_boxes": boxes},
                 name="set_criterion's box terms", hint="both box terms from pred_boxes (no .detach(), no torch.no_grad())")
unmatched = torch.ones(3, 5, dtype=torch.bool)
for b, (src, _) in enumerate(indices):
    unmatched[b, src] = False
for key in ("loss_bbox", "loss_giou"):
    grad = torch.autograd.grad(losses[key], boxes, retain_graph=True)[0]
    check_close(grad[unmatched].abs().sum(), torch.tensor(0.0), name=f"{key}: gradient w.r.t. the boxes of unmatched queries",
                hint="box losses apply to matched pairs only")
no_objects = [targets[2]] * 2
no_match = [indices[2]] * 2
check_criterion(logits[:2], boxes[:2], no_objects, no_match, 3, "set_criterion on a batch without objects", eos_coef=0.2)
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(1)
counts = [0, 3, 6, 1]
logits = torch.randn(4, 6, 3, generator=g, requires_grad=True)
boxes = torch.cat([0.2 + 0.6 * torch.rand(4, 6, 2, generator=g), 0.05 + 0.3 * torch.rand(4, 6, 2, generator=g)], -1)
boxes.requires_grad_(True)
targets = [{"labels": torch.randint(0, 2, (n,), generator=g),
            "boxes": torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g), 0.05 + 0.3 * torch.rand(n, 2, generator=g)], -1)}
           for n in counts]
indices = [(torch.randperm(6, generator=g)[:n], torch.randperm(n, generator=g)) for n in counts]
check_criterion(logits, boxes, targets, indices, 2, "set_criterion on 4 images (one without objects)")
check_criterion(logits, boxes, targets, indices, 2, "set_criterion with eos_coef=0.5", eos_coef=0.5)
losses = set_criterion(logits, boxes, targets, indices, 2)
sum(losses.values()).backward()
assert boxes.grad is not None and logits.grad is not None, "the losses must be differentiable w.r.t. logits and boxes"
unmatched = torch.ones(4, 6, dtype=torch.bool)
for b, (src, _) in enumerate(indices):
    unmatched[b, src] = False
check_close(boxes.grad[unmatched].abs().sum(), 0.0, name="box gradient of unmatched queries",
            hint="box losses apply to matched pairs only")
empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
none = [(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))] * 2
check_criterion(torch.randn(2, 3, 4, generator=g), torch.rand(2, 3, 4, generator=g) * 0.5 + 0.2, empty, none, 3,
                "set_criterion on a batch without objects", eos_coef=0.2)
### END HIDDEN TESTS

# %% [markdown] id="model-md"
# ## 5. A small DETR
#
# `course_utils.models.detr.SmallDETR` follows the paper's figure 2 at toy scale:
#
# 1. a conv **backbone** of stride 8 (64×64 image → 8×8 feature map), projected to $d = 64$ channels;
# 2. the $8 \cdot 8 = 64$ positions become a sequence of tokens, plus a fixed 2-D **sine positional
#    encoding** (attention alone does not know where a token is);
# 3. a 2-layer **transformer encoder** (self-attention among the 64 tokens: every position sees the
#    whole image);
# 4. a 3-layer **decoder**: $Q$ learned query vectors attend to each other (self-attention: this is
#    how a query learns that another query already took an object) and to the encoder's tokens
#    (**cross-attention**: where to look);
# 5. shared heads on each query: a linear layer → $C + 1$ class logits, a 3-layer MLP → a box.
#
# Three accelerants, all from later DETR variants and all keeping the core of DETR (a fixed set of
# queries, one-to-one matching, no NMS), make it train in minutes instead of days. They are **not**
# anchor-free: the first two give every query a position on a 3×3 grid to start from, i.e. a learned
# **anchor point** (DAB-DETR calls its queries "anchor boxes"). Unlike a detector's anchors they are
# few (9), learned, and assigned to objects by the Hungarian matching rather than by IoU rules:
#
# * **reference points**: each query owns a learned point $(x, y)$ (initialised on a 3×3 grid); its
#   positional query is an MLP of the point's sine encoding and it predicts its box centre as an offset
#   from the point (DAB-DETR, S. Liu et al., ICLR 2022); each decoder layer starts from the previous
#   layer's box (iterative refinement, Deformable DETR, X. Zhu et al., ICLR 2021);
# * a **Gaussian spatial prior** added to the cross-attention logits around that point, as wide as
#   the box predicted so far (SMCA, P. Gao et al., ICCV 2021): a query looks near its box from the start
#   instead of having to learn where to look;
# * **auxiliary losses**: the heads run after *every* decoder layer, and each layer's predictions are
#   matched and penalised on their own, so the lower layers get a direct signal (the DETR paper, section 3.2).
#
# `build_small_detr(..., spatial_prior=False)` removes the Gaussian prior (the reference points
# remain); this lab trains only the default model, with the prior.
#
# `detr_loss` below runs **your** `hungarian_match` and `set_criterion` on every layer's output and
# adds the terms with the weights $(\lambda_{\text{class}}, \lambda_{L1}, \lambda_{\text{giou}}) = (2, 5, 2)$ — the
# same weights in the matching cost and in the loss; a class weight of 2 rather than the paper's 1 makes
# the class term count more early on, when the boxes are still far off.

# %% id="model" role="readonly"
NUM_QUERIES = 9
model = build_small_detr(NUM_CLASSES, NUM_QUERIES)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {NUM_QUERIES} queries, {NUM_CLASSES} classes + no-object")
out = model(example_images)
print({k: tuple(v.shape) for k, v in out.items() if k != "aux_outputs"}, f"+ {len(out['aux_outputs'])} auxiliary outputs")


def criterion(outputs, targets):
    return detr_loss(outputs, targets, NUM_CLASSES, eos_coef=0.1, weights=(2.0, 5.0, 2.0),
                     match=hungarian_match, loss=set_criterion)


print("loss at initialisation:", {k: round(v.item(), 3) for k, v in criterion(out, example_targets).items()})

# %% [markdown] id="overfit-md"
# ## 6. First, overfit one batch
#
# DETR is known to train slowly (the paper trains 500 epochs on COCO). Before a long run, check that
# the whole pipeline — matching, losses, heads — can at least **memorise** 8 images: the loss must
# fall close to zero and the predictions land on the objects. If it cannot, no amount of training
# will help: look for a bug first.

# %% id="overfit" role="readonly"
batch_set = ShapesDataset(8, IMAGE_SIZE, seed=0)  # the first 8 training images, without flips
one_batch = collate([batch_set[i] for i in range(8)])
tiny = build_small_detr(NUM_CLASSES, NUM_QUERIES)
optimizer = torch.optim.AdamW(tiny.parameters(), lr=1e-3, weight_decay=1e-4)
overfit_history = fit(tiny, [one_batch], optimizer, steps(fast=150, full=300), loss_fn=criterion,
                      grad_clip=0.1, seed=0, device=DEVICE, log_every=10, progress=False)
tiny.eval()
with torch.no_grad():
    memorised = postprocess(tiny(one_batch[0].to(DEVICE)), (IMAGE_SIZE, IMAGE_SIZE))
fig, axes = plt.subplots(1, 5, figsize=(16, 3.2))
viz.plot_history(overfit_history, log=True, ax=axes[0]).set_title("one batch: loss")
for i, ax in enumerate(axes[1:]):
    keep = memorised[i]["scores"] > 0.5
    viz.show_sample(*batch_set[i], class_names=CLASS_NAMES, masks=False, ax=ax)
    viz.draw_boxes(None, memorised[i]["boxes"][keep], memorised[i]["labels"][keep], memorised[i]["scores"][keep],
                   class_names=CLASS_NAMES, colour="white", linestyle="--", ax=ax, title=f"{int(keep.sum())} predictions > 0.5")
fig.tight_layout()
print(f"loss: {overfit_history['loss'][0]:.2f} -> {overfit_history['loss'][-1]:.2f}")

# %% [markdown] id="train-md"
# ## 7. Training
#
# Now the real run on the training set: AdamW, gradient clipping at 0.1 (as in the paper), a
# one-cycle learning-rate schedule. The losses are summed over the 3 decoder layers.

# %% id="train" role="readonly"
STEPS = steps(fast=500, full=20000)
model = build_small_detr(NUM_CLASSES, NUM_QUERIES)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=max(STEPS, 3), pct_start=0.1)
history = fit(model, DataLoader(train_set, batch_size=32, shuffle=True, collate_fn=collate), optimizer, STEPS,
              loss_fn=criterion, scheduler=scheduler, grad_clip=0.1, seed=0, device=DEVICE, log_every=25)
if MODE != "smoke":  # lab 07 starts its DETR from these weights (see checkpoint_path)
    save_cached(checkpoint_path("06_detr", "detr"), model, {"mode": MODE, "steps": STEPS})
viz.plot_history(history, log=True).set_title("DETR losses (summed over decoder layers)")


# %% [markdown] id="eval-md"
# ## 8. Evaluation: every query is a detection, no NMS
#
# `postprocess` turns each query into one detection: its box in pixels, its best object class and
# that class's probability as the score. All $Q$ queries of every image go to COCO's evaluation —
# low-scored "no object" queries only add low-ranked false positives.

# %% id="evaluate" role="readonly"
@torch.no_grad()
def detect(model, images, layer=-1):
    model.eval()
    out = model(images.to(DEVICE))
    if layer != -1:
        out = out["aux_outputs"][layer]
    return postprocess(out, (IMAGE_SIZE, IMAGE_SIZE))


test_images, test_targets = collate([test_set[i] for i in range(len(test_set))])
detections = []
for chunk in test_images.split(100):
    detections += detect(model, chunk)
gt_coco = test_set.to_coco()
result = coco_eval(gt_coco, detections_to_coco(list(range(len(test_set))), detections))
print(result.summary())
mAP50 = record("06_detr/mAP50", result.named["AP50"])
mAP = record("06_detr/mAP", result.named["AP"])

fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
for i, ax in enumerate(axes):
    keep = detections[i]["scores"] > 0.5
    viz.show_sample(*test_set[i], class_names=CLASS_NAMES, masks=False, ax=ax)
    viz.draw_boxes(None, detections[i]["boxes"][keep], detections[i]["labels"][keep], detections[i]["scores"][keep],
                   class_names=CLASS_NAMES, colour="white", linestyle="--", ax=ax, title=f"{int(keep.sum())} detections > 0.5")
fig.tight_layout()

# %% [markdown] id="nms-md"
# ### Does DETR need NMS?
#
# The paper (section 4.2, figure 4) finds that NMS helps the predictions of the **first** decoder
# layer, which still contain duplicates, and stops helping at the last layers, where self-attention
# between queries has removed them. Our auxiliary heads give predictions after every layer, so we can
# check: AP50 per decoder layer, with and without class-wise NMS at IoU 0.5. With our reference
# points, spatial prior and only 9 queries, even the first layer has few duplicates, so expect small
# differences everywhere: read the table rather than the paper.

# %% id="nms" role="readonly"
rows = []
for layer in range(len(model.decoder_layers)):
    dets = []
    for chunk in test_images.split(100):
        dets += detect(model, chunk, layer=layer if layer < len(model.decoder_layers) - 1 else -1)
    with_nms = []
    for d in dets:
        keep = ops.batched_nms(d["boxes"], d["scores"], d["labels"], 0.5)
        with_nms.append({k: v[keep] for k, v in d.items()})
    ids = list(range(len(test_set)))
    rows.append((coco_eval(gt_coco, detections_to_coco(ids, dets)).named["AP50"],
                 coco_eval(gt_coco, detections_to_coco(ids, with_nms)).named["AP50"]))
print(f"{'decoder layer':>14}{'AP50':>8}{'AP50 + NMS':>12}")
for layer, (without_nms, nms) in enumerate(rows, 1):
    print(f"{layer:>14}{without_nms:>8.3f}{nms:>12.3f}")
record("06_detr/first_layer_nms_gain", rows[0][1] - rows[0][0])
record("06_detr/last_layer_nms_gain", rows[-1][1] - rows[-1][0])

# %% [markdown] id="written-md"
# ### Written question (2 points, graded by hand)
#
# Answer in the cell below in a few sentences, **quoting your numbers** (the table above and the
# AP50 of the evaluation):
#
# 1. How much does NMS add to AP50 after the first decoder layer, and after the last? Does the
#    model's final output need NMS?
# 2. What in DETR's **training** makes a duplicate detection costly, and what in its
#    **architecture** lets a query know that another query has already taken an object? Why does
#    that work better at the last layer than at the first?
# 3. When could NMS even *hurt* DETR's last layer?

# %% [markdown] id="written-answer" role="answer" points=2
# ### BEGIN SOLUTION
# (Numbers from the instructor's fast-mode run on a 2-core CPU; yours differ a little.)
#
# 1. NMS adds 0.010 AP50 after the first decoder layer and 0.005 after the last, where AP50 is 0.85
#    without it: half a point. YOLO and RetinaNet, by contrast, output many overlapping boxes per
#    object and rely on NMS to remove them (lab 02, section 7). The final output does not need NMS.
# 2. Training: the Hungarian matching is **one-to-one**, so each object is matched to exactly one
#    query; a second query predicting the same object is matched to "no object" and its class loss
#    pushes its score down — duplicates are penalised by the loss itself, whereas a dense detector's
#    IoU rule makes every anchor near an object a positive, so they all learn to fire. Architecture:
#    the decoder's **self-attention among the queries** lets each query see what the others predict,
#    layer after layer; after the first layer the queries have exchanged information only once, so
#    some duplicates remain (there the gain is largest), and each further layer removes more. Here
#    even the first layer has few duplicates because the 9 queries start from reference points
#    spread on a 3×3 grid with a spatial prior: they rarely look at the same object.
# 3. When two objects of the same class overlap (IoU above the NMS threshold of 0.5), NMS removes
#    the lower-scored of two correct detections: a lost true positive. The DETR paper (section 4.2)
#    sees exactly this, a small loss of AP from NMS at the last layers.
#
# **Rubric (2 points).** 1 point: quotes the gains at the first and last layer (and the AP50), and
# concludes that the last layer needs no NMS. 1 point: names one-to-one matching (a duplicate is
# matched to "no object" and penalised) *and* self-attention between queries (layer after layer,
# hence the first layer's larger gain); question 3 (NMS suppressing a true positive on overlapping
# same-class objects) can make up for a weaker part. Numbers that are not the student's own, or no
# numbers: at most 1 point.
# ### END SOLUTION


# %% [markdown] id="attention-md"
# ## 9. Inside the decoder: where does each query look?
#
# The decoder's **cross-attention** weights say, for each query, how much each of the $8 \times 8$
# encoder positions contributes to its output. Below, for two test images, the last layer's attention
# (averaged over heads) of the four highest-scoring queries, upsampled onto the image, with each
# query's box and score. A score near 0 is a query that predicts "no object": it still looks
# somewhere, usually at its own region. Two queries on one object (one confident, one less) are the
# near-duplicates that the matching teaches the decoder to suppress.
#
# The paper (figure 6) finds that, at full resolution, the decoder attends to the **extremities** of
# objects (legs, heads: what fixes the box). Here, on an 8×8 map and with the Gaussian prior, the
# attention is a blob around the object.

# %% id="attention" role="readonly"
def show_attention(index, max_queries=4):
    image = test_images[index:index + 1]
    with torch.no_grad():
        det = detect(model, image)[0]
        attention = model.cross_attention()[-1, 0]  # (Q, h, w) of the last decoder layer
    queries = torch.argsort(det["scores"], descending=True)[:max_queries]
    fig, axes = plt.subplots(1, len(queries) + 1, figsize=(3.2 * (len(queries) + 1), 3.2))
    viz.show_sample(*test_set[index], class_names=CLASS_NAMES, masks=False, ax=axes[0])
    for ax, q in zip(axes[1:], queries.tolist()):
        heat = F.interpolate(attention[q][None, None], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")[0, 0]
        ax.imshow(viz.to_hwc(image[0]))
        ax.imshow(heat.cpu(), alpha=0.6, cmap="magma")
        viz.draw_boxes(None, det["boxes"][q:q + 1], det["labels"][q:q + 1], det["scores"][q:q + 1],
                       class_names=CLASS_NAMES, colour="white", ax=ax, title=f"query {q}")
    fig.tight_layout()


for index in range(2):
    show_attention(index)

# %% [markdown] id="queries-md"
# ## 10. What does each query specialise in?
#
# In the paper's DETR (no reference points, no prior) the queries *learn* to specialise: each one
# ends up predicting boxes in **its own region** and of its own typical sizes (its figure 7). As
# there, we plot the centre of every box each query predicts on the test set (score > 0.3), coloured
# by box size, with the query's reference point at initialisation (`+`, the 3×3 grid) and after
# training (`×`). The number printed below, `centre spread`, compares how scattered one query's
# centres are with how scattered all centres are: well below 1 means the queries divided the image
# between them.
#
# Read it with care: **here the division is built in, not only learned.** Each query starts from its
# own grid point, predicts its centre as an offset from that point, and (with the Gaussian prior)
# looks mostly around it; a low spread is what this design produces from the first steps. The figure
# therefore shows how far the queries stayed near (or moved from) their anchor points, not that the
# specialisation emerged on its own as in the paper. The contrast would be a model trained with
# `spatial_prior=False` (and reference points not on a grid); this lab does not train it, so we make
# no claim about what it would show.

# %% id="queries" role="readonly"
all_boxes = torch.stack([d["boxes"] for d in detections]) / IMAGE_SIZE  # (N, Q, 4) xyxy in [0, 1]
all_scores = torch.stack([d["scores"] for d in detections])  # (N, Q)
centres = (all_boxes[..., :2] + all_boxes[..., 2:]) / 2  # (N, Q, 2)
areas = (all_boxes[..., 2] - all_boxes[..., 0]) * (all_boxes[..., 3] - all_boxes[..., 1])  # (N, Q)
confident = all_scores > 0.3
side = int(np.ceil(np.sqrt(NUM_QUERIES)))  # the reference points start at the cell centres of a side x side grid
initial_points = (torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), -1)
                  .reshape(-1, 2)[:NUM_QUERIES].float() + 0.5) / side  # (Q, 2) as SmallDETR initialises them
learned_points = model.reference_points.weight.detach().sigmoid().cpu()  # (Q, 2) (cx, cy) after training
cols = 3 if NUM_QUERIES <= 9 else 4
fig, axes = plt.subplots((NUM_QUERIES + cols - 1) // cols, cols, figsize=(2.6 * cols, 2.6 * ((NUM_QUERIES + cols - 1) // cols)))
spreads = []
for q, ax in enumerate(axes.flat):
    if q >= NUM_QUERIES:
        ax.axis("off")
        continue
    mine = confident[:, q]
    ax.scatter(centres[mine, q, 0], centres[mine, q, 1], c=areas[mine, q], cmap="viridis", vmin=0, vmax=0.15, s=6)
    ax.plot(*initial_points[q].tolist(), "r+", markersize=10)
    ax.plot(*learned_points[q].tolist(), "rx", markersize=8)
    ax.set_xlim(0, 1); ax.set_ylim(1, 0); ax.set_xticks([]); ax.set_yticks([]); ax.set_aspect("equal")
    ax.set_title(f"query {q}: {int(mine.sum())} boxes", fontsize=9)
    if mine.sum() > 1:
        spreads.append((int(mine.sum()), centres[mine, q].std(0).mean()))
fig.suptitle("predicted box centres per query (colour: box area, yellow = large; +: reference point at init, x: learned)")
fig.tight_layout()
overall = centres[confident].std(0).mean() if confident.sum() > 1 else torch.tensor(float("nan"))
spread = float(sum(n * s for n, s in spreads) / sum(n for n, _ in spreads) / overall) if spreads else float("nan")
print(f"centre spread of one query / of all queries: {spread:.2f}")
if np.isfinite(spread):
    record("06_detr/query_centre_spread", spread)

# %% [markdown] id="full-md"
# ## 11. Full mode: the authors' DETR-R50 on real images
#
# With `COURSE_MODE=full` (a GPU and internet), this cell loads the public DETR with a ResNet-50
# backbone (42.0 AP on COCO val2017, trained for 500 epochs on 16 GPUs): the network is defined in
# `course_utils.models.detr_r50`, the authors' weights are downloaded once and checked against their
# published sha256. It runs it on the COCO val2017 images fetched by
# `python -m data_scripts.download coco_val2017`, scores it with COCO mAP and shows its decoder
# attention on a real image. In other modes, or offline, it says what it would do.

# %% id="full" role="readonly"
from course_utils.data.real import COCOSubset, dataset_root
from course_utils.models import WeightsUnavailable
from course_utils.models.detr import load_detr_resnet50

if MODE != "full":
    print(f"[course_utils.models] {MODE} mode: skipping the pretrained DETR-R50 (set COURSE_MODE=full to run it)")
else:
    coco = COCOSubset(dataset_root("coco_val2017"), max_images=200)
    print(f"COCO val2017 subset: {len(coco)} images, {coco.num_classes} classes")
    try:
        detr_r50 = load_detr_resnet50().to(DEVICE)
    except WeightsUnavailable as err:
        detr_r50 = None
        print(f"[course_utils.models] offline? {err}\n[course_utils.models] would run the pretrained DETR-R50 on "
              f"{len(coco)} COCO val2017 images: COCO mAP and decoder attention maps on real images")
    if detr_r50 is not None:
        mean = torch.tensor([0.485, 0.456, 0.406], device=DEVICE)[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225], device=DEVICE)[:, None, None]
        label_of_coco_id = {cat: k + 1 for k, cat in enumerate(coco.cat_ids)}
        coco_dets, image_ids = [], []
        with torch.no_grad():
            for i in range(len(coco)):
                image, target = coco[i]
                h, w = image.shape[-2:]
                det = postprocess(detr_r50(((image.to(DEVICE) - mean) / std)[None]), (h, w))[0]
                known = torch.tensor([int(c) in label_of_coco_id for c in det["labels"] - 1], dtype=torch.bool)
                det = {k: v[known] for k, v in det.items()}
                det["labels"] = torch.tensor([label_of_coco_id[int(c)] for c in det["labels"] - 1], dtype=torch.int64)
                coco_dets.append(det)
                image_ids.append(target["image_id"])
        r50 = coco_eval(coco.to_coco(), detections_to_coco(image_ids, coco_dets))
        print(r50.summary())
        record("06_detr/detr_r50_coco_mAP", r50.named["AP"])
        # decoder attention of the most confident queries on the first image, from a hook
        image, _ = coco[0]
        maps, features = [], []
        hooks = [detr_r50.transformer.decoder.layers[-1].multihead_attn.register_forward_hook(
                     lambda m, i, o: maps.append(o[1])),
                 detr_r50.backbone[0].register_forward_hook(lambda m, i, o: features.append(o["0"]))]
        with torch.no_grad():
            out = detr_r50(((image.to(DEVICE) - mean) / std)[None])
        for hook in hooks:
            hook.remove()
        h, w = features[0].shape[-2:]
        det = postprocess(out, image.shape[-2:])[0]
        top = torch.argsort(det["scores"], descending=True)[:4]
        fig, axes = plt.subplots(1, len(top), figsize=(4 * len(top), 3.5))
        for ax, q in zip(np.atleast_1d(axes), top.tolist()):
            ax.imshow(maps[0][0, q].reshape(h, w).cpu(), cmap="magma")
            ax.set_title(f"query {q}: {coco.class_names[label_of_coco_id.get(int(det['labels'][q]) - 1, 1) - 1]} "
                         f"{det['scores'][q]:.2f}")
            ax.axis("off")
        fig.tight_layout()

# %% [markdown] id="outro"
# **What to take away.** DETR states detection as what it is — predicting a *set* — and gets rid of
# anchors, assignment heuristics and NMS: the Hungarian matching makes every object the
# responsibility of exactly one query, and the decoder's self-attention lets the queries agree on
# who takes what. The price is training time: the matching is unstable early on (a query may be
# matched to a different object at every step), and the attention must learn from scratch where to
# look. The follow-ups attack exactly that: Deformable DETR (X. Zhu et al., ICLR 2021: sparse
# attention around reference points), Conditional DETR (D. Meng et al., ICCV 2021), DAB-DETR (S. Liu
# et al., ICLR 2022: queries as boxes), DN-DETR (F. Li et al., CVPR 2022: denoising queries), DINO
# (H. Zhang et al., ICLR 2023) — which converge in 12 to 50 epochs. Several of them, like the small
# DETR of this lab, bring back a learned form of anchors (reference points or boxes per query): few,
# learned, and still matched one-to-one, without NMS.
#
# **References.** N. Carion et al., *End-to-End Object Detection with Transformers*, ECCV 2020.
# H. Rezatofighi et al., *Generalized Intersection over Union*, CVPR 2019. H. W. Kuhn, *The Hungarian
# method for the assignment problem*, Naval Research Logistics Quarterly 1955. A. Vaswani et al.,
# *Attention is all you need*, NeurIPS 2017.
