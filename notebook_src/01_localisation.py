# %% [markdown] id="intro"
# <!-- COLAB_BADGE: notebook_src/build.py puts the Open-in-Colab badge here -->
#
# # Lab 01 — Localisation as regression
#
# *CNNs part II — beyond image classification.*
#
# Classification answers *what* is in an image. **Localisation** also answers *where*: for an image
# with one object, predict its class **and** its bounding box. The simplest way to do that is to
# treat the box as four numbers and *regress* them, next to the usual classification head:
#
# $$\text{image} \xrightarrow{\text{CNN}} \text{features} \;\begin{cases} \xrightarrow{\text{class head}} \; p(c \mid x) & \text{(cross-entropy)}\\ \xrightarrow{\text{box head}} \; (x, y, w, h) & \text{(L1 / L2 regression)} \end{cases}$$
#
# This is how OverFeat (Sermanet et al., ICLR 2014) and the "classification + localisation" track of
# ImageNet started. In this lab you will:
#
# 1. convert between the box formats every detector uses (exercise 1);
# 2. measure a box with **intersection over union** (exercise 2);
# 3. reuse a **pretrained CNN** as a feature extractor and put two heads on it (exercise 3);
# 4. train both heads with a **joint loss** (exercise 4): first with the backbone frozen, then
#    fine-tuned end to end;
# 5. see for yourself why a head on *globally pooled* features localises badly — and why predicting
#    exactly one box per image is a dead end that motivates the detectors of the next labs.
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

import copy

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import ops
from torchvision.transforms import v2

from course_utils import viz
from course_utils.boxes import box_iou as reference_box_iou
from course_utils.config import by_mode, record, setup, steps
from course_utils.data import OxfordPets, ShapesDataset, dataset_root, single_object_tensors
from course_utils.grading import check_close, check_equal, check_grad_flows, check_shape, check_vectorised
from course_utils.models import load_backbone
from course_utils.train import fit, predict

SETUP = setup(seed=0)
MODE, DEVICE = SETUP.mode, SETUP.device

# %% [markdown] id="data-md"
# ## 1. The data: one shape per image
#
# Offline, the course uses a synthetic dataset generated in code: coloured shapes on textured
# backgrounds, with exact boxes and masks. Here each image holds **exactly one** object
# (`preset="single"`), one of three classes. In `full` mode the same code runs on real photographs
# (Oxford-IIIT Pet: is it a cat or a dog, and where is its head?) with an ImageNet-pretrained ResNet.
#
# A box is stored as **pixel coordinates of its corners**, `xyxy` = $(x_1, y_1, x_2, y_2)$, with $x$
# growing to the right and $y$ growing *down*. A pixel with column index $i$ covers
# $[i, i+1)$, so a box around columns 3..7 has $x_1 = 3$, $x_2 = 8$ and width 5.

# %% id="data" role="readonly"
IMAGE_SIZE = by_mode(smoke=64, fast=64, full=160)
if MODE == "full":
    # Oxford-IIIT Pet: one pet per image, its species and its *head* box. Downloaded once (about 800 MB,
    # sha256-verified; the same as `make data NAME=oxford_pets`). Head boxes exist for the trainval
    # list only, so we hold out a fifth of it for testing.
    pets_root = dataset_root("oxford_pets")
    if not (pets_root / "annotations" / "list.txt").is_file():
        from data_scripts.download import fetch_dataset

        pets_root = fetch_dataset("oxford_pets", pets_root.parent)
    pets = OxfordPets(pets_root, "trainval", labels="species",
                      transforms=v2.Resize((IMAGE_SIZE, IMAGE_SIZE), antialias=True))
    CLASS_NAMES = pets.class_names
    images, classes, boxes = single_object_tensors(pets)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    test_ids, train_ids = order[: max(1, len(order) // 5)], order[max(1, len(order) // 5):]
    train_images, train_classes, train_boxes = images[train_ids], classes[train_ids], boxes[train_ids]
    test_images, test_classes, test_boxes = images[test_ids], classes[test_ids], boxes[test_ids]
    shown = pets
else:
    train_set = ShapesDataset(by_mode(smoke=64, fast=2000, full=0), IMAGE_SIZE, preset="single", seed=0)
    test_set = ShapesDataset(by_mode(smoke=32, fast=500, full=0), IMAGE_SIZE, preset="single", seed=1)  # unseen
    CLASS_NAMES = train_set.class_names
    train_images, train_classes, train_boxes = single_object_tensors(train_set)  # (N,3,H,W), (N,), (N,4)
    test_images, test_classes, test_boxes = single_object_tensors(test_set)
    shown = train_set
print(f"train {tuple(train_images.shape)}, test {tuple(test_images.shape)}, classes {CLASS_NAMES}")
viz.show_grid(shown, n=8, masks=False);


# %% [markdown] id="ex1-md"
# ## 2. Box formats (exercise 1, 2 points)
#
# Three formats appear in this course, all with 4 numbers per box:
#
# | format | numbers | used by |
# |---|---|---|
# | `xyxy` | $(x_1, y_1, x_2, y_2)$, the corners | torchvision, Pascal VOC, IoU computations |
# | `xywh` | $(x_1, y_1, w, h)$, top-left corner and size | COCO annotations |
# | `cxcywh` | $(c_x, c_y, w, h)$, centre and size | YOLO, DETR, our regression head |
#
# Networks predict boxes **normalised** by the image size (fractions in $[0, 1]$), so that the same
# head works whatever the resolution: $x$-quantities are divided by the image **width**,
# $y$-quantities by the image **height**.
#
# Write the six functions below. Each takes a tensor of shape `(..., 4)` (any number of leading
# dimensions, possibly zero boxes) and returns a **new** tensor of the same shape and dtype (float64
# in, float64 out); don't modify the input. `image_size` is `(height, width)`.
#
# *You may use* `torch` (indexing, `torch.stack`, `torch.cat`, arithmetic); *not*
# `torchvision.ops.box_convert`, which the tests compare with.

# %% id="ex1-box-conversions" role="solution"
def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    ### END SOLUTION


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    x1, y1, w, h = boxes.unbind(-1)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=-1)
    ### END SOLUTION


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
    ### END SOLUTION


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    ### END SOLUTION


def normalize_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Pixels -> fractions of the image. image_size = (height, width)."""
    ### BEGIN SOLUTION
    height, width = image_size
    return boxes / torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    ### END SOLUTION


def denormalize_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Fractions of the image -> pixels. image_size = (height, width)."""
    ### BEGIN SOLUTION
    height, width = image_size
    return boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    ### END SOLUTION


# %% id="test-box-conversions" role="tests" points=2
# Exercise 1: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (shapes, image sizes), no new requirements.
b = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
check_close(xyxy_to_xywh(b), torch.tensor([[10.0, 20.0, 20.0, 40.0]]), name="xyxy_to_xywh", inputs={"boxes": b},
            hint="w = x2 - x1 (no +1: coordinates are pixel edges)")
check_close(xyxy_to_cxcywh(b), torch.tensor([[20.0, 40.0, 20.0, 40.0]]), name="xyxy_to_cxcywh", inputs={"boxes": b},
            hint="the centre is the middle of the corners; width = x2 - x1")
xywh, cxcywh = torch.tensor([[10.0, 20.0, 20.0, 40.0]]), torch.tensor([[20.0, 40.0, 20.0, 40.0]])
check_close(xywh_to_xyxy(xywh), b, name="xywh_to_xyxy", inputs={"boxes": xywh}, hint="x2 = x1 + w")
check_close(cxcywh_to_xyxy(cxcywh), b, name="cxcywh_to_xyxy", inputs={"boxes": cxcywh}, hint="x1 = cx - w / 2 (half the width)")
check_close(normalize_boxes(b, (100, 200)), torch.tensor([[0.05, 0.2, 0.15, 0.6]]), name="normalize_boxes",
            inputs={"boxes": b, "image_size (height, width)": (100, 200)},
            hint="x-coordinates are divided by the width, y-coordinates by the height")
frac = torch.tensor([[0.05, 0.2, 0.15, 0.6]])
check_close(denormalize_boxes(frac, (100, 200)), b, name="denormalize_boxes", inputs={"boxes": frac, "image_size": (100, 200)},
            atol=1e-4, hint="x-coordinates are multiplied by the width (image_size[1]), y-coordinates by the height")
g = torch.Generator().manual_seed(0)
xy = torch.rand(20, 2, generator=g) * 50
boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 30], dim=1)
CONVERSIONS = [(xyxy_to_xywh, "xyxy", "xywh"), (xyxy_to_cxcywh, "xyxy", "cxcywh"),
               (xywh_to_xyxy, "xywh", "xyxy"), (cxcywh_to_xyxy, "cxcywh", "xyxy")]
