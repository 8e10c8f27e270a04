# %% [markdown] id="intro"
# <!-- COLAB_BADGE: notebook_src/build.py puts the Open-in-Colab badge here -->
#
# # Lab 03 — RetinaNet: anchors, a feature pyramid and the focal loss
#
# *CNNs part II — beyond image classification.*
#
# YOLO v1 (lab 02) predicts from one coarse grid, one object per cell. It fails on small and crowded
# objects. **RetinaNet** (T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, *Focal Loss for Dense
# Object Detection*, ICCV 2017) is a one-stage detector that is as accurate as the two-stage ones of
# its time, thanks to three ingredients:
#
# * **anchors**: at every position of a feature map, $A = 9$ reference boxes (3 sizes × 3 aspect
#   ratios). For every anchor the network predicts $K$ class probabilities and 4 numbers that move
#   and stretch the anchor onto an object;
# * a **Feature Pyramid Network** (FPN; T.-Y. Lin et al., CVPR 2017): feature maps at strides 8 to
#   128 ($P_3$ to $P_7$), each with anchors sized for it — small objects are found on the fine maps,
#   large ones on the coarse maps;
# * the **focal loss**: a dense detector scores $10^4$–$10^5$ anchors per image, almost all of them
#   easy background. With plain cross-entropy, their many small losses swamp the few objects. The
#   focal loss $-(1 - p_t)^\gamma \log p_t$ turns the easy ones down.
#
# You will write the anchors of one feature map (exercise 1), the matching of anchors to objects and
# the box encoding (exercise 2), and the focal loss (exercise 3), each checked against torchvision's
# own implementation. Then you will train torchvision's `RetinaNet` (which is made of exactly these
# pieces) on synthetic shapes with small objects, evaluate it with COCO mAP, and look at which
# pyramid level finds which objects. Last, augmentation for detection: flipping and cropping the
# boxes with the pixels (exercise 4), checked against `torchvision.transforms.v2`.
#
# Run the cells in order. Cells marked *YOUR CODE HERE* are yours; the cells after them check your
# answer (some checks are hidden and run when your lab is graded).

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

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import ops, tv_tensors
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from course_utils import viz
from course_utils.config import by_mode, record, setup, steps
from course_utils.data import COCOSubset, PennFudan, ShapesDataset, dataset_root, detections_to_coco
from course_utils.grading import check_close, check_equal, check_grad_flows, check_raises
from course_utils.metrics import coco_eval
from course_utils.models import (
    anchors_per_level,
    build_retinanet,
    load_pretrained_retinanet,
    octave_sizes,
    only_levels,
    replace_classifier,
)
from course_utils.tensors import plain
from course_utils.train import checkpoint_path, fit, predict, save_cached

SETUP = setup(seed=0)
MODE, DEVICE = SETUP.mode, SETUP.device

# %% [markdown] id="data-md"
# ## 1. Data: objects of many sizes
#
# The synthetic shapes once more, 128×128 pixels, now with 2 to 8 objects per image whose sides range
# from about 9 to 45 pixels: a factor of 5 between the smallest and the largest. COCO calls an object
# **small** when its area is below $32^2$ pixels, **medium** below $96^2$; most of ours are small.

# %% id="data" role="readonly"
IMAGE_SIZE = 128
SHAPES = dict(preset="small", size_range=(0.07, 0.35), min_objects=2, max_objects=8)
train_set = ShapesDataset(by_mode(smoke=32, fast=2000, full=20000), IMAGE_SIZE, seed=0, cache=True, **SHAPES)
test_set = ShapesDataset(by_mode(smoke=8, fast=300, full=1000), IMAGE_SIZE, seed=1, cache=True, **SHAPES)
CLASS_NAMES, NUM_CLASSES = train_set.class_names, train_set.num_classes

sides = torch.cat([test_set[i][1]["area"].sqrt() for i in range(len(test_set))])
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
ax0.axis("off")
for i in range(4):
    viz.show_sample(*train_set[i], class_names=CLASS_NAMES, masks=False, ax=fig.add_subplot(1, 6, i + 1))
ax1.hist(sides.numpy(), bins=30, color="#56B4E9")
ax1.axvline(32, color="k", ls="--", lw=1)
ax1.set_xlabel("sqrt(object area) in pixels"); ax1.set_title("COCO 'small' is left of the line", fontsize=9)
fig.tight_layout()
print(f"{len(sides)} test objects, {float((sides < 32).float().mean()):.0%} of them small by COCO's definition")


# %% [markdown] id="ex1-md"
# ## 2. Anchors (exercise 1, 3 points)
#
# An anchor is a box of a fixed size and shape, placed at every position of a feature map. For a
# feature map of $H \times W$ positions computed with stride $(s_y, s_x)$ (one position every $s$
# pixels of the image), and for each **size** $s$ and **aspect ratio** $r = h / w$, the anchor has
# area $s^2$ and
#
# $$w = \frac{s}{\sqrt{r}}, \qquad h = s \sqrt{r}.$$
#
# We follow torchvision's `AnchorGenerator` exactly, so that your anchors are the model's anchors:
#
# * **the cell anchors.** For the anchors of one position, centred on $(0, 0)$: the corners are
#   $(-w/2, -h/2, w/2, h/2)$, **rounded** to whole pixels (`torch.round`, which rounds halves to
#   even: 6.5 → 6, 7.5 → 8). Their order is
#   ratio-major: all sizes of the first ratio, then all sizes of the second ratio, …
#   (so $A$ = `len(aspect_ratios) * len(sizes)` anchors per position);
# * **the shifts.** The anchors of position (row $i$, column $j$) are the cell anchors shifted by
#   $(j \cdot s_x,\; i \cdot s_y)$: torchvision centres them on the *top-left corner* of their
#   cell, not on its centre;
# * **the order.** Positions row by row (all columns of row 0, then of row 1, …), and for each
#   position its $A$ anchors in the order above. The result is `(H * W * A, 4)` in `xyxy`, float32.
#
# Write `make_anchors(grid_size, stride, sizes, aspect_ratios)`, with `grid_size = (H, W)` and
# `stride = (s_y, s_x)`. `torch.meshgrid(..., indexing="ij")` and broadcasting help. `sizes` and
# `aspect_ratios` are lists or tuples of numbers, not necessarily integers; `H` and `W`, `s_y` and
# `s_x` may differ. You may use torch and math, not torchvision's `AnchorGenerator` (the tests compare
# with it; the grader refuses an answer that uses it).

# %% id="ex1-anchors" role="solution"
def make_anchors(grid_size: tuple[int, int], stride: tuple[int, int], sizes, aspect_ratios) -> torch.Tensor:
    """grid_size (H, W), stride (s_y, s_x) -> anchors (H * W * A, 4) xyxy, A = len(aspect_ratios) * len(sizes)."""
    ### BEGIN SOLUTION
    sizes = torch.as_tensor(sizes, dtype=torch.float32)  # (S,)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)  # (R,)
    h_ratios = ratios.sqrt()
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)  # (R * S,) ratio-major
    hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
    cell = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # (A, 4), centred on (0, 0)
    H, W = grid_size
    ys = torch.arange(H, dtype=torch.float32) * stride[0]
    xs = torch.arange(W, dtype=torch.float32) * stride[1]
    shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)  # (H * W, 1, 4)
    return (shifts + cell[None]).reshape(-1, 4)  # (H * W * A, 4)
    ### END SOLUTION


# %% id="test-anchors" role="tests" points=3
def reference_anchors(grid_size, stride, sizes, aspect_ratios):
    # torchvision's generator on a feature map of grid_size, for an image of grid_size * stride pixels
    (H, W), (sy, sx) = grid_size, stride
    images = ImageList(torch.zeros(1, 3, H * sy, W * sx), [(H * sy, W * sx)])
    return AnchorGenerator((tuple(sizes),), (tuple(aspect_ratios),))(images, [torch.zeros(1, 1, H, W)])[0]


# Exercise 1: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (RetinaNet's levels, float sizes, other ratios), no new requirements.
a = make_anchors((1, 1), (8, 8), [16], [1.0])
check_close(a, torch.tensor([[-8.0, -8.0, 8.0, 8.0]]), name="make_anchors((1, 1), (8, 8), [16], [1.0])",
            hint="one square anchor of side 16 centred on (0, 0)")
a = make_anchors((1, 1), (8, 8), [16], [0.5, 2.0])
check_close(a, reference_anchors((1, 1), (8, 8), [16], [0.5, 2.0]),
            name="make_anchors((1, 1), (8, 8), [16], [0.5, 2.0])",
            inputs={"sizes": [16], "aspect_ratios": [0.5, 2.0]}, hint="aspect ratio = h / w: ratio 2 is a tall box")
a = make_anchors((2, 3), (8, 8), [16, 32], [0.5, 1.0, 2.0])
check_close(a, reference_anchors((2, 3), (8, 8), [16, 32], [0.5, 1.0, 2.0]),
            name="make_anchors((2, 3), (8, 8), [16, 32], [0.5, 1.0, 2.0])",
            hint="positions row by row; at each position ratio-major, then sizes")
# a non-square map (H=3 rows, W=2 columns), strides s_y=16, s_x=8, an odd and a float size
a = make_anchors((3, 2), (16, 8), [13, 20.5], [1.0, 2.0])
check_close(a, reference_anchors((3, 2), (16, 8), [13, 20.5], [1.0, 2.0]),
            name="make_anchors((3, 2), (16, 8), [13, 20.5], [1.0, 2.0])",
            inputs={"grid_size (H, W)": (3, 2), "stride (s_y, s_x)": (16, 8)},
            hint="H rows of W columns; shift (col * s_x, row * s_y); round the half sides with torch.round "
                 "(6.5 -> 6: halves to even); a float32 (H * W * A, 4) tensor")
