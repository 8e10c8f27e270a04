"""Backbones: pretrained torchvision weights when they can be had, a small from-scratch net otherwise.

:func:`load_backbone` is what the labs call. In ``full`` mode it downloads ImageNet weights
through torchvision's weights API (``torchvision.models.get_model_weights(name)``) into torch
hub's cache (``torch.hub.get_dir()/checkpoints``, so every later run and every lab reuses the
file). The file name carries the first hex digits of its sha256, which is checked
(``check_hash=True``), and it is read with ``torch.load(weights_only=True)`` - never by unpickling
arbitrary objects.

The documented fallback, in ``fast``/``smoke`` mode or when the weights cannot be downloaded
(offline, host down): :class:`SmallBackbone`, a 5-stage conv net trained from scratch with the
same output stride (32) as a ResNet, so the heads built on top do not change. A notice saying so
is always printed; nothing falls back silently.
"""

from __future__ import annotations

import http.client
import inspect
import os
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..config import get_mode

NOTICE = "[course_utils.models]"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be downloaded (offline, host down, ...)."""


class SmallBackbone(nn.Sequential):
    """A small conv net for training from scratch on CPU: (B, 3, H, W) -> (B, C, H/32, W/32).

    A stride-2 stem, then four stages of two 3x3 conv + BatchNorm + ReLU, each halving the size.

    Args:
        widths: channels of the stem and the four stages; ``out_channels`` is the last.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128, 256)):
        if len(widths) != 5 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be 5 positive channel counts, got {widths!r}")
        layers: list[nn.Module] = [_conv(3, widths[0], stride=2)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [_conv(c_in, c_out, stride=2), _conv(c_out, c_out, stride=1)]
        super().__init__(*layers)
        self.out_channels = widths[-1]
        self.pretrained = False


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _weights(name: str, weights: str):
    """The torchvision weights enum member ``weights`` (e.g. ``"DEFAULT"``, ``"IMAGENET1K_V1"``) of ``name``."""
    enum = torchvision.models.get_model_weights(name)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(f"{name} has no weights {weights!r}; expected DEFAULT or one of {[w.name for w in enum]}") \
            from None


def cached_weights_path(url: str) -> Path:
    """Where torch hub keeps (or would keep) the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_pretrained(name: str, weights: str = "DEFAULT", *, progress: bool = True) -> nn.Module:
    """A torchvision model with pretrained weights, downloaded once into torch hub's cache.

    Args:
        name: a torchvision model name, e.g. ``"resnet18"``, ``"mobilenet_v3_large"``.
        weights: the weights' name in the model's enum, or ``"DEFAULT"``.
        progress: show a download progress bar.

    Returns:
        the model in training mode, with the weights loaded (``torch.load(weights_only=True)``).
        Detection models come with plain (trainable) BatchNorm here; to fine-tune one, build it as
        torchvision does for pretrained weights (frozen BatchNorm): see
        :func:`course_utils.models.load_pretrained_retinanet` and
        :func:`course_utils.models.build_pretrained_mask_rcnn`.

    Raises:
        WeightsUnavailable: the file could not be downloaded; the message names the URL and
            where to put the file when fetched by hand.
        RuntimeError: the downloaded file's hash does not match its name (torch hub's check).
    """
    w = _weights(name, weights)
    state = pretrained_state_dict(name, weights, progress=progress)
    kwargs = {"num_classes": len(w.meta["categories"])} if "categories" in w.meta else {}
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
        kwargs["weights_backbone"] = None  # detection models: the full state dict replaces the backbone's anyway
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    model.load_state_dict(state)
    return model


def pretrained_state_dict(name: str, weights: str = "DEFAULT", *, progress: bool = True) -> dict:
    """The state dict of torchvision's pretrained ``weights`` for model ``name``, downloaded once into
    torch hub's cache, sha256-checked and read with ``torch.load(weights_only=True)``.

    For models whose builder needs more than ``get_model(name, weights=None)`` to match the
    weights (detection models: frozen BatchNorm, no backbone download), build the model yourself
    and load this.

    Raises:
        WeightsUnavailable: the file could not be downloaded (see :func:`load_pretrained`).
    """
    w = _weights(name, weights)
    try:
        return torch.hub.load_state_dict_from_url(w.url, progress=progress, check_hash=True, weights_only=True)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise WeightsUnavailable(
            f"could not download the {name} weights from {w.url} ({getattr(err, 'reason', err)}). To fetch by "
            f"hand: download that URL and save it as {cached_weights_path(w.url)}"
        ) from err


def _feature_extractor(model: nn.Module) -> nn.Module:
    """The convolutional trunk of a classifier: ``.features`` if it has one, else all but pool + fc (ResNets)."""
    if isinstance(getattr(model, "features", None), nn.Module):
        return model.features
    children = list(model.named_children())
    if [n for n, _ in children[-2:]] == ["avgpool", "fc"]:
        return nn.Sequential(*(m for _, m in children[:-2]))
    raise ValueError(f"do not know how to take the feature trunk of {type(model).__name__}")


def _out_channels(body: nn.Module) -> int:
    was_training = body.training
    body.eval()
    with torch.no_grad():
        channels = body(torch.zeros(1, 3, 64, 64)).shape[1]
    body.train(was_training)
    return int(channels)


def load_backbone(
    name: str = "resnet18",
    pretrained: bool = True,
    *,
    weights: str = "DEFAULT",
    mode: str | None = None,
    progress: bool = True,
) -> nn.Module:
    """A convolutional feature extractor: pretrained in full mode, :class:`SmallBackbone` otherwise.

    Args:
        name: torchvision model whose trunk to use, e.g. ``"resnet18"``, ``"resnet50"``, ``"vgg16"``.
        pretrained: ask for pretrained weights (honoured in ``full`` mode, when they can be downloaded).
        weights: which weights of ``name`` (default ``"DEFAULT"``, the best ones).
        mode: run mode; default :func:`course_utils.config.get_mode`.
        progress: show a download progress bar.

    Returns:
        a module mapping (B, 3, H, W) to (B, C, H/s, W/s) feature maps, with attributes
        ``out_channels`` (C, as torchvision's detection models expect) and ``pretrained`` (bool).
        Without pretrained weights this is always ``SmallBackbone()`` (C = 256, s = 32), with a
        printed notice saying why.
    """
    mode = mode or get_mode()
    if not pretrained:
        return SmallBackbone()
    if mode != "full":
        print(f"{NOTICE} {mode} mode: using SmallBackbone trained from scratch instead of pretrained {name} "
              "(no download); set COURSE_MODE=full for pretrained weights")
        return SmallBackbone()
    try:
        body = _feature_extractor(load_pretrained(name, weights, progress=progress))
    except WeightsUnavailable as err:
        print(f"{NOTICE} offline? {err}\n{NOTICE} falling back to SmallBackbone trained from scratch "
              "(expect lower accuracy than with pretrained weights)")
        return SmallBackbone()
    body.out_channels = _out_channels(body)
    body.pretrained = True
    return body