for fn, src, dst in CONVERSIONS:
    inp = ops.box_convert(boxes, "xyxy", src)
    check_close(fn(inp), ops.box_convert(inp, src, dst), name=fn.__name__, inputs={"boxes": inp}, atol=1e-4)
# every function: (..., 4) inputs, zero boxes, the input's dtype kept, the input left untouched
size = (40, 160)  # height 40, width 160
scale = torch.tensor([160.0, 40.0, 160.0, 40.0], dtype=torch.float64)
ALL = [(fn.__name__, fn, lambda x, s=src, d=dst: ops.box_convert(x.reshape(-1, 4), s, d).reshape(x.shape))
       for fn, src, dst in CONVERSIONS]
ALL += [("normalize_boxes", lambda x: normalize_boxes(x, size), lambda x: x / scale.to(x.dtype)),
        ("denormalize_boxes", lambda x: denormalize_boxes(x, size), lambda x: x * scale.to(x.dtype))]
for what, fn, want in ALL:
    inp = boxes.double().reshape(4, 5, 4)
    before = inp.clone()
    check_close(fn(inp), want(inp), name=f"{what} on float64 boxes of shape (4, 5, 4)", inputs={"image_size": size}, atol=1e-4,
                hint="use boxes[..., k] or unbind(-1), not boxes[:, k]; keep the input's dtype (no .float())")
    check_equal(inp, before, name=f"{what} must not modify its input", hint="return a new tensor: no in-place /=, *= or [:] =")
    check_close(fn(torch.zeros(0, 4)), torch.zeros(0, 4), name=f"{what} on zero boxes", hint="(0, 4) in, (0, 4) out")
print("visible checks passed")
### BEGIN HIDDEN TESTS
for shape in [(4,), (1, 4), (2, 3, 1, 4), (3, 0, 4)]:
    for what, fn, want in ALL:
        inp = torch.rand(shape, generator=g) * 50
        before = inp.clone()
        check_close(fn(inp), want(inp), name=f"{what} on shape {shape}", atol=1e-4, hint="use boxes[..., k], not boxes[:, k]")
        check_equal(inp, before, name=f"{what} must not modify its input")
for size2 in [(40, 160), (160, 40), (33, 77)]:
    s2 = torch.tensor([size2[1], size2[0], size2[1], size2[0]], dtype=torch.float32)
    check_close(normalize_boxes(boxes, size2), boxes / s2, name="normalize_boxes",
                inputs={"image_size (height, width)": size2}, hint="image_size is (height, width)")
    check_close(denormalize_boxes(boxes / 100, size2), boxes / 100 * s2, name="denormalize_boxes",
                inputs={"image_size (height, width)": size2}, atol=1e-4)
### END HIDDEN TESTS