print("visible checks passed")
### BEGIN HIDDEN TESTS
for grid, stride, sizes, ratios in [
    ((4, 4), (8, 8), (32, 40, 50), (0.5, 1.0, 2.0)),  # RetinaNet's P3
    ((3, 5), (16, 16), (13, 23), (1.0,)),  # odd sizes: rounding of the half sides
    ((5, 2), (8, 16), (10,), (0.25, 1.0, 3.0)),  # non-square map, different strides in y and x
    ((2, 7), (32, 4), (7.5, 21.3, 64), (0.6, 1.7)),  # float sizes
    ((1, 1), (128, 128), (128, 161, 203), (0.5, 1.0, 2.0)),  # P7 of a 128-pixel image
    ((6, 3), (4, 4), (8, 10, 12), (0.5, 1.0, 2.0)),
]:
    got = make_anchors(grid, stride, sizes, ratios)
    want = reference_anchors(grid, stride, sizes, ratios)
    check_close(got, want, atol=1e-4,
                name=f"make_anchors(grid_size={grid}, stride={stride}, sizes={sizes}, aspect_ratios={ratios})",
                hint="w = size / sqrt(ratio), h = size * sqrt(ratio); round the half sides; "
                     "centres at (col * s_x, row * s_y); positions row-major, then ratio, then size")
    assert got.dtype == torch.float32, f"return float32 anchors, got {got.dtype}"
### END HIDDEN TESTS

# %% [markdown] id="pyramid-md"
# ## 3. The feature pyramid and its anchors
#
# One feature map cannot serve every object size: a fine map (small stride) sees small objects in
# detail but its receptive field is too small for large ones; a coarse map has the opposite
# problem. The **Feature Pyramid Network** builds one map per scale from the backbone's stages
# $C_3, C_4, C_5$ (strides 8, 16, 32): a **top-down** path upsamples the coarse, semantically strong
# map and adds a $1\times1$ projection of the finer stage (**lateral connection**), then a $3\times3$
# conv smooths the sum:
#
# $$P_5 = \mathrm{conv}_{3\times3}(\mathrm{conv}_{1\times1} C_5), \qquad
# P_l = \mathrm{conv}_{3\times3}\big(\mathrm{conv}_{1\times1} C_l
#       + \mathrm{upsample}_{\times 2}(\text{inner}_{l+1})\big).$$
#
# RetinaNet adds $P_6$ (a stride-2 conv on $P_5$) and $P_7$ (another one on ReLU($P_6$)). Every level
# has $C = 64$ channels here (256 in the paper), so the **same heads** run on all of them: a
# classification subnet (4 conv layers, then $A \cdot K$ sigmoid outputs per position) and a box
# subnet (4 conv layers, then $4A$ outputs per position).
#
# Level $P_l$ has stride $2^l$. In the paper its anchors have sizes $4 \cdot 2^l \cdot \{2^0, 2^{1/3},
# 2^{2/3}\}$ (32 to 813 pixels, for 800-pixel images). Our images are 128 pixels and our objects
# small, so our anchors are 1.5 strides wide: $1.5 \cdot 2^l \cdot \{2^0, 2^{1/3}, 2^{2/3}\}$, from 12 pixels
# on $P_3$ to about 300 on $P_7$. Below, the model's own anchors, level by level, and what your
# `make_anchors` gives for the same grid.

# %% id="pyramid" role="readonly"
ANCHOR_SCALE, LEVELS, RATIOS = 1.5, (3, 4, 5, 6, 7), (0.5, 1.0, 2.0)
model = build_retinanet(NUM_CLASSES + 1, IMAGE_SIZE, levels=LEVELS, anchor_scale=ANCHOR_SCALE, aspect_ratios=RATIOS)
model_anchors = anchors_per_level(model, IMAGE_SIZE)  # one (H*W*A, 4) tensor per level
LEVEL_SIZES = {level: octave_sizes(ANCHOR_SCALE * 2**level) for level in LEVELS}
print(f"{'level':6}{'stride':>7}{'grid':>8}{'anchor sizes':>16}{'anchors':>9}   your make_anchors")
for level, anchors in zip(LEVELS, model_anchors):
    grid = IMAGE_SIZE // 2**level
    yours = make_anchors((grid, grid), (2**level, 2**level), LEVEL_SIZES[level], RATIOS)
    same = yours.shape == anchors.shape and torch.allclose(yours, anchors)
    print(f"P{level:<5}{2**level:>7}{f'{grid}x{grid}':>8}{str(LEVEL_SIZES[level]):>16}{len(anchors):>9}   "
          + ("identical" if same else "DIFFERENT: check exercise 1"))
print(f"{sum(len(a) for a in model_anchors)} anchors per image, "
      f"{model.head.classification_head.num_anchors} per position")


# %% [markdown] id="ex2-md"
# ## 4. Which anchor learns which object? (exercise 2a, 3 points)
#
# Training needs a target for every anchor. RetinaNet compares each anchor with every ground-truth
# box by IoU:
#
# * an anchor whose **best IoU** with a ground truth is **≥ 0.5** (`fg_iou_thresh`) is **positive**:
#   it must predict that object's class and box;
# * an anchor whose best IoU is **< 0.4** (`bg_iou_thresh`) is **background**: all $K$ class
#   targets are 0;
# * in between, the anchor is **ignored** (no classification loss): it is neither clearly the object
#   nor clearly not.
#
# An object that no anchor overlaps with IoU ≥ 0.5 — a small or oddly shaped one — would get no
# positive anchor at all. With `allow_low_quality_matches=True` (as in RetinaNet): for each ground
# truth, find its highest IoU over all anchors and every anchor that reaches it (ties included);
# each of those anchors becomes positive, matched to **its own** best ground truth (the ground truth
# with which it has its highest IoU — almost always that same object).
#
# Write `match_anchors(gt_boxes, anchors, ...)` returning, for each anchor, the index of its matched
# ground truth (0..G-1), **-1** for background or **-2** for ignored, as int64 — torchvision's
# `Matcher` convention. With no ground truth at all, every anchor is background. The thresholds and
# `allow_low_quality_matches` are arguments: use them. You may use torch and `ops.box_iou`, not
# torchvision's `Matcher` (the tests compare with it; the grader refuses an answer that uses it).

# %% id="ex2-matching" role="solution"
def match_anchors(gt_boxes: torch.Tensor, anchors: torch.Tensor, fg_iou_thresh: float = 0.5,
                  bg_iou_thresh: float = 0.4, allow_low_quality_matches: bool = True) -> torch.Tensor:
    """gt_boxes (G, 4), anchors (A, 4) xyxy -> (A,) int64: matched ground truth, -1 background, -2 ignored."""
    ### BEGIN SOLUTION
    if len(gt_boxes) == 0:
        return torch.full((len(anchors),), -1, dtype=torch.int64)
    iou = ops.box_iou(gt_boxes, anchors)  # (G, A)
    best_iou, best_gt = iou.max(dim=0)  # (A,): each anchor's best ground truth
    matches = best_gt.clone()
    matches[best_iou < bg_iou_thresh] = -1
    matches[(best_iou >= bg_iou_thresh) & (best_iou < fg_iou_thresh)] = -2
    if allow_low_quality_matches:
        best_for_gt = iou.max(dim=1, keepdim=True).values  # (G, 1): each ground truth's best IoU
        _, anchor_idx = torch.nonzero(iou == best_for_gt, as_tuple=True)
        matches[anchor_idx] = best_gt[anchor_idx]
    return matches
    ### END SOLUTION


# %% id="test-matching" role="tests" points=3
from torchvision.models.detection._utils import Matcher


def reference_match(gt_boxes, anchors, fg=0.5, bg=0.4, low_quality=True):
    if len(gt_boxes) == 0:  # what RetinaNet does for an image without objects
        return torch.full((len(anchors),), -1, dtype=torch.int64)
    return Matcher(fg, bg, allow_low_quality_matches=low_quality)(ops.box_iou(gt_boxes, anchors))


# Exercise 2a: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (random objects on a grid of anchors), no new requirements.
gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0],  # IoU 1    -> positive
                        [0.0, 0.0, 10.0, 20.0],  # IoU 0.5  -> positive (>= 0.5)
                        [0.0, 0.0, 10.0, 25.0],  # IoU 0.4  -> ignored (0.4 is not < 0.4)
                        [0.0, 0.0, 10.0, 30.0],  # IoU 0.33 -> background
                        [50.0, 50.0, 60.0, 60.0]])  # IoU 0 -> background
check_equal(match_anchors(gt, anchors), torch.tensor([0, 0, -2, -1, -1]), name="match_anchors(one object, 5 anchors)",
            inputs={"gt_boxes": gt, "anchors": anchors}, hint="positive: IoU >= 0.5; background: IoU < 0.4; else -2")
# a small object: its best anchor has IoU 0.25 only
small = torch.tensor([[2.0, 2.0, 7.0, 7.0]])
check_equal(match_anchors(small, anchors[:4], allow_low_quality_matches=False), torch.tensor([-1, -1, -1, -1]),
            name="match_anchors(small object, allow_low_quality_matches=False)")
check_equal(match_anchors(small, anchors[:4], allow_low_quality_matches=True), torch.tensor([0, -1, -1, -1]),
            name="match_anchors(small object, allow_low_quality_matches=True)",
            hint="each ground truth keeps its best anchor(s), even below the thresholds")
check_equal(match_anchors(torch.zeros(0, 4), anchors), torch.full((5,), -1), name="match_anchors(no ground truth)",
            hint="an image without objects: every anchor is background (int64 -1)")
check_equal(match_anchors(gt, anchors, 0.7, 0.3), torch.tensor([0, -2, -2, -2, -1]),
            name="match_anchors(one object, 5 anchors, fg_iou_thresh=0.7, bg_iou_thresh=0.3)",
            hint="use the fg_iou_thresh and bg_iou_thresh arguments, not 0.5 and 0.4")
# the object's best anchor is ignored (IoU 0.4): a low-quality match makes it positive
check_equal(match_anchors(gt, anchors[2:]), torch.tensor([0, -1, -1]),
            name="match_anchors(best anchor at IoU 0.4, allow_low_quality_matches=True)", inputs={"anchors": anchors[2:]},
            hint="a ground truth's best anchor becomes positive whatever its IoU, ignored ones too")
