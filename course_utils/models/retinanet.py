"""RetinaNet builders: a small one trained from scratch on CPU, and torchvision's COCO-pretrained one.

:func:`build_retinanet` is torchvision's :class:`~torchvision.models.detection.RetinaNet` (anchors,
focal loss, box coder, post-processing) on a small from-scratch backbone
(:class:`~course_utils.models.SmallBackbone`) with a Feature Pyramid Network, sized for the
128-pixel synthetic shapes; lab 03 trains it and lab 07 benchmarks it.

:func:`load_pretrained_retinanet` is ``retinanet_resnet50_fpn`` with its COCO weights for full mode;
when the weights cannot be downloaded it falls back, with a printed notice, to
:func:`build_retinanet`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from functools import partial

import torch
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.models.detection.retinanet import RetinaNet_ResNet50_FPN_Weights, RetinaNetHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from .backbones import NOTICE, SmallBackbone, WeightsUnavailable, pretrained_state_dict

# SmallBackbone is a Sequential: stem (/2), then two layers per stage, each stage halving the size.
# The last layer of each stage gives C2 (/4), C3 (/8), C4 (/16), C5 (/32).
_STAGE_LAYERS = {2: "2", 3: "4", 4: "6", 5: "8"}


def octave_sizes(base: float, scales_per_octave: int = 3) -> tuple[int, ...]:
    """Anchor sizes ``base * 2**(k / scales_per_octave)`` for k = 0 .. scales_per_octave - 1, as ints
    (RetinaNet's three scales per level: 32, 40, 50 at P3 in the paper)."""
    return tuple(int(base * 2 ** (k / scales_per_octave)) for k in range(scales_per_octave))


def build_retinanet(
    num_classes: int,
    image_size: int = 128,
    *,
    levels: Sequence[int] = (3, 4, 5, 6, 7),
    anchor_scale: float = 4.0,
    scales_per_octave: int = 3,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    widths: tuple[int, ...] = (16, 32, 64, 128, 256),
    fpn_channels: int = 64,
    head_norm: bool = True,
    image_mean: Sequence[float] = (0.5, 0.5, 0.5),
    image_std: Sequence[float] = (0.25, 0.25, 0.25),
    **retinanet_kwargs,
) -> RetinaNet:
    """torchvision's ``RetinaNet`` on a small from-scratch backbone with a feature pyramid.

    The backbone is :class:`~course_utils.models.SmallBackbone` (``widths``); its stage outputs
    C2..C5 (strides 4..32) feed a ``FeaturePyramidNetwork`` with ``fpn_channels`` channels. Levels
    above 5 are made as in the paper: P6 by a stride-2 conv on P5, P7 by another on ReLU(P6).
    Level ``l`` has stride ``2**l`` and anchors of sizes ``anchor_scale * 2**l * 2**(k/3)``,
    k = 0, 1, 2 (:func:`octave_sizes`), times ``aspect_ratios`` (height / width).

    Args:
        num_classes: number of classification outputs, counting the background as torchvision does:
            labels run 1..num_classes - 1 (class 0 is never a target). For 3 shapes pass 4.
        image_size: images are resized so that their longer side is this (``min_size=max_size``).
        levels: pyramid levels, consecutive, from 2..7; RetinaNet uses P3..P7.
        anchor_scale: anchor size in strides (4 in the paper: 32 px at stride 8).
        scales_per_octave: anchor sizes per level (3 in the paper).
        aspect_ratios: anchor height / width ratios.
        widths: channels of the backbone's stem and four stages.
        fpn_channels: channels of every pyramid level and of the heads' 4 conv layers.
        head_norm: GroupNorm in the heads' conv layers (as in torchvision's RetinaNet v2); helps
            training from scratch.
        image_mean, image_std: per-channel normalisation applied by the model's transform.
        **retinanet_kwargs: passed to ``RetinaNet`` (e.g. ``score_thresh``, ``nms_thresh``,
            ``detections_per_img``, ``topk_candidates``, ``fg_iou_thresh``, ``bg_iou_thresh``).

    Returns:
        a ``RetinaNet`` in training mode: ``model(images, targets)`` returns the losses
        ``{"classification", "bbox_regression"}``; in eval mode ``model(images)`` returns one dict
        ``{"boxes" (K, 4) xyxy, "scores" (K,), "labels" (K,)}`` per image.
    """
    levels = tuple(int(level) for level in levels)
    if not levels or levels[0] < 2 or levels[-1] > 7 or list(levels) != list(range(levels[0], levels[-1] + 1)):
        raise ValueError(f"levels must be consecutive pyramid levels within 2..7, got {levels!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (object classes + background), got {num_classes!r}")
    if anchor_scale <= 0 or scales_per_octave < 1 or not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError("anchor_scale, scales_per_octave and aspect_ratios must be positive, got "
                         f"{anchor_scale!r}, {scales_per_octave!r}, {aspect_ratios!r}")

    body_levels = [level for level in levels if level <= 5]
    extra = [level for level in levels if level > 5]
    if not body_levels:
        raise ValueError(f"levels must include at least one of 2..5, got {levels!r}")
    if extra and body_levels[-1] != 5:
        raise ValueError(f"levels above 5 need level 5 as well, got {levels!r}")
    if len(extra) == 1:
        raise ValueError(f"levels above 5 come as P6 and P7 together (as in RetinaNet), got {levels!r}")
    stage_channels = dict(zip((2, 3, 4, 5), widths[1:]))
    backbone = BackboneWithFPN(
        SmallBackbone(widths),
        return_layers={_STAGE_LAYERS[level]: f"c{level}" for level in body_levels},
        in_channels_list=[stage_channels[level] for level in body_levels],
        out_channels=fpn_channels,
        extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels) if extra else LastLevelMaxPool(),
    )
    if not extra:  # LastLevelMaxPool adds one more level; drop it so the pyramid is exactly `levels`
        backbone.fpn.extra_blocks = _NoExtraLevel()

    sizes = tuple(octave_sizes(anchor_scale * 2**level, scales_per_octave) for level in levels)
    anchor_generator = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(levels))
    num_anchors = anchor_generator.num_anchors_per_location()[0]
    norm = partial(nn.GroupNorm, _groups(fpn_channels)) if head_norm else None
    head = RetinaNetHead(fpn_channels, num_anchors, num_classes, norm_layer=norm)
    return RetinaNet(backbone, num_classes, min_size=image_size, max_size=image_size,
                     image_mean=list(image_mean), image_std=list(image_std),
                     anchor_generator=anchor_generator, head=head, **retinanet_kwargs)


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class _NoExtraLevel(nn.Module):
    """An FPN ``extra_blocks`` that adds nothing (torchvision's FPN always calls one)."""

    def forward(self, results, x, names):
        return results, names


