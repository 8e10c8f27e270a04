"""course_utils.models.detr_r50: the authors' DETR-R50 defined in the course, weights by URL and sha256.

No network: the "published" checkpoint is this module's own randomly initialised state dict,
saved as the authors save it (``{"model": state_dict}``) and served from 127.0.0.1 under a
torch-hub style name ``detr-r50-<sha256 prefix>.pth``.
"""

import hashlib
import io
import math

import pytest
import torch

from course_utils.models import WeightsUnavailable, detr_r50
from course_utils.models.detr import load_detr_resnet50 as old_name
from course_utils.models.detr import postprocess
from tests.http_server import LocalServer, refused_url

# "number of params" printed by the authors' training script for DETR-R50 (trainable tensors: the
# ResNet's stem and layer1 stay frozen there, as in torchvision's detectors)
PUBLISHED_TRAINABLE_PARAMETERS = 41_302_368
FROZEN_IN_TRAINING = ("backbone.0.body.conv1.", "backbone.0.body.layer1.")


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def no_hub_code(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no code may be fetched from torch hub")

    monkeypatch.setattr(torch.hub, "load", refuse)


def test_the_layout_matches_the_published_model():
    model = detr_r50.DETRResNet50()
    named = dict(model.named_parameters())
    trainable = sum(p.numel() for name, p in named.items() if not name.startswith(FROZEN_IN_TRAINING))
    assert trainable == PUBLISHED_TRAINABLE_PARAMETERS
    state = model.state_dict()
    for key, shape in {"backbone.0.body.layer4.2.bn3.running_var": (2048,), "input_proj.weight": (256, 2048, 1, 1),
                       "transformer.encoder.layers.5.linear1.weight": (2048, 256),
                       "transformer.decoder.layers.5.multihead_attn.in_proj_weight": (768, 256),
                       "transformer.decoder.norm.weight": (256,), "query_embed.weight": (100, 256),
                       "class_embed.weight": (92, 256), "bbox_embed.layers.2.weight": (4, 256)}.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("num_batches_tracked" in k for k in state), "frozen BatchNorm, as in the checkpoint"


def test_sine_encoding_values():
    pos = detr_r50.sine_position_encoding(2, 3, num_freqs=4)
    assert pos.shape == (8, 2, 3)
    y = torch.tensor([1.0, 2.0]) / (2 + 1e-6) * 2 * math.pi
    x = torch.tensor([1.0, 2.0, 3.0]) / (3 + 1e-6) * 2 * math.pi
    assert torch.allclose(pos[0, :, 0], y.sin()) and torch.allclose(pos[1, :, 0], y.cos())
    assert torch.allclose(pos[2, :, 0], (y / 100).sin()), "frequency 10000 ** (2 * 1 / 4) for the second pair"
    assert torch.allclose(pos[4, 0, :], x.sin()) and torch.allclose(pos[5, 0, :], x.cos())


@pytest.mark.slow
def test_weights_download_once_verified_and_run(hub_dir, no_hub_code, monkeypatch):
    torch.manual_seed(0)
    published = detr_r50.DETRResNet50().state_dict()
    buf = io.BytesIO()
    torch.save({"model": published}, buf)
    data = buf.getvalue()
    name = f"detr-r50-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    with LocalServer({f"/detr/{name}": data}) as server:
        monkeypatch.setattr(detr_r50, "DETR_R50_URL", server.url(f"/detr/{name}"))
        model = detr_r50.load_detr_resnet50(progress=False)
        detr_r50.load_detr_resnet50(progress=False)
        assert len(server.requests) == 1, "the second call reads the cache"
    assert (hub_dir / "checkpoints" / name).read_bytes() == data
    assert not model.training
    assert all(torch.equal(v, published[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        out = model(torch.rand(2, 3, 96, 128))
    assert out["pred_logits"].shape == (2, 100, 92) and out["pred_boxes"].shape == (2, 100, 4)
    assert len(out["aux_outputs"]) == 5
    assert 0 <= out["pred_boxes"].min() and out["pred_boxes"].max() <= 1
    det = postprocess(out, (96, 128))
    assert det[0]["boxes"].shape == (100, 4)


def test_a_file_whose_hash_does_not_match_its_name_is_refused(hub_dir, no_hub_code, monkeypatch):
    buf = io.BytesIO()
    torch.save({"model": {}}, buf)
    with LocalServer({"/detr-r50-00000000.pth": buf.getvalue()}) as server:
        monkeypatch.setattr(detr_r50, "DETR_R50_URL", server.url("/detr-r50-00000000.pth"))
        with pytest.raises(RuntimeError, match="hash"):
            detr_r50.load_detr_resnet50(progress=False)


def test_offline_names_the_url_and_where_to_put_the_file(hub_dir, no_hub_code, monkeypatch):
    url = refused_url("/detr-r50-e632da11.pth")
    monkeypatch.setattr(detr_r50, "DETR_R50_URL", url)
    with pytest.raises(WeightsUnavailable, match="DETR-R50") as err:
        old_name(progress=False)
    assert url in str(err.value) and str(hub_dir / "checkpoints" / "detr-r50-e632da11.pth") in str(err.value)