check_equal(match_anchors(gt, anchors[2:], allow_low_quality_matches=False), torch.tensor([-2, -1, -1]),
            name="match_anchors(best anchor at IoU 0.4, allow_low_quality_matches=False)")
# an object exactly between two anchors (IoU 1/3 with each): both are its best, both become positive
tie_gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
tie_anchors = torch.tensor([[-5.0, 0.0, 5.0, 10.0], [5.0, 0.0, 15.0, 10.0], [0.0, 20.0, 10.0, 30.0]])
check_equal(match_anchors(tie_gt, tie_anchors), torch.tensor([0, 0, -1]), name="match_anchors(an object between two anchors)",
            inputs={"gt_boxes": tie_gt, "anchors": tie_anchors},
            hint="every anchor that reaches the object's best IoU (ties included) is a low-quality match, not only argmax")
# gt 0's best anchor (anchor 0, IoU 0.67) overlaps gt 1 more (IoU 0.82): it stays matched to gt 1
two_gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0]])
two_anchors = torch.tensor([[2.0, 0.0, 12.0, 10.0], [-4.0, 0.0, 6.0, 10.0], [30.0, 0.0, 40.0, 10.0],
                            [3.0, 0.0, 13.0, 10.0]])
check_equal(match_anchors(two_gt, two_anchors, 0.7, 0.3), torch.tensor([1, -2, -1, 1]),
            name="match_anchors(two overlapping objects, fg=0.7, bg=0.3)", inputs={"gt_boxes": two_gt, "anchors": two_anchors},
            hint="a low-quality anchor is matched to its own best ground truth, not to the one it is the best anchor for")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(7)


def random_boxes(n, size, lo, hi):
    xy = torch.rand(n, 2, generator=g) * size
    return torch.cat([xy, xy + lo + torch.rand(n, 2, generator=g) * (hi - lo)], dim=1)


grid_anchors = AnchorGenerator(((16, 20, 25),), ((0.5, 1.0, 2.0),))(
    ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)]), [torch.zeros(1, 1, 8, 8)])[0]  # (576, 4)
for n_gt, lo, hi, fg, bg in [(1, 8, 40, 0.5, 0.4), (5, 4, 60, 0.5, 0.4), (12, 6, 30, 0.5, 0.4), (7, 10, 50, 0.7, 0.3),
                             (4, 10, 50, 0.5, 0.5)]:
    gt = random_boxes(n_gt, 110, lo, hi)
    for low_quality in (True, False):
        check_equal(match_anchors(gt, grid_anchors, fg, bg, low_quality),
                    reference_match(gt, grid_anchors, fg, bg, low_quality),
                    name=f"match_anchors({n_gt} objects, 576 anchors, fg={fg}, bg={bg}, "
                         f"allow_low_quality_matches={low_quality})",
                    hint="thresholds: >= fg positive, < bg background; "
                         "low-quality anchors take their own best ground truth")
# the same overlapping objects against fewer anchors, with and without low-quality matches
for low_quality in (True, False):
    check_equal(match_anchors(two_gt, two_anchors[:3], 0.7, 0.3, low_quality),
                reference_match(two_gt, two_anchors[:3], 0.7, 0.3, low_quality),
                name=f"match_anchors(two overlapping objects, 3 anchors, fg=0.7, bg=0.3, "
                     f"allow_low_quality_matches={low_quality})",
                hint="a low-quality anchor is matched to the ground truth it overlaps most, not necessarily the one "
                     "it is the best anchor for")
# small objects between anchor centres, as on the pyramid's finest level
gt = random_boxes(6, 120, 3, 9)
check_equal(match_anchors(gt, grid_anchors), reference_match(gt, grid_anchors), name="match_anchors(6 small objects)",
            hint="every ground truth keeps its best anchors (ties included)")
out = match_anchors(torch.zeros(0, 4), grid_anchors)
check_equal(out, torch.full((576,), -1), name="match_anchors(no ground truth, 576 anchors)")
### END HIDDEN TESTS

# %% [markdown] id="ex2b-md"
# ## 5. Encoding boxes relative to anchors (exercise 2b, 3 points)
#
# The box subnet does not predict coordinates: it predicts how to **move and stretch** its anchor
# (R-CNN's parametrisation, used by Faster R-CNN and RetinaNet). With the anchor's centre and size
# $(x_a, y_a, w_a, h_a)$ and the ground truth's $(x, y, w, h)$, and weights $(w_x, w_y, w_w, w_h)$:
#
# $$t_x = w_x \frac{x - x_a}{w_a}, \quad t_y = w_y \frac{y - y_a}{h_a}, \quad
# t_w = w_w \log\frac{w}{w_a}, \quad t_h = w_h \log\frac{h}{h_a}.$$
#
# Offsets are in units of the anchor's size, so a 10-pixel shift means the same for a small and a
# large anchor; sizes are log-ratios, so growing ×2 and shrinking ×2 are symmetric. RetinaNet uses
# weights $(1, 1, 1, 1)$; Faster R-CNN's second stage $(10, 10, 5, 5)$.
#
# **Decoding** inverts it: $x = t_x / w_x \cdot w_a + x_a$, $w = w_a \exp(t_w / w_w)$ (and likewise
# for $y$, $h$), then back to `xyxy` with $x_1 = x - w/2$, $x_2 = x + w/2$. An untrained network can
# output a huge $t_w$, and $\exp$ overflows: clamp $t_w / w_w$ and $t_h / w_h$ from **above** at
# `max_log_scale` $= \log(1000/16)$ before the exponential (no box grows more than 62.5× its anchor).
#
# Write `encode_boxes(gt_boxes, anchors, weights)` and `decode_boxes(deltas, anchors, weights,
# max_log_scale)`; boxes and anchors are paired row by row, all `xyxy`, shape `(N, 4)`; both return an
# `(N, 4)` float32 tensor for float32 inputs, an empty `(0, 4)` one for no boxes. Use the `weights` and
# `max_log_scale` arguments. You may use torch and math, not torchvision's `BoxCoder` (the tests
# compare with it; the grader refuses an answer that uses it).

# %% id="ex2-box-coding" role="solution"
def encode_boxes(gt_boxes: torch.Tensor, anchors: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """gt_boxes (N, 4), anchors (N, 4) xyxy -> deltas (N, 4) = (t_x, t_y, t_w, t_h)."""
    ### BEGIN SOLUTION
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    gw, gh = gt_boxes[:, 2] - gt_boxes[:, 0], gt_boxes[:, 3] - gt_boxes[:, 1]
    gx, gy = gt_boxes[:, 0] + 0.5 * gw, gt_boxes[:, 1] + 0.5 * gh
    return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                        ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=1)  # (N, 4)
    ### END SOLUTION


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0),
                 max_log_scale: float = math.log(1000.0 / 16)) -> torch.Tensor:
    """deltas (N, 4), anchors (N, 4) xyxy -> boxes (N, 4) xyxy."""
    ### BEGIN SOLUTION
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    dw = (deltas[:, 2] / ww).clamp(max=max_log_scale)
    dh = (deltas[:, 3] / wh).clamp(max=max_log_scale)
    x, y = deltas[:, 0] / wx * aw + ax, deltas[:, 1] / wy * ah + ay
    w, h = aw * torch.exp(dw), ah * torch.exp(dh)
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)
    ### END SOLUTION


# %% id="test-box-coding" role="tests" points=3
from torchvision.models.detection._utils import BoxCoder

# Exercise 2b: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (random pairs, other weights and clamps), no new requirements.
anchor = torch.tensor([[0.0, 0.0, 20.0, 10.0]])  # centre (10, 5), 20 x 10
gt = torch.tensor([[5.0, 0.0, 45.0, 10.0]])  # centre (25, 5), 40 x 10
check_close(encode_boxes(gt, anchor), torch.tensor([[0.75, 0.0, math.log(2.0), 0.0]]), name="encode_boxes",
            inputs={"gt_boxes": gt, "anchors": anchor}, hint="t_x = (x - x_a) / w_a with centres; t_w = log(w / w_a)")
check_close(decode_boxes(torch.tensor([[0.75, 0.0, math.log(2.0), 0.0]]), anchor), gt, name="decode_boxes",
            hint="x = t_x * w_a + x_a, w = w_a * exp(t_w), then back to corners")
g = torch.Generator().manual_seed(0)
xy = torch.rand(20, 2, generator=g) * 100
anchors = torch.cat([xy, xy + 4 + torch.rand(20, 2, generator=g) * 60], 1)
xy = torch.rand(20, 2, generator=g) * 100
boxes = torch.cat([xy, xy + 4 + torch.rand(20, 2, generator=g) * 60], 1)
check_close(encode_boxes(boxes, anchors), BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(boxes, anchors),
            name="encode_boxes on 20 random pairs", atol=1e-4)
# weights: encoding multiplies each delta by its weight, decoding divides by it first
w = (10.0, 10.0, 5.0, 5.0)
check_close(encode_boxes(boxes, anchors, w), BoxCoder(w).encode_single(boxes, anchors), atol=1e-4, rtol=1e-4,
            name="encode_boxes(weights=(10, 10, 5, 5))", hint="t_x = w_x (x - x_a) / w_a, t_w = w_w log(w / w_a)")
random_deltas = torch.randn(20, 4, generator=g)
check_close(decode_boxes(random_deltas, anchors, w), BoxCoder(w).decode_single(random_deltas, anchors), atol=1e-3,
            rtol=1e-4, name="decode_boxes(weights=(10, 10, 5, 5))", hint="divide each delta by its weight before using it")