# %% [markdown] id="ex2-md"
# ## 3. Intersection over union (exercise 2, 3 points)
#
# How good is a predicted box $B_p$ for a true box $B_t$? The standard measure is
#
# $$\mathrm{IoU}(B_p, B_t) = \frac{|B_p \cap B_t|}{|B_p \cup B_t|} = \frac{|B_p \cap B_t|}{|B_p| + |B_t| - |B_p \cap B_t|} \in [0, 1].$$
#
# The intersection of two `xyxy` boxes is the box between the larger top-left corner and the
# smaller bottom-right corner — **if** that box is not empty: when the boxes do not overlap along
# an axis, its "width" or "height" comes out negative and must be clamped to 0. A box of zero area
# has IoU 0 with everything (define it so, rather than dividing 0 by 0).
#
# 1. `iou(box_a, box_b)`: two boxes of shape `(4,)`, returns the IoU as a 0-d tensor (or float).
# 2. `pairwise_iou(boxes1, boxes2)`: `(N, 4)` and `(M, 4)` boxes, returns the `(N, M)` matrix of all
#    IoUs, **vectorised** (no Python loop): use broadcasting, `boxes1[:, None, :]` against
#    `boxes2[None, :, :]`; no `for`/`while` loop and no comprehension, in `pairwise_iou` or in a helper
#    it calls. Either input may hold zero boxes. The result has the dtype of the boxes (float64 in,
#    float64 out).
#
# *You may use* `torch` and your functions above; *not* `torchvision.ops.box_iou` (or any other IoU
# of torchvision or `course_utils`), which the tests compare with.

# %% id="ex2-iou" role="solution"
def iou(box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return pairwise_iou(box_a[None], box_b[None])[0, 0]
    ### END SOLUTION


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area1[:, None] + area2[None, :] - inter  # (N, M)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)
    ### END SOLUTION


# %% id="test-iou" role="tests" points=3
# Exercise 2: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (each way of overlapping, large float64 inputs), no new requirements.
a = torch.tensor([0.0, 0.0, 10.0, 10.0])
b = torch.tensor([5.0, 5.0, 15.0, 15.0])
check_close(iou(a, b), 25 / 175, name="iou(a, b)", inputs={"a": a, "b": b},
            hint="intersection 5x5 = 25, union 100 + 100 - 25 = 175")
far = torch.tensor([20.0, 20.0, 30.0, 30.0])
check_close(iou(a, far), 0.0, name="iou of disjoint boxes", inputs={"a": a, "b": far},
            hint="clamp the intersection's width and height at 0")
pt = torch.tensor([4.0, 4.0, 4.0, 4.0])
check_close(iou(pt, pt), 0.0, name="iou of two zero-area boxes", inputs={"a": pt, "b": pt},
            hint="the union is empty: return 0, not 0/0 = nan")
g = torch.Generator().manual_seed(1)
xy = torch.rand(7, 2, generator=g) * 40
b1 = torch.cat([xy, xy + 1 + torch.rand(7, 2, generator=g) * 30], 1)
xy = torch.rand(5, 2, generator=g) * 40
b2 = torch.cat([xy, xy + 1 + torch.rand(5, 2, generator=g) * 30], 1)
check_close(pairwise_iou(b1, b2), ops.box_iou(b1, b2), name="pairwise_iou(boxes1, boxes2)", inputs={"boxes1": b1, "boxes2": b2},
            hint="the result is (N, M): row i holds the IoUs of boxes1[i] with every box of boxes2")
check_close(pairwise_iou(b1.double(), b2.double()), ops.box_iou(b1.double(), b2.double()), atol=1e-9,
            name="pairwise_iou on float64 boxes", hint="keep the dtype of the boxes: no .float(), no float32 constants")
check_close(pairwise_iou(torch.stack([pt, a]), torch.stack([pt, far])), torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
            name="pairwise_iou with zero-area boxes", hint="a zero-area box has IoU 0 with everything, even itself")
check_close(pairwise_iou(torch.zeros(0, 4), b2), torch.zeros(0, 5), name="pairwise_iou with no boxes1")
check_close(pairwise_iou(b1, torch.zeros(0, 4)), torch.zeros(7, 0), name="pairwise_iou with no boxes2",
            hint="broadcasting handles empty inputs: no special case, no torch.stack of an empty list")
check_vectorised(pairwise_iou, name="pairwise_iou", hint="boxes1[:, None, :] against boxes2[None, :, :]")
print("visible checks passed")
### BEGIN HIDDEN TESTS
cases = {
    "disjoint along x only": torch.tensor([20.0, 0.0, 30.0, 10.0]),
    "disjoint along y only": torch.tensor([0.0, 20.0, 10.0, 30.0]),
    "touching edges": torch.tensor([10.0, 0.0, 20.0, 10.0]),
    "contained": torch.tensor([2.0, 3.0, 6.0, 9.0]),
    "identical": a.clone(),
    "zero-area point inside": torch.tensor([4.0, 4.0, 4.0, 4.0]),
    "sub-pixel boxes": torch.tensor([0.2, 0.2, 0.7, 0.5]),
}
for what, other in cases.items():
    expected = float(ops.box_iou(a[None], other[None])[0, 0])
    check_close(iou(a, other), expected, name=f"iou, {what}", inputs={"a": a, "b": other},
                hint="no +1 on widths (pixel-edge coordinates); clamp negative overlaps to 0")
    check_close(iou(other, a), expected, name=f"iou is symmetric, {what}", inputs={"a": other, "b": a})
small = torch.tensor([[0.1, 0.1, 0.3, 0.2], [0.15, 0.12, 0.4, 0.3]], dtype=torch.float64)  # unions far below 1
check_close(pairwise_iou(small, small), ops.box_iou(small, small), name="pairwise_iou on sub-pixel boxes", atol=1e-9)
xy = torch.rand(300, 2, generator=g) * 100
big1 = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 60], 1).double()
xy = torch.rand(200, 2, generator=g) * 100
big2 = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 60], 1).double()
check_close(pairwise_iou(big1, big2), ops.box_iou(big1, big2), name="pairwise_iou on 300 x 200 float64 boxes", atol=1e-9)
check_close(pairwise_iou(torch.zeros(0, 4), torch.zeros(0, 4)), torch.zeros(0, 0), name="pairwise_iou with no boxes at all")
### END HIDDEN TESTS

