# %% [markdown] id="intro"
# <!-- COLAB_BADGE: notebook_src/build.py puts the Open-in-Colab badge here -->
#
# # Lab 05 — Semantic segmentation: FCN, transposed convolution, U-Net, stacked hourglass
#
# *CNNs part II — beyond image classification.*
#
# Detection draws a box around each object. **Semantic segmentation** labels every **pixel** with a
# class (here: background, circle, square, triangle). The output is an image of class scores,
# $(K, H, W)$ for $K$ classes, trained with a cross-entropy per pixel.
#
# The path of this lab follows the slides:
#
# 1. **Convolutionize** — a classifier's fully connected layers are convolutions in disguise.
#    Rewrite them as convolutions (exercise 1) and the classifier slides over a larger image for
#    free: a coarse class **heatmap** without any pixel labels (Long, Shelhamer, Darrell, *Fully
#    Convolutional Networks for Semantic Segmentation*, CVPR 2015; Sermanet et al., *OverFeat*, 2014).
# 2. **Deconvolution** — to go back to full resolution, upsample with a **transposed convolution**.
#    Write it from scratch (exercise 2) and see it as the transpose of the convolution's matrix;
#    initialise it as bilinear interpolation.
# 3. **Measure** a segmentation: per-class IoU and mIoU with an ignore label (exercise 3).
# 4. **U-Net** (Ronneberger, Fischer, Brox, MICCAI 2015) — an encoder–decoder whose **skip
#    connections** bring the sharp early features to the decoder. Measured against the same
#    network without skips.
# 5. **Stacked hourglass** (Newell, Yang, Deng, ECCV 2016) — U-Net-like blocks in sequence, a loss at
#    every stack (exercise 4), each stack refining the previous one.

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
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from course_utils import viz
from course_utils.config import by_mode, record, setup, steps
from course_utils.data import IGNORE_INDEX, OxfordPets, ShapesDataset, dataset_root, object_crops, semantic_tensors
from course_utils.grading import check_close, check_equal, check_grad_flows, check_raises, check_shape, check_type
from course_utils.metrics import confusion_matrix
from course_utils.metrics import mean_iou as reference_mean_iou
from course_utils.metrics import per_class_iou as reference_per_class_iou
from course_utils.models import StackedHourglass, UNet, load_backbone
from course_utils.tensors import plain
from course_utils.train import fit, predict

SETUP = setup(seed=0)
MODE, DEVICE = SETUP.mode, SETUP.device

# %% [markdown] id="data-md"
# ## 1. The data: a class for every pixel
#
# Offline, the synthetic shapes again (64×64 pixels, 1 to 4 objects): each image comes with a
# `semantic_mask`, the class index of every pixel — 0 for the background, 1..3 for the shapes. In
# `full` mode the same code runs on the Oxford-IIIT Pet **trimaps** (background / cat / dog at
# 128×128); their uncertain border ring is marked `IGNORE_INDEX` (−100, the default `ignore_index` of
# `F.cross_entropy`): those pixels count neither in the loss nor in the metrics, like the "void"
# borders of Pascal VOC.

# %% id="data" role="readonly"
IMAGE_SIZE = by_mode(smoke=64, fast=64, full=128)
if MODE == "full":
    # Oxford-IIIT Pet trimaps (downloaded once, about 800 MB, sha256-verified; the same as
    # `make data NAME=oxford_pets`); a fifth of the trainval list is held out for testing.
    pets_root = dataset_root("oxford_pets")
    if not (pets_root / "annotations" / "list.txt").is_file():
        from data_scripts.download import fetch_dataset

        pets_root = fetch_dataset("oxford_pets", pets_root.parent)
    pets = OxfordPets(pets_root, "trainval", labels="species", trimap=True, border="ignore",
                      transforms=v2.Resize((IMAGE_SIZE, IMAGE_SIZE), antialias=True))
    CLASS_NAMES = ["background", *pets.class_names]
    images, masks = semantic_tensors(pets)  # (N, 3, H, W), (N, H, W)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    n_test = max(1, len(order) // 5)
    test_images, test_masks = images[order[:n_test]], masks[order[:n_test]]
    train_images, train_masks = images[order[n_test:]], masks[order[n_test:]]
else:
    train_set = ShapesDataset(by_mode(smoke=32, fast=1200, full=0), IMAGE_SIZE, seed=0)
    test_set = ShapesDataset(by_mode(smoke=16, fast=200, full=0), IMAGE_SIZE, seed=1)  # unseen
    train_images, train_masks = semantic_tensors(train_set)  # (N, 3, H, W), (N, H, W)
    test_images, test_masks = semantic_tensors(test_set)
    CLASS_NAMES = ["background", *ShapesDataset(1).class_names]
NUM_CLASSES = len(CLASS_NAMES)  # background included
train_loader = DataLoader(TensorDataset(train_images, train_masks), batch_size=16, shuffle=True)
test_loader = DataLoader(TensorDataset(test_images, test_masks), batch_size=100)
print(f"train {tuple(train_images.shape)}, test {tuple(test_images.shape)}, classes {CLASS_NAMES}")
counted = test_masks[test_masks != IGNORE_INDEX]
print("test pixels per class:", {n: f"{(counted == k).float().mean():.1%}" for k, n in enumerate(CLASS_NAMES)})