# an untrained network's huge (and very negative) size deltas: clamp t_w / w_w, t_h / w_h from above only
big_anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0], [10.0, 10.0, 42.0, 26.0], [5.0, 5.0, 15.0, 25.0]])
big_deltas = torch.tensor([[0.5, -0.5, 10.0, 12.0], [0.0, 0.0, -8.0, 20.0], [1.0, 2.0, 3.0, -3.0]])
for clip, weights in [(math.log(1000.0 / 16), (1.0, 1.0, 1.0, 1.0)), (2.0, (10.0, 10.0, 5.0, 5.0))]:
    scaled = big_deltas * torch.tensor(weights)
    check_close(decode_boxes(scaled, big_anchors, weights, max_log_scale=clip),
                BoxCoder(weights, bbox_xform_clip=clip).decode_single(scaled, big_anchors), atol=1e-3, rtol=1e-4,
                name=f"decode_boxes with large deltas, weights={weights}, max_log_scale={clip:.3f}",
                inputs={"deltas": scaled, "anchors": big_anchors},
                hint="divide by the weights, clamp from above only at max_log_scale (the argument), then exp")
for fn in (encode_boxes, decode_boxes):
    check_close(fn(torch.zeros(0, 4), torch.zeros(0, 4)), torch.zeros(0, 4), name=f"{fn.__name__} with no boxes",
                hint="an empty (0, 4) float32 tensor")
print("visible checks passed")
### BEGIN HIDDEN TESTS
for seed, weights in [(1, (1.0, 1.0, 1.0, 1.0)), (2, (10.0, 10.0, 5.0, 5.0)), (3, (2.0, 3.0, 0.5, 4.0))]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(50, 2, generator=g) * 200
    anchors = torch.cat([xy, xy + 2 + torch.rand(50, 2, generator=g) * 100], 1)
    xy = torch.rand(50, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 2 + torch.rand(50, 2, generator=g) * 100], 1)
    coder = BoxCoder(weights)
    check_close(encode_boxes(boxes, anchors, weights), coder.encode_single(boxes, anchors), atol=1e-4, rtol=1e-4,
                name=f"encode_boxes(weights={weights})", hint="multiply each delta by its weight")
    deltas = torch.randn(50, 4, generator=g) * 2
    check_close(decode_boxes(deltas, anchors, weights), coder.decode_single(deltas, anchors), atol=1e-3, rtol=1e-4,
                name=f"decode_boxes(weights={weights})", hint="divide each delta by its weight before using it")
    check_close(decode_boxes(encode_boxes(boxes, anchors, weights), anchors, weights), boxes, atol=1e-3,
                name=f"decode_boxes(encode_boxes(boxes)) with weights={weights}", hint="decoding must invert encoding")
# an untrained network's huge (and very negative) size deltas
anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0], [10.0, 10.0, 42.0, 26.0], [5.0, 5.0, 15.0, 25.0]])
deltas = torch.tensor([[0.5, -0.5, 10.0, 12.0], [0.0, 0.0, -8.0, 20.0], [1.0, 2.0, 3.0, -3.0]])
for clip, weights in [(math.log(1000.0 / 16), (1.0, 1.0, 1.0, 1.0)), (2.0, (1.0, 1.0, 1.0, 1.0)),
                      (1.0, (10.0, 10.0, 5.0, 5.0))]:
    want = BoxCoder(weights, bbox_xform_clip=clip).decode_single(deltas * torch.tensor(weights), anchors)
    got = decode_boxes(deltas * torch.tensor(weights), anchors, weights, max_log_scale=clip)
    assert torch.isfinite(got).all(), "decode_boxes overflowed: clamp t_w / w_w and t_h / w_h before exp"
    check_close(got, want, atol=1e-3, rtol=1e-4, name=f"decode_boxes with large deltas, max_log_scale={clip:.3f}",
                hint="clamp the size deltas from above only (after dividing by the weights), then exp")
### END HIDDEN TESTS

# %% [markdown] id="explorer-md"
# ## 6. Anchors explorer
#
# The anchors of one pyramid level drawn over a test image: on the left, the $A$ anchors of the
# position nearest the image centre (one colour per aspect ratio); on the right, the **positive**
# anchors of that level found by **your** `match_anchors` (solid: IoU ≥ 0.5; dashed: low-quality
# matches). Change the level and the anchor scale (anchor side in strides): where do the small
# objects find positive anchors? What happens to them with anchors twice as large?

# %% id="explorer" role="readonly"
explorer_image, explorer_target = test_set[3]
explorer_gt = plain(explorer_target["boxes"])


def draw_anchors(level=3, anchor_scale=ANCHOR_SCALE, ratios="0.5, 1, 2"):
    ratios = [float(r) for r in ratios.split(",")]
    stride = 2**level
    grid = max(IMAGE_SIZE // stride, 1)
    anchors = make_anchors((grid, grid), (stride, stride), octave_sizes(anchor_scale * stride), ratios)
    per_position = len(anchors) // grid**2
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4.4))
    centre = (grid // 2) * grid + grid // 2
    viz.show_sample(explorer_image, explorer_target, class_names=CLASS_NAMES, masks=False, ax=ax0)
    shown = anchors[centre * per_position:(centre + 1) * per_position]  # (A, 4)
    for k, box in enumerate(shown):
        viz.draw_boxes(None, box[None], colour=viz.class_colour(4 + k // (per_position // len(ratios))), ax=ax0)
    lo, hi = min(0.0, float(shown[:, :2].min())) - 4, max(float(IMAGE_SIZE), float(shown[:, 2:].max())) + 4
    ax0.set_xlim(lo, hi); ax0.set_ylim(hi, lo)
    ax0.set_title(f"P{level}: stride {stride}, {grid}x{grid} positions, {per_position} anchors each", fontsize=9)
    matches = match_anchors(explorer_gt, anchors)
    strong = ops.box_iou(explorer_gt, anchors).max(0).values >= 0.5
    viz.show_sample(explorer_image, explorer_target, masks=False, ax=ax1)
    for idx in torch.nonzero(matches >= 0).flatten():
        viz.draw_boxes(None, anchors[idx][None], colour="white", linestyle="-" if strong[idx] else "--", ax=ax1)
    found = [int((matches == j).sum()) for j in range(len(explorer_gt))]
    ax1.set_title(f"positive anchors per object: {found}", fontsize=9)
    return fig


viz.slider_figure(draw_anchors, {
    "level": widgets.IntSlider(value=3, min=2, max=7, description="level P"),
    "anchor_scale": widgets.FloatSlider(value=ANCHOR_SCALE, min=1.0, max=8.0, step=0.5, description="scale"),
    "ratios": widgets.Dropdown(options=["0.5, 1, 2", "1", "0.25, 0.5, 1, 2, 4"], value="0.5, 1, 2",
                               description="ratios"),
})


# %% [markdown] id="ex3-md"
# ## 7. The focal loss (exercise 3, 3 points)
#
# Each of the $K$ outputs of an anchor is a **binary** classifier ("is this anchor an object of class
# $k$?") with probability $p = \sigma(x)$ from its logit $x$, and target $y \in \{0, 1\}$. With
#
# $$p_t = \begin{cases} p & y = 1 \\ 1 - p & y = 0 \end{cases} \;=\; p\,y + (1 - p)(1 - y),$$
#
# the binary cross-entropy is $\mathrm{CE} = -\log p_t$. The **focal loss** multiplies it by a
# modulating factor that vanishes for well-classified examples ($p_t \to 1$), and by the class
# weight $\alpha_t$ ($\alpha$ for positives, $1 - \alpha$ for negatives):
#
# $$\mathrm{FL}(p_t) = -\alpha_t\,(1 - p_t)^\gamma \log p_t, \qquad \alpha_t = \alpha\,y + (1 - \alpha)(1 - y).$$
#
# With $\gamma = 2$, an anchor classified with $p_t = 0.9$ has its loss divided by 100, one with
# $p_t = 0.99$ by 10 000, while hard examples ($p_t \approx 0.5$) keep a quarter of theirs. The paper
# uses $\gamma = 2$, $\alpha = 0.25$; a negative $\alpha$ means no $\alpha_t$ weighting at all.
#
# Write `focal_loss(logits, targets, alpha, gamma, reduction)` for tensors of any shape, with
# `reduction` `"none"` (elementwise), `"mean"` or `"sum"`, and a `ValueError` for any other
# reduction. `"mean"` and `"sum"` reduce over every element, whatever the shape, to a 0-d tensor.
# $\alpha = 0$ is a weighting like any other (positives then weigh 0); only $\alpha < 0$ turns it off.
# Compute $-\log p_t$ with `F.binary_cross_entropy_with_logits` (stable for large logits, unlike
# `torch.log(torch.sigmoid(x))`), and detach nothing: the gradient with respect to the logits is the
# focal loss's own (the tests compare it with torchvision's). You may use torch and `F`, not
# `ops.sigmoid_focal_loss` (the tests compare with it; the grader refuses an answer that calls it).

# %% id="ex3-focal" role="solution"
def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
               reduction: str = "none") -> torch.Tensor:
    """logits, targets (any shape, same) -> the focal loss, elementwise or reduced to a scalar."""
    ### BEGIN SOLUTION
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    ### END SOLUTION


# %% id="test-focal" role="tests" points=3
# Exercise 3: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (shapes, every alpha, gamma and reduction), no new requirements.
logits = torch.tensor([2.0, -1.0, 0.0, 3.0])
targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
p = torch.sigmoid(logits)
by_hand = torch.stack([-0.25 * (1 - p[0]) ** 2 * torch.log(p[0]), -0.75 * p[1] ** 2 * torch.log(1 - p[1]),
                       torch.tensor(-0.25 * 0.5 ** 2 * math.log(0.5)), -0.75 * p[3] ** 2 * torch.log(1 - p[3])])
check_close(focal_loss(logits, targets), by_hand, name="focal_loss(logits, targets)",
            inputs={"logits": logits, "targets": targets}, hint="-alpha_t (1 - p_t)^gamma log(p_t)")
check_close(focal_loss(logits, targets, gamma=0.0, alpha=-1),
            F.binary_cross_entropy_with_logits(logits, targets, reduction="none"),
            name="focal_loss(gamma=0, alpha=-1)", hint="gamma = 0 and no alpha: plain binary cross-entropy")
check_close(focal_loss(logits, targets, reduction="sum"), ops.sigmoid_focal_loss(logits, targets, reduction="sum"),
            name="focal_loss(reduction='sum')", hint="a 0-d tensor: loss.sum()")
# any shape: 'mean' and 'sum' reduce over every element to a 0-d tensor
x2 = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]])
y2 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
for reduction in ("none", "mean", "sum"):
    check_close(focal_loss(x2, y2, reduction=reduction), ops.sigmoid_focal_loss(x2, y2, reduction=reduction),
                name=f"focal_loss(2 x 3 logits, reduction={reduction!r})", inputs={"logits": x2, "targets": y2},
                hint="'none' keeps the shape; 'mean' and 'sum' over every element, a 0-d tensor")