# %% [markdown] id="explorer-md"
# Move and resize the dashed box below and watch **your** `iou` change. Notice how fast IoU drops:
# shifting a box by a quarter of its width already costs 40 % of the overlap. That is why "IoU ≥ 0.5"
# is the usual threshold for a detection to count as correct, and why COCO averages over thresholds
# 0.5 to 0.95.

# %% id="explorer" role="readonly"
viz.iou_explorer(test_boxes[0], iou, image=test_images[0])


# %% [markdown] id="backbone-md"
# ## 4. A pretrained CNN as feature extractor
#
# Training a CNN from scratch needs a lot of labelled data. The usual recipe is **transfer
# learning**: take a network trained for classification on a large dataset (ImageNet), drop its
# classifier, and use what remains — the *backbone* — as a feature extractor for the new task.
# Its features describe edges, textures and parts that are useful far beyond the original classes.
#
# In `full` mode the backbone is a ResNet-18 with ImageNet weights from torchvision, and the data
# are real photographs: Oxford-IIIT Pet, where the "object" is the pet's head. Offline
# (`fast`), we make our own "ImageNet": the backbone is pretrained by the cell below on a **different
# task** — classifying six kinds of shapes, on noisier images — and then transferred to ours. The
# backbone keeps the spatial layout: for a `64×64` image it returns a `C×8×8` feature map.

# %% id="backbone" role="readonly"
def conv_block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


if MODE == "full":
    # ResNet-18 with ImageNet weights, without its pooling and classifier: (B, 512, H/32, W/32).
    # ImageNet models expect normalised inputs, so the normalisation goes in front of the trunk.
    trunk = load_backbone("resnet18")  # prints a notice and falls back to a small CNN when offline
    backbone = nn.Sequential(v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), trunk)
    FEAT_CHANNELS = trunk.out_channels
else:
    # source task: 6 shape classes, noisier images, other seed -- not the data of our task
    source_set = ShapesDataset(by_mode(smoke=64, fast=2000, full=0), IMAGE_SIZE, preset="single", seed=100,
                               classes=("diamond", "cross", "ring", "circle", "square", "triangle"), noise=0.08)
    source_images, source_classes, _ = single_object_tensors(source_set)
    backbone = nn.Sequential(conv_block(3, 16), nn.MaxPool2d(2), conv_block(16, 32), nn.MaxPool2d(2),
                             conv_block(32, 64), nn.MaxPool2d(2), conv_block(64, 64))  # (B, 64, H/8, W/8)
    FEAT_CHANNELS = 64
    classifier = nn.Sequential(backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(FEAT_CHANNELS, 6))
    pretrain_history = fit(classifier, DataLoader(TensorDataset(source_images, source_classes), batch_size=32, shuffle=True),
                           torch.optim.Adam(classifier.parameters(), lr=3e-3), steps=steps(fast=300, full=0),
                           loss_fn=nn.CrossEntropyLoss(), seed=0, device=DEVICE)
    viz.plot_history(pretrain_history).set_title("pretraining the backbone on the source task")
pretrained_state = copy.deepcopy(backbone.state_dict())
with torch.no_grad():
    print("feature map:", tuple(backbone.eval()(test_images[:2].to(DEVICE)).shape))


# %% [markdown] id="ex3-md"
# ## 5. Two heads (exercise 3, 3 points)
#
# On top of the backbone's feature map we put two small heads:
#
# * a **classification head** → `num_classes` logits (no softmax: `cross_entropy` applies it);
# * a **box head** → 4 numbers, the box as normalised $(c_x, c_y, w, h)$; a final sigmoid keeps them
#   in $[0, 1]$.
#
# Both heads are an MLP (`Flatten → Linear(·, hidden) → ReLU → Linear(hidden, ·)`) on the same
# input: the feature map **average-pooled to a `grid × grid` map** with `nn.AdaptiveAvgPool2d(grid)`.
#
# * `grid = 1` is the usual *global average pooling* of classification networks: one vector per
#   image, whatever the input size.
# * `grid = 4` keeps a coarse **spatial layout**: the head sees *where* in the image each feature fired.
#
# Adaptive pooling gives the heads a fixed input size (`feat_channels × grid × grid`) for **any image
# size**: never hard-code 224 (or 64). Write `__init__` and `forward`; `forward` returns the pair
# `(class_logits, boxes)` of shapes `(B, num_classes)` and `(B, 4)`. Keep the backbone in
# `self.backbone` (given) and train it through **both** heads (no `.detach()`). The sigmoid matters
# beyond the range: unlike a clamp to $[0, 1]$, it keeps a gradient for every box coordinate, so a
# box that is wrong outside the range still learns.
#
# *You may use* `torch`, `nn` layers (`nn.Flatten`, `nn.Linear`, `nn.ReLU`, `nn.AdaptiveAvgPool2d`,
# `nn.Sequential`) and `F`.

# %% id="ex3-model" role="solution"
class LocalisationNet(nn.Module):
    def __init__(self, backbone: nn.Module, feat_channels: int, num_classes: int, grid: int = 4, hidden: int = 128):
        super().__init__()
        self.backbone = backbone
        ### BEGIN SOLUTION
        self.pool = nn.AdaptiveAvgPool2d(grid)
        in_features = feat_channels * grid * grid
        self.class_head = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.box_head = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 4), nn.Sigmoid())
        ### END SOLUTION

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ### BEGIN SOLUTION
        features = self.pool(self.backbone(images))  # (B, C, grid, grid)
        return self.class_head(features), self.box_head(features)  # (B, num_classes), (B, 4)
        ### END SOLUTION


