# %% [markdown] id="intro"
# <!-- COLAB_BADGE: notebook_src/build.py puts the Open-in-Colab badge here -->
#
# # Lab 08 — Heatmaps: keypoints with a stacked hourglass, and detection without anchors
#
# *CNNs part II — beyond image classification.*
#
# Every detector so far predicted **numbers per anchor, per cell or per query**. This lab predicts
# **images**: one *heatmap* per kind of point, whose peaks are the points. It closes the arc of the
# course — detection *is* keypoint estimation:
#
# 1. **Keypoints.** Every shape has 5 named keypoints (a square's corners and centre, a circle's
#    centre and compass points, …). The target of each is a **Gaussian heatmap** (exercise 1);
#    a **stacked hourglass** (Newell, Yang, Deng, *Stacked Hourglass Networks for Human Pose
#    Estimation*, ECCV 2016 — lab 05's network) learns them with intermediate supervision; the
#    peaks are read with **sub-pixel** precision by the paper's quarter-offset trick (exercise 2);
#    measured by PCK and COCO's keypoint AP (OKS).
# 2. **Objects as points.** CornerNet (Law & Deng, ECCV 2018) finds a box as a pair of corner
#    keypoints; CenterNet (Zhou, Wang, Krähenbühl, *Objects as Points*, 2019) as its **centre** plus
#    its size. Both train their heatmaps with a **focal loss variant** that forgives near misses
#    (exercise 3) and read the peaks with a **3×3 max-pool instead of NMS** (exercise 4); CornerNet's
#    corners, often outside the object, need **corner pooling** (exercise 5). No anchors, no box
#    matching, no NMS.

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

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from course_utils import viz
from course_utils.config import by_mode, record, setup, steps
from course_utils.data import (
    NUM_KEYPOINTS,
    SHAPE_KEYPOINT_SIGMAS,
    SHAPE_KEYPOINTS,
    ShapesDataset,
    collate_detection,
    detections_to_coco,
)
from course_utils.grading import check_close, check_equal, check_shape, check_vectorised
from course_utils.metrics import coco_eval
from course_utils.models import StackedHourglass, build_detector
from course_utils.models import heatmap_focal_loss as reference_focal_loss
from course_utils.tensors import plain
from course_utils.train import checkpoint_path, fit, predict, save_cached

SETUP = setup(seed=0)
MODE, DEVICE = SETUP.mode, SETUP.device

# %% [markdown] id="data-md"
# ## 1. The data: shapes with named keypoints
#
# The synthetic shapes again (64×64 pixels), now with `keypoints=True`: each object carries
# `target["keypoints"]`, a `(N, 5, 3)` tensor of rows $(x, y, v)$ in pixels — torchvision's and COCO's
# format. Slot 0 is the centre (a triangle's centroid); slots 1–4 are the class's own landmarks
# (below). $v$ is COCO's visibility flag: 2 visible, 1 hidden under another object (still labelled),
# 0 not labelled (e.g. cropped away). For the hourglass we use the `single` preset — one object per
# image, the setting of Newell et al., whose network sees one person per crop; CenterNet later finds
# several objects per image.

# %% id="data" role="readonly"
IMAGE_SIZE = 64
CLASS_NAMES = ShapesDataset(1).class_names  # circle, square, triangle
NUM_CLASSES = len(CLASS_NAMES)
for name in CLASS_NAMES:
    print(f"{name:9} keypoints: {', '.join(SHAPE_KEYPOINTS[name]['names'])}")
kp_train = ShapesDataset(by_mode(smoke=32, fast=800, full=4000), IMAGE_SIZE, preset="single", seed=0,
                         keypoints=True)
kp_test = ShapesDataset(by_mode(smoke=16, fast=200, full=500), IMAGE_SIZE, preset="single", seed=1,
                        keypoints=True)


def show_keypoints(image, labels, points, ax, title=""):
    """An image with each object's keypoints (numbered by slot) and skeleton."""
    ax.imshow(viz.to_hwc(image)); ax.set_axis_off(); ax.set_title(title, fontsize=9)
    for label, kp in zip(labels.tolist(), points):
        spec = SHAPE_KEYPOINTS[CLASS_NAMES[label - 1]]
        for a, b in spec["skeleton"]:
            ax.plot(kp[[a - 1, b - 1], 0] - 0.5, kp[[a - 1, b - 1], 1] - 0.5, color="white", lw=1)
        for j, (x, y, v) in enumerate(kp.tolist()):
            if v > 0:
                ax.scatter(x - 0.5, y - 0.5, s=18, color=plt.cm.tab10(j), edgecolors="black", linewidths=0.5,
                           marker="o" if v == 2 else "D")


fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
for i, ax in enumerate(axes):
    image, target = kp_train[i]
    show_keypoints(image, target["labels"], target["keypoints"], ax, CLASS_NAMES[int(target["labels"][0]) - 1])
fig.suptitle("keypoints by slot: 0 (blue) is the centre", fontsize=10);

# %% [markdown] id="ex1-md"
# ## 2. Gaussian heatmap targets (exercise 1, 2 points)
#
# A network cannot output "the point (23.4, 40.1)" as an image, but it can output an image that is
# bright there. Newell et al. train the hourglass to output, for every keypoint, a **2-D Gaussian**
# centred on the true location:
#
# $$Y_{ij} = \max_{p\,:\,v_p > 0} \exp\!\Big(-\frac{(j + \tfrac12 - x_p)^2 + (i + \tfrac12 - y_p)^2}{2\sigma^2}\Big).$$
#
# The conventions, which the decoder of exercise 2 relies on:
#
# * pixel $(i, j)$ (row $i$, column $j$) covers $[j, j+1) \times [i, i+1)$: its **centre** is
#   $(j + \tfrac12, i + \tfrac12)$ — the same pixel-edge convention as the boxes of the course;
# * the Gaussian is centred on the **exact, sub-pixel** point (not rounded);
# * several points in one map (two objects of the same class): the **maximum** of their Gaussians,
#   not the sum (a sum would put a peak above 1 between two close points, and the network would
#   learn peaks *between* objects);
# * a point with $v = 0$ is not labelled: it draws **nothing**; a labelled point near or even beyond
#   the border draws the part of its Gaussian that falls inside the map (no clipping of the point,
#   no renormalisation);
# * no labelled point: a map of zeros.
#
# Write `keypoint_heatmap(points, height, width, sigma)`, returning a `float32` map. Any `torch`
# operation may be used (a loop over the points is fine: there are few). The tests compare with the
# formula above evaluated one pixel at a time.