check_close(focal_loss(x2, y2, alpha=0.0, gamma=1.0), ops.sigmoid_focal_loss(x2, y2, 0.0, 1.0),
            name="focal_loss(alpha=0, gamma=1)", hint="alpha = 0 weighs positives 0; only alpha < 0 means no weighting")
# confident logits: torch.log(torch.sigmoid(x)) gives inf, binary_cross_entropy_with_logits does not
big_x, big_y = torch.tensor([[40.0, -40.0, 25.0, -30.0]]), torch.tensor([[0.0, 1.0, 1.0, 0.0]])
check_close(focal_loss(big_x, big_y, 0.25, 0.0), ops.sigmoid_focal_loss(big_x, big_y, 0.25, 0.0), rtol=1e-4,
            name="focal_loss for large logits, gamma=0", inputs={"logits": big_x, "targets": big_y},
            hint="compute -log p_t with F.binary_cross_entropy_with_logits")
# the gradient: nothing detached, the same as torchvision's
xg = x2.clone().requires_grad_(True)
check_grad_flows({"focal_loss(reduction='sum')": focal_loss(xg, y2, reduction="sum")}, {"logits": xg},
                 name="gradient of focal_loss", hint="compute the loss from the logits, without .detach()")
check_close(torch.autograd.grad(focal_loss(xg, y2, reduction="sum"), xg)[0],
            torch.autograd.grad(ops.sigmoid_focal_loss(xg, y2, reduction="sum"), xg)[0], atol=1e-5, rtol=1e-4,
            name="gradient of focal_loss(reduction='sum') with respect to the logits",
            hint="detach neither the cross-entropy nor the modulating factor (1 - p_t)^gamma")
check_close(focal_loss(torch.zeros(0, 3), torch.zeros(0, 3), reduction="sum"), torch.tensor(0.0),
            name="focal_loss with no anchors, reduction='sum'", hint="a 0-d tensor 0, not an error")
check_raises(focal_loss, ValueError, logits, targets, reduction="average", name="focal_loss(reduction='average')",
             hint="raise a ValueError for an unknown reduction")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(3)
for shape in [(7,), (4, 9), (2, 30, 4)]:
    x = torch.randn(shape, generator=g) * 4
    y = (torch.rand(shape, generator=g) < 0.3).float()
    for alpha in (0.25, 0.0, 0.5, 0.9, -1.0):
        for gamma in (0.0, 0.5, 2.0, 5.0):
            for reduction in ("none", "mean", "sum"):
                check_close(focal_loss(x, y, alpha, gamma, reduction),
                            ops.sigmoid_focal_loss(x, y, alpha, gamma, reduction), atol=1e-5, rtol=1e-4,
                            name=f"focal_loss(shape {shape}, alpha={alpha}, gamma={gamma}, reduction={reduction!r})",
                            hint="alpha for positives, 1 - alpha for negatives (none if alpha < 0); (1 - p_t)^gamma")
# gradients flow like torchvision's
x = (torch.randn(64, 3, generator=g) * 3).requires_grad_(True)
y = (torch.rand(64, 3, generator=g) < 0.2).float()
want = torch.autograd.grad(ops.sigmoid_focal_loss(x, y, reduction="sum"), x)[0]
got = torch.autograd.grad(focal_loss(x, y, reduction="sum"), x)[0]
check_close(got, want, atol=1e-5, rtol=1e-4, name="gradient of focal_loss(reduction='sum')",
            hint="do not detach the modulating factor (1 - p_t)^gamma")
# confident logits: log(sigmoid(x)) would give -inf, binary_cross_entropy_with_logits does not
x = torch.tensor([[40.0, -40.0, 25.0, -30.0]])
y = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
for gamma in (0.0, 2.0):
    got = focal_loss(x, y, 0.25, gamma)
    assert torch.isfinite(got).all(), \
        f"focal_loss is not finite for large logits: {got}; use binary_cross_entropy_with_logits"
    check_close(got, ops.sigmoid_focal_loss(x, y, 0.25, gamma), rtol=1e-4,
                name=f"focal_loss for large logits, gamma={gamma}")
check_close(focal_loss(torch.zeros(0, 3), torch.zeros(0, 3)), torch.zeros(0, 3),
            name="focal_loss with no anchors, reduction='none'")
check_raises(focal_loss, ValueError, logits, targets, reduction="Mean", name="focal_loss(reduction='Mean')",
             hint="raise a ValueError for an unknown reduction")
### END HIDDEN TESTS

# %% [markdown] id="fl-ce-md"
# Figure 1 of the paper: the loss of one example as a function of $p_t$, for several $\gamma$
# ($\alpha$ aside), computed with **your** `focal_loss`. On the right, the same on a log scale, divided
# by the cross-entropy: the weight each example keeps. Examples with $p_t > 0.6$ are *well classified*;
# with $\gamma = 2$ an easy negative at $p_t = 0.99$ weighs $10^{-4}$ of its cross-entropy.

# %% id="fl-vs-ce" role="readonly"
p_t = torch.linspace(0.001, 0.999, 500)
logit = torch.log(p_t / (1 - p_t))  # a positive example (y = 1) with probability p_t
ones = torch.ones_like(p_t)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
ce = focal_loss(logit, ones, alpha=-1, gamma=0.0)
for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
    fl = focal_loss(logit, ones, alpha=-1, gamma=gamma)
    label = f"gamma = {gamma:g}" + (" (CE)" if gamma == 0 else "")
    ax0.plot(p_t, fl, label=label)
    ax1.plot(p_t, fl / ce, label=label)
ax0.axvspan(0.6, 1.0, color="0.9"); ax0.text(0.62, 4.2, "well classified", fontsize=8)
ax0.set_xlabel("probability of the ground-truth class $p_t$"); ax0.set_ylabel("loss"); ax0.set_ylim(0, 5)
ax0.legend(fontsize=8); ax0.set_title("focal loss vs cross-entropy (Lin et al., Fig. 1)", fontsize=9)
ax1.set_yscale("log"); ax1.set_ylim(1e-6, 2); ax1.grid(alpha=0.3)
ax1.set_xlabel("$p_t$"); ax1.set_ylabel("FL / CE = $(1 - p_t)^\\gamma$")
ax1.set_title("how much of its cross-entropy an example keeps", fontsize=9)
fig.tight_layout()

# %% [markdown] id="train-md"
# ## 8. Training torchvision's RetinaNet
#
# `torchvision.models.detection.RetinaNet` is built from the pieces you just wrote: its
# `anchor_generator` makes the anchors of each level (exercise 1), its `proposal_matcher` matches
# them with thresholds 0.5 / 0.4 and low-quality matches (exercise 2a), its `box_coder` encodes the
# regression targets with weights $(1, 1, 1, 1)$ (exercise 2b) and its classification head sums
# `sigmoid_focal_loss` with $\alpha = 0.25, \gamma = 2$ over all non-ignored anchors, divided by the
# number of positive anchors (exercise 3). The cell below checks that on one training image, then
# trains the model built in section 3: a small from-scratch backbone, the FPN, and the two heads
# (`course_utils.models.build_retinanet`; GroupNorm in the heads, as in torchvision's RetinaNet v2).
#
# Two details from the paper matter when training from scratch: the last classification layer's bias
# starts at $-\log((1 - \pi) / \pi)$ with $\pi = 0.01$, so that at the first step every anchor says
# "background, $p = 0.01$" (otherwise the $\sim 10^4$ background anchors produce a huge loss at the first
# step), and the loss is **normalised by the number of positive anchors**, not of all anchors.

# %% id="train" role="readonly"
image, target = train_set[0]
gt_boxes, gt_labels = plain(target["boxes"]), target["labels"]
all_anchors = torch.cat(model_anchors)
theirs = model.proposal_matcher(ops.box_iou(gt_boxes, all_anchors))
print("your match_anchors == the model's Matcher:", torch.equal(match_anchors(gt_boxes, all_anchors), theirs))
positive = torch.nonzero(theirs >= 0).flatten()
print("your encode_boxes == the model's BoxCoder:", torch.allclose(
    encode_boxes(gt_boxes[theirs[positive]], all_anchors[positive]),
    model.box_coder.encode_single(gt_boxes[theirs[positive]], all_anchors[positive]), atol=1e-5))
logits = torch.randn(len(all_anchors), NUM_CLASSES + 1)
cls_target = torch.zeros_like(logits)
cls_target[positive, gt_labels[theirs[positive]]] = 1.0
valid = theirs != -2
print("your focal_loss == ops.sigmoid_focal_loss:", torch.allclose(
    focal_loss(logits[valid], cls_target[valid], reduction="sum"),
    ops.sigmoid_focal_loss(logits[valid], cls_target[valid], reduction="sum")))
print(f"this image: {len(gt_boxes)} objects, {len(positive)} positive anchors, {int((theirs == -2).sum())} ignored, "
      f"{int((theirs == -1).sum())} background")


def collate(batch):
    # the model needs boxes and labels only (plain tensors); it normalises and resizes images itself
    images = [plain(image) for image, _ in batch]
    targets = [{"boxes": plain(t["boxes"]), "labels": t["labels"]} for _, t in batch]
    return images, targets


STEPS = steps(fast=300, full=5000)
LR = 5e-3
optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=max(STEPS, 3), pct_start=0.15)
history = fit(model, DataLoader(train_set, batch_size=16, shuffle=True, collate_fn=collate), optimizer, STEPS,
              scheduler=scheduler, grad_clip=10.0, seed=0, device=DEVICE, log_every=25)