# %% id="test-model" role="tests" points=3
# Exercise 3: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (other grids, sizes, eval mode), no new requirements.
def tiny_backbone():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1))


def head_parameters(net):
    return sum(p.numel() for n, p in net.named_parameters() if not n.startswith("backbone."))


def expected_head_parameters(feat_channels, num_classes, grid, hidden):
    # each head: Linear(feat_channels * grid * grid, hidden) -> ReLU -> Linear(hidden, out)
    inp = feat_channels * grid * grid
    return 2 * (inp * hidden + hidden) + (hidden * num_classes + num_classes) + (hidden * 4 + 4)


torch.manual_seed(0)
net = LocalisationNet(tiny_backbone(), feat_channels=8, num_classes=3, grid=4)
for h, w in [(64, 64), (96, 96), (48, 80)]:
    x = torch.rand(2, 3, h, w)
    logits, boxes = net(x)
    check_shape(logits, (2, 3), name=f"class logits for a batch of 2 images of {h}x{w}",
                hint="pool with nn.AdaptiveAvgPool2d(grid) so the head's input size does not depend on the image size")
    check_shape(boxes, (2, 4), name=f"boxes for a batch of 2 images of {h}x{w}")
check_equal(head_parameters(net), expected_head_parameters(8, 3, 4, 128), name="number of parameters of the two heads",
            hint="each head is Flatten -> Linear(feat_channels * grid * grid, hidden) -> ReLU -> Linear(hidden, out), "
                 "on the pooled map; keep the backbone in self.backbone")
x = torch.rand(4, 3, 64, 64, requires_grad=True)
logits, boxes = net(x)
assert not torch.allclose(logits.sum(-1), torch.ones(4)) and not torch.allclose(logits.logsumexp(-1), torch.zeros(4)), \
    f"class logits: expected raw scores, got probabilities or log-probabilities {logits}\nhint: no softmax, " \
    "F.cross_entropy applies it"
assert ((boxes > 0) & (boxes < 1)).all(), \
    f"boxes: expected every value strictly inside (0, 1), got {boxes}\nhint: end the box head with a sigmoid (not a clamp)"
# the sigmoid keeps every box coordinate learning; a clamp gives no gradient where the value falls outside [0, 1]
check_grad_flows({f"boxes[{i}, {k}]": boxes[i, k] for i in range(4) for k in range(4)}, {"images": x},
                 name="every box coordinate of every image", hint="end the box head with nn.Sigmoid(), not a clamp")
check_grad_flows({"class logits": logits, "boxes": boxes}, dict(net.backbone.named_parameters()),
                 name="each head must train the backbone", hint="no .detach() between the backbone and a head")
check_grad_flows(logits.sum() + boxes.sum(), net, name="every parameter of LocalisationNet",
                 hint="both heads and the backbone must be in the graph; use self.backbone")
# the heads see the average-pooled grid x grid map: where the features are, not only how strong
probe = LocalisationNet(nn.Identity(), feat_channels=1, num_classes=2, grid=4)
corner, spread, other = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
corner[..., 0, 0] = 1  # one 2x2 pooling cell holding (1, 0, 0, 0) ...
spread[..., :2, :2] = 0.25  # ... and (0.25, 0.25, 0.25, 0.25): the same average
other[..., 6:, 6:] = 0.25  # the same average in the opposite corner
with torch.no_grad():
    for k, what in enumerate(("class logits", "boxes")):
        check_close(probe(corner)[k], probe(spread)[k], name=f"{what} of two maps with the same grid x grid averages",
                    hint="average pooling (nn.AdaptiveAvgPool2d), not max pooling")
    assert not torch.allclose(probe(spread)[1], probe(other)[1]), \
        "boxes: expected different boxes for features in the top-left and the bottom-right, got the same\n" \
        "hint: with grid=4 pool to (grid, grid), do not average the whole map away"
    probe1 = LocalisationNet(nn.Identity(), feat_channels=1, num_classes=2, grid=1)
    check_close(probe1(spread)[1], probe1(other)[1], name="with grid=1 the heads see only the global average")
    f1, f2 = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.rand(1, 1, 8, 8)
    assert not torch.allclose(probe(f1 + f2)[0] + probe(torch.zeros(1, 1, 8, 8))[0], probe(f1)[0] + probe(f2)[0]), \
        "class logits: expected a non-linear head, got an affine function of the features\n" \
        "hint: put a ReLU between the two Linear layers of each head"
print("visible checks passed")
### BEGIN HIDDEN TESTS
for grid, hidden, nc in [(1, 16, 5), (2, 32, 2), (4, 16, 7)]:
    net = LocalisationNet(tiny_backbone(), feat_channels=8, num_classes=nc, grid=grid, hidden=hidden)
    x = torch.rand(3, 3, 40, 56, requires_grad=True)
    logits, boxes = net(x)
    check_shape(logits, (3, nc), name=f"class logits with grid={grid}, num_classes={nc}")
    check_shape(boxes, (3, 4), name=f"boxes with grid={grid}")
    check_equal(head_parameters(net), expected_head_parameters(8, nc, grid, hidden),
                name=f"number of parameters of the heads with grid={grid}, hidden={hidden}, num_classes={nc}",
                hint="use the grid and hidden arguments")
    assert not torch.allclose(logits.logsumexp(-1), torch.zeros(3)) and not torch.allclose(logits.sum(-1), torch.ones(3)), \
        "return raw logits: F.cross_entropy applies the softmax itself"
    check_grad_flows({"class logits": logits, "boxes": boxes}, dict(net.backbone.named_parameters()),
                     name=f"LocalisationNet(grid={grid}): each head trains the backbone")
    check_grad_flows({f"boxes[{i}, {k}]": boxes[i, k] for i in range(3) for k in range(4)}, {"images": x},
                     name=f"every box coordinate, grid={grid}", hint="a sigmoid, not a clamp")