# %% id="ex1-heatmap" role="solution"
def keypoint_heatmap(points: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """points (P, 3) rows (x, y, v) in pixels -> (height, width) float32 heatmap: the max of the
    Gaussians of the labelled points (v > 0), centred on the exact points."""
    ### BEGIN SOLUTION
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5  # (H, 1) pixel centres
    xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5  # (1, W)
    heatmap = torch.zeros(height, width)
    for x, y, v in points.tolist():
        if v > 0:
            gaussian = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
            heatmap = torch.maximum(heatmap, gaussian)
    return heatmap
    ### END SOLUTION


# %% id="test-heatmap" role="tests" points=2
# Exercise 1: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (random points, sizes and sigmas), no new requirements.
def brute_force_heatmap(points, height, width, sigma):
    """The formula above, one pixel at a time."""
    out = torch.zeros(height, width)
    for i in range(height):
        for j in range(width):
            values = [np.exp(-((j + 0.5 - x) ** 2 + (i + 0.5 - y) ** 2) / (2 * sigma**2))
                      for x, y, v in points.tolist() if v > 0]
            out[i, j] = max(values, default=0.0)
    return out


one = keypoint_heatmap(torch.tensor([[3.5, 2.5, 2.0]]), 6, 8, 1.0)
check_shape(one, (6, 8), name="keypoint_heatmap(one point, 6, 8, 1.0)", hint="(height, width): rows, then columns")
check_close(one[2, 3], torch.tensor(1.0), name="the value at the pixel whose centre is the point (row 2, column 3)",
            hint="pixel (i, j) has its centre at (j + 0.5, i + 0.5)")
check_close(one[2, 4], torch.tensor(np.exp(-0.5), dtype=torch.float32), name="one pixel to the right, 1 sigma away",
            hint="exp(-d^2 / (2 sigma^2))")
check_close(one, brute_force_heatmap(torch.tensor([[3.5, 2.5, 2.0]]), 6, 8, 1.0), name="the whole map of one point")
pts = torch.tensor([[1.2, 4.7, 2.0], [5.9, 1.1, 1.0], [2.0, 2.0, 0.0]])
check_close(keypoint_heatmap(pts, 6, 7, 1.3), brute_force_heatmap(pts, 6, 7, 1.3),
            name="two labelled points (v = 2 and v = 1) and an unlabelled one (v = 0), sigma 1.3",
            hint="v = 1 is labelled (hidden, still a target); v = 0 draws nothing; exact sub-pixel centres")
close = torch.tensor([[3.5, 2.5, 2.0], [4.5, 2.5, 2.0]])
check_close(keypoint_heatmap(close, 6, 8, 1.0), brute_force_heatmap(close, 6, 8, 1.0),
            name="two overlapping Gaussians 1 px apart (never above 1)", hint="combine the points with a maximum, not a sum")
border = torch.tensor([[0.0, 0.0, 2.0], [9.7, 6.2, 2.0], [-1.5, 3.0, 1.0]])
check_close(keypoint_heatmap(border, 6, 9, 1.0), brute_force_heatmap(border, 6, 9, 1.0),
            name="points on the corner, past the right edge and left of the map",
            hint="no clipping of the point to the border, no wrap-around: the tail inside the map is drawn")
check_equal(keypoint_heatmap(torch.tensor([[2.0, 2.0, 0.0]]), 4, 4, 1.0), torch.zeros(4, 4),
            name="only an unlabelled point: zeros", hint="v = 0 draws nothing")
check_equal(keypoint_heatmap(torch.zeros(0, 3), 3, 5, 1.0), torch.zeros(3, 5), name="no point at all (0, 3): zeros",
            hint="start from a float32 map of zeros")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(8)
for h_, w_, sigma_, n_ in [(9, 11, 1.0, 4), (16, 16, 2.0, 6), (7, 5, 0.7, 3), (12, 20, 1.5, 8)]:
    p_ = torch.rand(n_, 3, generator=g) * torch.tensor([w_ * 1.4, h_ * 1.4, 1.0]) - torch.tensor([w_ * 0.2, h_ * 0.2, 0])
    p_[:, 2] = torch.randint(0, 3, (n_,), generator=g).float()
    p_[0, 2] = 2.0
    check_close(keypoint_heatmap(p_, h_, w_, sigma_), brute_force_heatmap(p_, h_, w_, sigma_), atol=1e-5,
                name=f"{n_} random points (some outside the map, some unlabelled) on {h_}x{w_}, sigma {sigma_}",
                hint="exact sub-pixel centres; max over labelled points; points beyond the border keep their tail")
### END HIDDEN TESTS


# %% [markdown] id="ex2-md"
# ## 3. Reading a heatmap with sub-pixel precision (exercise 2, 2 points)
#
# The simplest decoder takes the **argmax** pixel $(i, j)$ and returns its centre
# $(j + \tfrac12, i + \tfrac12)$: an error of up to half a pixel — at a heatmap of a quarter of the
# input resolution (the hourglass paper), up to 2 input pixels. Newell et al. (sec. 3.2, following
# Tompson et al.) shift the estimate by **a quarter of a pixel towards the higher neighbour**:
#
# $$\hat x = j + \tfrac12 + \tfrac14\,\mathrm{sign}\big(Y_{i, j+1} - Y_{i, j-1}\big), \qquad
# \hat y = i + \tfrac12 + \tfrac14\,\mathrm{sign}\big(Y_{i+1, j} - Y_{i-1, j}\big).$$
#
# The true point is on the side of the higher neighbour, so the quarter shift halves the
# average rounding error. On the border a pixel has only one neighbour along that axis: **no shift
# along it** (and no wrap-around to the other side of the map). The score of the keypoint is the
# peak value $Y_{ij}$.
#
# Write `decode_heatmaps(heatmaps, quarter=True)`: for `(N, K, H, W)` heatmaps, the `(N, K, 3)`
# rows $(\hat x, \hat y, \text{score})$ of each map's argmax (with `quarter=False`, the plain pixel
# centre), as `float32`. Any `torch` operation may be used, but no Python loop over the maps (a
# batch of heatmaps is decoded at once); the tests compare with a brute-force decoder that loops.


# %% id="ex2-decode" role="solution"
def decode_heatmaps(heatmaps: torch.Tensor, quarter: bool = True) -> torch.Tensor:
    """(N, K, H, W) heatmaps -> (N, K, 3) float32 rows (x, y, score): the argmax of each map at its pixel
    centre, shifted by a quarter pixel towards the higher neighbour (not on the border) when ``quarter``."""
    ### BEGIN SOLUTION
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    score, index = flat.max(dim=2)  # (N, K)
    ys, xs = index // w, index % w  # (N, K)
    x, y = xs.float() + 0.5, ys.float() + 0.5
    if quarter:
        def at(yy, xx):
            return heatmaps.gather(2, yy.clamp(0, h - 1)[..., None, None].expand(n, k, 1, w)
                                   ).squeeze(2).gather(2, xx.clamp(0, w - 1)[..., None]).squeeze(2)

        inside_x = (xs > 0) & (xs < w - 1)
        inside_y = (ys > 0) & (ys < h - 1)
        x = x + torch.where(inside_x, 0.25 * torch.sign(at(ys, xs + 1) - at(ys, xs - 1)), 0.0)
        y = y + torch.where(inside_y, 0.25 * torch.sign(at(ys + 1, xs) - at(ys - 1, xs)), 0.0)
    return torch.stack([x, y, score.float()], dim=2)
    ### END SOLUTION


# %% id="test-decode" role="tests" points=2
# Exercise 2: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (other shapes, more border peaks), no new requirements.
def brute_force_decode(heatmaps, quarter=True):
    """One map at a time, with Python loops."""
    n, k, h, w = heatmaps.shape
    out = torch.zeros(n, k, 3)
    for a in range(n):
        for b in range(k):
            m = heatmaps[a, b]
            i, j = divmod(int(m.argmax()), w)
            x, y = j + 0.5, i + 0.5
            if quarter and 0 < j < w - 1:
                x += 0.25 * float(np.sign(float(m[i, j + 1] - m[i, j - 1])))
            if quarter and 0 < i < h - 1:
                y += 0.25 * float(np.sign(float(m[i + 1, j] - m[i - 1, j])))
            out[a, b] = torch.tensor([x, y, float(m[i, j])])
    return out


m = torch.zeros(1, 1, 5, 6)
m[0, 0, 2, 3], m[0, 0, 2, 4], m[0, 0, 2, 2], m[0, 0, 1, 3], m[0, 0, 3, 3] = 1.0, 0.6, 0.2, 0.3, 0.1
check_close(decode_heatmaps(m), torch.tensor([[[3.75, 2.25, 1.0]]]),
            name="peak at row 2, column 3; right neighbour higher, upper neighbour higher",
            hint="x = j + 0.5 + 0.25 sign(right - left), y = i + 0.5 + 0.25 sign(below - above)")
check_close(decode_heatmaps(m, quarter=False), torch.tensor([[[3.5, 2.5, 1.0]]]), name="quarter=False",
            hint="the plain pixel centre (j + 0.5, i + 0.5)")
torch.manual_seed(0)
maps = torch.rand(2, 3, 7, 9)
check_close(decode_heatmaps(maps), brute_force_decode(maps), name="random maps (2, 3, 7, 9)",
            hint="argmax per map; rows are y, columns x")
edges = torch.zeros(4, 1, 5, 5)
edges[0, 0, 0, 0] = 1; edges[0, 0, 0, 1] = 0.5; edges[0, 0, 1, 0] = 0.4  # a corner
edges[1, 0, 2, 4] = 1; edges[1, 0, 2, 0] = 0.9; edges[1, 0, 2, 3] = 0.1  # right border; the far side is bright
edges[2, 0, 4, 2] = 1; edges[2, 0, 0, 2] = 0.9; edges[2, 0, 3, 2] = 0.2; edges[2, 0, 4, 3] = 0.5  # bottom border
edges[3, 0, 2, 2] = 1; edges[3, 0, 2, 1] = 0.7; edges[3, 0, 2, 3] = 0.7  # equal neighbours: sign 0
check_close(decode_heatmaps(edges), brute_force_decode(edges), name="peaks on the border and equal neighbours",
            hint="on the border, no shift along that axis (and no wrap-around); equal neighbours: no shift")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(9)
for shape in [(3, 5, 6, 6), (1, 2, 4, 11), (4, 1, 10, 3)]:
    maps_ = torch.rand(*shape, generator=g)
    check_close(decode_heatmaps(maps_), brute_force_decode(maps_), name=f"random maps {shape}",
                hint="argmax per map; rows are y, columns x; a quarter towards the higher neighbour")
    check_close(decode_heatmaps(maps_, quarter=False), brute_force_decode(maps_, quarter=False),
                name=f"random maps {shape}, quarter=False")
rows = torch.zeros(2, 2, 1, 6)  # one row: y is never shifted
rows[0, 0, 0, 2], rows[0, 0, 0, 3] = 1.0, 0.5
rows[1, 1, 0, 5], rows[1, 1, 0, 4] = 0.8, 0.3
check_close(decode_heatmaps(rows), brute_force_decode(rows), name="maps of a single row",
            hint="an axis of length 1 has no neighbour: no shift along it")
### END HIDDEN TESTS


# %% [markdown] id="ex3-md"
# ## 4. The heatmap focal loss of CornerNet and CenterNet (exercise 3, 2 points)
#
# CenterNet (section 7) puts **one Gaussian per object at its centre cell** (peak exactly 1; $\sigma$
# from the box size, CornerNet's radius) into a heatmap per class, at stride 4. Training it with a
# plain per-pixel loss fails: a 16×16 map of a few objects has a handful of positive cells among
# hundreds, and a cell one step from a centre is "negative" although predicting it would give a good
# box. The same holds for keypoint heatmaps, where we use it first (section 5).
# CornerNet's answer (eq. 1), which CenterNet keeps: a **focal loss** (lab 03) whose negatives are
# **down-weighted by $(1 - Y)^\beta$** near a true centre. With $p = \sigma(\text{logit})$,
#
# $$\mathcal{L} = -\frac{1}{N}\sum_{cij}\begin{cases}
# (1 - p_{cij})^{\alpha}\,\log p_{cij} & \text{if } Y_{cij} = 1\\[2pt]
# (1 - Y_{cij})^{\beta}\,p_{cij}^{\alpha}\,\log(1 - p_{cij}) & \text{otherwise,}
# \end{cases}$$
#
# with $\alpha = 2$, $\beta = 4$, and $N$ the number of **positive** cells ($Y = 1$) in the batch — not
# the number of cells (that would make the loss vanish on large maps); $N = 1$ when there is none.
# Compute $\log p$ and $\log(1-p)$ stably: `F.logsigmoid(logits)` and `F.logsigmoid(-logits)`.
#
# Write `heatmap_focal_loss(logits, target, alpha=2.0, beta=4.0)` for `(B, C, H, W)` tensors: a scalar
# of the logits' dtype. Any `torch` operation may be used; the tests compare with the formula by hand and
# with the library's `course_utils.models.heatmap_focal_loss` (values and gradients).


# %% id="ex3-focal" role="solution"
def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                       beta: float = 4.0) -> torch.Tensor:
    """logits, target (B, C, H, W) -> scalar: CornerNet's penalty-reduced focal loss over the positives."""
    ### BEGIN SOLUTION
    p = torch.sigmoid(logits)
    positive = target == 1
    pos = (1 - p) ** alpha * F.logsigmoid(logits)
    neg = (1 - target) ** beta * p**alpha * F.logsigmoid(-logits)
    total = pos[positive].sum() + neg[~positive].sum()
    return -total / positive.sum().clamp(min=1)
    ### END SOLUTION