if MODE != "smoke":  # lab 07 starts its RetinaNet from these weights (see checkpoint_path)
    save_cached(checkpoint_path("03_retinanet", "retinanet"), model, {"mode": MODE, "steps": STEPS})
viz.plot_history(history, log=True).set_title("RetinaNet's two losses (per positive anchor)");

# %% [markdown] id="eval-md"
# ## 9. Evaluation: COCO mAP
#
# In eval mode the model returns, per image, boxes decoded from the anchors of every level (the 1000
# best-scoring above 0.05 per level), merged and filtered by per-class NMS at IoU 0.5. COCO's mAP
# averages AP over IoU thresholds 0.5 to 0.95; AP50 is the same at IoU 0.5 only; APs and APm are
# the AP of small and medium objects.

# %% id="evaluate" role="readonly"
test_loader = DataLoader(test_set, batch_size=50, collate_fn=collate)
detections, _ = predict(model, test_loader, device=DEVICE)
gt_coco = test_set.to_coco()
result = coco_eval(gt_coco, detections_to_coco(list(range(len(test_set))), detections))
print(result.summary())
mAP50 = record("03_retinanet/mAP50", result.named["AP50"])
mAP = record("03_retinanet/mAP", result.named["AP"])
record("03_retinanet/APs", result.named["APs"])

fig, axes = plt.subplots(1, 4, figsize=(13, 3.5))
for i, ax in enumerate(axes):
    keep = detections[i]["scores"] > 0.4
    viz.draw_boxes(test_set[i][0], detections[i]["boxes"][keep], detections[i]["labels"][keep],
                   detections[i]["scores"][keep], class_names=CLASS_NAMES, ax=ax,
                   title=f"{len(test_set[i][1]['boxes'])} objects, {int(keep.sum())} detections > 0.4")
fig.tight_layout()

# %% [markdown] id="levels-md"
# ## 10. Which level finds which object?
#
# The heads are shared by all levels, yet each level should specialise: its anchors match objects of
# its size only. Below we keep the detections of **one level at a time** (the others' scores are set
# to zero, `course_utils.models.only_levels`) and measure AP on small objects (side below 32 pixels:
# most of ours) and on medium ones (32 to 45 pixels here). Which level finds which? And what do
# $P_6$ and $P_7$, whose anchors are larger than any of our objects, find?

# %% id="levels" role="readonly"
level_subset = torch.utils.data.Subset(test_set, range(by_mode(smoke=8, fast=150, full=300)))
level_gt = test_set.to_coco()
level_gt["images"] = level_gt["images"][:len(level_subset)]
level_gt["annotations"] = [a for a in level_gt["annotations"] if a["image_id"] < len(level_subset)]
by_level = {}
for k, level in enumerate(LEVELS):
    with only_levels(model, [k]):
        dets, _ = predict(model, DataLoader(level_subset, batch_size=50, collate_fn=collate), device=DEVICE)
    r = coco_eval(level_gt, detections_to_coco(list(range(len(level_subset))), dets)).named
    by_level[level] = (max(r["APs"], 0.0), max(r["APm"], 0.0))
    print(f"P{level} alone: AP small {by_level[level][0]:.3f}   AP medium {by_level[level][1]:.3f}")
for level in (3, 4, 5):
    record(f"03_retinanet/P{level}_APs", by_level[level][0])
    record(f"03_retinanet/P{level}_APm", by_level[level][1])
fig, ax = plt.subplots(figsize=(6, 3.4))
x = np.arange(len(LEVELS))
ax.bar(x - 0.2, [by_level[lv][0] for lv in LEVELS], 0.4, label="small objects")
ax.bar(x + 0.2, [by_level[lv][1] for lv in LEVELS], 0.4, label="medium objects")
ax.set_xticks(x, [f"P{lv}" for lv in LEVELS]); ax.set_ylabel("COCO AP with this level alone"); ax.legend()
ax.set_title("fine levels find small objects, coarse levels larger ones", fontsize=9);

# %% [markdown] id="written-md"
# ### Written question (2 points, graded by hand)
#
# Answer in the cell below in a few sentences, **quoting your numbers** (the table above and
# section 9):
#
# 1. Which level finds the small objects best, and which the medium ones? Relate this to each
#    level's stride and anchor sizes (section 3) and to the matching rule (section 4).
# 2. Each level alone finds only part of the objects, yet the model's overall AP on small objects is
#    above any single level's. Why? What do $P_6$ and $P_7$ find here, and why would they matter on
#    COCO's 800-pixel images?

# %% [markdown] id="written-answer" role="answer" points=2
# ### BEGIN SOLUTION
# (Numbers from the instructor's fast-mode run on a 2-core CPU; yours differ a little.)
#
# 1. $P_3$ (stride 8, anchors of 12 to 19 pixels) finds the small objects: AP small 0.48 with $P_3$
#    alone, against 0.22 for $P_4$ and 0.03 for $P_5$. $P_4$ (stride 16, anchors 24 to 38 pixels)
#    finds the medium ones, 32 to 45 pixels: AP medium 0.62, against 0.10 for $P_3$ and 0.13 for $P_5$
#    (anchors 48 to 76 pixels). An anchor learns an object only if their IoU reaches 0.5 (or it is
#    the object's best anchor), and IoU between boxes of different sizes is small, so each object is
#    assigned to the level whose anchors have its size, and that level's outputs learn to fire on it;
#    the same shared heads stay silent on the other levels. Small objects also need the fine stride:
#    at stride 32 a 15-pixel object is half a cell.
# 2. The levels are complementary: objects near a size boundary (around 24 to 32 pixels) are
#    matched at $P_3$ or at $P_4$, so each level alone finds only part of them; all levels together,
#    then NMS, reach AP small 0.54 on the whole test set (section 9; the table uses its first 150
#    images) — above $P_3$'s 0.48. $P_6$ and $P_7$ have anchors of about 100 to 300 pixels: a
#    45-pixel object reaches an IoU of at most $(45/96)^2 \approx 0.22$ with one, below the 0.4 of a
#    negative, and its best anchor is always on a finer level, so every anchor of $P_6$ and $P_7$ is
#    trained as background and they find next to nothing. On COCO, with 800-pixel images and objects
#    up to the image's size, they hold the large objects (anchors up to 813 pixels in the paper).
#
# **Rubric (2 points).** 1 point: quotes the per-level APs, names $P_3$ for small and $P_4$ for
# medium objects, and explains it by anchor size/stride and IoU-based matching. 1 point: explains
# why the combined AP on small objects exceeds each level's (objects split between levels, complementary
# predictions merged by NMS) and what $P_6$/$P_7$ find here and on COCO. Numbers that are not the
# student's own, or no numbers: at most 1 point.
# ### END SOLUTION

# %% [markdown] id="easy-md"
# ## 11. Where the loss goes: easy negatives
#
# On a batch of test images, we take the trained model's classification outputs for every
# non-ignored anchor and ask how much of the loss comes from **easy negatives** (background anchors
# with $p_t > 0.9$), with cross-entropy and with the focal loss. There are tens of thousands of them
# per batch: with cross-entropy their small losses add up; the focal loss silences them, so training
# concentrates on the objects and the hard background.

# %% id="easy-negatives" role="readonly"
model.eval()
batch_images, batch_targets = collate([test_set[i] for i in range(min(16, len(test_set)))])
with torch.no_grad():
    images_t, targets_t = model.transform([im.to(DEVICE) for im in batch_images],
                                          [{k: v.to(DEVICE) for k, v in t.items()} for t in batch_targets])
    features = list(model.backbone(images_t.tensors).values())
    cls_logits = model.head(features)["cls_logits"].cpu()  # (N, all anchors, K)
    anchors = model.anchor_generator(images_t, features)
logits_all, targets_all = [], []
for n, t in enumerate(targets_t):
    matched = match_anchors(t["boxes"].cpu(), anchors[n].cpu())
    target_n = torch.zeros_like(cls_logits[n])
    fg = matched >= 0
    target_n[fg, t["labels"].cpu()[matched[fg]]] = 1.0
    keep = matched != -2
    logits_all.append(cls_logits[n][keep])
    targets_all.append(target_n[keep])
logits_all, targets_all = torch.cat(logits_all), torch.cat(targets_all)
p = torch.sigmoid(logits_all)
p_t = torch.where(targets_all == 1, p, 1 - p)
easy_negative = (targets_all == 0) & (p_t > 0.9)
ce = focal_loss(logits_all, targets_all, alpha=-1, gamma=0.0)
fl = focal_loss(logits_all, targets_all, alpha=0.25, gamma=2.0)
ce_share = float(ce[easy_negative].sum() / ce.sum())
fl_share = float(fl[easy_negative].sum() / fl.sum())
print(f"{easy_negative.sum()} of {targets_all.numel()} classification outputs are easy negatives "
      f"({float(easy_negative.float().mean()):.2%}); {int(targets_all.sum())} are positives")
print(f"share of the loss from easy negatives: cross-entropy {ce_share:.1%}, focal loss {fl_share:.1%}")
record("03_retinanet/easy_negative_share_ce", ce_share)
record("03_retinanet/easy_negative_share_fl", fl_share)
fig, ax = plt.subplots(figsize=(6, 3.4))
groups = {"positives": targets_all == 1, "hard negatives": (targets_all == 0) & ~easy_negative,
          "easy negatives": easy_negative}
x = np.arange(len(groups))
ax.bar(x - 0.2, [float(ce[m].sum() / ce.sum()) for m in groups.values()], 0.4, label="cross-entropy")
ax.bar(x + 0.2, [float(fl[m].sum() / fl.sum()) for m in groups.values()], 0.4, label="focal loss")
ax.set_xticks(x, list(groups)); ax.set_ylabel("share of the total loss"); ax.legend()
ax.set_title("the same outputs, two losses", fontsize=9);