net = LocalisationNet(tiny_backbone(), feat_channels=8, num_classes=3, grid=4).eval()
with torch.no_grad():
    logits, boxes = net(100 * torch.rand(1, 3, 32, 32))
check_shape(logits, (1, 3), name="class logits for one image in eval mode")
assert ((boxes >= 0) & (boxes <= 1)).all(), "boxes must stay in [0, 1] even for large inputs (sigmoid, not a clamp-free linear)"
### END HIDDEN TESTS

# %% [markdown] id="ex4-md"
# ## 6. The joint loss (exercise 4, 2 points)
#
# Both heads train together with one loss, the sum of a classification and a regression term:
#
# $$\mathcal{L} = \underbrace{\frac{1}{B}\sum_{i=1}^{B} \mathrm{CE}\big(z_i, c_i\big)}_{\texttt{loss\_cls}}
# \;+\; \lambda \underbrace{\frac{1}{B}\sum_{i=1}^{B} \sum_{k=1}^{4} \big|\hat b_{ik} - b_{ik}\big|}_{\text{L1 per box}}$$
#
# with $z_i$ the logits, $c_i$ the true class index, $\hat b_i$ and $b_i$ the predicted and true
# normalised `cxcywh` boxes. Mind the **reductions**: the L1 distance is *summed* over the 4
# coordinates of a box and *averaged* over the boxes of the batch (so the loss does not change with
# the batch size). $\lambda$ (`box_weight`) balances the two terms.
#
# Return a dict `{"loss_cls": ..., "loss_box": ...}` of two scalar (0-d) tensors, where `loss_box`
# already includes $\lambda$: the training loop adds the entries of the dict. Each term is computed
# from the predictions it trains (`class_logits`, `box_pred`), so each carries its own gradient.
#
# *You may use* `torch` and `F` (`F.cross_entropy`, `F.l1_loss`).

# %% id="ex4-loss" role="solution"
def localisation_loss(class_logits: torch.Tensor, box_pred: torch.Tensor, labels: torch.Tensor,
                      box_target: torch.Tensor, box_weight: float = 5.0) -> dict[str, torch.Tensor]:
    ### BEGIN SOLUTION
    loss_cls = F.cross_entropy(class_logits, labels)
    loss_box = (box_pred - box_target).abs().sum(dim=1).mean()
    return {"loss_cls": loss_cls, "loss_box": box_weight * loss_box}
    ### END SOLUTION


# %% id="test-loss" role="tests" points=2
# Exercise 4: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (batch sizes, weights), no new requirements.
logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
labels = torch.tensor([0, 2])
pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.4, 0.1]], requires_grad=True)
target = torch.tensor([[0.4, 0.5, 0.2, 0.4], [0.3, 0.6, 0.4, 0.1]])
out = localisation_loss(logits, pred, labels, target, box_weight=1.0)
assert isinstance(out, dict) and {"loss_cls", "loss_box"} <= set(out), \
    f"expected a dict with loss_cls and loss_box, got {out!r}\nhint: return {{'loss_cls': ..., 'loss_box': ...}}"
check_close(out["loss_cls"], F.cross_entropy(logits, labels), name="loss_cls", inputs={"logits": logits, "labels": labels},
            hint="F.cross_entropy on the raw logits and the class indices, a 0-d tensor")
check_close(out["loss_box"], torch.tensor((0.1 + 0.2) / 2), name="loss_box with box_weight=1", inputs={"pred": pred, "target": target},
            hint="sum |pred - target| over the 4 coordinates, then average over the 2 boxes; a 0-d tensor")
check_close(localisation_loss(logits, pred, labels, target, box_weight=2.5)["loss_box"], torch.tensor(2.5 * 0.15),
            name="loss_box with box_weight=2.5", hint="loss_box already includes box_weight")
twice = localisation_loss(torch.cat([logits, logits]), torch.cat([pred, pred]), torch.cat([labels, labels]),
                          torch.cat([target, target]), box_weight=1.0)
for k in ("loss_cls", "loss_box"):
    check_close(twice[k], out[k].detach(), name=f"{k} of the same batch given twice",
                hint="average over the batch (mean), do not sum: the loss must not grow with the batch size")
check_grad_flows({"loss_cls": out["loss_cls"]}, {"class_logits": logits}, name="loss_cls trains the class logits",
                 hint="compute it from class_logits, without .detach() or .item()")
check_grad_flows({"loss_box": out["loss_box"]}, {"box_pred": pred}, name="loss_box trains the boxes",
                 hint="compute it from box_pred, without .detach() or .item()")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(2)
for batch, weight in [(1, 5.0), (7, 2.5), (32, 0.1)]:
    lg = torch.randn(batch, 4, generator=g, requires_grad=True)
    lb = torch.randint(0, 4, (batch,), generator=g)
    bp = torch.rand(batch, 4, generator=g, requires_grad=True)
    bt = torch.rand(batch, 4, generator=g)
    out = localisation_loss(lg, bp, lb, bt, box_weight=weight)
    check_close(out["loss_cls"], F.cross_entropy(lg, lb), name=f"loss_cls, batch {batch}",
                hint="cross_entropy takes raw logits and class indices, averaged over the batch")
    expected_box = weight * F.l1_loss(bp, bt, reduction="none").sum(dim=1).mean()
    check_close(out["loss_box"], expected_box, name=f"loss_box, batch {batch}, box_weight {weight}",
                hint="L1 summed over coordinates, mean over boxes, times box_weight")
    check_grad_flows({"loss_cls": out["loss_cls"]}, {"class_logits": lg}, name=f"loss_cls, batch {batch}")
    check_grad_flows({"loss_box": out["loss_box"]}, {"box_pred": bp}, name=f"loss_box, batch {batch}")
### END HIDDEN TESTS

