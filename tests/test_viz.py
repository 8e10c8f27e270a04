"""Drawing works headless and draws what it is given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from course_utils import viz  # noqa: E402
from course_utils.data import ShapesDataset  # noqa: E402
from course_utils.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_boxes_places_rectangles_and_captions():
    image = torch.rand(3, 32, 48)
    boxes = torch.tensor([[1.0, 2.0, 11.0, 22.0], [5.0, 5.0, 6.0, 7.0]])
    ax = viz.draw_boxes(image, boxes, labels=[1, 2], scores=[0.9, 0.25], class_names=["cat", "dog"])
    rects = rectangles(ax)
    assert [(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects] == [(1, 2, 10, 20), (5, 5, 1, 2)]
    assert [t.get_text() for t in ax.texts] == ["cat 0.90", "dog 0.25"]
    assert ax.images[0].get_array().shape == (32, 48, 3)


def test_draw_boxes_other_formats_and_numpy():
    ax = viz.draw_boxes(np.zeros((16, 16, 3)), np.array([[8.0, 8.0, 4.0, 2.0]]), box_format="cxcywh")
    (r,) = rectangles(ax)
    assert (r.get_x(), r.get_y(), r.get_width(), r.get_height()) == (6, 7, 4, 2)


def test_masks_overlay_colours_only_mask_pixels():
    masks = torch.zeros(2, 10, 10)
    masks[0, :5] = 1
    masks[1, 7:, 7:] = 1
    ax = viz.draw_masks(torch.zeros(3, 10, 10), masks, labels=[1, 2], alpha=0.5)
    overlay = ax.images[-1].get_array()
    assert overlay.shape == (10, 10, 4)
    assert (overlay[:5, :, 3] == 0.5).all() and (overlay[5:7, :, 3] == 0).all()
    assert not np.allclose(overlay[0, 0, :3], overlay[9, 9, :3])  # classes differ in colour


def test_semantic_mask_and_samples():
    ds = ShapesDataset(5, seed=2)
    image, target = ds[0]
    ax = viz.draw_semantic_mask(image, target["semantic_mask"])
    assert (ax.images[-1].get_array()[..., 3] > 0).sum() == (target["semantic_mask"] > 0).sum()
    ax = viz.show_sample(image, target, class_names=ds.class_names)
    assert len(rectangles(ax)) == len(target["boxes"])
    fig = viz.show_grid(ds, n=5, ncols=3)
    axes = fig.get_axes()
    assert len(axes) == 6 and sum(len(rectangles(a)) for a in axes) == sum(len(ds[i][1]["boxes"]) for i in range(5))


def test_plot_history():
    h = History()
    for s in (10, 20, 30):
        h.log(s, loss=1.0 / s, lr=0.1)
    h.log(30, prefix="val_", mAP=0.5)
    ax = viz.plot_history(h)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"loss", "val_mAP"}
    assert list(lines["loss"].get_xdata()) == [10, 20, 30]
    assert list(lines["val_mAP"].get_xdata()) == [30]


def test_to_hwc():
    assert viz.to_hwc(torch.rand(3, 5, 7)).shape == (5, 7, 3)
    assert viz.to_hwc(np.full((5, 7, 3), 255.0)).max() == 1.0
    assert viz.to_hwc(torch.rand(1, 5, 7)).shape == (5, 7)


def test_iou_explorer_recomputes_with_the_given_function():
    from torchvision.ops import box_iou

    calls = []

    def iou_fn(a, b):
        calls.append((a.tolist(), b.tolist()))
        return box_iou(a[None], b[None])[0, 0]

    gt = torch.tensor([10.0, 10.0, 30.0, 30.0])
    widget = viz.iou_explorer(gt, iou_fn, image_size=64, start=[10, 10, 30, 30])
    sx, sy, sw, sh, label = widget.children[:5]
    assert "IoU = 1.000" in label.value
    sx.value = 20.0  # shift right by half the width: overlap 10x20 of union 600
    assert calls[-1][0] == [20.0, 10.0, 40.0, 30.0]
    assert f"IoU = {200 / 600:.3f}" in label.value
    sw.value = 0.0
    assert "IoU = 0.000" in label.value


def test_slider_figure_redraws_on_change():
    import ipywidgets as widgets

    calls = []

    def draw(a):
        calls.append(a)
        fig, ax = plt.subplots()
        ax.plot([0, a])
        return fig

    slider = widgets.FloatSlider(value=1.0, min=0, max=5)
    box = viz.slider_figure(draw, {"a": slider})
    image = box.children[1]
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and calls == [1.0]
    slider.value = 3.0
    assert calls == [1.0, 3.0] and image.value != first
    assert plt.get_fignums() == []  # rendered figures are closed, not left for the inline backend
