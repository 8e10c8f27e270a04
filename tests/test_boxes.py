"""course_utils.boxes against torchvision.ops, plus the edges torchvision leaves undefined."""

import numpy as np
import pytest
import torch
from torchvision import ops

from course_utils import boxes as B


def random_boxes(n, seed=0, size=100.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


@pytest.mark.parametrize("in_fmt", B.BOX_FORMATS)
@pytest.mark.parametrize("out_fmt", B.BOX_FORMATS)
def test_convert_matches_torchvision(in_fmt, out_fmt):
    xyxy = random_boxes(50, seed=1)
    boxes = ops.box_convert(xyxy, "xyxy", in_fmt)
    ours = B.convert_boxes(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(ours, ops.box_convert(boxes, in_fmt, out_fmt), rtol=0, atol=1e-5)
    back = B.convert_boxes(ours, out_fmt, in_fmt)
    torch.testing.assert_close(back, boxes, rtol=0, atol=1e-5)


def test_convert_known_values_and_numpy_roundtrip():
    xyxy = np.array([[10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_array_equal(B.convert_boxes(xyxy, "xyxy", "xywh"), [[10, 20, 20, 40]])
    np.testing.assert_array_equal(B.convert_boxes(xyxy, "xyxy", "cxcywh"), [[20, 40, 20, 40]])
    out = B.convert_boxes(xyxy, "xyxy", "cxcywh")
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    # batched leading dims are fine
    assert B.convert_boxes(torch.zeros(2, 3, 4), "xywh", "xyxy").shape == (2, 3, 4)


def test_normalize_and_clip():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]])  # x along width 200, y along height 100
    norm = B.normalize_boxes(boxes, (100, 200))
    torch.testing.assert_close(norm, torch.tensor([[0.05, 0.2, 0.25, 0.4]]))
    torch.testing.assert_close(B.denormalize_boxes(norm, (100, 200)), boxes)
    clipped = B.clip_boxes(torch.tensor([[-5.0, -1.0, 250.0, 50.0]]), (100, 200))
    torch.testing.assert_close(clipped, torch.tensor([[0.0, 0.0, 200.0, 50.0]]))
    torch.testing.assert_close(clipped, ops.clip_boxes_to_image(torch.tensor([[-5.0, -1.0, 250.0, 50.0]]), (100, 200)))
    with pytest.raises(ValueError, match="size"):
        B.normalize_boxes(boxes, (0, 10))


def test_area_and_iou_match_torchvision():
    b1, b2 = random_boxes(40, seed=2), random_boxes(30, seed=3)
    torch.testing.assert_close(B.box_area(b1), ops.box_area(b1), rtol=0, atol=1e-6)
    ours = B.box_iou(b1, b2)
    assert ours.shape == (40, 30) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ops.box_iou(b1, b2), rtol=0, atol=1e-6)
    torch.testing.assert_close(B.generalized_box_iou(b1, b2), ops.generalized_box_iou(b1, b2), rtol=0, atol=1e-6)


def test_float64_and_numpy_kept():
    b1, b2 = random_boxes(5, dtype=torch.float64), random_boxes(6, seed=9, dtype=torch.float64)
    assert B.box_iou(b1, b2).dtype == torch.float64
    out = B.box_iou(b1.numpy(), b2.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, ops.box_iou(b1, b2).numpy(), atol=1e-12)


def test_iou_edges():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    touching = torch.tensor([[10.0, 0.0, 20.0, 10.0]])
    half = torch.tensor([[5.0, 0.0, 15.0, 10.0]])
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert B.box_iou(a, a).item() == 1.0
    assert B.box_iou(a, touching).item() == 0.0
    assert B.box_iou(a, half).item() == pytest.approx(50 / 150)
    assert B.box_iou(a, point).item() == 0.0
    # torchvision gives NaN for two zero-area boxes; we give 0 (empty union)
    assert torch.isnan(ops.box_iou(point, point)).all()
    assert B.box_iou(point, point).item() == 0.0
    assert B.generalized_box_iou(point, point).item() == 0.0
    # GIoU of touching boxes is 0; of far-apart boxes negative
    assert B.generalized_box_iou(a, touching).item() == pytest.approx(0.0)
    far = torch.tensor([[20.0, 0.0, 30.0, 10.0]])
    assert B.generalized_box_iou(a, far).item() == pytest.approx(-(10 * 10) / 300)


def test_empty_inputs():
    e = torch.zeros(0, 4)
    assert B.box_iou(e, random_boxes(3)).shape == (0, 3)
    assert B.box_iou(random_boxes(3), e).shape == (3, 0)
    assert B.generalized_box_iou(e, e).shape == (0, 0)
    assert B.box_area(e).shape == (0,)
    assert B.nms(e, torch.zeros(0), 0.5).shape == (0,)
    assert B.batched_nms(e, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)


def test_iou_gradient_is_finite_for_degenerate_boxes():
    pts = torch.tensor([[3.0, 3.0, 3.0, 3.0]], requires_grad=True)
    B.generalized_box_iou(pts, pts.detach()).sum().backward()
    assert torch.isfinite(pts.grad).all()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision(seed, thr):
    boxes = random_boxes(200, seed=seed)
    scores = torch.randperm(200, generator=torch.Generator().manual_seed(seed)).float() / 200
    keep = B.nms(boxes, scores, thr)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, ops.nms(boxes, scores, thr))


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_matches_torchvision(seed):
    boxes = random_boxes(150, seed=seed)
    scores = torch.randperm(150, generator=torch.Generator().manual_seed(seed)).float()
    idxs = torch.randint(0, 4, (150,), generator=torch.Generator().manual_seed(seed + 10))
    keep = B.batched_nms(boxes, scores, idxs, 0.4)
    assert torch.equal(keep, ops.batched_nms(boxes, scores, idxs, 0.4))
    # a box of another class is never suppressed, however much it overlaps
    two = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    assert B.batched_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([1, 2]), 0.5).tolist() == [0, 1]
    assert B.nms(two, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]