# %% [markdown] id="frozen-md"
# ## 7. Stage 1 — frozen backbone: global pooling against spatial layout
#
# With the backbone **frozen** (no gradient, BatchNorm statistics fixed) only the heads learn. Its
# features then never change, so we compute them **once** for all images and train the heads on
# the stored feature maps: `LocalisationNet(nn.Identity(), ...)` is your model without a backbone.
#
# We train two heads on the same features, identical except for the pooling: `grid=1` (global
# average) and `grid=4` (spatial), and compare their mean IoU on held-out images.

# %% id="frozen" role="readonly"
def targets_of(classes, boxes):
    # the regression target: normalised (cx, cy, w, h)
    return classes, xyxy_to_cxcywh(normalize_boxes(boxes, (IMAGE_SIZE, IMAGE_SIZE)))


def loader(inputs, classes, boxes, batch_size, shuffle=True):
    return DataLoader(TensorDataset(inputs, *targets_of(classes, boxes)), batch_size=batch_size, shuffle=shuffle,
                      collate_fn=lambda batch: (torch.stack([b[0] for b in batch]),
                                                tuple(torch.stack([b[k] for b in batch]) for k in (1, 2))))


def joint_loss(outputs, targets):
    return localisation_loss(*outputs, *targets)


def evaluate_localisation(model, inputs, classes, boxes):
    # mean IoU of predicted vs true boxes and class accuracy, on held-out images
    (logits, pred), _ = predict(model, DataLoader(TensorDataset(inputs, classes), batch_size=256), device=DEVICE)
    pred_xyxy = cxcywh_to_xyxy(denormalize_boxes(pred, (IMAGE_SIZE, IMAGE_SIZE)))
    mean_iou = reference_box_iou(pred_xyxy.clamp(0, IMAGE_SIZE), boxes).diagonal().mean().item()
    return {"mean_iou": mean_iou, "accuracy": (logits.argmax(1) == classes).float().mean().item()}


backbone.load_state_dict(pretrained_state)
backbone.eval().to(DEVICE)
with torch.no_grad():  # features of the frozen backbone, computed once
    train_features = torch.cat([backbone(x.to(DEVICE)).cpu() for x in train_images.split(256)])
    test_features = torch.cat([backbone(x.to(DEVICE)).cpu() for x in test_images.split(256)])
print("stored features:", tuple(train_features.shape))

frozen_results, frozen_heads = {}, {}
for grid in (1, 4):
    head = LocalisationNet(nn.Identity(), FEAT_CHANNELS, len(CLASS_NAMES), grid=grid)
    fit(head, loader(train_features, train_classes, train_boxes, 64), torch.optim.Adam(head.parameters(), lr=2e-3),
        steps=steps(fast=600, full=1500), loss_fn=joint_loss, seed=0, device=DEVICE)
    frozen_heads[grid] = head
    frozen_results[grid] = evaluate_localisation(head, test_features, test_classes, test_boxes)
    print(f"frozen backbone, grid={grid}: mean IoU {frozen_results[grid]['mean_iou']:.3f}, "
          f"accuracy {frozen_results[grid]['accuracy']:.3f}")
record("01_localisation/frozen_pooled_iou", frozen_results[1]["mean_iou"])
record("01_localisation/frozen_spatial_iou", frozen_results[4]["mean_iou"]);

# %% id="frozen-show" role="readonly"
n_show = min(6, len(test_images))
fig, axes = plt.subplots(2, n_show, figsize=(2.5 * n_show, 5.4), squeeze=False)
for row, grid in enumerate((1, 4)):
    with torch.no_grad():
        logits, pred = frozen_heads[grid].eval()(test_features[:n_show].to(DEVICE))
    pred = cxcywh_to_xyxy(denormalize_boxes(pred.cpu(), (IMAGE_SIZE, IMAGE_SIZE)))
    for i, ax in enumerate(axes[row]):
        viz.draw_boxes(test_images[i], test_boxes[i:i + 1], colour="#009E73", linestyle="--", ax=ax)
        viz.draw_boxes(None, pred[i:i + 1], logits[i:i + 1].argmax(1).cpu() + 1, logits[i:i + 1].softmax(1).max(1).values.cpu(),
                       class_names=CLASS_NAMES, ax=ax, title=f"grid={grid}  IoU {float(iou(pred[i], test_boxes[i])):.2f}")
fig.suptitle("dashed: ground truth; solid: prediction. Top: global pooling. Bottom: 4x4 spatial pooling.")
fig.tight_layout()

# %% [markdown] id="written-md"
# ### Written question (2 points, graded by hand)
#
# Both heads see features of the same frozen backbone and reach a similar classification
# accuracy, yet their boxes differ a lot. In a few sentences: **why does a head on globally pooled
# features localise worse than one that keeps the spatial layout?** What does global average
# pooling keep, and what does it throw away? Why does classification not suffer as much?

# %% [markdown] id="written-answer" role="answer" points=2
# ### BEGIN SOLUTION
# Global average pooling sums each feature channel over all positions: the result says *which*
# features fired and how strongly, but not *where*. A circle in the top-left corner and the same
# circle in the bottom-right give (almost) the same pooled vector, so the box head cannot tell
# their positions apart; whatever location it recovers comes only from indirect cues (zero padding at
# the borders, partial receptive fields), hence poor boxes. The `grid×grid` pooling keeps one vector
# per region, so the head can read off in which cells the object's features are and how far they
# extend: position and size. Classification needs exactly the invariance that pooling provides (a
# circle is a circle anywhere), so it does not suffer; localisation needs the equivariance that
# pooling destroys.
# ### END SOLUTION

# %% [markdown] id="finetune-md"
# ## 8. Stage 2 — fine-tuning end to end
#
# Now we unfreeze the backbone and train everything together, starting from the pretrained weights
# and the trained spatial head. The backbone's features adapt to localisation, not only to the
# source task's classes. A common precaution: a **smaller learning rate for the backbone** than for
# the heads, so that the pretrained features are adjusted rather than overwritten.