# %% id="test-focal" role="tests" points=2
# Exercise 3: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (shapes, numbers of positives, alpha and beta), no new requirements.
logits = torch.tensor([[[[2.0, -1.0], [0.0, -3.0]]]])
target = torch.tensor([[[[1.0, 0.5], [0.0, 0.9]]]])
p = torch.sigmoid(logits)
by_hand = -((1 - p[0, 0, 0, 0]) ** 2 * torch.log(p[0, 0, 0, 0])
            + sum((1 - target[0, 0, i, j]) ** 4 * p[0, 0, i, j] ** 2 * torch.log(1 - p[0, 0, i, j])
                  for i, j in [(0, 1), (1, 0), (1, 1)]))
check_close(heatmap_focal_loss(logits, target), by_hand, name="one positive, three negatives (by hand)",
            hint="positives: (1-p)^alpha log p; negatives: (1-Y)^beta p^alpha log(1-p); divide by the positives")
torch.manual_seed(0)
logits = torch.randn(2, 3, 8, 8, requires_grad=True)
target = torch.rand(2, 3, 8, 8) * 0.95
target[0, 1, 2, 3] = target[1, 0, 5, 5] = target[1, 2, 0, 7] = 1.0
check_close(heatmap_focal_loss(logits, target), reference_focal_loss(logits, target),
            name="random (2, 3, 8, 8) maps with 3 positives", hint="N = the number of cells with Y == 1 in the batch")