def load_pretrained_retinanet(*, progress: bool = True, fallback_image_size: int = 128, **retinanet_kwargs
                              ) -> RetinaNet:
    """torchvision's ``retinanet_resnet50_fpn`` with its COCO weights (91 outputs; label = COCO category id).

    Built as torchvision's builder does for pretrained weights (frozen BatchNorm, the first two
    ResNet stages frozen, P3..P7 with P6/P7 from P5); the weights are downloaded once into torch
    hub's cache, sha256-checked and read with ``torch.load(weights_only=True)``.

    When they cannot be downloaded (offline, host down), prints a notice and returns
    ``build_retinanet(91, fallback_image_size)`` trained from scratch: same inputs and outputs,
    no COCO knowledge. The returned model's ``pretrained`` attribute says which one you got.

    Args:
        progress: show a download progress bar.
        fallback_image_size: ``image_size`` of the fallback model.
        **retinanet_kwargs: passed to ``RetinaNet`` (e.g. ``score_thresh``, ``min_size``; the fallback
            ignores ``min_size`` and ``max_size`` and uses ``fallback_image_size``).
    """
    weights = RetinaNet_ResNet50_FPN_Weights.COCO_V1
    try:
        state = pretrained_state_dict("retinanet_resnet50_fpn", "COCO_V1", progress=progress)
    except WeightsUnavailable as err:
        print(f"{NOTICE} offline? {err}\n{NOTICE} falling back to a small RetinaNet trained from scratch "
              "(it knows nothing about COCO: expect no useful detections before training)")
        kwargs = {k: v for k, v in retinanet_kwargs.items() if k not in ("min_size", "max_size")}
        model = build_retinanet(len(weights.meta["categories"]), fallback_image_size, **kwargs)
        model.pretrained = False
        return model
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=3, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    model = RetinaNet(backbone, len(weights.meta["categories"]), **retinanet_kwargs)
    model.load_state_dict(state)
    overwrite_eps(model, 0.0)  # these weights were trained with eps 0, as torchvision's builder sets
    model.pretrained = True
    return model


