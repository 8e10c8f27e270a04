"""course_utils.models: pretrained weights through torchvision's weights API, and the fallback.

The "online" weights are a squeezenet1_1 state dict built here and served from 127.0.0.1 under a
torch-hub style name ``<model>-<sha256 prefix>.pth``; the weights enum's URL is pointed at it.
"""

from __future__ import annotations

import hashlib
import io

import pytest
import torch
import torchvision
from torchvision.models import SqueezeNet1_1_Weights

from course_utils.models import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained
from tests.http_server import LocalServer, refused_url


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def served_weights():
    """(state dict, file bytes, file name) of a randomly initialised squeezenet1_1."""
    torch.manual_seed(0)
    state = torchvision.models.squeezenet1_1(weights=None).state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    return state, data, f"squeezenet1_1-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def point_weights_at(monkeypatch, url: str) -> None:
    monkeypatch.setattr(SqueezeNet1_1_Weights.IMAGENET1K_V1.value, "url", url)


def test_pretrained_weights_download_once_into_the_hub_cache(hub_dir, served_weights, monkeypatch):
    state, data, name = served_weights
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    with LocalServer({f"/models/{name}": data}) as server:
        point_weights_at(monkeypatch, server.url(f"/models/{name}"))
        model = load_pretrained("squeezenet1_1", progress=False)
        load_pretrained("squeezenet1_1", progress=False)
        assert len(server.requests) == 1  # the second call used the cache
    assert (hub_dir / "checkpoints" / name).read_bytes() == data
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert loads and all(k.get("weights_only") is True for k in loads)


def test_load_backbone_in_full_mode_returns_the_pretrained_trunk(hub_dir, served_weights, monkeypatch, capsys):
    state, data, name = served_weights
    with LocalServer({f"/{name}": data}) as server:
        point_weights_at(monkeypatch, server.url(f"/{name}"))
        body = load_backbone("squeezenet1_1", mode="full", progress=False)
    assert body.pretrained is True and body.out_channels == 512
    assert torch.equal(body[0].weight, state["features.0.weight"])
    assert body(torch.zeros(1, 3, 64, 64)).shape[1] == 512
    assert "SmallBackbone" not in capsys.readouterr().out


def test_offline_falls_back_to_the_small_backbone_with_a_notice_naming_the_url(hub_dir, monkeypatch, capsys):
    url = refused_url("/squeezenet1_1-0123abcd.pth")
    point_weights_at(monkeypatch, url)
    with pytest.raises(WeightsUnavailable, match="squeezenet1_1-0123abcd.pth") as err:
        load_pretrained("squeezenet1_1", progress=False)
    assert url in str(err.value) and str(hub_dir / "checkpoints") in str(err.value)
    body = load_backbone("squeezenet1_1", mode="full", progress=False)
    out = capsys.readouterr().out
    assert isinstance(body, SmallBackbone) and body.pretrained is False
    assert url in out and "SmallBackbone" in out


def test_fast_mode_does_not_download_and_says_so(monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("fast mode must not download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setenv("COURSE_MODE", "fast")
    body = load_backbone("resnet50")
    assert isinstance(body, SmallBackbone)
    assert "fast mode" in capsys.readouterr().out


def test_small_backbone_has_resnet_stride_and_declared_channels():
    body = SmallBackbone(widths=(8, 8, 16, 16, 24))
    assert body(torch.zeros(2, 3, 128, 96)).shape == (2, 24, 4, 3)
    assert body.out_channels == 24
    with pytest.raises(ValueError, match="widths"):
        SmallBackbone(widths=(8, 16))


def test_unknown_weights_name_is_named_in_the_error():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_pretrained("squeezenet1_1", weights="NOPE")


# --------------------------------------------------------------------------- the COCO person keypoint R-CNN


def test_keypoint_rcnn_offline_returns_none_with_a_notice_naming_the_url(hub_dir, monkeypatch, capsys):
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNN_ResNet50_FPN_Weights

    from course_utils.models import load_pretrained_keypoint_rcnn

    url = refused_url("/keypointrcnn_resnet50_fpn_coco-fc266e95.pth")
    monkeypatch.setattr(KeypointRCNN_ResNet50_FPN_Weights.DEFAULT.value, "url", url)
    assert load_pretrained_keypoint_rcnn(progress=False) is None
    out = capsys.readouterr().out
    assert "[course_utils.models]" in out and url in out and "returned None" in out
    assert str(hub_dir / "checkpoints") in out  # where to put the file fetched by hand
    assert not (hub_dir / "checkpoints" / "keypointrcnn_resnet50_fpn_coco-fc266e95.pth").exists()


def test_keypoint_rcnn_loads_the_coco_weights_frozen_in_eval_mode(monkeypatch):
    """The "COCO weights" are a random keypoint R-CNN's state dict: every tensor must arrive unchanged,
    and the outputs feed keypoint_detections_to_coco and coco_eval."""
    from torchvision.models.detection import KeypointRCNN
    from torchvision.ops import FrozenBatchNorm2d

    from course_utils.data import keypoint_detections_to_coco
    from course_utils.metrics import coco_eval
    from course_utils.models import detectors, load_pretrained_keypoint_rcnn

    torch.manual_seed(0)
    coco = torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    asked = []
    monkeypatch.setattr(detectors, "pretrained_state_dict", lambda *a, **k: asked.append((a, k)) or coco)
    model = load_pretrained_keypoint_rcnn(progress=False)
    assert asked == [(("keypointrcnn_resnet50_fpn", "DEFAULT"), {"progress": False})]
    assert isinstance(model, KeypointRCNN) and model.pretrained is True and not model.training
    state = model.state_dict()
    assert set(state) <= set(coco) and all(torch.equal(state[k], coco[k]) for k in state)
    norms = [m for m in model.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert norms and all(m.eps == 0.0 for m in norms)
    body = model.backbone.body
    assert not body.conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad  # 3 trainable stages
    model.transform.min_size, model.transform.max_size = (64,), 64  # a quick forward on a small image
    with torch.no_grad():
        out = model([torch.rand(3, 64, 48)])[0]
    assert out["keypoints"].shape[1:] == (17, 3) and len(out["scores"]) == len(out["keypoints"])
    dt = keypoint_detections_to_coco([1], [out])
    gt = {"images": [{"id": 1, "width": 48, "height": 64}], "categories": [{"id": 1, "name": "person"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 40, 56], "area": 2240.0,
                           "iscrowd": 0, "keypoints": [24, 30, 2] * 17, "num_keypoints": 17}]}
    assert coco_eval(gt, dt, "keypoints").stats.shape == (10,)