def show_masks(images, columns, titles, n=4):
    """One row per image: the image, then each (N, H, W) class map of ``columns`` overlaid on it."""
    n = min(n, len(images), *(len(maps) for maps in columns))
    fig, axes = plt.subplots(n, 1 + len(columns), figsize=(2.3 * (1 + len(columns)), 2.3 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(viz.to_hwc(images[i])); axes[i, 0].set_axis_off()
        for j, maps in enumerate(columns):
            shown = maps[i].clone()
            shown[shown == IGNORE_INDEX] = 0
            viz.draw_semantic_mask(images[i], shown, num_classes=NUM_CLASSES, alpha=0.6, ax=axes[i, j + 1])
    for j, title in enumerate(["image", *titles]):
        axes[0, j].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


show_masks(test_images, [test_masks], ["ground truth"]);


# %% [markdown] id="conv-md"
# ## 2. Convolutionize (exercise 1, 2 points)
#
# Take an ordinary classifier: convolutions and pooling produce a feature map $(C, h, w)$, which is
# **flattened** into a vector of $C h w$ numbers and fed to fully connected (Dense) layers. Look at
# one output unit $o$ of the first Dense layer:
#
# $$y_o = b_o + \sum_{c, i, j} W_{o,\,(c, i, j)}\; x_{c, i, j}.$$
#
# That is exactly a **convolution with a kernel of size $h \times w$** evaluated at one position:
# weights $W_{o, c, i, j}$, bias $b_o$. The following Dense layers see a $1 \times 1$ "map", so
# they are $1 \times 1$ convolutions. Rewritten this way the network computes *the same outputs* at
# the training size — but it now accepts **any larger image** and returns a **map** of class scores:
# the classifier evaluated on every window, sharing all computation between overlapping windows.
#
# Flattening a `(C, h, w)` tensor in PyTorch runs over $c$ first, then $i$ (rows), then $j$
# (columns): `x.flatten(1)[:, c * h * w + i * w + j] == x[:, c, i, j]`.
#
# Write `convolutionize(linear, in_shape)`: given an `nn.Linear` that was applied to flattened
# `(C, h, w)` features (`in_shape = (C, h, w)`), return the equivalent `nn.Conv2d` (`C` input
# channels, `linear.out_features` output channels, kernel `(h, w)`, a bias only if `linear` has one)
# holding a **copy** of the same weights (leave `linear` unchanged). Raise a `ValueError` if `in_shape`
# does not match `linear.in_features` (C·h·w values). Any `torch` operation may be used.

# %% id="ex1-convolutionize" role="solution"
def convolutionize(linear: nn.Linear, in_shape: tuple[int, int, int]) -> nn.Conv2d:
    """nn.Linear(C*h*w -> D) applied to flattened (C, h, w) features -> the equivalent nn.Conv2d(C, D, (h, w))."""
    ### BEGIN SOLUTION
    channels, h, w = in_shape
    if linear.in_features != channels * h * w:
        raise ValueError(f"in_shape={in_shape} has {channels * h * w} values but the layer expects "
                         f"{linear.in_features} inputs")
    conv = nn.Conv2d(channels, linear.out_features, kernel_size=(h, w), bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, channels, h, w))  # (D, C, h, w)
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv
    ### END SOLUTION


# %% id="test-convolutionize" role="tests" points=2
# Exercise 1: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (other shapes, with and without bias), no new requirements.
torch.manual_seed(0)
linear = nn.Linear(2 * 3 * 3, 5)
before = {k: v.detach().clone() for k, v in linear.state_dict().items()}
conv = convolutionize(linear, (2, 3, 3))
check_type(conv, nn.Conv2d, name="convolutionize(linear, (2, 3, 3))", hint="return an nn.Conv2d")
check_equal((conv.in_channels, conv.out_channels, tuple(conv.kernel_size)), (2, 5, (3, 3)),
            name="(in_channels, out_channels, kernel_size) of the convolution", hint="nn.Conv2d(C, D, kernel_size=(h, w))")
x = torch.randn(4, 2, 3, 3)
with torch.no_grad():
    out = conv(x)
    check_shape(out, (4, 5, 1, 1), name="conv(x) at the training size", hint="kernel (h, w) covers the whole map")
    check_close(out.flatten(1), linear(x.flatten(1)), name="conv(x) vs linear(x.flatten(1))", atol=1e-5,
                hint="weight (D, C*h*w) -> (D, C, h, w), in the order flatten() uses; keep the bias")
    big = torch.randn(2, 2, 6, 7)  # a larger input: the Dense layer applied to every 3x3 window
    windows = F.unfold(big, kernel_size=(3, 3))  # (N, C*3*3, L): each window flattened like flatten() does
    expected = (linear.weight @ windows + linear.bias[:, None]).reshape(2, 5, 4, 5)
    check_close(conv(big), expected, name="conv on a larger input (every window)", atol=1e-5)
for k, v in before.items():
    check_equal(linear.state_dict()[k], v, name=f"linear.{k} after convolutionize", hint="copy the weights; leave linear unchanged")
# a layer without bias, on a non-square map
no_bias = nn.Linear(3 * 2 * 4, 6, bias=False)
conv = convolutionize(no_bias, (3, 2, 4))
assert conv.bias is None, f"expected no bias (the linear layer has none), got {conv.bias}\nhint: bias=linear.bias is not None"
check_equal(tuple(conv.kernel_size), (2, 4), name="kernel_size for in_shape (3, 2, 4)", hint="kernel (h, w): h rows, w columns")
with torch.no_grad():
    x = torch.randn(2, 3, 2, 4)
    check_close(conv(x).flatten(1), no_bias(x.flatten(1)), name="convolutionize of a layer without bias", atol=1e-5)
check_raises(convolutionize, ValueError, nn.Linear(10, 3), (2, 2, 2), name="convolutionize(nn.Linear(10, 3), (2, 2, 2))",
             hint="2 * 2 * 2 = 8 values but the layer takes 10 inputs: raise ValueError before reshaping")
print("visible checks passed")
### BEGIN HIDDEN TESTS
for (c_, h_, w_), d_, bias_, n_ in [((3, 2, 5), 4, False, 1), ((8, 1, 1), 6, True, 3), ((1, 4, 4), 2, True, 2),
                                     ((4, 3, 2), 7, True, 5)]:
    torch.manual_seed(h_ * 10 + w_)
    lin = nn.Linear(c_ * h_ * w_, d_, bias=bias_)
    if bias_:
        nn.init.normal_(lin.bias)
    before = lin.weight.detach().clone()
    cv = convolutionize(lin, (c_, h_, w_))
    assert isinstance(cv, nn.Conv2d), "convolutionize should return an nn.Conv2d"
    assert (cv.bias is None) == (not bias_), f"the conv needs a bias exactly when the linear layer has one ({bias_})"
    check_equal(tuple(cv.kernel_size), (h_, w_), name=f"kernel_size for in_shape={(c_, h_, w_)}")
    with torch.no_grad():
        xs = torch.randn(n_, c_, h_, w_)
        check_close(cv(xs).flatten(1), lin(xs.flatten(1)), atol=1e-5,
                    name=f"convolutionize, in_shape={(c_, h_, w_)}, bias={bias_}",
                    hint="(C, h, w) flatten order; bias copied")
        bigger = torch.randn(n_, c_, h_ + 3, w_ + 2)
        cols = F.unfold(bigger, kernel_size=(h_, w_))
        ref = lin.weight @ cols + (lin.bias[:, None] if bias_ else 0)
        check_close(cv(bigger), ref.reshape(n_, d_, 4, 3), atol=1e-5,
                    name=f"convolutionize on a larger input, in_shape={(c_, h_, w_)}")
    check_equal(lin.weight.detach(), before, name="the linear layer's weights must not change")
### END HIDDEN TESTS

# %% [markdown] id="clf-md"
# ### A classifier to convolutionize
#
# This section uses the synthetic shapes in every mode. The classifier sees **32×32 crops**: centred
# on an object (its class) or on an empty area (class 0, background), cut from 64×64 training
# images. Three conv–pool stages give a `(32, 4, 4)` feature map; two Dense layers classify it.

# %% id="classifier" role="readonly"
CROP = 32
crop_source = ShapesDataset(by_mode(smoke=24, fast=600, full=2000), 64, seed=10)
SHAPE_NAMES = ["background", *crop_source.class_names]
crops, crop_labels = object_crops(crop_source, CROP, backgrounds_per_image=1, seed=0)  # (M, 3, 32, 32), (M,)
print(f"{len(crops)} crops; per class:", {n: int((crop_labels == k).sum()) for k, n in enumerate(SHAPE_NAMES)})
torch.manual_seed(0)
classifier = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),   # (B, 16, 16, 16)
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 8, 8)
    nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 4, 4)
    nn.Flatten(),                                                                     # (B, 512)
    nn.Linear(32 * 4 * 4, 64), nn.ReLU(),                                             # (B, 64)
    nn.Linear(64, 4),                                                                 # (B, 4): background + 3 shapes
)
n_val = len(crops) // 5
fit(classifier, DataLoader(TensorDataset(crops[n_val:], crop_labels[n_val:]), batch_size=64, shuffle=True),
    torch.optim.Adam(classifier.parameters(), lr=3e-3), steps(fast=200, full=600),
    loss_fn=F.cross_entropy, seed=0, log_every=50)
classifier.eval()
with torch.no_grad():
    crop_accuracy = (classifier(crops[:n_val]).argmax(1) == crop_labels[:n_val]).float().mean().item()
print(f"crop classification accuracy on held-out crops: {crop_accuracy:.3f}")
record("05_segmentation/crop_classifier_accuracy", crop_accuracy)

# %% [markdown] id="fcn-md"
# Now convolutionize the two Dense layers: the first becomes a 4×4 convolution, the second a 1×1
# convolution. On a 32×32 crop the outputs are identical; on a 64×64 image the same weights give a
# 5×5 map. Each output cell $(i, j)$ is the classifier applied to the window of pixels
# $[8i, 8i + 32) \times [8j, 8j + 32)$: the **stride** of the map is the network's total
# downsampling (3 poolings: 8), its **receptive field** the crop size. (Near the edges of a window
# the results differ slightly from classifying the crop alone: inside a large image, the zero
# padding of the crop is replaced by real neighbouring pixels.)

# %% id="fully-conv" role="readonly"
features = classifier[:12]  # the conv-pool stages: (B, 3, H, W) -> (B, 32, H/8, W/8)
fully_conv = nn.Sequential(features, convolutionize(classifier[13], (32, 4, 4)), nn.ReLU(),
                           convolutionize(classifier[15], (64, 1, 1))).eval()
with torch.no_grad():
    same = torch.allclose(fully_conv(crops[:64]).flatten(1), classifier(crops[:64]), atol=1e-4)
    print("identical outputs on 32x32 crops:", same)
    scene_images = test_images[:8] if MODE != "full" else semantic_tensors(ShapesDataset(8, 64, seed=1))[0]
    print("a 64x64 image gives a map of shape", tuple(fully_conv(scene_images[:1]).shape))


def heatmap_to_pixels(scores: torch.Tensor, window: int = CROP, stride: int = 8) -> torch.Tensor:
    """(B, K, n, m) window scores -> (B, K, (n-1)*stride + window, ...) pixel scores: each cell's value is
    placed at the centre of its window, interpolated bilinearly in between, repeated beyond the outer centres."""
    up = F.interpolate(scores, scale_factor=stride, mode="bilinear", align_corners=False)  # centres: stride*(i + 1/2)
    margin = (window - stride) // 2
    return F.pad(up, (margin, margin, margin, margin), mode="replicate")  # shift centres to stride*i + window/2