check_close(heatmap_focal_loss(logits, target, alpha=1.0, beta=2.0), reference_focal_loss(logits, target, 1.0, 2.0),
            name="alpha=1, beta=2", hint="use the alpha and beta arguments")
no_positive = target.clamp(max=0.9)
check_close(heatmap_focal_loss(logits, no_positive), reference_focal_loss(logits, no_positive),
            name="no positive cell: N = 1", hint="divide by max(number of positives, 1)")
positives_only, negatives_only = (target == 1).float(), torch.where(target == 1, 0.5, target)
for term, tg_ in [("the positives' term", positives_only), ("the negatives' term", negatives_only)]:
    ref_lg = logits.detach().clone().requires_grad_()
    reference_focal_loss(ref_lg, tg_).backward()
    lg_ = logits.detach().clone().requires_grad_()
    heatmap_focal_loss(lg_, tg_).backward()
    check_close(lg_.grad, ref_lg.grad, name=f"gradient w.r.t. the logits of {term}", atol=1e-6,
                hint="compute on the logits with torch operations (no .item(), no .detach())")
big = torch.full((1, 1, 3, 3), 30.0)
check_close(heatmap_focal_loss(big, torch.zeros(1, 1, 3, 3)), reference_focal_loss(big, torch.zeros(1, 1, 3, 3)),
            name="very confident wrong logits (30): finite", rtol=1e-4, hint="use F.logsigmoid, not log(sigmoid)")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(10)
for shape, n_pos, a_, b_ in [((1, 1, 5, 5), 1, 2.0, 4.0), ((3, 2, 6, 4), 5, 2.0, 4.0), ((2, 4, 7, 7), 9, 1.0, 2.0),
                             ((2, 1, 4, 4), 0, 2.0, 4.0), ((1, 3, 9, 5), 2, 3.0, 1.0)]:
    lg = torch.randn(*shape, generator=g) * 3
    tg = torch.rand(*shape, generator=g) * 0.99
    flat = tg.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:n_pos]] = 1.0
    check_close(heatmap_focal_loss(lg, tg, alpha=a_, beta=b_), reference_focal_loss(lg, tg, a_, b_),
                name=f"{shape} maps, {n_pos} positives, alpha {a_}, beta {b_}", rtol=1e-4,
                hint="positives are Y == 1 exactly; N counts them (1 when there is none); use alpha and beta")
small = torch.full((1, 1, 2, 2), -30.0)
check_close(heatmap_focal_loss(small, torch.ones(1, 1, 2, 2)), reference_focal_loss(small, torch.ones(1, 1, 2, 2)),
            name="very confident wrong logits (-30) on positives: finite", rtol=1e-4)
### END HIDDEN TESTS


# %% [markdown] id="hourglass-md"
# ## 5. A stacked hourglass for keypoints
#
# Lab 05's `StackedHourglass`, now as Newell et al. built it for pose: a stem that brings the
# 64×64 image down to **stride 4** (a 16×16 grid of cells), two hourglasses, and **one output
# channel per (class, keypoint)** — 3 classes × 5 slots = 15 heatmaps of 16×16 cells. A point
# $(x, y)$ of the image is the point $(x/4, y/4)$ of its heatmap (same pixel-edge convention), whose
# target is your Gaussian of exercise 1 with $\sigma$ = 1 cell — the paper's $\sigma$ = 1 at its 64×64
# output. The heatmap's coarse cells are why exercise 2 exists: the argmax alone errs by up to 2
# image pixels; the quarter offset halves that.
#
# **The loss.** Newell et al. use the mean squared error. Measured here: in the few hundred CPU steps
# of fast mode an MSE-trained hourglass stays on the plateau of "all zeros" (keypoint AP ≈ 0.01) —
# almost every target cell is background. So we train with **your focal loss of exercise 3**, as
# CenterNet does for its human-pose heatmaps. It needs one cell with $Y = 1$ per point: the cell that
# contains the point; its neighbours keep the sub-pixel Gaussian, which the quarter offset reads.
#
# **Intermediate supervision.** The loss is applied to **every stack's** output and summed — each
# stack gets a gradient of its own, and the second one learns to refine the first one's guess. To see
# what it buys, the same network is trained a second time with the loss on the **last stack only**,
# with the same steps and seed.
#
# At test time the class is the group of 5 maps with the highest mean peak; its 5 peaks are the
# keypoints (your decoder, times the stride), their mean the detection's score. Two measures:
# **PCK** (percentage of correct keypoints: labelled points within $0.1\times$ the object's longer
# side), and COCO's **keypoint AP**, where a prediction matches a ground truth when their **object
# keypoint similarity**
# $\mathrm{OKS} = \frac{1}{|\{p: v_p > 0\}|}\sum_{p: v_p>0} \exp\!\big(-d_p^2 / (2 s^2 k_p^2)\big)$
# reaches the threshold ($d_p$ the distance, $s^2$ the object's area, $k_p = 2\sigma_p$ a per-keypoint
# constant) — IoU's role, for points; AP averages the OKS thresholds 0.5, 0.55, …, 0.95.

# %% id="hourglass-data" role="readonly"
STRIDE, SIGMA = 4, 1.0  # heatmap cells of 4x4 pixels; the Gaussian's sigma in cells
CELLS = IMAGE_SIZE // STRIDE


def keypoint_tensors(dataset):
    """(N, 3, H, W) images, (N, 15, H/4, W/4) targets (channel = 5 (label - 1) + slot), (N, 5, 3) keypoints
    in image pixels, (N,) labels of the single-object `dataset`."""
    images, targets, points, labels = [], [], [], []
    for i in range(len(dataset)):
        image, target = dataset[i]
        maps = torch.zeros(NUM_CLASSES * NUM_KEYPOINTS, CELLS, CELLS)
        for c in range(NUM_CLASSES):
            of_class = target["keypoints"][target["labels"] == c + 1].clone()  # (n, 5, 3)
            of_class[..., :2] /= STRIDE  # image pixels -> heatmap cells
            for j in range(NUM_KEYPOINTS):
                maps[c * NUM_KEYPOINTS + j] = keypoint_heatmap(of_class[:, j], CELLS, CELLS, SIGMA)
                for x, y, v in of_class[:, j].tolist():  # the focal loss's positive: the cell holding the point
                    if v > 0 and 0 <= x < CELLS and 0 <= y < CELLS:
                        maps[c * NUM_KEYPOINTS + j, int(y), int(x)] = 1.0
        images.append(plain(image)); targets.append(maps)
        points.append(target["keypoints"][0]); labels.append(int(target["labels"][0]))
    return torch.stack(images), torch.stack(targets), torch.stack(points), torch.tensor(labels)


train_images, train_maps, _, _ = keypoint_tensors(kp_train)
test_images, _, test_points, test_labels = keypoint_tensors(kp_test)
kp_test_coco = kp_test.to_coco()  # the ground truth of every evaluation below
test_sides = torch.stack([(t["boxes"][0, 2:] - t["boxes"][0, :2]).max() for _, t in kp_test])  # (N,) longer sides
print(f"targets {tuple(train_maps.shape)}: {float((train_maps == 1).float().mean()):.2%} of the cells are positives")