# %% [markdown] id="aug-md"
# ## 12. Augmentation: the boxes move with the pixels (exercise 4, 2 points)
#
# Data augmentation shows the network transformed copies of its training images — mirrored,
# cropped, zoomed — so that it learns what does not change under those transformations. In
# classification only the pixels move. In detection **the targets must move with them**: a
# horizontal flip of an image of width $W$ maps every pixel column $x$ to $W - x$, so a box
# $(x_1, y_1, x_2, y_2)$ becomes
#
# $$\big(W - x_2,\; y_1,\; W - x_1,\; y_2\big)$$
#
# (the right edge becomes the left edge). Our boxes use **pixel edges**: pixel $i$ spans $[i, i+1)$, so
# a box from pixel column 3 to pixel column 7 is $x_1 = 3, x_2 = 8$ and the flip is exactly $W - x$,
# with no $-1$. A **crop** of the window `(top, left, height, width)` shifts every box by
# $(-\text{left}, -\text{top})$, **clamps** it to the window $[0, \text{width}] \times [0, \text{height}]$,
# and must **drop** the boxes that are (almost) cut away — together with their labels (and masks),
# or the targets no longer match. This is what `torchvision.transforms.v2` does when it is given
# `tv_tensors.BoundingBoxes` (and `tv_tensors.Mask`): `v2.functional.horizontal_flip` and
# `v2.functional.crop` move the boxes, `v2.ClampBoundingBoxes` clamps them and
# `v2.SanitizeBoundingBoxes(min_size, min_area)` removes every box whose width or height is below
# `min_size`, or whose area is below `min_area`, with its label (both thresholds are at least 1).
#
# Write
#
# * `hflip_boxes(boxes, width)`: `boxes` is a float `(N, 4)` tensor in `xyxy` pixel-edge coordinates
#   of an image `width` pixels wide; return the boxes of the mirrored image, a new `(N, 4)` tensor of
#   the same dtype (do not modify `boxes`);
# * `crop_boxes(boxes, labels, top, left, height, width, min_size=1.0, min_area=1.0)`: the boxes and
#   labels of the crop whose top-left pixel is (`top`, `left`) and which is `height` × `width` pixels:
#   shift, clamp to the window, then keep only the boxes whose width and height are both
#   $\geq$ `min_size` and whose area is $\geq$ `min_area` (SanitizeBoundingBoxes' rule). Return
#   `(boxes, labels)`: a float `(M, 4)` tensor of the same dtype as `boxes` and the `(M,)` labels of
#   the boxes kept, in their original order. `N = 0` (an image without objects) must work.
#
# You may use torch, not `torchvision.transforms` (the tests compare with it).

# %% id="ex4-augment" role="solution"
def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """boxes (N, 4) xyxy in an image `width` pixels wide -> the boxes of the mirrored image, (N, 4)."""
    ### BEGIN SOLUTION
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([width - x2, y1, width - x1, y2], dim=-1)
    ### END SOLUTION


def crop_boxes(boxes: torch.Tensor, labels: torch.Tensor, top: int, left: int, height: int, width: int,
               min_size: float = 1.0, min_area: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """boxes (N, 4) xyxy, labels (N,) -> the (M, 4) boxes and (M,) labels inside the crop window."""
    ### BEGIN SOLUTION
    shifted = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    clamped = torch.minimum(shifted.clamp(min=0), limits)
    w, h = clamped[:, 2] - clamped[:, 0], clamped[:, 3] - clamped[:, 1]
    keep = (w >= min_size) & (h >= min_size) & (w * h >= min_area)
    return clamped[keep], labels[keep]
    ### END SOLUTION


# %% id="test-augment" role="tests" points=2
def reference_hflip(boxes, width, height=100):
    return plain(TF.horizontal_flip(tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))))


def reference_crop(boxes, labels, top, left, height, width, min_size=1.0, min_area=1.0, canvas=(100, 100)):
    cropped = TF.crop(tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas), top, left, height, width)
    out = v2.SanitizeBoundingBoxes(min_size=min_size, min_area=min_area)(
        {"boxes": v2.ClampBoundingBoxes()(cropped), "labels": labels})
    return plain(out["boxes"]), out["labels"]


# Exercise 4: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (random boxes and windows, other thresholds), no new requirements.
box = torch.tensor([[3.0, 2.0, 8.0, 6.0]])  # pixel columns 3..7 of a 10-pixel-wide image
check_close(hflip_boxes(box, 10), torch.tensor([[2.0, 2.0, 7.0, 6.0]]), name="hflip_boxes([[3, 2, 8, 6]], width=10)",
            hint="columns 3..7 become columns 2..6: x1' = W - x2, x2' = W - x1 (pixel edges: no -1); y unchanged")
boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 100.0, 50.0], [55.5, 5.0, 99.0, 7.5], [0.0, 60.0, 1.0, 61.0]])
check_close(hflip_boxes(boxes, 100), reference_hflip(boxes, 100), name="hflip_boxes(boxes, 100)",
            inputs={"boxes": boxes}, hint="the same as v2.functional.horizontal_flip of tv_tensors.BoundingBoxes")
check_close(hflip_boxes(boxes, 120), reference_hflip(boxes, 120), name="hflip_boxes(boxes, width=120)",
            hint="use the width argument")
before = boxes.clone()
hflip_boxes(boxes, 100)
check_equal(boxes, before, name="boxes after hflip_boxes(boxes, 100)", hint="return a new tensor; do not modify boxes")
check_close(hflip_boxes(hflip_boxes(boxes, 100), 100), boxes, name="hflip_boxes twice", hint="a flip undoes itself")
check_close(hflip_boxes(torch.zeros(0, 4), 100), torch.zeros(0, 4), name="hflip_boxes with no boxes",
            hint="an empty (0, 4) float32 tensor")
check_close(hflip_boxes(boxes.double(), 100), reference_hflip(boxes.double(), 100), name="hflip_boxes on float64 boxes",
            hint="keep the dtype of boxes")

labels = torch.tensor([1, 2, 3, 2])
# window rows 10..59, columns 20..79: box 0 is partly inside, box 1 clamped, box 2 kept, box 3 cut away
for args in [(10, 20, 50, 60), (0, 0, 100, 100), (5, 50, 30, 50)]:
    got_boxes, got_labels = crop_boxes(boxes, labels, *args)
    want_boxes, want_labels = reference_crop(boxes, labels, *args)
    check_close(got_boxes, want_boxes, name=f"crop_boxes(boxes, labels, top, left, height, width = {args}) boxes",
                inputs={"boxes": boxes, "labels": labels},
                hint="shift by (-left, -top), clamp to [0, width] x [0, height], drop the boxes that are cut away")
    check_equal(got_labels, want_labels, name=f"crop_boxes(..., {args}) labels",
                hint="drop the labels of the dropped boxes, keep the others in order")
# the thresholds: a box 0.5 px wide, a 1 x 1 box, a 2 x 2 box, a 3 x 0.9 box, a 4 x 4 box
small = torch.tensor([[10.0, 10.0, 10.5, 20.0], [12.0, 12.0, 13.0, 13.0], [20.0, 20.0, 22.0, 22.0],
                      [30.0, 30.0, 33.0, 30.9], [40.0, 40.0, 44.0, 44.0]])
small_labels = torch.tensor([1, 2, 3, 1, 2])
for min_size, min_area in [(1.0, 1.0), (2.0, 1.0), (1.0, 5.0), (1.5, 2.0)]:
    got_boxes, got_labels = crop_boxes(small, small_labels, 0, 0, 100, 100, min_size=min_size, min_area=min_area)
    want_boxes, want_labels = reference_crop(small, small_labels, 0, 0, 100, 100, min_size, min_area)
    check_close(got_boxes, want_boxes, name=f"crop_boxes(..., min_size={min_size}, min_area={min_area}) boxes",
                inputs={"boxes": small}, hint="keep width >= min_size and height >= min_size and area >= min_area")
    check_equal(got_labels, want_labels, name=f"crop_boxes(..., min_size={min_size}, min_area={min_area}) labels")
# a crop that keeps nothing, and an image without objects
got_boxes, got_labels = crop_boxes(boxes[:1], labels[:1], 50, 50, 20, 20)
check_close(got_boxes, torch.zeros(0, 4), name="crop_boxes: every box cropped away", hint="an empty (0, 4) tensor")
check_equal(got_labels, torch.zeros(0, dtype=torch.int64), name="crop_boxes: every box cropped away, labels")
got_boxes, got_labels = crop_boxes(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 10, 10, 30, 30)
check_close(got_boxes, torch.zeros(0, 4), name="crop_boxes with no boxes", hint="N = 0: an empty (0, 4) float32 tensor")
check_equal(got_labels, torch.zeros(0, dtype=torch.int64), name="crop_boxes with no boxes, labels")
before = boxes.clone()
crop_boxes(boxes, labels, 10, 20, 50, 60)
check_equal(boxes, before, name="boxes after crop_boxes", hint="do not modify boxes")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(4)
for trial in range(8):
    xy = torch.rand(12, 2, generator=g) * 120
    wh = torch.rand(12, 2, generator=g) * 40 + 0.2
    rand_boxes = torch.cat([xy, xy + wh], 1).clamp(max=128.0)
    rand_labels = torch.randint(1, 4, (12,), generator=g)
    check_close(hflip_boxes(rand_boxes, 128), reference_hflip(rand_boxes, 128, 128), atol=1e-5,
                name=f"hflip_boxes on random boxes (trial {trial})")
    top, left = (int(v) for v in torch.randint(0, 64, (2,), generator=g))
    height, width = (int(v) for v in torch.randint(8, 64, (2,), generator=g))
    min_size, min_area = [(1.0, 1.0), (2.0, 4.0), (1.0, 10.0), (3.0, 1.0)][trial % 4]
    got_boxes, got_labels = crop_boxes(rand_boxes, rand_labels, top, left, height, width, min_size, min_area)
    want_boxes, want_labels = reference_crop(rand_boxes, rand_labels, top, left, height, width, min_size, min_area,
                                             canvas=(128, 128))
    check_close(got_boxes, want_boxes, atol=1e-5,
                name=f"crop_boxes(random boxes, top={top}, left={left}, height={height}, width={width}, "
                     f"min_size={min_size}, min_area={min_area})")
    check_equal(got_labels, want_labels, name=f"crop_boxes labels (trial {trial})")