def test_nms_numpy_in_numpy_out():
    boxes = random_boxes(20).numpy()
    keep = B.nms(boxes, np.linspace(1, 0, 20), 0.5)
    assert isinstance(keep, np.ndarray) and keep.dtype == np.int64


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(3, 5), "4 numbers"),
        (torch.tensor([[5.0, 0.0, 1.0, 1.0]]), r"boxes1\[0\].*x2 >= x1"),
        (torch.tensor([[0.0, 0.0, 1.0, float("nan")]]), "NaN"),
        (torch.zeros(4), r"shape \(N, 4\)"),
    ],
)
def test_bad_boxes_raise_naming_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        B.box_iou(bad, torch.zeros(1, 4))


def test_bad_format_and_arguments():
    with pytest.raises(ValueError, match="in_fmt='xyzw'"):
        B.convert_boxes(torch.zeros(1, 4), "xyzw", "xyxy")
    with pytest.raises(ValueError, match="width and height"):
        B.convert_boxes(torch.tensor([[0.0, 0.0, -1.0, 2.0]]), "xywh", "xyxy")
    with pytest.raises(ValueError, match="scores"):
        B.nms(torch.zeros(2, 4), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        B.nms(torch.zeros(2, 4), torch.zeros(2), 1.5)
    with pytest.raises(TypeError, match="boxes"):
        B.convert_boxes([[0, 0, 1, 1]], "xyxy", "xywh")


def test_paired_iou_is_the_diagonal_of_box_iou():
    a, b = random_boxes(30, seed=1), random_boxes(30, seed=2)
    paired = B.paired_box_iou(a, b)
    assert paired.shape == (30,)
    assert torch.allclose(paired, torch.diagonal(ops.box_iou(a, b)))
    grid_a, grid_b = a.reshape(2, 3, 5, 4), b.reshape(2, 3, 5, 4)  # any leading shape
    assert torch.equal(B.paired_box_iou(grid_a, grid_b), paired.reshape(2, 3, 5))
    point = torch.tensor([[1.0, 1, 1, 1]])
    assert B.paired_box_iou(point, point).tolist() == [0.0], "empty union: 0, as box_iou"
    with pytest.raises(ValueError, match="boxes2"):
        B.paired_box_iou(a, b[:, :3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nms_and_iou_stay_on_the_gpu():
    cuda = torch.device("cuda")
    boxes = random_boxes(200, seed=3).to(cuda)
    scores = torch.randperm(200, generator=torch.Generator().manual_seed(3)).float().to(cuda)
    keep = B.nms(boxes, scores, 0.5)
    assert keep.device.type == "cuda"
    assert torch.equal(keep.cpu(), ops.nms(boxes.cpu(), scores.cpu(), 0.5))
    idxs = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(4)).to(cuda)
    assert torch.equal(B.batched_nms(boxes, scores, idxs, 0.4).cpu(),
                       ops.batched_nms(boxes.cpu(), scores.cpu(), idxs.cpu(), 0.4))
    assert B.box_iou(boxes, boxes).device.type == "cuda"
    assert B.paired_box_iou(boxes, boxes).device.type == "cuda"
