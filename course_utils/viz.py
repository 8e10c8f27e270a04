"""Drawing: images with boxes, labels, scores and masks; sample grids; training curves.

Everything draws with matplotlib on an ``Axes`` (a new one when ``ax`` is None) and returns it,
so the functions compose in subplots and run headless (Agg) in tests.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from .boxes import convert_boxes

# colour-blind friendly cycle (Okabe-Ito), one per class
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_hwc(image) -> np.ndarray:
    """(3, H, W) or (H, W, 3) or (H, W) tensor/array -> (H, W, 3) or (H, W) float array for imshow."""
    arr = _numpy(image).astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return np.clip(arr, 0, 1) if arr.max() <= 1.0 else np.clip(arr / 255.0, 0, 1)


def class_colour(label: int) -> str:
    """A stable colour for a class label."""
    return PALETTE[int(label) % len(PALETTE)]


def _axes(ax: Axes | None, figsize=(4, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def draw_boxes(
    image,
    boxes,
    labels=None,
    scores=None,
    *,
    class_names: Sequence[str] | None = None,
    box_format: str = "xyxy",
    colour: str | None = None,
    linestyle: str = "-",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Show an image with boxes, each captioned with its class name and score.

    Args:
        image: (3, H, W) or (H, W, 3) in [0, 1]; None to draw on ``ax`` as it is.
        boxes: (N, 4) boxes in ``box_format``, pixels.
        labels: (N,) class labels (1-based: label k is ``class_names[k - 1]``).
        scores: (N,) confidences shown beside the label.
        class_names: names of labels 1..C.
        colour: one colour for all boxes (default: one per class).
        linestyle: e.g. ``"--"`` for ground truth drawn under predictions.
        ax: the axes to draw on.

    Returns:
        the axes.
    """
    ax = _axes(ax)
    if image is not None:
        ax.imshow(to_hwc(image))
    boxes = convert_boxes(_numpy(boxes).reshape(-1, 4).astype(np.float64), box_format, "xyxy")
    labels = None if labels is None else _numpy(labels).reshape(-1)
    scores = None if scores is None else _numpy(scores).reshape(-1)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        label = None if labels is None else int(labels[i])
        c = colour or (class_colour(label) if label is not None else PALETTE[0])
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, lw=1.5, ls=linestyle))
        caption = []
        if label is not None:
            caption.append(class_names[label - 1] if class_names and 0 < label <= len(class_names) else str(label))
        if scores is not None:
            caption.append(f"{scores[i]:.2f}")
        if caption:
            ax.text(x1, y1, " ".join(caption), fontsize=7, color="black", va="bottom",
                    bbox=dict(facecolor=c, alpha=0.8, pad=0.5, lw=0))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_masks(image, masks, labels=None, *, alpha: float = 0.5, ax: Axes | None = None) -> Axes:
    """Overlay (N, H, W) instance masks (binary or probabilities > 0.5), coloured by class."""
    ax = _axes(ax)
    if image is not None:
        ax.imshow(to_hwc(image))
    masks = _numpy(masks)
    masks = masks.reshape(-1, *masks.shape[-2:]) > 0.5
    labels = np.arange(1, len(masks) + 1) if labels is None else _numpy(labels).reshape(-1)
    overlay = np.zeros((*masks.shape[-2:], 4), dtype=np.float32)
    for m, lab in zip(masks, labels):
        overlay[m] = (*plt.matplotlib.colors.to_rgb(class_colour(int(lab))), alpha)
    ax.imshow(overlay)
    ax.set_axis_off()
    return ax


def draw_semantic_mask(
    image, mask, *, num_classes: int | None = None, alpha: float = 0.5, ax: Axes | None = None
) -> Axes:
    """Overlay an (H, W) map of class labels; 0 (background) stays transparent."""
    mask = _numpy(mask).astype(np.int64)
    classes = [c for c in np.unique(mask) if c > 0 and (num_classes is None or c <= num_classes)]
    masks = np.stack([mask == c for c in classes]) if classes else np.zeros((0, *mask.shape), bool)
    return draw_masks(image, masks, np.array(classes), alpha=alpha, ax=ax)


def show_sample(image, target: Mapping, *, class_names=None, masks: bool = True, ax=None) -> Axes:
    """One dataset item: the image, its boxes and labels, and its instance masks if present."""
    ax = _axes(ax)
    ax.imshow(to_hwc(image))
    if masks and "masks" in target and len(target["masks"]):
        draw_masks(None, target["masks"], target["labels"], alpha=0.35, ax=ax)
    return draw_boxes(None, target["boxes"], target.get("labels"), target.get("scores"),
                      class_names=class_names, ax=ax)