big_scene = ShapesDataset(1, 128, seed=7, min_objects=5, max_objects=8, size_range=(0.075, 0.2))  # same object sizes
big_image, big_target = big_scene[0]
with torch.no_grad():
    big_scores = fully_conv(plain(big_image[None]))  # (1, 4, 13, 13)
    probs = big_scores.softmax(1)[0]
fig, axes = plt.subplots(1, 5, figsize=(15, 3.3))
viz.draw_semantic_mask(big_image, big_target["semantic_mask"], ax=axes[0]); axes[0].set_title("128x128 image, truth")
for k in range(1, 4):
    axes[k].imshow(probs[k], vmin=0, vmax=1, cmap="magma"); axes[k].set_title(f"p({SHAPE_NAMES[k]}), 13x13 map")
    axes[k].set_axis_off()
coarse = heatmap_to_pixels(big_scores).argmax(1)[0]
viz.draw_semantic_mask(big_image, coarse, ax=axes[4]); axes[4].set_title("argmax, upsampled")
fig.tight_layout()


# %% [markdown] id="fcn-coarse-md"
# No pixel label was used: the classifier only ever saw crops with one class each, and yet it
# finds *where* each class is. But the map is coarse — one value every 8 pixels, from a window of
# 32 — so shapes come out as blobs. How good is it as a segmentation? The mIoU (defined in
# exercise 3) of the upsampled heatmap on the test images is printed after exercise 3. FCN (Long et
# al.) therefore **learns the upsampling**, trained on pixel labels: next section.

# %% [markdown] id="tconv-md"
# ## 3. Transposed convolution (exercise 2, 3 points)
#
# A convolution with stride $s$ shrinks; the **transposed convolution** ("deconvolution" in the FCN
# paper, a misnomer) goes the other way. Its simplest description is a **scatter-add**: every input
# pixel $x[c_{in}, p, q]$ stamps a copy of the kernel, scaled by its value, onto the output at
# position $(s\,p, s\,q)$; overlapping stamps add up:
#
# $$y_{\text{full}}[c_{out},\, s\,p + i,\, s\,q + j] \mathrel{+}= x[c_{in}, p, q]\; W[c_{in}, c_{out}, i, j].$$
#
# The full output has $(H - 1)\,s + k$ rows. Then, to mirror the convolution with the same
# arguments (which pads its input by $p$ on each side), `padding` **removes** $p$ rows and columns
# on each side of the full output, and `output_padding` $\in [0, s)$ adds rows/columns at the
# bottom/right (it resolves the ambiguity of stride: convolutions of inputs of sizes 7 and 8 with
# stride 2 both give 4):
#
# $$H_{out} = (H - 1)\,s - 2p + k + \text{output\_padding}.$$
#
# Note the weight layout of `nn.ConvTranspose2d`: `(C_in, C_out, k_h, k_w)` — the transpose of a
# convolution from `C_out` to `C_in` channels.
#
# Write `conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0)` for `x` of
# shape `(N, C_in, H, W)`, `weight` `(C_in, C_out, k_h, k_w)`, `bias` `(C_out,)` or None, and integer
# `stride`, `padding`, `output_padding` (the same for both dimensions), giving exactly what
# `F.conv_transpose2d` gives (without calling it, `F.conv2d` or `F.fold`: the tests make them fail;
# `torch.einsum`, matrix products, slicing, `torch.zeros`/`new_zeros` and `F.pad` may be used). Loop
# over the kernel positions $(i, j)$ (not over pixels); `torch.einsum` or a matrix product handles the
# channels. The result has the dtype of `x` (float64 in, float64 out).