# %% id="finetune" role="readonly"
model = LocalisationNet(backbone, FEAT_CHANNELS, len(CLASS_NAMES), grid=4).to(DEVICE)
model.load_state_dict({**{f"backbone.{k}": v for k, v in pretrained_state.items()},
                       **{k: v for k, v in frozen_heads[4].state_dict().items() if not k.startswith("backbone.")}})
optimizer = torch.optim.Adam([
    {"params": model.backbone.parameters(), "lr": 5e-4},
    {"params": [p for n, p in model.named_parameters() if not n.startswith("backbone.")], "lr": 1e-3},
])
history = fit(model, loader(train_images, train_classes, train_boxes, 32), optimizer,
              steps=steps(fast=400, full=3000), loss_fn=joint_loss, seed=0, device=DEVICE, log_every=20)
viz.plot_history(history, log=True).set_title("fine-tuning: the two terms of the joint loss")

final = evaluate_localisation(model, test_images, test_classes, test_boxes)
mean_iou = record("01_localisation/mean_iou", final["mean_iou"])
class_accuracy = record("01_localisation/class_accuracy", final["accuracy"])
print(f"{'':28}{'mean IoU':>10}{'accuracy':>10}")
for name, r in [("frozen, global pooling", frozen_results[1]), ("frozen, 4x4 spatial", frozen_results[4]),
                ("fine-tuned, 4x4 spatial", final)]:
    print(f"{name:28}{r['mean_iou']:>10.3f}{r['accuracy']:>10.3f}")

# %% [markdown] id="both-heads-md"
# At test time both heads answer at once: the class (with its probability) and the box. Dashed green
# is the ground truth.

# %% id="both-heads" role="readonly"
model.eval()
n_show = min(12, len(test_images))
with torch.no_grad():
    logits, pred = model(test_images[:n_show].to(DEVICE))
pred = cxcywh_to_xyxy(denormalize_boxes(pred.cpu(), (IMAGE_SIZE, IMAGE_SIZE)))
probs = logits.softmax(1).cpu()
fig, axes = plt.subplots(-(-n_show // 6), min(6, n_show), figsize=(15, 5.4), squeeze=False)
for i, ax in zip(range(n_show), axes.flat):
    viz.draw_boxes(test_images[i], test_boxes[i:i + 1], colour="#009E73", linestyle="--", ax=ax)
    viz.draw_boxes(None, pred[i:i + 1], probs[i:i + 1].argmax(1) + 1, probs[i:i + 1].max(1).values, class_names=CLASS_NAMES,
                   ax=ax, title=f"IoU {float(iou(pred[i], test_boxes[i])):.2f}")
fig.tight_layout()

# %% [markdown] id="limit-md"
# ## 9. The limit: exactly N outputs
#
# Our network predicts **exactly one** box. What happens on an image with several objects?

# %% id="limit" role="readonly"
multi_set = ShapesDataset(6, IMAGE_SIZE, preset="easy", min_objects=2, max_objects=3, seed=5)
fig, axes = plt.subplots(1, 6, figsize=(15, 2.8))
for i, ax in enumerate(axes):
    image, target = multi_set[i]
    with torch.no_grad():
        logits, pred = model(image[None].to(DEVICE))
    pred = cxcywh_to_xyxy(denormalize_boxes(pred.cpu(), (IMAGE_SIZE, IMAGE_SIZE)))
    viz.draw_boxes(image, target["boxes"], colour="#009E73", linestyle="--", ax=ax)
    viz.draw_boxes(None, pred, logits.argmax(1).cpu() + 1, class_names=CLASS_NAMES, ax=ax,
                   title=f"{len(target['boxes'])} objects, 1 box")
fig.tight_layout()

# %% [markdown] id="limit-text"
# The single box lands on one object, or somewhere between several — a regression to the mean of
# the possible answers. We could give the network $N$ box heads, but real images hold a *variable*
# number of objects (0, 1, 50…), and nothing says which head should predict which object.
#
# **The $N$-slot head and its ambiguity.** Say the head outputs $N$ slots, each a class (or "no
# object") and a box, and we train slot $k$ on the $k$-th ground-truth object. That order is
# arbitrary: list the same two objects the other way round and the targets swap. The loss then
# punishes a perfect prediction that has the slots in the other order, and the best the network can
# do against an arbitrary order is again the mean — every slot drifts to the centre of the possible
# objects. Sorting the objects (left to right, by size) only moves the ambiguity to the ties. The
# fix is to make the loss **invariant to the order**: before computing it, match predictions to
# objects one-to-one so that the total cost is lowest (the Hungarian algorithm), then train each
# slot on the object it was matched to. That is DETR's set loss (Carion et al., ECCV 2020), which
# you write in lab 06, sections 3–4.
#
# Detection therefore needs more than regression:
#
# * predict **many candidate boxes** at fixed places — grid cells (YOLO, lab 02), anchors at several
#   scales (RetinaNet, lab 03), region proposals (Faster R-CNN, lab 04) — each with a confidence, and
#   keep the confident ones after **non-maximum suppression**; or
# * predict a **set** of boxes and match it one-to-one to the ground truth (DETR, lab 06).
#
# Both keep the two ingredients of this lab: a classification loss and a box-regression loss on
# top of a pretrained backbone, and IoU to decide what counts as correct.
#
# **References.** P. Sermanet et al., *OverFeat: Integrated Recognition, Localization and Detection
# using Convolutional Networks*, ICLR 2014. N. Carion et al., *End-to-End Object Detection with
# Transformers*, ECCV 2020 (DETR). M. Lin, Q. Chen, S. Yan, *Network in Network*, ICLR 2014
# (global average pooling). J. Yosinski et al., *How transferable are features in deep neural
# networks?*, NeurIPS 2014.
