"""course_utils.models.yolo: lab 02's YOLO v1 as a reusable detector, checked against lab 02's solution cells
and against torchvision (NMS, box conversion)."""

import pytest
import torch
import torch.nn.functional as F
from torchvision import ops

from course_utils.data import ShapesDataset
from course_utils.models.yolo import (
    TinyYOLO,
    YOLOv1,
    build_yolo,
    decode_yolo_output,
    encode_yolo_targets,
    yolo_loss,
)
from course_utils.train import fit, predict
from tests.notebook_cells import load_cells, run_cells


@pytest.fixture(scope="module")
def lab02():
    """Lab 02's solution functions and its TinyYOLO class (the cells' own namespace)."""
    cells = load_cells("02_yolo")
    ns = run_cells(cells, ["setup", "ex1-encode-decode", "ex2-loss"])
    ns["NUM_CLASSES"], ns["S"], ns["B"], ns["IMAGE_SIZE"] = 3, 8, 2, 128
    return run_cells(cells, ["model"], ns)


def random_boxes(g, n, size):
    xy = torch.rand(n, 2, generator=g) * size * 0.8
    return torch.cat([xy, (xy + 3 + torch.rand(n, 2, generator=g) * size * 0.4).clamp(max=size)], 1)


@pytest.mark.parametrize("S, C, size, n", [(8, 3, 128, 6), (7, 6, 112, 14), (4, 2, 64, 0), (5, 4, 96, 1)])
def test_encode_matches_lab02(lab02, S, C, size, n):
    g = torch.Generator().manual_seed(S * 100 + n)
    boxes, labels = random_boxes(g, n, size), torch.randint(1, C + 1, (n,), generator=g)
    got = encode_yolo_targets(boxes, labels, S, C, size)
    assert torch.equal(got, lab02["encode_yolo_targets"](boxes, labels, S, C, size))


def test_encode_keeps_largest_and_clamps_edge():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 14.0, 14.0], [100.0, 100.0, 128.0, 128.0]])
    t = encode_yolo_targets(boxes, torch.tensor([1, 2, 3]), S=4, num_classes=3, image_size=128)
    assert t[0, 0, 4] == 1 and t[0, 0, 6] == 1, "the larger box (label 2) owns the shared cell"
    assert t[3, 3, 4] == 1 and t[..., 4].sum() == 2
    with pytest.raises(ValueError, match="labels"):
        encode_yolo_targets(boxes, torch.tensor([0, 1, 2]), S=4, num_classes=3, image_size=128)


@pytest.mark.parametrize("S, B, C, size, thr", [(8, 2, 3, 128, 0.2), (5, 3, 4, 80, 0.0), (2, 1, 2, 64, 0.9)])
def test_decode_matches_lab02(lab02, S, B, C, size, thr):
    g = torch.Generator().manual_seed(S + B)
    out = torch.rand(S, S, 5 * B + C, generator=g)
    for a, b in zip(decode_yolo_output(out, B, size, thr), lab02["decode_yolo_output"](out, B, size, thr)):
        assert torch.equal(a, b)