# %% id="ex2-conv-transpose" role="solution"
def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1,
                     padding: int = 0, output_padding: int = 0) -> torch.Tensor:
    """x (N, C_in, H, W), weight (C_in, C_out, kh, kw) -> (N, C_out, H_out, W_out), with
    H_out = (H - 1) * stride - 2 * padding + kh + output_padding (W_out likewise)."""
    ### BEGIN SOLUTION
    n, _, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    full = x.new_zeros(n, c_out, (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding)
    for i in range(kh):
        for j in range(kw):
            stamp = torch.einsum("nchw,cd->ndhw", x, weight[:, :, i, j])  # (N, C_out, H, W)
            full[:, :, i:i + (h - 1) * stride + 1:stride, j:j + (w - 1) * stride + 1:stride] += stamp
    h_out = (h - 1) * stride - 2 * padding + kh + output_padding
    w_out = (w - 1) * stride - 2 * padding + kw + output_padding
    out = full[:, :, padding:padding + h_out, padding:padding + w_out]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
    ### END SOLUTION


# %% id="test-conv-transpose" role="tests" points=3
# Exercise 2: 3 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (every stride, kernel, padding, output_padding), no new requirements.
def without_conv_functions(fn, *args, **kwargs):
    """fn(*args, **kwargs) with F.conv_transpose2d, F.conv2d, F.fold (and torch.conv*) made to fail."""
    def forbidden(*a, **k):
        raise AssertionError("conv_transpose2d: expected your own scatter-add, got a call to a convolution function "
                             "of PyTorch\nhint: no F.conv_transpose2d, F.conv2d or F.fold: loop over the kernel positions")
    saved = [(m, n, getattr(m, n)) for m in (F, torch) for n in ("conv_transpose2d", "conv2d", "fold") if hasattr(m, n)]
    for m, n, _ in saved:
        setattr(m, n, forbidden)
    try:
        return fn(*args, **kwargs)
    finally:
        for m, n, f in saved:
            setattr(m, n, f)


x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
ones = torch.ones(1, 1, 2, 2)
blocks = torch.tensor([[[[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]])
check_close(without_conv_functions(conv_transpose2d, x, ones, stride=2), blocks,
            name="stride 2, 2x2 kernel of ones", inputs={"x": x}, hint="each input pixel stamps the kernel at (2p, 2q)")
check_close(without_conv_functions(conv_transpose2d, x, ones), torch.tensor([[[[1.0, 3, 2], [4, 10, 6], [3, 7, 4]]]]),
            name="stride 1, 2x2 kernel of ones", inputs={"x": x}, hint="overlapping stamps add up")
torch.manual_seed(0)
x = torch.randn(2, 2, 4, 5)
weight, bias = torch.randn(2, 3, 3, 3), torch.randn(3)
check_close(without_conv_functions(conv_transpose2d, x, weight, bias, stride=2, padding=1, output_padding=1),
            F.conv_transpose2d(x, weight, bias, stride=2, padding=1, output_padding=1),
            name="conv_transpose2d(stride=2, padding=1, output_padding=1) vs F.conv_transpose2d", atol=1e-5,
            hint="H_out = (H - 1) * stride - 2 * padding + k + output_padding")
xd, wd, bd = torch.randn(1, 3, 3, 2, dtype=torch.float64), torch.randn(3, 2, 4, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
check_close(without_conv_functions(conv_transpose2d, xd, wd, bd, stride=3, padding=2, output_padding=2),
            F.conv_transpose2d(xd, wd, bd, stride=3, padding=2, output_padding=2), atol=1e-9,
            name="float64, stride 3, kernel 4x3, padding 2, output_padding 2",
            hint="keep the dtype of x (x.new_zeros, not torch.zeros); the kernel need not be square")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(1)
cases = []
for stride_ in (1, 2, 3):
    for (kh_, kw_) in ((1, 1), (2, 2), (3, 3), (4, 4), (3, 2)):
        for padding_ in range(0, min(kh_, kw_)):
            for output_padding_ in range(stride_):
                cases.append((stride_, kh_, kw_, padding_, output_padding_))
for idx, (stride_, kh_, kw_, padding_, output_padding_) in enumerate(cases):
    c_in, c_out = [(1, 1), (2, 3), (3, 2), (4, 4)][idx % 4]
    n_, h_, w_ = [(1, 1, 1), (2, 3, 4), (1, 5, 2), (3, 4, 4)][idx % 4]
    xs = torch.randn(n_, c_in, h_, w_, generator=g, dtype=torch.float64)
    wt = torch.randn(c_in, c_out, kh_, kw_, generator=g, dtype=torch.float64)
    bs = torch.randn(c_out, generator=g, dtype=torch.float64) if idx % 2 else None
    try:
        expected = F.conv_transpose2d(xs, wt, bs, stride=stride_, padding=padding_, output_padding=output_padding_)
    except RuntimeError:
        continue  # an output size of 0 or less: not a valid configuration
    check_close(conv_transpose2d(xs, wt, bs, stride=stride_, padding=padding_, output_padding=output_padding_),
                expected, atol=1e-9,
                name=(f"conv_transpose2d(stride={stride_}, padding={padding_}, output_padding={output_padding_}) "
                      f"with C_in={c_in}, C_out={c_out}, kernel {kh_}x{kw_}, input {h_}x{w_}, bias={bs is not None}"),
                hint="padding crops the full output on both sides; output_padding adds rows at the bottom/right; "
                     "weight is (C_in, C_out, kh, kw); no kernel flip in the scatter view")
### END HIDDEN TESTS

# %% [markdown] id="tconv-matrix-md"
# ### The transpose of the convolution matrix
#
# A convolution is linear: on a flattened input $\mathbf{x} \in \mathbb{R}^{C_{in} H W}$ it is a
# (sparse) matrix product $\mathbf{y} = C\,\mathbf{x}$. Column $k$ of $C$ is the convolution of the
# $k$-th basis image. The **transposed** convolution with the same kernel is the product with
# $C^\top$ — hence the name, and why it is also the **gradient** of the convolution with respect to
# its input. Below: $C$ for a 3×3 kernel, stride 2, padding 1 on a 5×5 input, and the check that
# $C^\top \mathbf{y}$ is your `conv_transpose2d` of $\mathbf{y}$.

# %% id="tconv-matrix" role="readonly"
torch.manual_seed(0)
kernel = torch.randn(1, 1, 3, 3, dtype=torch.float64)
basis = torch.eye(25, dtype=torch.float64).reshape(25, 1, 5, 5)  # every one-pixel image
C = F.conv2d(basis, kernel, stride=2, padding=1).reshape(25, -1).T  # (9, 25): y = C x
y = torch.randn(1, 1, 3, 3, dtype=torch.float64)
via_matrix = (C.T @ y.flatten()).reshape(1, 1, 5, 5)
yours = conv_transpose2d(y, kernel, stride=2, padding=1)
print("C^T y == conv_transpose2d(y):", torch.allclose(via_matrix, yours))
fig, axes = plt.subplots(1, 2, figsize=(11, 2.6), gridspec_kw={"width_ratios": [3, 1]})
axes[0].imshow(C, cmap="coolwarm"); axes[0].set_title("C: 3x3 outputs (rows) x 5x5 inputs (columns)")
axes[1].imshow(C.T @ C, cmap="coolwarm"); axes[1].set_title("C^T C")
fig.tight_layout()


# %% [markdown] id="bilinear-md"
# ### Bilinear initialisation
#
# FCN initialises its upsampling layers to **bilinear interpolation**, then lets training adjust
# them. For a factor $f$, the kernel has size $k = 2f$, stride $f$, padding $f/2$, and is the outer
# product of a 1-D "tent" $t_i = 1 - |i - c| / f$ with centre $c = (k - 1)/2$, applied to each
# channel separately (weight $(C, C, k, k)$, zero between different channels). Away from the
# borders it gives exactly `F.interpolate(..., mode="bilinear", align_corners=False)`; at the
# borders the missing neighbours count as zeros.

# %% id="bilinear" role="readonly"
def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """(channels, channels, 2f, 2f) weight of a transposed convolution that upsamples by ``factor`` bilinearly."""
    k = 2 * factor
    centre = (k - 1) / 2
    tent = 1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / factor  # (k,)
    weight = torch.zeros(channels, channels, k, k)
    weight[range(channels), range(channels)] = tent[:, None] * tent[None, :]
    return weight


factor = 4
small = test_images[:1, :, ::8, ::8]  # (1, 3, 8, 8)
upsampled = conv_transpose2d(small, bilinear_kernel(3, factor), stride=factor, padding=factor // 2)
reference = F.interpolate(small, scale_factor=factor, mode="bilinear", align_corners=False)
inner = (slice(None), slice(None), slice(factor, -factor), slice(factor, -factor))
print(f"{tuple(small.shape)} -> {tuple(upsampled.shape)}; max difference to F.interpolate away from the border: "
      f"{(upsampled - reference)[inner].abs().max():.2e}")
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, im, title in zip(axes, [small, upsampled, reference], ["8x8 input", "transposed conv, bilinear init",
                                                                "F.interpolate(bilinear)"]):
    ax.imshow(viz.to_hwc(im[0].clamp(0, 1))); ax.set_title(title); ax.set_axis_off()
fig.tight_layout()


# %% [markdown] id="ex3-md"
# ## 4. Measuring a segmentation: IoU per class and mIoU (exercise 3, 2 points)
#
# For each class $c$, over **all** counted pixels of the evaluated set (not image by image):
#
# $$\mathrm{IoU}_c = \frac{TP_c}{TP_c + FP_c + FN_c}
# = \frac{|\text{pred} = c \,\wedge\, \text{target} = c|}{|\text{pred} = c \,\vee\, \text{target} = c|},
# \qquad \mathrm{mIoU} = \frac{1}{|\mathcal{C}|} \sum_{c \in \mathcal{C}} \mathrm{IoU}_c .$$
#
# The conventions, which decide the number you report:
#
# * the prediction is the **argmax over the class dimension** of the logits `(N, K, H, W)`;
# * pixels whose target is `ignore_index` are **not counted at all** — neither as a miss nor as a
#   false positive for the class predicted there;
# * the **background is a class** like the others and is included in the mean;
# * a class absent from both the predictions and the targets has an undefined IoU ($0/0$): return
#   **NaN** for it and leave it **out of the mean** ($\mathcal{C}$ = classes with a non-empty union).
#   Counting it as 0 would punish a model for a class the test set does not contain. This is what
#   MMSegmentation's `IoUMetric` and Hugging Face's `mean_iou` do (a `nanmean` over classes); Pascal
#   VOC's devkit and Cityscapes' scripts likewise accumulate one confusion matrix over the whole
#   test set and average over classes, where every class occurs;
# * the mean is over **classes**, not pixels (a mean over pixels is the *pixel accuracy*, dominated
#   by the background).
#
# Write `segmentation_iou(logits, target, num_classes, ignore_index=IGNORE_INDEX)` returning
# `(iou, miou)`: `iou` a float64 tensor `(num_classes,)` with NaN for undefined classes, `miou` a
# Python float (NaN if no class is defined, e.g. when every pixel is ignored). Use `ignore_index` as
# given (the Oxford trimaps use −100, other datasets 255). Any `torch` operation may be used; a loop
# over the classes is fine.

# %% id="ex3-iou" role="solution"
def segmentation_iou(logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, float]:
    """logits (N, K, H, W), target (N, H, W) -> IoU per class (K,) float64 (NaN if undefined), mIoU."""
    ### BEGIN SOLUTION
    pred = logits.argmax(dim=1)  # (N, H, W)
    counted = target != ignore_index
    pred, target = pred[counted], target[counted]  # (P,) counted pixels
    iou = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        is_pred, is_true = pred == c, target == c
        union = (is_pred | is_true).sum()
        if union > 0:
            iou[c] = (is_pred & is_true).sum().double() / union
    return iou, float(iou.nanmean())
    ### END SOLUTION


# %% id="test-iou" role="tests" points=2
# Exercise 3: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (more images, classes and ignore labels), no new requirements.
logits = torch.zeros(1, 3, 2, 3)
logits[0, 1, 0, :2] = 1  # prediction: [[1, 1, 0], [0, 0, 0]]
target = torch.tensor([[[1, 0, 0], [0, 0, IGNORE_INDEX]]])
iou, miou = segmentation_iou(logits, target, 3)
# class 0: TP 3, pred 3 (the ignored pixel does not count), true 4 -> 3/4; class 1: 1/2; class 2: absent -> NaN
check_close(iou, torch.tensor([0.75, 0.5, float("nan")], dtype=torch.float64), name="per-class IoU",
            inputs={"pred (argmax)": logits.argmax(1), "target": target},
            hint="skip ignored pixels entirely; NaN for a class in neither prediction nor target; float64")
check_type(miou, float, name="mIoU", hint="return float(...) of the mean, not a tensor")
check_close(miou, 0.625, name="mIoU", hint="mean over the classes with a defined IoU, background included")
# another ignore label: 255 is a class index nobody predicts, -100 is then an ordinary (absent) value
target_255 = torch.where(target == IGNORE_INDEX, 255, target)
iou, miou = segmentation_iou(logits, target_255, 3, ignore_index=255)
check_close(iou, torch.tensor([0.75, 0.5, float("nan")], dtype=torch.float64), name="per-class IoU with ignore_index=255",
            hint="use the ignore_index argument, not the constant IGNORE_INDEX")
check_close(miou, 0.625, name="mIoU with ignore_index=255")
# every pixel ignored: no class is defined
iou, miou = segmentation_iou(logits, torch.full((1, 2, 3), IGNORE_INDEX), 3)
check_close(iou, torch.full((3,), float("nan"), dtype=torch.float64), name="per-class IoU when every pixel is ignored")
check_type(miou, float, name="mIoU when every pixel is ignored")
assert miou != miou, f"mIoU when every pixel is ignored: expected NaN (no class defined), got {miou}\n" \
    "hint: the nanmean of an all-NaN vector is NaN; do not replace it by 0"
torch.manual_seed(0)
logits = torch.randn(3, 4, 8, 6)
target = torch.randint(0, 4, (3, 8, 6))
target[0, :2] = IGNORE_INDEX
cm = confusion_matrix(logits.argmax(1), target, 4, ignore_index=IGNORE_INDEX)  # the course's reference
iou, miou = segmentation_iou(logits, target, 4)
check_close(iou, torch.as_tensor(reference_per_class_iou(cm), dtype=torch.float64),
            name="per-class IoU vs a confusion-matrix reference", hint="one count over all images, then divide")
check_close(miou, reference_mean_iou(cm), name="mIoU vs a confusion-matrix reference")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(3)
for n_, k_, h_, w_, ign in [(2, 5, 7, 9, IGNORE_INDEX), (1, 2, 4, 4, 255), (4, 6, 5, 3, IGNORE_INDEX),
                            (5, 3, 6, 6, 255)]:
    lg = torch.randn(n_, k_, h_, w_, generator=g)
    lg[:, k_ - 1] -= 10  # the last class is never predicted ...
    tg = torch.randint(0, max(k_ - 2, 1), (n_, h_, w_), generator=g)  # ... nor present: NaN, excluded
    tg[torch.rand(n_, h_, w_, generator=g) < 0.2] = ign
    tg[0, 0, 0] = k_ - 2  # a class only in the target
    cm_ = confusion_matrix(lg.argmax(1), tg, k_, ignore_index=ign)
    iou_, miou_ = segmentation_iou(lg, tg, k_, ignore_index=ign)
    check_close(iou_, torch.as_tensor(reference_per_class_iou(cm_), dtype=torch.float64),
                name=f"per-class IoU, {n_} images, {k_} classes, ignore {ign}",
                hint="one count over all images; ignored pixels skipped; argmax over dim 1")
    check_close(miou_, reference_mean_iou(cm_), name=f"mIoU, {n_} images, {k_} classes, ignore {ign}")
    assert isinstance(miou_, float), f"mIoU should be a Python float, got {type(miou_).__name__}"
# images with very different numbers of counted pixels: one count over the set, not a mean of per-image scores
lg = torch.randn(2, 3, 6, 6, generator=g)
tg = torch.randint(0, 3, (2, 6, 6), generator=g)
tg[1, :5] = IGNORE_INDEX
cm_ = confusion_matrix(lg.argmax(1), tg, 3, ignore_index=IGNORE_INDEX)
check_close(segmentation_iou(lg, tg, 3)[1], reference_mean_iou(cm_), name="mIoU over a set of unequal images",
            hint="accumulate over all pixels of all images, then divide")
perfect = torch.zeros(1, 3, 2, 2)
perfect[0, 0] = 1
iou_, miou_ = segmentation_iou(perfect, torch.zeros(1, 2, 2, dtype=torch.long), 3)
check_close(miou_, 1.0, name="mIoU when only the background is present and predicted",
            hint="classes absent from both are NaN and left out of the mean")
### END HIDDEN TESTS

# %% id="coarse-miou" role="readonly"
with torch.no_grad():
    coarse_scores = heatmap_to_pixels(fully_conv(scene_images))  # (B, 4, 64, 64)
scene_masks = test_masks[:8] if MODE != "full" else semantic_tensors(ShapesDataset(8, 64, seed=1))[1]
_, coarse_miou = segmentation_iou(coarse_scores, scene_masks, 4)
print(f"convolutionized classifier, upsampled heatmap: mIoU {coarse_miou:.3f} (no pixel labels used)")
record("05_segmentation/convolutionized_mIoU", coarse_miou)

# %% [markdown] id="unet-md"
# ## 5. U-Net: an encoder, a decoder, and skips
#
# An FCN upsamples a coarse map in one or a few big steps, so its masks stay blobby. **U-Net**
# (Ronneberger et al., 2015) makes the decoder a mirror of the encoder:
#
# * **encoder**: at each level two 3×3 convolutions, then a 2×2 max-pool (resolution / 2, channels × 2);
# * **decoder**: at each level a **transposed convolution** (kernel 2, stride 2) doubles the
#   resolution, then two 3×3 convolutions;
# * **skip connections**: the encoder's features of the same resolution are **concatenated** to the
#   upsampled ones before those convolutions;
# * a final 1×1 convolution gives the $K$ class logits at every pixel.
#
# Deep features know **what** (large receptive field, semantics) but have lost **where** (they are
# 8× coarser here); early features are sharp but know little. The skips give the decoder both. Here
# the model is `course_utils.models.UNet` (widths 8, 32, 64, 128: three poolings); `skips=False`
# gives the same network with the concatenations removed. Both are trained with the same steps and
# the per-pixel cross-entropy (`F.cross_entropy` skips `IGNORE_INDEX` pixels by default).
#
# **Class balance.** Most pixels are background (the cell prints the shares: about 88 % on the
# synthetic set). With the plain cross-entropy a network first learns "everything is background",
# and only much later tells a circle from a square. Weighting each pixel's loss by its true class,
# $w_c$, and dividing by the sum of the weights instead of the number of pixels,
#
# $$\mathcal{L} = \frac{\sum_i w_{y_i}\,\ell_i}{\sum_i w_{y_i}}, \qquad w_c \propto \frac{1}{\sqrt{\text{share of class } c}},$$
#
# gives the rare classes a louder voice (`F.cross_entropy(..., weight=w)` computes exactly this).
# Measured on this set, the U-Net below after its 200 fast-mode steps:
#
# | loss | mIoU | circle IoU | triangle IoU |
# |---|---|---|---|
# | plain cross-entropy | 0.39 | 0.00 | 0.00 |
# | weights $1/\sqrt{\text{share}}$ (used here) | 0.93 | 0.91 | 0.90 |
# | weights $1/\text{share}$ | 0.76 | 0.69 | 0.66 |
#
# Eigen & Fergus (2015) and SegNet weight by *median frequency / frequency*, i.e. $1/\text{share}$ up
# to scale; the square root is a softer version: the full inverse over-weights the rare classes and
# the background suffers. (Try `train_segmenter(model, loss_fn=F.cross_entropy)` to see the first row.)

# %% id="unet-train" role="readonly"
UNET_STEPS = steps(fast=200, full=3000)
counted_train = train_masks[train_masks != IGNORE_INDEX]  # (P,) class of every counted training pixel
pixel_share = torch.bincount(counted_train, minlength=NUM_CLASSES).double() / counted_train.numel()  # (K,)
CLASS_WEIGHTS = pixel_share.clamp_min(1e-4).rsqrt().float()  # (K,): 1 / sqrt(share); a missing class gets 100
CLASS_WEIGHTS *= NUM_CLASSES / CLASS_WEIGHTS.sum()  # mean 1 (the weighted mean does not depend on the scale)
print("pixel share:", {n: f"{v:.1%}" for n, v in zip(CLASS_NAMES, pixel_share.tolist())})
print("class weights:", {n: round(v, 2) for n, v in zip(CLASS_NAMES, CLASS_WEIGHTS.tolist())})


def weighted_cross_entropy(logits, target):
    """logits (N, K, H, W), target (N, H, W) -> the class-weighted mean cross-entropy over counted pixels."""
    return F.cross_entropy(logits, target, weight=CLASS_WEIGHTS.to(logits.device), ignore_index=IGNORE_INDEX)


def train_segmenter(model, steps=UNET_STEPS, loss_fn=weighted_cross_entropy, lr=5e-3):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 3), pct_start=0.2)
    return fit(model, train_loader, optimizer, steps, loss_fn=loss_fn, scheduler=scheduler, seed=0, device=DEVICE,
               log_every=25)


torch.manual_seed(0)
unet = UNet(NUM_CLASSES, widths=(8, 32, 64, 128), skips=True)
unet_history = train_segmenter(unet)
torch.manual_seed(0)
unet_noskip = UNet(NUM_CLASSES, widths=(8, 32, 64, 128), skips=False)
noskip_history = train_segmenter(unet_noskip)
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(unet_history["step"], unet_history["loss"], label="U-Net (skips)")
ax.plot(noskip_history["step"], noskip_history["loss"], label="without skips")
ax.set_yscale("log"); ax.set_xlabel("step"); ax.set_ylabel("cross-entropy"); ax.legend(); ax.grid(alpha=0.3);


# %% [markdown] id="unet-eval-md"
# Evaluate both with **your** `segmentation_iou` (checked against the confusion-matrix reference of
# `course_utils.metrics`). To see *where* the skips help, also measure the pixel accuracy in a
# 2-pixel band around every class boundary: the pixels where sharpness matters.

# %% id="unet-eval" role="readonly"
def boundary_band(masks: torch.Tensor, width: int = 2) -> torch.Tensor:
    """(N, H, W) class maps -> (N, H, W) bool: pixels within ``width`` of a change of class."""
    m = masks.float()[:, None]
    edges = torch.zeros_like(m, dtype=torch.bool)
    edges[..., 1:, :] |= m[..., 1:, :] != m[..., :-1, :]
    edges[..., :, 1:] |= m[..., :, 1:] != m[..., :, :-1]
    return F.max_pool2d(edges.float(), 2 * width + 1, stride=1, padding=width)[:, 0] > 0


band = boundary_band(test_masks) & (test_masks != IGNORE_INDEX)
results, gaps = {}, []
for name, model in [("U-Net", unet), ("no skips", unet_noskip)]:
    logits, _ = predict(model, test_loader, device=DEVICE)  # (N, K, H, W)
    iou, miou = segmentation_iou(logits, test_masks, NUM_CLASSES)
    cm = confusion_matrix(logits.argmax(1), test_masks, NUM_CLASSES, ignore_index=IGNORE_INDEX)
    gap = abs(miou - reference_mean_iou(cm))
    print(f"{name}: your segmentation_iou differs from the confusion-matrix reference by {gap:.1e}")
    boundary_accuracy = (logits.argmax(1) == test_masks)[band].float().mean().item()
    results[name] = dict(logits=logits, iou=iou, miou=miou, boundary=boundary_accuracy)
    gaps.append(gap)
    print(f"{name:9} mIoU {miou:.3f}  boundary accuracy {boundary_accuracy:.3f}  per class: "
          + ", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, iou.tolist())))
record("05_segmentation/your_miou_vs_reference", max(gaps))
unet_miou = record("05_segmentation/unet_mIoU", results["U-Net"]["miou"])
noskip_miou = record("05_segmentation/unet_noskip_mIoU", results["no skips"]["miou"])
record("05_segmentation/unet_boundary_accuracy", results["U-Net"]["boundary"])
record("05_segmentation/unet_noskip_boundary_accuracy", results["no skips"]["boundary"])
show_masks(test_images, [test_masks, results["no skips"]["logits"].argmax(1), results["U-Net"]["logits"].argmax(1)],
           ["ground truth", f"no skips (mIoU {noskip_miou:.2f})", f"U-Net (mIoU {unet_miou:.2f})"]);


# %% [markdown] id="unet-why-md"
# Without skips the decoder must rebuild the outlines from 8×8 features: the classes are mostly
# right (the deep features carry the semantics) but corners are rounded and thin parts vanish — the
# boundary accuracy shows it. With skips the decoder copies the precise edges from the first level.
# Move the slider to compare image by image.

# %% id="unet-slider" role="readonly"
def compare(index=0):
    fig = show_masks(test_images[index:index + 1], [test_masks[index:index + 1],
                     results["no skips"]["logits"][index:index + 1].argmax(1),
                     results["U-Net"]["logits"][index:index + 1].argmax(1)], ["truth", "no skips", "U-Net"], n=1)
    return fig


viz.slider_figure(compare, {"index": widgets.IntSlider(value=0, min=0, max=len(test_images) - 1,
                                                       description="test image")})


# %% [markdown] id="touching-md"
# ### Semantic is not instance: touching objects of the same class
#
# A semantic mask says *which class* each pixel is, not *which object*. The cheapest way to get
# objects back is to take each class's pixels and split them into **connected components**
# (`scipy.ndimage.label`, 4-connectivity): one component per object — as long as no two objects
# of the same class touch. Below, a test set where they do touch (the same shapes, 64×64, but 3 to 6
# objects that may overlap up to IoU 0.3), segmented by the U-Net above. For every object we find
# the component of its class that holds most of its pixels; the object is **merged** when that
# component is also the main component of another object of the same class. We count the merges
# for the U-Net's mask, and for the *ground-truth* semantic mask (perfect pixels, same problem), and
# compare with the ground-truth **instance** masks, where every object is its own mask by definition.
# That is what an instance segmenter predicts: Mask R-CNN (lab 04) predicts one mask per detected
# box, so two touching squares are two detections with two masks — the semantic map has no way to
# say where one ends and the other begins.

# %% id="touching" role="readonly"
import numpy as np
from scipy import ndimage


def merged_objects(class_map, instance_masks, labels):
    """(H, W) class map, (N, H, W) bool instance masks, (N,) labels -> (N,) bool: the objects whose main
    connected component (of their class, in class_map) is also the main component of another object."""
    main = []
    for mask, label in zip(instance_masks, labels):
        components, _ = ndimage.label(class_map == int(label))  # 4-connected components of this class
        hits = components[mask & (components > 0)]  # the component ids under this object's pixels
        main.append((int(label), int(np.bincount(hits).argmax()) if hits.size else -1))
    return torch.tensor([m[1] > 0 and sum(other == m for other in main) > 1 for m in main], dtype=torch.bool)


if MODE == "full":
    print("full mode: the touching-objects comparison runs on the synthetic shapes only (fast and smoke modes)")
else:
    touching_set = ShapesDataset(by_mode(smoke=8, fast=100, full=0), IMAGE_SIZE, seed=2, min_objects=3,
                                 max_objects=6, max_overlap=0.3)
    touching_images, touching_semantic = semantic_tensors(touching_set)
    touching_logits, _ = predict(unet, DataLoader(TensorDataset(touching_images, touching_semantic), batch_size=100),
                                 device=DEVICE)
    unet_maps = touching_logits.argmax(1)  # (N, H, W)
    counts = {"objects": 0, "U-Net + components": 0, "true semantic mask + components": 0}
    for i in range(len(touching_set)):
        _, target = touching_set[i]
        masks_i, labels_i = target["masks"].bool().numpy(), target["labels"]
        counts["objects"] += len(labels_i)
        counts["U-Net + components"] += int(merged_objects(unet_maps[i].numpy(), masks_i, labels_i).sum())
        counts["true semantic mask + components"] += int(
            merged_objects(touching_semantic[i].numpy(), masks_i, labels_i).sum())
    for name, n in counts.items():
        print(f"{name:34} {n:4d}" + ("" if name == "objects" else f" merged ({n / counts['objects']:.0%})"))
    record("05_segmentation/touching_objects", counts["objects"])
    record("05_segmentation/merged_unet_components", counts["U-Net + components"])
    record("05_segmentation/merged_true_semantic_components", counts["true semantic mask + components"])
    print("instance masks (one per object, as Mask R-CNN predicts them): none merged, by construction")

    # the first test images with a merge: semantic components vs instances
    shown = [i for i in range(len(touching_set)) if merged_objects(
        touching_semantic[i].numpy(), touching_set[i][1]["masks"].bool().numpy(), touching_set[i][1]["labels"]).any()][:3]
    fig, axes = plt.subplots(max(len(shown), 1), 3, figsize=(7.5, 2.5 * max(len(shown), 1)), squeeze=False)
    colours = plt.get_cmap("tab20")
    for row, i in enumerate(shown):
        _, target = touching_set[i]
        components, offset = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int64), 0
        for c in range(1, NUM_CLASSES):  # the components of every class, numbered in one map
            comp, n = ndimage.label(unet_maps[i].numpy() == c)
            components[comp > 0] = comp[comp > 0] + offset
            offset += n
        instances = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int64)
        for k, m in enumerate(target["masks"].bool().numpy()):
            instances[m] = k + 1
        axes[row, 0].imshow(viz.to_hwc(touching_images[i]))
        for ax, ids, title in [(axes[row, 1], components, "U-Net + connected components"),
                               (axes[row, 2], instances, "instance masks (ground truth)")]:
            ax.imshow(colours(ids % 20) * (ids[..., None] > 0))
            n_found = len(np.unique(ids[ids > 0]))
            ax.set_title(f"{title}: {n_found}" if row == 0 else f"{n_found} objects", fontsize=8)
        axes[row, 0].set_title(f"{len(target['labels'])} objects", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()


# %% [markdown] id="ex4-md"
# ## 6. Stacked hourglass and intermediate supervision (exercise 4, 2 points)
#
# An **hourglass** is a U-Net-like block (pool down to 1/8, upsample back, with a skip branch at
# every resolution — added, not concatenated). Newell et al. **stack** several: after each
# hourglass a 1×1 head predicts the output, and the features *and* the prediction are mapped back
# and added to the input of the next hourglass, which can correct the previous guess with the whole
# image in view. Each stack's prediction receives a loss against the **same** target
# (**intermediate supervision**): the early stacks get a direct gradient instead of one diluted
# through the later stacks, and each stack learns to refine.
#
# `StackedHourglass(num_classes, num_stacks, channels, depth)` in `course_utils.models` returns a
# tuple of `num_stacks` logits tensors `(N, K, H, W)`. Write its loss:
#
# $$\mathcal{L} = \sum_{s=1}^{S} \mathrm{CE}(\text{logits}_s, \text{target}),$$
#
# the **sum** over stacks (not the mean) of the per-pixel cross-entropy **averaged over the counted
# pixels** of the batch (pixels with `ignore_index` excluded from both numerator and count — what
# `F.cross_entropy(..., ignore_index=...)` does). With class weights `weight` $(K,)$ (section 5's
# `CLASS_WEIGHTS`; `None` means all 1) the average is the **weighted** one,
# $\sum_i w_{y_i}\ell_{s,i} / \sum_i w_{y_i}$ over the counted pixels. Every stack's loss must send its
# gradient to its own output: no `detach`. Return a 0-d tensor (the dtype of the logits); leave
# `weight` unchanged; use `ignore_index` as given. `F.cross_entropy` may be used.

# %% id="ex4-hourglass-loss" role="solution"
def hourglass_loss(outputs, target: torch.Tensor, weight: torch.Tensor | None = None,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """outputs: S logits (N, K, H, W); target (N, H, W); weight (K,) or None
    -> scalar: sum over stacks of the (weighted) mean cross-entropy over counted pixels."""
    ### BEGIN SOLUTION
    return sum(F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index) for logits in outputs)
    ### END SOLUTION


# %% id="test-hourglass-loss" role="tests" points=2
# Exercise 4: 2 points, all or nothing. Every requirement of the text is checked below at least once;
# the hidden tests add more cases (1 to 4 stacks, other weights and ignore labels), no new requirements.
torch.manual_seed(0)
outs = tuple(torch.randn(2, 3, 4, 5, requires_grad=True) for _ in range(2))  # a tuple, as StackedHourglass returns
target = torch.randint(0, 3, (2, 4, 5))
target[0, 0] = IGNORE_INDEX
loss = hourglass_loss(outs, target)
ref_outs = [o.detach().clone().requires_grad_() for o in outs]
ref = sum(nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)(o, target) for o in ref_outs)
check_close(loss, ref.detach(), name="hourglass_loss of 2 stacks", hint="sum over stacks of the mean cross-entropy; a 0-d tensor")
check_grad_flows(loss, {f"stack {k + 1} output": o for k, o in enumerate(outs)}, name="hourglass_loss",
                 hint="every stack's loss must reach its own output: no detach")
loss.backward()
ref.backward()
for k, (o, r) in enumerate(zip(outs, ref_outs)):
    check_close(o.grad, r.grad, name=f"gradient of the loss w.r.t. stack {k + 1}'s logits", atol=1e-6)
w = torch.tensor([0.2, 3.0, 1.5])
check_close(hourglass_loss(outs, target, weight=w),
            sum(nn.CrossEntropyLoss(weight=w, ignore_index=IGNORE_INDEX)(o, target) for o in outs).detach(),
            name="hourglass_loss with class weights [0.2, 3.0, 1.5]",
            hint="weighted mean: sum of w[target] * loss over the sum of w[target], counted pixels only")
check_equal(w, torch.tensor([0.2, 3.0, 1.5]), name="the class weights after hourglass_loss", hint="do not modify weight in place")
target_255 = torch.where(target == IGNORE_INDEX, 255, target)
check_close(hourglass_loss(outs, target_255, weight=w, ignore_index=255),
            sum(nn.CrossEntropyLoss(weight=w, ignore_index=255)(o, target_255) for o in outs).detach(),
            name="hourglass_loss with ignore_index=255", hint="pass ignore_index on to F.cross_entropy")
print("visible checks passed")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(4)
cases = [(1, 1, 2, IGNORE_INDEX, None), (3, 3, 4, 255, None), (4, 2, 5, IGNORE_INDEX, None),
         (2, 3, 4, IGNORE_INDEX, torch.tensor([0.1, 2.0, 0.7, 5.0])), (3, 2, 3, 255, torch.tensor([4.0, 0.5, 1.0])),
         (1, 4, 5, IGNORE_INDEX, torch.rand(5, generator=g) + 0.05)]
for s_, n_, k_, ign, w_ in cases:
    outs = tuple(torch.randn(n_, k_, 6, 7, generator=g).requires_grad_() for _ in range(s_))
    tg = torch.randint(0, k_, (n_, 6, 7), generator=g)
    tg[torch.rand(n_, 6, 7, generator=g) < 0.3] = ign
    tg[0, :4] = ign  # images with different numbers of counted pixels
    ref_outs = [o.detach().clone().requires_grad_() for o in outs]
    ref = sum(nn.CrossEntropyLoss(weight=w_, ignore_index=ign)(o, tg) for o in ref_outs)
    w_given = None if w_ is None else w_.clone()
    loss = hourglass_loss(outs, tg, weight=w_given, ignore_index=ign)
    what = f"hourglass_loss, {s_} stacks, ignore {ign}, " + ("no weights" if w_ is None else f"weights {w_.tolist()}")
    check_close(loss, ref.detach(), name=what,
                hint="mean over counted pixels of the batch (weighted by w[target] when weights are given); "
                     "ignored pixels out of the count; sum over stacks")
    if w_ is not None:
        check_equal(w_given, w_, name="the class weights passed in must not be changed")
    loss.backward()
    ref.backward()
    for k, (o, r) in enumerate(zip(outs, ref_outs)):
        check_close(o.grad, r.grad, name=f"gradient w.r.t. stack {k + 1} of {s_} ({what})", atol=1e-6)
### END HIDDEN TESTS

# %% id="hourglass-train" role="readonly"
def weighted_hourglass_loss(outputs, target):
    return hourglass_loss(outputs, target, weight=CLASS_WEIGHTS.to(target.device))  # your loss, section 5's weights


NUM_STACKS = by_mode(smoke=2, fast=2, full=3)
torch.manual_seed(0)
hourglass = StackedHourglass(NUM_CLASSES, num_stacks=NUM_STACKS, channels=16, depth=3)
hourglass_history = train_segmenter(hourglass, steps=steps(fast=250, full=3000),
                                    loss_fn=weighted_hourglass_loss)
stack_logits, _ = predict(hourglass, test_loader, device=DEVICE)  # tuple of S tensors (N, K, H, W)
stack_mious = []
for s, logits in enumerate(stack_logits, start=1):
    _, miou = segmentation_iou(logits, test_masks, NUM_CLASSES)
    stack_mious.append(record(f"05_segmentation/hourglass_stack{s}_mIoU", miou))
    print(f"stack {s}: mIoU {miou:.3f}")
hourglass_miou = record("05_segmentation/hourglass_mIoU", stack_mious[-1])
show_masks(test_images, [test_masks, *[logits.argmax(1) for logits in stack_logits]],
           ["ground truth", *[f"stack {s} (mIoU {m:.2f})" for s, m in enumerate(stack_mious, start=1)]]);


# %% [markdown] id="hourglass-md"
# Stack by stack the masks get cleaner: the first stack has seen the image once; the next ones
# start from its guess and fix the pixels that disagree with their larger context. The last stack
# is the network's answer.

# %% [markdown] id="written-md"
# ### Written question (2 points, graded by hand)
#
# Answer in the cell below in a few sentences, **quoting your numbers** (the stack-by-stack mIoU
# above and section 5's U-Net):
#
# 1. What mIoU does each stack's prediction reach, and how much does the second stack add to the
#    first? What does the second hourglass receive that the first did not, and which pixels can it
#    therefore fix?
# 2. With intermediate supervision the first stack alone is already a segmenter. What would its
#    output be if only the last stack had a loss? Why is even the last stack below your U-Net here?

# %% [markdown] id="written-answer" role="answer" points=2
# ### BEGIN SOLUTION
# (Numbers from the instructor's fast-mode run on a 2-core CPU; yours differ a little.)
#
# 1. Stack 1 reaches mIoU 0.863, stack 2 0.878: the second stack adds 0.015. It receives the first
#    stack's features *and* its prediction (mapped back by 1×1 convolutions and added to its input),
#    so it starts from a guess it can check against the whole image, through its own pooling to
#    1/8: it fixes the pixels where the first guess is inconsistent with the larger context (a
#    fragment of the wrong class inside a shape, ragged edges). On these simple shapes the first
#    guess is already good, so little is left to fix; on human poses, with occlusions and
#    left/right ambiguities, Newell et al. gain more from each stack.
# 2. Without a loss on it the first stack's head would get no gradient at all: its output would stay
#    that of its random initialisation, not a segmentation (lab 08 measures this on keypoints: an
#    AP of 0), and the first hourglass would learn only through the second. The last stack (0.878)
#    is below the U-Net (0.935): the hourglasses work at half resolution with 16 channels throughout
#    and their logits are upsampled bilinearly, while the U-Net decodes to full resolution with up
#    to 128 channels and concatenates the full-resolution features in its last skip — the boundary
#    pixels, where most errors are, need that resolution.
#
# **Rubric (2 points).** 1 point: quotes each stack's mIoU and the gain, and says the second stack
# refines the first one's prediction with the whole image in view (it receives features and
# prediction). 1 point: says that without intermediate supervision the first stack's output is
# untrained (no gradient reaches its head), and compares the last stack with the U-Net's mIoU with a
# reason (resolution, width, skips by concatenation). Numbers that are not the student's own, or no
# numbers: at most 1 point.
# ### END SOLUTION

# %% [markdown] id="full-md"
# ## 7. Pretrained networks (`full` mode)
#
# With a GPU (`COURSE_MODE=full`) two more cells run:
#
# * **FCN-32s on a pretrained encoder**: the ImageNet ResNet-18 trunk (stride 32), a 1×1
#   convolution to the class scores, and one transposed convolution with **bilinear initialisation**
#   that upsamples ×32 — the original FCN recipe, fine-tuned on the trimaps;
# * torchvision's **`fcn_resnet50`** trained on a subset of COCO with the 20 Pascal VOC classes,
#   used as is: its `cat` and `dog` outputs segment the pets without any training here.
#
# In `fast` mode the FCN-32s cell runs briefly on the shapes with the small from-scratch backbone
# (stride 32 on 64-pixel images: a 2×2 map, so expect blobs) and the `fcn_resnet50` cell only says
# what it would do.

# %% id="fcn32" role="readonly"
class FCN32s(nn.Module):
    """(B, 3, H, W) -> (B, K, H, W): backbone (stride 32) -> 1x1 conv -> transposed conv x32, bilinear init."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classify = nn.Conv2d(backbone.out_channels, num_classes, kernel_size=1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, stride=32, padding=16, bias=False)
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(num_classes, 32))

    def forward(self, x):
        return self.upsample(self.classify(self.backbone(x)))  # (B, K, H/32, W/32) -> (B, K, H, W)


backbone = load_backbone("resnet18")  # ImageNet weights in full mode; prints a notice and falls back otherwise
imagenet_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
imagenet_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
fcn32 = nn.Sequential(v2.Normalize(imagenet_mean.flatten().tolist(), imagenet_std.flatten().tolist()),
                      FCN32s(backbone, NUM_CLASSES)) if backbone.pretrained else FCN32s(backbone, NUM_CLASSES)
fcn32_history = train_segmenter(fcn32, steps=steps(fast=60, full=2000), lr=1e-3)
fcn32_logits, _ = predict(fcn32, test_loader, device=DEVICE)
_, fcn32_miou = segmentation_iou(fcn32_logits, test_masks, NUM_CLASSES)
record("05_segmentation/fcn32s_mIoU", fcn32_miou)
print(f"FCN-32s ({'pretrained' if backbone.pretrained else 'from scratch'} encoder): mIoU {fcn32_miou:.3f}; "
      f"U-Net {unet_miou:.3f}")

# %% [markdown] id="fcn-skips-md"
# **FCN-16s and FCN-8s: fusing score maps.** One ×32 upsampling of the stride-32 scores gives
# blobs. Long, Shelhamer and Darrell (section 4.2, figure 3) add skips from finer layers, fused as
# **class-score maps**: a 1×1 convolution also predicts scores from `pool4` (stride 16); the
# stride-32 scores are upsampled ×2 by a transposed convolution (bilinear initialisation, then
# learnt) and added to them; the sum is upsampled ×16 to the image — **FCN-16s**. **FCN-8s** repeats
# the step with `pool3` (stride 8) and upsamples the result ×8:
#
# $$S_{16} = \mathrm{up}_{\times 2}(S_{32}) + \mathrm{score}(\texttt{pool4}),\qquad
# S_{8} = \mathrm{up}_{\times 2}(S_{16}) + \mathrm{score}(\texttt{pool3}),\qquad
# \text{output} = \mathrm{up}_{\times 8}(S_8).$$
#
# Each new score layer starts at zero, so the network starts as its predecessor and is fine-tuned
# from it (32s, then 16s, then 8s). On Pascal VOC 2011 val the mIoU goes 59.4 → 62.4 → 62.7 (their
# table 2): most of the gain comes from the first skip. On a ResNet the same taps are `layer3`
# (stride 16) and `layer2` (stride 8). U-Net (section 5) carries the idea to every resolution and
# fuses **features** (concatenated, then convolved) instead of scores.

# %% id="fcn-resnet50" role="readonly"
if MODE != "full":
    print("fcn_resnet50 (torchvision, 135 MB of weights) runs in full mode only: skipped.")
else:
    from torchvision.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50

    weights = FCN_ResNet50_Weights.DEFAULT
    try:
        segmenter = fcn_resnet50(weights=weights).eval().to(DEVICE)  # downloaded once into torch hub's cache
    except OSError as err:  # URLError and connection errors are OSErrors
        segmenter = None
        print(f"[course_utils.models] offline? could not download the fcn_resnet50 weights ({err}); "
              "skipping its inference. Fetch them once online (they are cached) and rerun this cell.")
    if segmenter is not None:
        voc = weights.meta["categories"]  # '__background__', 'aeroplane', ..., 'cat', ..., 'dog', ...
        to_ours = torch.zeros(len(voc), dtype=torch.long)  # VOC class -> our class (0 background)
        for ours, name in enumerate(CLASS_NAMES[1:], start=1):
            to_ours[voc.index(name)] = ours
        preprocess = weights.transforms()
        with torch.no_grad():
            voc_logits = torch.cat([segmenter(preprocess(batch).to(DEVICE))["out"].cpu()
                                    for batch in test_images[:200].split(8)])
        voc_pred = to_ours[F.interpolate(voc_logits, size=test_images.shape[-2:], mode="bilinear").argmax(1)]
        one_hot = F.one_hot(voc_pred, NUM_CLASSES).permute(0, 3, 1, 2).float()  # as "logits" for segmentation_iou
        _, pretrained_miou = segmentation_iou(one_hot, test_masks[:200], NUM_CLASSES)
        record("05_segmentation/fcn_resnet50_mIoU", pretrained_miou)
        print(f"fcn_resnet50 (VOC classes, no training here): mIoU {pretrained_miou:.3f} on {len(voc_pred)} pets")
        show_masks(test_images, [test_masks[:4], voc_pred[:4]], ["trimap", "fcn_resnet50"]);

# %% [markdown] id="outro"
# **What to remember.** Dense layers are convolutions: a classifier slides over images for free and
# localises without pixel labels, coarsely. Transposed convolutions (the transpose of a
# convolution's matrix) learn the upsampling; initialised bilinearly, they start as interpolation.
# U-Net's skips put the sharp early features next to the semantic late ones; a stacked hourglass
# repeats the U-shape, with a loss at every stack, so each one refines the previous prediction.
# Instance segmentation — one mask per object — is Mask R-CNN's job (lab 04).
#
# **References.** J. Long, E. Shelhamer, T. Darrell, *Fully Convolutional Networks for Semantic
# Segmentation*, CVPR 2015. P. Sermanet et al., *OverFeat*, ICLR 2014. V. Dumoulin, F. Visin, *A
# guide to convolution arithmetic for deep learning*, 2016. O. Ronneberger, P. Fischer, T. Brox,
# *U-Net*, MICCAI 2015. A. Newell, K. Yang, J. Deng, *Stacked Hourglass Networks for Human Pose
# Estimation*, ECCV 2016. M. Everingham et al., *The Pascal VOC Challenge*, IJCV 2010.