def keypoint_detections(maps, quarter=True):
    """One detection per image: the class whose 5 maps peak highest, its 5 keypoints in image pixels."""
    decoded = decode_heatmaps(maps, quarter=quarter)  # (N, 15, 3) in heatmap cells
    decoded = torch.cat([decoded[..., :2] * STRIDE, decoded[..., 2:]], dim=2)  # cells -> image pixels
    decoded = decoded.reshape(len(maps), NUM_CLASSES, NUM_KEYPOINTS, 3)
    classes = decoded[..., 2].mean(dim=2).argmax(dim=1)  # (N,)
    return classes + 1, decoded[torch.arange(len(maps)), classes]  # (N,), (N, 5, 3)


def keypoint_ap(maps, quarter=True):
    """COCO keypoint evaluation of the test set's detections (OKS with the shapes' sigmas)."""
    labels, points = keypoint_detections(maps, quarter)
    dts = [{"image_id": i, "category_id": int(labels[i]), "score": float(points[i, :, 2].mean()),
            "keypoints": torch.cat([points[i, :, :2], torch.ones(NUM_KEYPOINTS, 1)], 1).reshape(-1).tolist()}
           for i in range(len(maps))]
    return coco_eval(kp_test_coco, dts, "keypoints", kpt_oks_sigmas=SHAPE_KEYPOINT_SIGMAS)


def pck(maps, alpha=0.1):
    """Share of the labelled test keypoints found within alpha x the object's longer side (right class)."""
    labels, points = keypoint_detections(maps)
    labelled = test_points[..., 2] > 0  # (N, 5)
    close = (points[..., :2] - test_points[..., :2]).norm(dim=2) <= alpha * test_sides[:, None]
    return float((close & labelled & (labels == test_labels)[:, None]).sum() / labelled.sum())


# %% id="hourglass-train" role="readonly"
def stacked_focal_loss(outputs, target):
    """Intermediate supervision: your heatmap focal loss on every stack's logits, summed."""
    return sum(heatmap_focal_loss(out, target) for out in outputs)


def last_stack_focal_loss(outputs, target):
    """The contrast: the loss on the last stack only."""
    return heatmap_focal_loss(outputs[-1], target)


def test_maps(model):
    """Every stack's heatmaps of the test images: a list of S tensors (N, 15, H/4, W/4) in [0, 1]."""
    logits, _ = predict(model, DataLoader(TensorDataset(test_images, test_labels), batch_size=100), device=DEVICE)
    return [torch.sigmoid(x) for x in logits]