def test_encode_decode_round_trip():
    """A target grid read as a network output (B=1, conf 1, class probability 1) decodes to the boxes."""
    g = torch.Generator().manual_seed(0)
    size, S, C = 128, 8, 6
    # centres in distinct cells: one box per cell, so nothing is dropped
    cells = torch.randperm(S * S, generator=g)[:10]
    cx = (cells % S + 0.1 + 0.8 * torch.rand(10, generator=g)) * size / S
    cy = (cells // S + 0.1 + 0.8 * torch.rand(10, generator=g)) * size / S
    wh = 4 + torch.rand(10, 2, generator=g) * 30
    boxes = ops.box_convert(torch.stack([cx, cy, wh[:, 0], wh[:, 1]], 1), "cxcywh", "xyxy")
    labels = torch.randint(1, C + 1, (10,), generator=g)
    grid = encode_yolo_targets(boxes, labels, S, C, size)
    out_boxes, scores, out_labels = decode_yolo_output(grid, 1, size, 0.5)
    order_in, order_out = torch.argsort(boxes[:, 0]), torch.argsort(out_boxes[:, 0])
    torch.testing.assert_close(out_boxes[order_out], boxes[order_in], atol=1e-4, rtol=0)
    assert torch.equal(out_labels[order_out], labels[order_in]) and torch.all(scores == 1)


@pytest.mark.parametrize("n, S, B, C", [(2, 3, 2, 3), (3, 4, 3, 2), (1, 2, 1, 4)])
def test_loss_matches_lab02_with_gradients(lab02, n, S, B, C):
    g = torch.Generator().manual_seed(n * 10 + S)
    pred = torch.rand(n, S, S, 5 * B + C, generator=g).clamp(0.01, 0.99).requires_grad_(True)
    has = torch.rand(n, S, S, generator=g) < 0.4
    target = torch.zeros(n, S, S, 5 + C)
    target[..., :4] = torch.rand(n, S, S, 4, generator=g).clamp(0.05, 0.95)
    target[..., 4] = has.float()
    target[..., 5:] = F.one_hot(torch.randint(0, C, (n, S, S), generator=g), C).float()
    target[~has] = 0
    got = yolo_loss(pred, target, B, 2.0, 0.25)
    want = lab02["yolo_loss"](pred, target, B, 2.0, 0.25)
    assert set(got) == {"coord", "size", "obj", "noobj", "cls"}
    for k in want:
        assert got[k].shape == () and torch.isfinite(got[k])
        torch.testing.assert_close(got[k], want[k])
    grad = torch.autograd.grad(sum(got.values()), pred, retain_graph=True)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(sum(want.values()), pred)[0])
    assert grad.abs().sum() > 0
    obj_grad = torch.autograd.grad(got["obj"], pred, allow_unused=True)[0]
    assert obj_grad is None or obj_grad[..., [5 * j + k for j in range(B) for k in range(4)]].abs().sum() == 0


def test_tiny_yolo_is_lab02s_network(lab02):
    ours, theirs = TinyYOLO(8, 2, 3), lab02["TinyYOLO"](8, 2, 3)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(2, 3, 128, 128)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_detector_interface_like_torchvision():
    ds = ShapesDataset(4, 128, preset="hard", seed=3)
    images, targets = zip(*[ds[i] for i in range(4)])
    model = build_yolo(ds.num_classes, 128, score_thresh=0.0, detections_per_img=7)
    losses = model(list(images), list(targets))
    assert isinstance(model, YOLOv1) and set(losses) == {"coord", "size", "obj", "noobj", "cls"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="targets"):
        model(list(images))
    model.eval()
    with torch.no_grad():
        out = model(torch.stack(images))
        raw = model.net(torch.stack(images))
    assert len(out) == 4
    for det, r in zip(out, raw):
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape == (len(det["scores"]), 4) and len(det["scores"]) <= 7
        assert det["labels"].dtype == torch.int64 and det["labels"].min() >= 1 and det["labels"].max() <= 6
        assert det["boxes"].min() >= 0 and det["boxes"].max() <= 128
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])
        # the same as decoding, clipping and torchvision's batched NMS by hand
        b, s, lab = decode_yolo_output(r, 2, 128, 0.0)
        keep = ops.batched_nms(b.clamp(0, 128), s, lab, 0.5)[:7]
        torch.testing.assert_close(det["boxes"], b.clamp(0, 128)[keep])
        assert torch.equal(det["labels"], lab[keep])
    with pytest.raises(ValueError, match="128x128"):
        model(torch.rand(1, 3, 64, 64))


def test_fit_and_predict_treat_it_like_a_torchvision_detector():
    from torch.utils.data import DataLoader

    from course_utils.data import collate_detection

    ds = ShapesDataset(8, 128, seed=0)
    model = build_yolo(ds.num_classes)
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_detection)
    history = fit(model, loader, torch.optim.Adam(model.parameters(), 1e-3), 2, progress=False, log_every=1)
    assert {"coord", "size", "obj", "noobj", "cls", "loss"} <= set(history.data)
    outputs, targets = predict(model, loader)
    assert len(outputs) == 8 and len(targets) == 8 and all("boxes" in o for o in outputs)
    assert model.training, "predict restores train mode"