def replace_classifier(model: RetinaNet, num_classes: int, prior_probability: float = 0.01) -> RetinaNet:
    """Give ``model`` a new last classification layer for ``num_classes`` outputs (fine-tuning).

    Only the final conv of the classification head is replaced (the 4 conv layers before it and
    the box regression head keep their weights); its bias starts at
    ``-log((1 - prior) / prior)`` as in the paper, so every anchor starts as "background, p = prior".

    Returns:
        the same model, modified in place.
    """
    head = model.head.classification_head
    old = head.cls_logits
    head.cls_logits = nn.Conv2d(old.in_channels, head.num_anchors * num_classes, kernel_size=3, padding=1)
    nn.init.normal_(head.cls_logits.weight, std=0.01)
    nn.init.constant_(head.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
    head.num_classes = num_classes
    return model


def anchors_per_level(model: RetinaNet, image_size: int) -> list[torch.Tensor]:
    """The anchors ``model`` places on a square image of side ``image_size``, one (H_l*W_l*A, 4) xyxy
    tensor per pyramid level (what ``model.anchor_generator`` makes inside ``forward``)."""
    from torchvision.models.detection.image_list import ImageList

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
            features = list(model.backbone(x).values())
            anchors = model.anchor_generator(ImageList(x, [(image_size, image_size)]), features)[0]
    finally:
        model.train(was_training)
    counts = [f.shape[-2] * f.shape[-1] * model.anchor_generator.num_anchors_per_location()[0] for f in features]
    return list(anchors.cpu().split(counts))


@contextlib.contextmanager
def only_levels(model: RetinaNet, keep: Sequence[int]) -> Iterator[RetinaNet]:
    """Within the ``with`` block, ``model`` detects with the anchors of the pyramid levels ``keep`` only.

    The classification logits of every other level are set to -inf (score 0, below any
    ``score_thresh``), so post-processing never picks their anchors: the detections are those the
    kept levels would make alone. Used to see which level finds which objects.

    Args:
        model: a torchvision ``RetinaNet``.
        keep: indices into the model's feature maps (0 for the finest level, e.g. P3).
    """
    keep = {int(k) for k in keep}
    num_anchors = model.head.classification_head.num_anchors

    def hook(_module, inputs, outputs):
        features = inputs[0]  # list of (N, C, H_l, W_l)
        if not keep <= set(range(len(features))):
            raise ValueError(f"keep must index the {len(features)} pyramid levels, got {sorted(keep)}")
        logits = outputs["cls_logits"].clone()  # (N, sum_l H_l*W_l*A, K)
        start = 0
        for level, f in enumerate(features):
            count = f.shape[-2] * f.shape[-1] * num_anchors
            if level not in keep:
                logits[:, start:start + count] = float("-inf")
            start += count
        return {**outputs, "cls_logits": logits}

    handle = model.head.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()
