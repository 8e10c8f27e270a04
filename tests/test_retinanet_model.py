"""course_utils.models.retinanet: the small RetinaNet builder, the COCO-pretrained one and its fallback."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from course_utils.models import (
    WeightsUnavailable,
    anchors_per_level,
    build_retinanet,
    load_pretrained_retinanet,
    octave_sizes,
    only_levels,
    replace_classifier,
)
from course_utils.models import retinanet as retinanet_module


def test_octave_sizes_are_the_papers_three_scales():
    assert octave_sizes(32) == (32, 40, 50)  # torchvision's default P3 anchors
    assert octave_sizes(12, 2) == (12, 16)


@pytest.mark.parametrize("levels, grids", [((3, 4, 5, 6, 7), [16, 8, 4, 2, 1]), ((2, 3, 4, 5), [32, 16, 8, 4]),
                                           ((3, 4, 5), [16, 8, 4])])
def test_build_retinanet_has_one_anchor_set_per_requested_level(levels, grids):
    model = build_retinanet(4, 128, levels=levels, anchor_scale=2.0, fpn_channels=16, widths=(8, 8, 16, 16, 16))
    anchors = anchors_per_level(model, 128)
    assert [len(a) for a in anchors] == [g * g * 9 for g in grids]
    for level, a in zip(levels, anchors):  # the square anchor of the first position: side anchor_scale * stride
        side = 2.0 * 2**level
        assert torch.equal(a[3], torch.tensor([-side / 2, -side / 2, side / 2, side / 2]))


def test_build_retinanet_trains_and_detects_with_torchvision_conventions():
    torch.manual_seed(0)
    model = build_retinanet(3, 64, fpn_channels=16, widths=(8, 8, 16, 16, 16))
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 24.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # an image without objects
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(levels=(3, 5)), "consecutive"), (dict(levels=(6, 7)), "at least one of 2..5"),
    (dict(levels=(3, 4, 5, 6)), "P6 and P7 together"), (dict(levels=(3, 4, 6, 7)), "consecutive"),
])
def test_build_retinanet_rejects_bad_levels(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_retinanet(4, **kwargs)


def test_build_retinanet_rejects_a_single_class():
    with pytest.raises(ValueError, match="num_classes"):
        build_retinanet(1)


def test_only_levels_keeps_the_detections_of_the_chosen_levels():
    torch.manual_seed(0)
    model = build_retinanet(3, 64, levels=(3, 4, 5), fpn_channels=16, widths=(8, 8, 16, 16, 16), score_thresh=0.0,
                            detections_per_img=10_000, nms_thresh=1.0, topk_candidates=10_000)
    model.eval()
    images = [torch.rand(3, 64, 64)]
    counts = [len(a) * 3 for a in anchors_per_level(model, 64)]  # every (anchor, class) pair is a detection
    with torch.no_grad():
        assert len(model(images)[0]["scores"]) == sum(counts)
        for k, count in enumerate(counts):
            with only_levels(model, [k]):
                assert len(model(images)[0]["scores"]) == count
        with only_levels(model, [0, 2]):
            assert len(model(images)[0]["scores"]) == counts[0] + counts[2]
        assert len(model(images)[0]["scores"]) == sum(counts), "the hook must be removed after the block"
        with pytest.raises(ValueError, match="pyramid levels"), only_levels(model, [3]):
            model(images)


def test_replace_classifier_keeps_the_rest_of_the_head():
    model = build_retinanet(5, 64, fpn_channels=16, widths=(8, 8, 16, 16, 16))
    conv = model.head.classification_head.conv[0][0].weight.clone()
    replace_classifier(model, 2)
    head = model.head.classification_head
    assert head.cls_logits.out_channels == 9 * 2 and head.num_classes == 2
    assert torch.equal(head.conv[0][0].weight, conv)
    assert torch.allclose(torch.sigmoid(head.cls_logits.bias), torch.tensor(0.01))
    model.eval()
    with torch.no_grad():
        assert model([torch.rand(3, 64, 64)])[0]["labels"].lt(2).all()


def test_pretrained_retinanet_falls_back_with_a_notice_offline(monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise WeightsUnavailable("could not download (test)")

    monkeypatch.setattr(retinanet_module, "pretrained_state_dict", offline)
    model = load_pretrained_retinanet(fallback_image_size=96, min_size=512, max_size=853, score_thresh=0.3)
    assert "[course_utils.models]" in capsys.readouterr().out
    assert model.pretrained is False
    assert model.head.classification_head.num_classes == 91  # COCO's category ids, as the pretrained model
    assert model.transform.min_size == (96,) and model.transform.max_size == 96 and model.score_thresh == 0.3


def test_pretrained_retinanet_is_built_like_torchvisions_and_loads_its_weights_strictly(monkeypatch):
    torch.manual_seed(0)
    reference = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None)
    state = reference.state_dict()
    asked = []
    monkeypatch.setattr(retinanet_module, "pretrained_state_dict",
                        lambda name, weights, progress=True: asked.append((name, weights)) or state)
    model = load_pretrained_retinanet(progress=False)
    assert asked == [("retinanet_resnet50_fpn", "COCO_V1")]
    assert model.pretrained is True
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 0.0 for m in frozen)
    # torchvision's pretrained builder freezes the stem and layer1 (trainable_backbone_layers=3)
    body = model.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