HOURGLASS_STEPS = steps(fast=300, full=3000)
hourglasses, histories = {}, {}
for name, loss_fn in [("every stack", stacked_focal_loss), ("last stack only", last_stack_focal_loss)]:
    torch.manual_seed(0)
    model = StackedHourglass(NUM_CLASSES * NUM_KEYPOINTS, num_stacks=2, channels=32, depth=2, stride=STRIDE,
                             upsample=False)
    for head in model.heads:  # start every heatmap at probability 0.1, as CenterNet
        torch.nn.init.constant_(head.bias, -2.19)
    print(f"training the hourglass, loss on {name}")
    histories[name] = fit(model, DataLoader(TensorDataset(train_images, train_maps), batch_size=16, shuffle=True),
                          torch.optim.Adam(model.parameters(), lr=2e-3), HOURGLASS_STEPS, loss_fn=loss_fn,
                          eval_fn=lambda m: {"AP": keypoint_ap(test_maps(m)[-1]).named["AP"]},
                          eval_every=max(HOURGLASS_STEPS // 3, 1), device=DEVICE, seed=0)
    hourglasses[name] = model
hourglass = hourglasses["every stack"]
if MODE != "smoke":
    save_cached(checkpoint_path("08_heatmaps", "keypoint_hourglass"), hourglass, {"mode": MODE, "steps": HOURGLASS_STEPS})

fig, ax = plt.subplots(figsize=(5, 3.2))
for name, history in histories.items():
    ax.plot(history["val_step"], history["val_AP"], marker="o", label=f"loss on {name}")
    for step, ap in zip(history["val_step"], history["val_AP"]):
        key = "intermediate" if name == "every stack" else "last_only"
        record(f"08_heatmaps/{key}_supervision_AP_step{step}", ap)
ax.set_xlabel("step"); ax.set_ylabel("keypoint AP (last stack)"); ax.legend(); ax.set_title("intermediate supervision")
fig.tight_layout()

# %% id="hourglass-eval" role="readonly"
stack_maps = test_maps(hourglass)
for name, model in hourglasses.items():
    for s, maps in enumerate(test_maps(model), start=1):
        result = keypoint_ap(maps)
        print(f"loss on {name:15} stack {s}: keypoint AP {result.named['AP']:.3f}, AP(OKS 0.5) "
              f"{result.named['AP50']:.3f}, AP(OKS 0.75) {result.named['AP75']:.3f}, PCK@0.1 {pck(maps):.3f}")
        if name == "every stack":
            record(f"08_heatmaps/hourglass_stack{s}_keypoint_AP", result.named["AP"])
final = keypoint_ap(stack_maps[-1])
plain_centres = keypoint_ap(stack_maps[-1], quarter=False)
record("08_heatmaps/keypoint_AP", final.named["AP"])
record("08_heatmaps/keypoint_AP50", final.named["AP50"])
record("08_heatmaps/keypoint_AP75", final.named["AP75"])
record("08_heatmaps/keypoint_AP_no_quarter_offset", plain_centres.named["AP"])
record("08_heatmaps/keypoint_AP75_no_quarter_offset", plain_centres.named["AP75"])
record("08_heatmaps/last_stack_only_keypoint_AP", keypoint_ap(test_maps(hourglasses["last stack only"])[-1]).named["AP"])
record("08_heatmaps/PCK", pck(stack_maps[-1]))
print(f"quarter offset: keypoint AP {final.named['AP']:.3f} with, {plain_centres.named['AP']:.3f} without; "
      f"AP(OKS 0.75) {final.named['AP75']:.3f} with, {plain_centres.named['AP75']:.3f} without")

labels, points = keypoint_detections(stack_maps[-1])
fig, axes = plt.subplots(2, 5, figsize=(12, 5.2))
for i in range(5):
    show_keypoints(test_images[i], test_labels[i:i + 1], test_points[i:i + 1], axes[0, i], "ground truth")
    show_keypoints(test_images[i], labels[i:i + 1], points[i:i + 1].numpy().copy(), axes[1, i],
                   f"predicted: {CLASS_NAMES[int(labels[i]) - 1]}")
fig.tight_layout()

# %% [markdown] id="explorer-md"
# **Explore.** Pick a test image and a keypoint slot: the heatmap each stack predicts for it (the
# predicted class's map, 16×16 cells, shown over the image), the cell the argmax picks (×) and the
# quarter-offset point your decoder returns (+), against the true point (○).

# %% id="explorer" role="readonly"
def draw_stacks(index=0, slot=0):
    label = int(labels[index]) - 1
    fig, axes = plt.subplots(1, len(stack_maps), figsize=(3.4 * len(stack_maps), 3.4))
    for s, (ax, maps) in enumerate(zip(np.atleast_1d(axes), stack_maps), start=1):
        heat = maps[index, label * NUM_KEYPOINTS + slot]  # (16, 16)
        ax.imshow(viz.to_hwc(test_images[index]))
        ax.imshow(heat, cmap="magma", alpha=0.55, vmin=0, vmax=1, extent=(0, IMAGE_SIZE, IMAGE_SIZE, 0))
        x, y, score = decode_heatmaps(heat[None, None])[0, 0].tolist()
        x0, y0, _ = decode_heatmaps(heat[None, None], quarter=False)[0, 0].tolist()
        ax.scatter([x0 * STRIDE], [y0 * STRIDE], marker="x", color="white", label="argmax cell")
        ax.scatter([x * STRIDE], [y * STRIDE], marker="+", s=80, color="cyan", label="quarter offset")
        if int(test_labels[index]) - 1 == label and test_points[index, slot, 2] > 0:
            ax.scatter(*test_points[index, slot, :2].tolist(), facecolors="none", edgecolors="lime", s=60, label="truth")
        ax.set_title(f"stack {s}: {SHAPE_KEYPOINTS[CLASS_NAMES[label]]['names'][slot]} (peak {score:.2f})", fontsize=9)
        ax.set_axis_off()
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


viz.slider_figure(draw_stacks, {
    "index": widgets.IntSlider(value=0, min=0, max=len(test_images) - 1, description="test image"),
    "slot": widgets.IntSlider(value=1, min=0, max=NUM_KEYPOINTS - 1, description="keypoint"),
})


# %% [markdown] id="ex4-md"
# ## 6. Peaks instead of NMS (exercise 4, 2 points)
#
# A trained heatmap shows a blob around every object centre. Which cells are *the* detections?
# CenterNet keeps a cell when it is **at least as high as its 8 neighbours** — computed in one call
# as `max_pool2d(heatmap, 3, stride=1, padding=1) == heatmap`. The padding of a max-pool is
# $-\infty$, so a border cell is compared with its existing neighbours only. Then the top 100 peaks
# of the image are the detections. That replaces NMS: two peaks of one blob cannot both survive,
# because they are neighbours... unless they are **equal** (a plateau): both are kept, as the
# equality test says.
#
# Write `peak_mask(heatmap)`: `(B, C, H, W)` scores (any real numbers) → a bool tensor of the same
# shape, True where a cell is ≥ all its neighbours in the 3×3 window (within the map). Any `torch`
# operation may be used; the tests compare with a brute-force loop over the cells.


# %% id="ex4-peaks" role="solution"
def peak_mask(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) scores -> (B, C, H, W) bool: cells >= all their neighbours in the 3x3 window."""
    ### BEGIN SOLUTION
    return F.max_pool2d(heatmap, kernel_size=3, stride=1, padding=1) == heatmap
    ### END SOLUTION


# %% id="test-peaks" role="tests" points=2
# Exercise 4: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (other shapes of random maps), no new requirements.
def brute_force_peaks(heatmap):
    """Compare every cell with each of its (up to 8) neighbours."""
    b, c, h, w = heatmap.shape
    out = torch.zeros(b, c, h, w, dtype=torch.bool)
    for i in range(h):
        for j in range(w):
            window = heatmap[:, :, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            out[:, :, i, j] = heatmap[:, :, i, j] >= window.amax(dim=(2, 3))
    return out


m = torch.tensor([[[[0.1, 0.2, 0.1, 0.0],
                    [0.2, 0.9, 0.3, 0.0],
                    [0.1, 0.3, 0.2, 0.8]]]])
check_equal(peak_mask(m), brute_force_peaks(m), name="two blobs: peaks at 0.9 and 0.8 only",
            inputs={"heatmap": m}, hint="keep a cell only if it equals the max of its 3x3 neighbourhood")
torch.manual_seed(0)
m = torch.rand(2, 3, 6, 7)
check_equal(peak_mask(m), brute_force_peaks(m), name="random (2, 3, 6, 7) maps")
negative = torch.randn(1, 2, 5, 5) - 3  # negative scores, e.g. logits: a zero padding would hide border peaks
check_equal(peak_mask(negative), brute_force_peaks(negative), name="negative maps (logits)",
            hint="compare with the neighbours inside the map only (max-pool pads with -inf)")
plateau = torch.zeros(1, 1, 4, 5)
plateau[0, 0, 1, 1] = plateau[0, 0, 1, 2] = 0.7
plateau[0, 0, 3, 4] = 0.2
check_equal(peak_mask(plateau), brute_force_peaks(plateau), name="a plateau of two equal cells",
            hint="cells equal to their neighbourhood's max are peaks (>=, not >)")
channels = torch.zeros(1, 2, 3, 3)
channels[0, 0, 1, 1] = 1.0
channels[0, 1, 1, 2] = 0.5
check_equal(peak_mask(channels), brute_force_peaks(channels), name="each channel separately",
            hint="max-pool each (image, class) map on its own")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(11)
for shape in [(1, 1, 5, 5), (3, 2, 8, 4), (2, 1, 1, 6), (1, 4, 9, 9)]:
    m_ = torch.randn(*shape, generator=g) - 3
    check_equal(peak_mask(m_), brute_force_peaks(m_), name=f"negative random maps {shape}",
                hint="compare with the neighbours inside the map only (max-pool pads with -inf)")
    check_equal(peak_mask(m_.round(decimals=0)), brute_force_peaks(m_.round(decimals=0)),
                name=f"rounded random maps {shape} (many ties)", hint=">=, not >")
### END HIDDEN TESTS


# %% [markdown] id="ex5-md"
# ## 7. CornerNet's corner pooling (exercise 5, 2 points)
#
# CornerNet (Law & Deng, ECCV 2018) finds a box as a pair of keypoints — its **top-left** and
# **bottom-right corners** — on heatmaps like those above, and pairs them by an embedding. The
# difficulty: a corner is usually **outside the object** (the top-left corner of a circle's box is
# background), so no local feature there says "corner". CornerNet's answer is **corner pooling**: to
# decide whether $(i, j)$ is a *top-left* corner, look **down its column** for the object's top edge
# and **right along its row** for its left edge. From two feature maps $f_t$ and $f_\ell$ it computes
#
# $$t_{ij} = \max_{k \ge i} f_{t, kj}, \qquad \ell_{ij} = \max_{k \ge j} f_{\ell, ik}, \qquad
# \text{out}_{ij} = t_{ij} + \ell_{ij}$$
#
# (eq. 2 of the paper; the bottom-right corner pools up and left instead). Each maximum runs from
# the cell itself to the **end** of its column or row, inclusive.
#
# Write `top_left_corner_pool(f_top, f_left)` for two `(B, C, H, W)` maps. No Python loop over the
# cells: `torch.cummax` (a running maximum along a dimension) and `torch.flip` do it; the tests
# compare with the definition written with loops, and check there is no loop.

# %% id="ex5-corner-pool" role="solution"
def top_left_corner_pool(f_top: torch.Tensor, f_left: torch.Tensor) -> torch.Tensor:
    """f_top, f_left (B, C, H, W) -> (B, C, H, W): max of f_top over the cells below (same column) plus max
    of f_left over the cells to the right (same row), each including the cell itself."""
    ### BEGIN SOLUTION
    top = f_top.flip(2).cummax(dim=2).values.flip(2)  # (B, C, H, W): max over rows k >= i
    left = f_left.flip(3).cummax(dim=3).values.flip(3)  # (B, C, H, W): max over columns k >= j
    return top + left
    ### END SOLUTION


# %% id="test-corner-pool" role="tests" points=2
# Exercise 5: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (other shapes), no new requirements.
def brute_force_corner_pool(f_top, f_left):
    """The definition, one cell at a time."""
    out = torch.zeros_like(f_top)
    _, _, h, w = f_top.shape
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = f_top[:, :, i:, j].amax(dim=2) + f_left[:, :, i, j:].amax(dim=2)
    return out


ft = torch.tensor([[[[1.0, 0.0, 2.0],
                     [0.0, 5.0, 0.0],
                     [3.0, 0.0, 1.0]]]])
fl = torch.zeros(1, 1, 3, 3)
check_close(top_left_corner_pool(ft, fl), torch.tensor([[[[3.0, 5.0, 2.0], [3.0, 5.0, 1.0], [3.0, 0.0, 1.0]]]]),
            name="top pooling alone (f_left = 0)", hint="t_ij = max over rows k >= i of the same column: look down")
check_close(top_left_corner_pool(torch.zeros(1, 1, 3, 3), ft), torch.tensor([[[[2.0, 2.0, 2.0], [5.0, 5.0, 0.0],
                                                                                [3.0, 1.0, 1.0]]]]),
            name="left pooling alone (f_top = 0)", hint="l_ij = max over columns k >= j of the same row: look right")
torch.manual_seed(0)
a, b = torch.randn(2, 3, 5, 6) - 2, torch.randn(2, 3, 5, 6) - 2  # negative features: pooling is not a clamp at 0
check_close(top_left_corner_pool(a, b), brute_force_corner_pool(a, b), name="random negative (2, 3, 5, 6) maps",
            hint="sum of the two pooled maps; include the cell itself; no padding with zeros")
row, column = torch.randn(1, 2, 1, 4), torch.randn(1, 2, 4, 1)
check_close(top_left_corner_pool(row, row), brute_force_corner_pool(row, row), name="a single row (H = 1)")
check_close(top_left_corner_pool(column, column), brute_force_corner_pool(column, column), name="a single column (W = 1)")
check_vectorised(top_left_corner_pool, name="top_left_corner_pool", hint="torch.cummax on flipped maps, then flip back")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(12)
for shape in [(1, 1, 7, 3), (3, 2, 4, 9), (2, 5, 6, 6)]:
    a_, b_ = torch.randn(*shape, generator=g) * 3, torch.randn(*shape, generator=g) * 3
    check_close(top_left_corner_pool(a_, b_), brute_force_corner_pool(a_, b_), name=f"random maps {shape}",
                hint="max over k >= i down the column of f_top, plus max over k >= j along the row of f_left")
### END HIDDEN TESTS


# %% [markdown] id="centernet-md"
# ## 8. CenterNet, trained
#
# `build_detector("centernet", num_classes, image_size)` (in `course_utils.models.centernet`) is
# the detector of *Objects as Points* at course size: a stride-4 stem, one hourglass (lab 05's), and
# three heads read at every cell — the **centre heatmap** of each class (trained with the focal loss
# above; each object's Gaussian has CornerNet's size-dependent radius $r$ — the largest shift of a
# corner that keeps IoU ≥ 0.7 with the true box, `course_utils.models.centernet.gaussian_radius` —
# and $\sigma = (2r + 1)/6$, so a large object forgives a larger miss than a small one), the box
# **size** (L1, weight 0.1) and the **offset** of the true centre inside its cell (L1: the stride-4
# rounding would otherwise cost up to 2 pixels, the job the quarter offset did for the hourglass). Decoding: sigmoid, **3×3 peaks**, top 100, a box per peak. The library's versions
# of your exercises 3 and 4 do the work; it is called like every detector of the course, so
# `fit` and `coco_eval` are the same as in labs 02–07. Up to 4 shapes per image now.

# %% id="centernet-train" role="readonly"
from torchvision.ops import batched_nms

det_train = ShapesDataset(by_mode(smoke=32, fast=1200, full=8000), IMAGE_SIZE, preset="easy", seed=0, cache=True)
det_test = ShapesDataset(by_mode(smoke=16, fast=200, full=500), IMAGE_SIZE, preset="easy", seed=1)
CENTERNET_STEPS = steps(fast=300, full=5000)
torch.manual_seed(0)
centernet = build_detector("centernet", NUM_CLASSES, IMAGE_SIZE, channels=24)
centernet_history = fit(centernet, DataLoader(det_train, batch_size=16, shuffle=True, collate_fn=collate_detection),
                        torch.optim.Adam(centernet.parameters(), lr=2e-3), CENTERNET_STEPS, device=DEVICE, seed=0)
if MODE != "smoke":  # lab 07 starts its CenterNet from these weights (see checkpoint_path)
    save_cached(checkpoint_path("08_heatmaps", "centernet"), centernet, {"mode": MODE, "steps": CENTERNET_STEPS})
centernet.eval()
test_batch = torch.stack([plain(det_test[i][0]) for i in range(len(det_test))]).to(DEVICE)
with torch.no_grad():
    raw = centernet.model(test_batch)  # the heads: heatmap logits, sizes, offsets
    detections = [{k: v.cpu() for k, v in d.items()} for d in centernet(test_batch)]
image_ids, det_gt = list(range(len(det_test))), det_test.to_coco()
centernet_result = coco_eval(det_gt, detections_to_coco(image_ids, detections))
print(centernet_result.summary())
record("08_heatmaps/centernet_mAP50", centernet_result.named["AP50"])
record("08_heatmaps/centernet_mAP", centernet_result.named["AP"])

# does NMS still help? Apply it (IoU 0.5, per class) to the peaks' boxes and evaluate again
with_nms = [{k: v[keep] for k, v in d.items()} for d in detections
            for keep in [batched_nms(d["boxes"], d["scores"], d["labels"], 0.5)]]
nms_result = coco_eval(det_gt, detections_to_coco(image_ids, with_nms))
record("08_heatmaps/centernet_nms_gain", nms_result.named["AP50"] - centernet_result.named["AP50"])
print(f"AP50 {centernet_result.named['AP50']:.3f} from the peaks alone, {nms_result.named['AP50']:.3f} after NMS")
your_peaks = peak_mask(torch.sigmoid(raw["heatmap"])).cpu()
print(f"your peak_mask finds {int(your_peaks.sum())} peaks in {len(det_test)} images' heatmaps "
      f"({int((your_peaks & (torch.sigmoid(raw['heatmap']).cpu() > 0.3)).sum())} above 0.3; "
      f"{len(det_gt['annotations'])} objects)")

fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for i in range(4):
    image, target = det_test[i]
    keep = detections[i]["scores"] > 0.3
    viz.draw_boxes(image, detections[i]["boxes"][keep], labels=detections[i]["labels"][keep],
                   scores=detections[i]["scores"][keep], class_names=CLASS_NAMES, ax=axes[0, i])
    heat = torch.sigmoid(raw["heatmap"][i]).amax(0).cpu()
    axes[1, i].imshow(heat, cmap="magma", vmin=0, vmax=1)
    ys, xs = torch.nonzero(your_peaks[i].any(0) & (heat > 0.3), as_tuple=True)
    axes[1, i].scatter(xs, ys, marker="+", color="cyan")
    axes[1, i].set_title("centre heatmap (max over classes) + peaks", fontsize=8); axes[1, i].set_axis_off()
fig.tight_layout()

# %% [markdown] id="full-md"
# ## 9. Full mode: human pose on COCO
#
# With `COURSE_MODE=full` (a GPU and internet) this cell runs torchvision's
# `keypointrcnn_resnet50_fpn` — Mask R-CNN's design with a keypoint head that predicts one 56×56
# heatmap per COCO keypoint (17 per person) inside each detected box, trained on COCO's person
# keypoints — on the val2017 images fetched by `make data NAME=coco_keypoints_val2017`, and scores it with the same `coco_eval(..., "keypoints")` as above, now
# with COCO's 17 per-keypoint sigmas (from 0.025 for the eyes to 0.107 for the hips). In other modes,
# or offline, it says what it would do.

# %% id="full" role="readonly"
from course_utils.data import COCOKeypoints, keypoint_detections_to_coco
from course_utils.data.real import dataset_root
from course_utils.models import load_pretrained_keypoint_rcnn

if MODE != "full":
    print(f"[course_utils.models] {MODE} mode: skipping keypointrcnn_resnet50_fpn on COCO (set COURSE_MODE=full)")
else:
    people = COCOKeypoints(dataset_root("coco_keypoints_val2017"), max_images=200)
    print(f"COCO person keypoints: {len(people)} images with annotated people")
    pose_rcnn = load_pretrained_keypoint_rcnn()
    if pose_rcnn is None:
        print(f"[course_utils.models] would run keypointrcnn_resnet50_fpn on {len(people)} COCO images: "
              "keypoint AP with COCO's sigmas")
    else:
        pose_rcnn = pose_rcnn.to(DEVICE)
        predictions, image_ids = [], []
        with torch.no_grad():
            for i in range(len(people)):
                image, target = people[i]
                predictions.append({k: v.cpu() for k, v in pose_rcnn([plain(image).to(DEVICE)])[0].items()})
                image_ids.append(target["image_id"])
        pose_result = coco_eval(people.to_coco(), keypoint_detections_to_coco(image_ids, predictions), "keypoints")
        print(pose_result.summary())
        record("08_heatmaps/keypoint_rcnn_coco_AP", pose_result.named["AP"])
        image, target = people[0]
        keep = predictions[0]["scores"] > 0.7
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.imshow(viz.to_hwc(image)); ax.set_axis_off()
        for points in predictions[0]["keypoints"][keep]:
            for a, b in people.skeleton:
                ax.plot(points[[a - 1, b - 1], 0], points[[a - 1, b - 1], 1], color="cyan", lw=1.5)
        ax.set_title(f"keypointrcnn_resnet50_fpn: {int(keep.sum())} people with score > 0.7")


# %% [markdown] id="question-md"
# ## 10. Written question (manually graded, 2 points)
#
# Answer in the cell below in a few sentences, **quoting your numbers** from sections 5 and 8:
#
# 1. What did the quarter offset change, at which OKS thresholds most, and why there? What would it
#    change if the heatmaps were at the input resolution?
# 2. What did intermediate supervision change, early in training and at the end? What does each
#    stack's own AP say about what the second stack adds on these shapes?
# 3. CenterNet needs no NMS (your number says by how much NMS changes its AP50). Why does a 3×3
#    max-pool suffice here, while RetinaNet (lab 03) needs NMS? When could two CenterNet peaks still
#    describe one object?

# %% [markdown] id="question-answer" role="answer" points=2
# ### BEGIN SOLUTION
# (Numbers from the instructor's fast-mode run on a 2-core CPU; yours differ a little.)
#
# 1. Keypoint AP 0.86 with the quarter offset, 0.70 without; AP at OKS 0.75: 0.95 against 0.76. The
#    heatmap cells are 4 image pixels wide: the argmax alone errs by up to 2 pixels (1 on average per
#    axis), and OKS punishes a 2-pixel error on a ~25-pixel shape only at the strict thresholds — AP50
#    is 1.0 either way. Shifting a quarter cell towards the higher neighbour halves the rounding error,
#    which is what the strict thresholds measure. At the input resolution the rounding error is at
#    most half a pixel and the offset would change almost nothing.
# 2. Early (step 100) the network trained with a loss on every stack is far ahead: AP 0.55 against
#    0.33. After 300 steps the gap is gone (0.86 against 0.88, within run-to-run noise): on these
#    easy shapes the single loss catches up. Without intermediate supervision the first stack's head
#    gets no gradient at all (its AP is 0) and the first hourglass learns only through the second.
#    With it, stack 1 alone is already as good as stack 2 (0.88 and 0.86): the second stack has
#    little to refine on unoccluded shapes; on human poses (occlusion, left/right ambiguity) it is
#    where the paper's gains come from, and deeper stacks are where the early gradient matters most.
# 3. NMS changes CenterNet's AP50 by about 0.00. Each object is trained to give exactly one cell with
#    Y = 1, and every other cell of its blob is a negative, pushed down by the focal loss: one peak per
#    object, and the 3×3 max-pool keeps one cell of a blob. RetinaNet trains *every* anchor with IoU
#    ≥ 0.5 as a positive, so many neighbouring anchors fire for one object and NMS must remove the
#    duplicates. Two peaks can still describe one object when the blob is flat or has two maxima more
#    than one cell apart (a large object, a poorly trained map) — then duplicates survive, as in a
#    plateau of equal cells.
# ### END SOLUTION

# %% [markdown] id="outro"
# One idea, two uses: a network that outputs **heatmaps** finds keypoints (the hourglass, read with
# sub-pixel care) and, with a size and an offset read at each peak, **objects** (CenterNet) — no
# anchors to design, no IoU matching to tune, no NMS: a 3×3 max-pool does its job. CornerNet reads
# boxes as two corners (with *corner pooling*, because a corner often lies outside the object);
# CenterNet's single centre is simpler and, with a strong backbone, as accurate; the same heads add
# 3-D size, orientation or a human pose (17 keypoint heatmaps per person).
#
# **References.** A. Newell, K. Yang, J. Deng, *Stacked Hourglass Networks for Human Pose
# Estimation*, ECCV 2016. H. Law, J. Deng, *CornerNet: Detecting Objects as Paired Keypoints*, ECCV
# 2018. X. Zhou, D. Wang, P. Krähenbühl, *Objects as Points*, arXiv:1904.07850, 2019. T.-Y. Lin et
# al., *Microsoft COCO: Common Objects in Context*, ECCV 2014 (keypoint AP, OKS).