### END HIDDEN TESTS

# %% [markdown] id="aug-demo-md"
# The same with `torchvision.transforms.v2` on a training image: a flip, then the 80 × 80 crop whose
# top-left pixel is (24, 10), applied to the image, its `BoundingBoxes` and its instance `Mask`s, then
# `ClampBoundingBoxes` and `SanitizeBoundingBoxes` (which drops the masks of the dropped boxes too).
# The boxes drawn on the right are yours (`hflip_boxes`, then `crop_boxes`); the masks are
# torchvision's, and they still lie under the boxes. In training one uses the random versions
# (`v2.RandomHorizontalFlip`, `v2.RandomResizedCrop`, `v2.RandomIoUCrop`, ...), passed to the dataset.

# %% id="aug-demo" role="readonly"
image, target = train_set[1]
TOP, LEFT, SIDE = 24, 10, 80
moved = {k: TF.crop(TF.horizontal_flip(target[k]), TOP, LEFT, SIDE, SIDE) for k in ("boxes", "masks")}
moved = v2.SanitizeBoundingBoxes()({"boxes": v2.ClampBoundingBoxes()(moved["boxes"]), "masks": moved["masks"],
                                    "labels": target["labels"]})
aug_image = TF.crop(TF.horizontal_flip(image), TOP, LEFT, SIDE, SIDE)
yours, your_labels = crop_boxes(hflip_boxes(plain(target["boxes"]), IMAGE_SIZE), target["labels"], TOP, LEFT, SIDE, SIDE)
print("your boxes == transforms.v2's:", yours.shape == moved["boxes"].shape and torch.allclose(yours, plain(moved["boxes"])),
      "  your labels == transforms.v2's:", torch.equal(your_labels, moved["labels"]))
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8, 4))
viz.show_sample(image, target, class_names=CLASS_NAMES, ax=ax0)
ax0.set_title(f"original: {len(target['boxes'])} objects", fontsize=9)
viz.show_sample(aug_image, {"boxes": yours, "labels": your_labels, "masks": moved["masks"]}, class_names=CLASS_NAMES,
                ax=ax1)
ax1.set_title(f"flipped, cropped to {SIDE} x {SIDE}: {len(yours)} objects left", fontsize=9)
fig.tight_layout()

# %% [markdown] id="aug-effect-md"
# **Does augmentation help here?** To train with it, pass the random transforms to the dataset,
# which applies them to every item it returns (`ShapesDataset(..., transforms=augment)`):
#
# ```python
# augment = v2.Compose([v2.RandomHorizontalFlip(0.5),
#                       v2.RandomResizedCrop(IMAGE_SIZE, scale=(0.5, 1.0), ratio=(0.8, 1.25), antialias=True),
#                       v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes()])
# ```
#
# Not at the budgets of this lab. The same RetinaNet trained from scratch for 150 steps of 8 images
# with and without `augment`, evaluated on the first 150 test images (measured outside the lab, on
# 2 CPU cores: two more trainings do not fit in the lab's three minutes):
#
# | training set | without augmentation | with augmentation |
# |---|---|---|
# | 64 images (19 epochs) | mAP 0.039 | mAP 0.033 |
# | 2000 images | mAP 0.039 | mAP 0.033 |
#
# Augmentation fights **overfitting**: it pays when a model has seen its training images many times
# and starts to memorise them. A detector that is still learning what a square is — a few hundred
# steps from scratch — is not there yet; the harder, zoomed and cropped images only slow it down. With
# real data and long schedules (the COCO detectors of lab 07 train for ~12–36 epochs) flips and
# scale jitter are part of the standard recipes.

# %% [markdown] id="full-md"
# ## 13. Full mode: a COCO-pretrained RetinaNet on real photographs, then fine-tuning
#
# With a GPU (`COURSE_MODE=full`), this section loads torchvision's `retinanet_resnet50_fpn` with
# its COCO weights (ResNet-50 + FPN, 800-pixel images, 80 classes; downloaded once, 130 MB), runs it
# on COCO val2017 images and evaluates it with `coco_eval`; then **fine-tunes** it on the
# Penn-Fudan pedestrians (a new one-class head on the pretrained features) and compares AP before and
# after. The model predicts COCO's category ids (1..90, with gaps); `COCOSubset` numbers its
# classes 1..80, so predictions are mapped before evaluation. In `fast` mode this cell only says so.

# %% id="full-mode" role="readonly"
if MODE != "full":
    print("fast/smoke mode: the COCO-pretrained RetinaNet runs in full mode only (COURSE_MODE=full, with a GPU)")
else:
    from data_scripts.download import fetch_dataset

    coco_root = dataset_root("coco_val2017")
    if not (coco_root / "annotations" / "instances_val2017.json").is_file():
        coco_root = fetch_dataset("coco_val2017", coco_root.parent)  # about 1 GB, sha256-verified
    coco = COCOSubset(coco_root, max_images=200)
    pretrained = load_pretrained_retinanet(min_size=512, max_size=853)  # a notice and a small model if offline
    coco_dets, _ = predict(pretrained, DataLoader(coco, batch_size=4, collate_fn=collate), device=DEVICE)
    to_label = {cat_id: k + 1 for k, cat_id in enumerate(coco.cat_ids)}  # COCO category id -> COCOSubset label
    for d in coco_dets:
        known = torch.tensor([int(c) in to_label for c in d["labels"]], dtype=torch.bool)
        d["boxes"], d["scores"] = d["boxes"][known], d["scores"][known]
        d["labels"] = torch.tensor([to_label[int(c)] for c in d["labels"][known]], dtype=torch.int64)
    coco_result = coco_eval(coco.to_coco(), detections_to_coco([coco.ids[i] for i in range(len(coco))], coco_dets))
    print(f"pretrained={pretrained.pretrained}: COCO val2017, {len(coco)} images: mAP {coco_result.named['AP']:.3f}, "
          f"AP50 {coco_result.named['AP50']:.3f}, APs {coco_result.named['APs']:.3f}")
    record("03_retinanet/coco_subset_mAP", coco_result.named["AP"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for i, ax in enumerate(axes[:len(coco)]):
        keep = coco_dets[i]["scores"] > 0.5
        viz.draw_boxes(coco[i][0], coco_dets[i]["boxes"][keep], coco_dets[i]["labels"][keep],
                       coco_dets[i]["scores"][keep], class_names=coco.class_names, ax=ax)
    fig.tight_layout()

    # fine-tuning on Penn-Fudan: a new classifier for one class ("person"), every other weight pretrained
    penn_root = dataset_root("pennfudan")
    if not (penn_root / "PennFudanPed").is_dir():
        penn_root = fetch_dataset("pennfudan", penn_root.parent, allow_unverified=True)  # 54 MB, no published checksum
    penn = PennFudan(penn_root)
    n_test = max(1, len(penn) // 4)
    penn_train = torch.utils.data.Subset(PennFudan(penn_root, transforms=v2.RandomHorizontalFlip(0.5)),
                                         range(n_test, len(penn)))
    penn_test = torch.utils.data.Subset(penn, range(n_test))
    penn_gt = penn.to_coco()
    penn_gt["images"] = penn_gt["images"][:n_test]
    penn_gt["annotations"] = [a for a in penn_gt["annotations"] if a["image_id"] < n_test]

    def penn_ap(net, label_of_person):
        dets, _ = predict(net, DataLoader(penn_test, batch_size=4, collate_fn=collate), device=DEVICE)
        for d in dets:
            person = d["labels"] == label_of_person
            d["boxes"], d["scores"] = d["boxes"][person], d["scores"][person]
            d["labels"] = torch.ones(int(person.sum()), dtype=torch.int64)
        return coco_eval(penn_gt, detections_to_coco(list(range(n_test)), dets)).named

    before = penn_ap(pretrained, label_of_person=1)  # COCO's "person" is category 1
    replace_classifier(pretrained, num_classes=2)  # labels 0 (unused) and 1 (person)
    params = [p for p in pretrained.parameters() if p.requires_grad]
    tune_opt = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=1e-4)
    fit(pretrained, DataLoader(penn_train, batch_size=4, shuffle=True, collate_fn=collate), tune_opt,
        steps=steps(fast=3, full=600), grad_clip=10.0, seed=0, device=DEVICE, log_every=20)
    after = penn_ap(pretrained, label_of_person=1)
    print(f"Penn-Fudan test set of {n_test} image(s): AP50 {before['AP50']:.3f} -> {after['AP50']:.3f}, "
          f"mAP {before['AP']:.3f} -> {after['AP']:.3f} after fine-tuning")
    record("03_retinanet/pennfudan_mAP_before", before["AP"])
    record("03_retinanet/pennfudan_mAP_after", after["AP"])

# %% [markdown] id="outro"
# **What to remember.** A dense detector classifies every anchor of every level; anchors make the
# regression targets small and scale-free; the feature pyramid gives each object size a level with
# the right stride and receptive field; the focal loss keeps the flood of easy background anchors
# from drowning the few objects. RetinaNet still needs hand-set anchors, IoU thresholds and NMS.
# Next, **two-stage** detectors (lab 04: Faster R-CNN and Mask R-CNN) spend a first stage on proposing
# regions and a second on refining them — and later, DETR (lab 06) removes anchors and NMS altogether.
#
# **References.** T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, *Focal Loss for Dense Object
# Detection*, ICCV 2017. T.-Y. Lin, P. Dollár, R. Girshick, K. He, B. Hariharan, S. Belongie, *Feature
# Pyramid Networks for Object Detection*, CVPR 2017. S. Ren, K. He, R. Girshick, J. Sun, *Faster
# R-CNN*, NeurIPS 2015 (anchors, box parametrisation). R. Girshick et al., *Rich feature hierarchies*
# (R-CNN), CVPR 2014.
