"""course_utils.models.rcnn: torchvision's FasterRCNN / MaskRCNN on a small backbone (lab 04, lab 07)."""

import pytest
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN

from course_utils.data import ShapesDataset, collate_detection
from course_utils.models import rcnn
from course_utils.models.rcnn import RCNNBackbone, build_faster_rcnn, build_mask_rcnn, count_by_part


def test_backbone_has_stride_8_and_declares_its_channels():
    body = RCNNBackbone((8, 16, 24))
    assert body(torch.zeros(2, 3, 64, 96)).shape == (2, 24, 8, 12)
    assert body.out_channels == 24


@pytest.mark.parametrize("kwargs, word", [(dict(num_classes=0), "num_classes"), (dict(num_classes=3, image_size=16),
                                                                                  "image_size"),
                                          (dict(num_classes=3, anchor_sizes=()), "anchor_sizes")])
def test_bad_arguments_name_themselves(kwargs, word):
    with pytest.raises(ValueError, match=word):
        build_faster_rcnn(**kwargs)


def test_mask_rcnn_is_faster_rcnn_plus_a_mask_branch():
    faster, masker = build_faster_rcnn(3), build_mask_rcnn(3)
    assert type(faster) is FasterRCNN and isinstance(masker, MaskRCNN)
    f, m = count_by_part(faster), count_by_part(masker)
    assert f["mask branch"] == 0 < m["mask branch"]
    assert {k: v for k, v in f.items() if k != "mask branch"} == {k: v for k, v in m.items() if k != "mask branch"}
    box_state = {k: v for k, v in masker.state_dict().items() if ".mask_" not in k}
    faster.load_state_dict(box_state)  # strict: the same parameter names and shapes


def test_train_losses_and_eval_outputs():
    data = ShapesDataset(2, 64, seed=0)
    images, targets = collate_detection([data[0], data[1]])
    model = build_mask_rcnn(3, image_size=64)
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["masks"].shape[1:] == (1, 64, 64)
    assert len(out[0]["boxes"]) <= 50


def test_pretrained_falls_back_offline_with_a_notice(monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise rcnn.WeightsUnavailable("no network")

    monkeypatch.setattr(rcnn, "pretrained_state_dict", offline)
    model, pretrained = rcnn.build_pretrained_mask_rcnn(2, min_size=200, max_size=300)
    assert not pretrained and "[course_utils.models]" in capsys.readouterr().out
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    assert model.transform.min_size == (200,) and model.transform.max_size == 300


def test_load_pretrained_detection_model_fetches_only_its_own_weights(monkeypatch):
    """maskrcnn_resnet50_fpn's builder defaults to ImageNet backbone weights; the COCO state dict replaces
    them, so load_pretrained must not download them first (offline that download would crash)."""
    import torchvision

    from course_utils.models import backbones

    state = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    urls = []

    def fake_download(url, **kwargs):
        urls.append(url)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = backbones.load_pretrained("maskrcnn_resnet50_fpn", progress=False)
    want = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.DEFAULT.url
    assert urls == [want], urls
    assert isinstance(model, MaskRCNN)


def test_pretrained_mask_rcnn_has_frozen_batchnorm_and_loads_torchvisions_layout(monkeypatch):
    """Fine-tuning COCO weights with batches of 2 needs torchvision's pretrained setting: frozen
    BatchNorm with eps 0 and the first ResNet stages frozen; the state dict must load strictly."""
    import torchvision
    from torchvision.ops import FrozenBatchNorm2d

    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    monkeypatch.setattr(rcnn, "pretrained_state_dict", lambda *args, **kwargs: state)
    model, pretrained = rcnn.build_pretrained_mask_rcnn(2)
    assert pretrained
    frozen = [m for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 0.0 for m in frozen)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    body = model.backbone.body
    assert not body.conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad
    loaded = model.state_dict()
    for key in ("backbone.body.layer1.0.bn1.weight", "rpn.head.conv.0.0.weight", "roi_heads.mask_head.0.0.weight"):
        assert torch.equal(loaded[key], state[key]), key