def show_grid(dataset, n: int = 8, *, ncols: int = 4, masks: bool = True, size: float = 2.5):
    """The first ``n`` items of a detection dataset in a grid. Returns the figure."""
    n = min(n, len(dataset))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    names = getattr(dataset, "class_names", None)
    for i, ax in enumerate(axes.flat):
        if i < n:
            image, target = dataset[i]
            show_sample(image, target, class_names=names, masks=masks, ax=ax)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_history(history, keys: Sequence[str] | None = None, *, ax: Axes | None = None,
                 log: bool = False) -> Axes:
    """Loss (and metric) curves from :class:`course_utils.train.History` or a dict of lists.

    Series are plotted against ``step`` when the history has it; ``val_*`` series are plotted
    against ``val_step``.
    """
    data = history.as_dict() if hasattr(history, "as_dict") else dict(history)
    keys = keys or [k for k in data if k not in ("step", "val_step", "lr")]
    ax = _axes(ax, figsize=(6, 3.5))
    for k in keys:
        x = data.get("val_step" if k.startswith("val_") else "step")
        y = data[k]
        ax.plot(x if x is not None and len(x) == len(y) else range(len(y)), y, label=k,
                marker="o" if k.startswith("val_") else None, ms=3)
    ax.set_xlabel("step")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def figure_to_png(fig, dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (for ``ipywidgets.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def slider_figure(draw, sliders: Mapping):
    """A figure redrawn whenever a slider moves: ``draw(**values)`` returns a matplotlib Figure.

    The figure is shown as a PNG in an ``ipywidgets.Image`` rather than captured by an ``Output``
    widget, so it works the same in JupyterLab, Colab and headless runs (nbclient, nbgrader).

    Args:
        draw: called with one keyword argument per slider (its current value); returns a Figure.
        sliders: name -> ipywidgets slider (any widget with a ``value``).

    Returns:
        ``VBox([HBox(sliders), Image])``.
    """
    import ipywidgets as widgets

    image = widgets.Image(format="png")

    def update(_=None):
        image.value = figure_to_png(draw(**{name: s.value for name, s in sliders.items()}))

    for s in sliders.values():
        s.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox(list(sliders.values())), image])


def iou_explorer(gt_box, iou_fn, *, image=None, image_size: int = 64, start=None):
    """An ipywidgets explorer: move and resize a predicted box, watch its IoU with ``gt_box``.

    Args:
        gt_box: (4,) ground-truth box, xyxy pixels.
        iou_fn: ``iou_fn(box_a, box_b) -> float`` for two (4,) xyxy tensors (e.g. your own IoU).
        image: optional image drawn underneath; its size overrides ``image_size``.
        image_size: side of the canvas when there is no image.
        start: (4,) xyxy starting position of the predicted box (default: ``gt_box`` shifted).

    Returns:
        the widget (a ``VBox`` of sliders, the IoU read-out and the plot); ``.children`` holds the
        four sliders (x1, y1, w, h) first, then the IoU label and the picture (a PNG image, not an
        ``Output`` widget: see :func:`slider_figure`).
    """
    import ipywidgets as widgets

    gt = torch.as_tensor(_numpy(gt_box), dtype=torch.float32).reshape(4)
    size = to_hwc(image).shape[:2] if image is not None else (image_size, image_size)
    x1, y1, x2, y2 = (gt + torch.tensor([size[1] / 8, size[0] / 8] * 2)).tolist() if start is None \
        else torch.as_tensor(_numpy(start), dtype=torch.float32).tolist()
    slider = dict(continuous_update=True, step=0.5, readout_format=".1f")
    sx = widgets.FloatSlider(value=x1, min=0, max=size[1], description="x1", **slider)
    sy = widgets.FloatSlider(value=y1, min=0, max=size[0], description="y1", **slider)
    sw = widgets.FloatSlider(value=x2 - x1, min=0, max=size[1], description="width", **slider)
    sh = widgets.FloatSlider(value=y2 - y1, min=0, max=size[0], description="height", **slider)
    label = widgets.HTML()
    picture = widgets.Image(format="png")

    def update(_=None):
        pred = torch.tensor([sx.value, sy.value, sx.value + sw.value, sy.value + sh.value])
        value = float(iou_fn(pred, gt))
        label.value = f"<b>IoU = {value:.3f}</b>"
        fig, ax = plt.subplots(figsize=(3.5, 3.5))
        ax.imshow(to_hwc(image) if image is not None else np.ones((*size, 3)))
        draw_boxes(None, gt[None], colour="#009E73", ax=ax)
        draw_boxes(None, pred[None], colour="#D55E00", linestyle="--", ax=ax,
                   title=f"ground truth (green) vs prediction: IoU {value:.3f}")
        picture.value = figure_to_png(fig)

    for s in (sx, sy, sw, sh):
        s.observe(update, names="value")
    update()
    return widgets.VBox([sx, sy, sw, sh, label, picture])
