"""course_utils.models.build_detector / load_pretrained_detector: one contract for the five detectors.

Every name builds a module that returns a dict of losses in train mode and one detection dict per
image in eval mode; ``num_classes`` counts object classes only (labels 1..num_classes), whatever
the builder underneath counts.
"""

import pytest
import torch
import torchvision
from torch import nn

from course_utils.data import ShapesDataset, collate_detection
from course_utils.models import (
    DETECTOR_NAMES,
    DetectorWrapper,
    SmallDETR,
    YOLOv1,
    build_detector,
    load_pretrained_detector,
    rcnn,
    retinanet,
)

IMAGE_SIZE = 64
LOSS_KEYS = {
    "yolo": {"coord", "size", "obj", "noobj", "cls"},
    "retinanet": {"classification", "bbox_regression"},
    "faster_rcnn": {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"},
    "mask_rcnn": {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"},
    "detr": {"ce", "l1", "giou"},
    "centernet": {"heatmap", "size", "offset"},
}


def class_outputs(name: str, model: nn.Module) -> int:
    """How many class scores the network behind ``model`` predicts (background / no-object included)."""
    if name == "yolo":
        return model.net.head.out_channels - 5 * model.B  # 5B box numbers, then C class probabilities
    if name == "retinanet":
        head = model.head.classification_head
        return head.cls_logits.out_channels // head.num_anchors
    if name == "detr":
        return model.model.class_head.out_features
    if name == "centernet":
        return model.model.heatmap[-1].out_channels
    return model.roi_heads.box_predictor.cls_score.out_features


@pytest.fixture(scope="module")
def batch():
    data = ShapesDataset(2, IMAGE_SIZE, seed=0)  # three shapes: labels 1..3
    return collate_detection([data[0], data[1]])


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_every_detector_trains_and_detects_with_one_call(name, batch):
    images, targets = batch
    torch.manual_seed(0)
    model = build_detector(name, 3, IMAGE_SIZE)
    assert model.training
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS[name]
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        assert {"boxes", "scores", "labels"} <= set(det)
        k = len(det["boxes"])
        assert det["boxes"].shape == (k, 4) and det["scores"].shape == (k,) and det["labels"].shape == (k,)
        if k:
            assert det["labels"].min() >= 1 and det["labels"].max() <= 3  # object labels, never the background


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("num_classes", [1, 6])
def test_num_classes_counts_objects_and_adds_the_background_once(name, num_classes):
    model = build_detector(name, num_classes, IMAGE_SIZE)
    no_background = name in ("yolo", "centernet")  # YOLO v1 and CenterNet's heatmaps have no background class
    expected = num_classes if no_background else num_classes + 1
    assert class_outputs(name, model) == expected


def test_yolo_and_detr_are_exported_and_wrapped():
    assert isinstance(build_detector("yolo", 2, IMAGE_SIZE), YOLOv1)
    detr = build_detector("detr", 2, IMAGE_SIZE, num_queries=4)
    assert isinstance(detr, DetectorWrapper) and isinstance(detr.model, SmallDETR)
    assert detr.model.num_queries == 4


def test_builder_options_reach_the_builder():
    model = build_detector("retinanet", 2, IMAGE_SIZE, levels=(3, 4, 5), detections_per_img=7)
    assert len(model.anchor_generator.sizes) == 3 and model.detections_per_img == 7


@pytest.mark.parametrize("bad", ["yolov8", "RetinaNet", ""])
def test_unknown_name_lists_the_known_ones(bad):
    for call in (lambda: build_detector(bad, 3), lambda: load_pretrained_detector(bad, 3)):
        with pytest.raises(ValueError, match="name=.*expected one of yolo, retinanet, faster_rcnn, mask_rcnn, detr"):
            call()


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_bad_num_classes_is_named(bad):
    with pytest.raises(ValueError, match="num_classes .*background not counted"):
        build_detector("faster_rcnn", bad)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_pretrained_offline_falls_back_to_the_same_contract(name, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise rcnn.WeightsUnavailable("no network")

    monkeypatch.setattr(rcnn, "pretrained_state_dict", offline)
    monkeypatch.setattr(retinanet, "pretrained_state_dict", offline)
    model = load_pretrained_detector(name, 4, IMAGE_SIZE, fallback={"detections_per_img": 9} if name == "retinanet"
                                     else None)
    assert model.pretrained is False
    assert "[course_utils.models]" in capsys.readouterr().out
    assert class_outputs(name, model) == (4 if name in ("yolo", "centernet") else 5)
    if name == "retinanet":
        assert model.detections_per_img == 9


@pytest.mark.slow
@pytest.mark.parametrize("name", ["retinanet", "faster_rcnn", "mask_rcnn"])
def test_pretrained_weights_are_loaded_and_the_classifier_replaced(name, monkeypatch):
    """The "COCO weights" are a random torchvision model's state dict: every tensor but the new classifier
    must arrive unchanged."""
    tv_name = "retinanet_resnet50_fpn" if name == "retinanet" else "maskrcnn_resnet50_fpn"
    torch.manual_seed(0)
    coco = torchvision.models.get_model(tv_name, weights=None, weights_backbone=None).state_dict()
    module = retinanet if name == "retinanet" else rcnn
    monkeypatch.setattr(module, "pretrained_state_dict", lambda *args, **kwargs: coco)
    model = load_pretrained_detector(name, 2, progress=False)
    assert model.pretrained is True and class_outputs(name, model) == 3
    state = model.state_dict()
    replaced = ("head.classification_head.cls_logits.", "roi_heads.box_predictor.", "roi_heads.mask_predictor.")
    kept = [k for k in state if not k.startswith(replaced)]
    assert "backbone.body.conv1.weight" in kept and set(kept) <= set(coco)
    changed = [k for k in kept if not torch.equal(state[k], coco[k])]
    assert changed == []
    classifier = f"{replaced[0]}weight" if name == "retinanet" else f"{replaced[1]}cls_score.weight"
    assert not torch.equal(state[classifier][:3], coco[classifier][:3])  # a fresh classifier, not COCO's rows
    if name == "faster_rcnn":
        assert model.roi_heads.mask_head is None and not any(".mask_" in k for k in state)


def test_detector_wrapper():
    net = nn.Conv2d(3, 2, 1)
    wrapper = DetectorWrapper(net, lambda out, targets: {"l": out.mean() * len(targets)},
                              lambda out: [{"boxes": torch.zeros(0, 4), "scores": o.mean(), "labels": 1} for o in out])
    images = [torch.rand(3, 8, 8), torch.rand(3, 8, 8)]
    losses = wrapper(images, [{}, {}])
    assert set(losses) == {"l"} and losses["l"].requires_grad
    with pytest.raises(ValueError, match="targets"):
        wrapper(images)
    assert len(wrapper.eval()(torch.stack(images))) == 2
    assert list(wrapper.state_dict()) == ["model.weight", "model.bias"]
