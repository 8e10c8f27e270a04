"""One contract for every detector of the course: :func:`build_detector` and :func:`load_pretrained_detector`.

    model = build_detector("retinanet", num_classes=6, image_size=128)
    losses = model(images, targets)      # train mode: {name: scalar loss}
    detections = model.eval()(images)    # eval mode: [{"boxes" (K, 4) xyxy px, "scores" (K,), "labels" (K,)}]

The same call, the same meaning of ``num_classes`` and the same return type for every name in
:data:`DETECTOR_NAMES`:

* ``num_classes`` counts the **object** classes; the background is **not** counted. Targets and
  detections carry labels ``1..num_classes`` (0 is the background, as in torchvision). Where a
  builder counts differently (torchvision's ``RetinaNet`` wants the background included), this
  module adds it.
* the result is an ``nn.Module`` called like torchvision's detectors: ``model(images, targets)``
  returns a dict of losses in train mode, ``model(images)`` one detection dict per image in eval
  mode. YOLO and DETR, which have their own output formats, come wrapped (:class:`DetectorWrapper`
  for DETR, :class:`~course_utils.models.yolo.YOLOv1` for YOLO).
* :func:`load_pretrained_keypoint_rcnn` is torchvision's COCO person-keypoint R-CNN as published
  (no classifier to replace), or ``None`` offline: there is no from-scratch stand-in worth using.
* :func:`load_pretrained_detector` returns that same kind of module with a boolean attribute
  ``pretrained``: ``True`` when COCO weights were loaded, ``False`` when the detector was built
  from scratch instead (no published weights for the course's YOLO and DETR, or offline), after a
  printed notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..tensors import plain
from .backbones import NOTICE, WeightsUnavailable, pretrained_state_dict
from .centernet import build_centernet
from .detr import build_small_detr, detr_loss, detr_targets, postprocess
from .rcnn import build_faster_rcnn, build_mask_rcnn, build_pretrained_mask_rcnn
from .retinanet import build_retinanet, load_pretrained_retinanet, replace_classifier
from .yolo import build_yolo

DETECTOR_NAMES = ("yolo", "retinanet", "faster_rcnn", "mask_rcnn", "detr", "centernet")


class DetectorWrapper(nn.Module):
    """Give a detector with its own output format the interface of torchvision's detectors.

    ``model(images (N, 3, H, W))`` returns raw outputs; in train mode the wrapper returns
    ``loss(outputs, targets)`` (a dict of scalar losses), in eval mode ``postprocess(outputs)``
    (one ``{"boxes", "scores", "labels"}`` dict per image). ``images`` may be a list of
    (3, H, W) tensors of one size (stacked) or a batch tensor, as torchvision's detectors accept.
    So :func:`course_utils.train.fit` and :func:`~course_utils.train.predict` handle it like the others.

    Args:
        model: the network; its weights are this module's ``model.*`` entries.
        loss: ``loss(outputs, targets) -> {name: scalar tensor}``; targets are torchvision-style dicts.
        postprocess: ``postprocess(outputs) -> list of dicts``.
    """

    def __init__(self, model: nn.Module, loss: Callable, postprocess: Callable):
        super().__init__()
        self.model, self.loss, self.postprocess = model, loss, postprocess

    def forward(self, images, targets=None):
        if not isinstance(images, torch.Tensor):
            images = torch.stack([plain(im) for im in images])
        outputs = self.model(plain(images))
        if self.training:
            if targets is None:
                raise ValueError("in training mode, pass targets: model(images, targets) returns the losses")
            return dict(self.loss(outputs, targets))
        return self.postprocess(outputs)


def _move(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]


def build_detr_detector(num_classes: int, image_size: int = 128, *, num_queries: int = 9,
                        **detr_kwargs: Any) -> DetectorWrapper:
    """The course's small DETR (:func:`~course_utils.models.detr.build_small_detr`) wrapped as a
    torchvision-style detector: torchvision targets (xyxy pixels, labels 1..C) in, the set loss
    ``{"ce", "l1", "giou"}`` out in train mode; detections in eval mode (every query, no NMS).

    Args:
        num_classes: object classes, background not counted.
        image_size: side of the square input images in pixels (to convert boxes).
        num_queries: DETR's fixed number of predictions per image.
        **detr_kwargs: passed to :func:`~course_utils.models.detr.build_small_detr`.

    Returns:
        a :class:`DetectorWrapper` whose ``model`` is the :class:`~course_utils.models.detr.SmallDETR`.
    """
    size = (image_size, image_size)

    def loss(outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        device = outputs["pred_logits"].device
        cpu_targets = _move(targets, torch.device("cpu"))
        return detr_loss(outputs, _move(detr_targets(cpu_targets, size), device), num_classes)

    def decode(outputs: dict) -> list[dict]:
        return postprocess(outputs, size)

    return DetectorWrapper(build_small_detr(num_classes, num_queries, **detr_kwargs), loss, decode)


def _check_name(name: str) -> None:
    if name not in DETECTOR_NAMES:
        raise ValueError(f"name={name!r} is not a detector of the course; expected one of {', '.join(DETECTOR_NAMES)}")


def _check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (object classes, background not counted), "
                         f"got {num_classes!r}")


def build_detector(name: str, num_classes: int, image_size: int = 128, **kwargs: Any) -> nn.Module:
    """A detector of the course, trained from scratch, called like torchvision's detectors.

    Args:
        name: one of :data:`DETECTOR_NAMES`: ``"yolo"``, ``"retinanet"``, ``"faster_rcnn"``,
            ``"mask_rcnn"``, ``"detr"``, ``"centernet"``.
        num_classes: object classes, background **not** counted (labels 1..num_classes).
        image_size: side of the square input images in pixels.
        **kwargs: passed to the builder: :func:`~course_utils.models.yolo.build_yolo`,
            :func:`~course_utils.models.retinanet.build_retinanet`,
            :func:`~course_utils.models.rcnn.build_faster_rcnn`,
            :func:`~course_utils.models.rcnn.build_mask_rcnn`, :func:`build_detr_detector` or
            :func:`~course_utils.models.centernet.build_centernet`.

    Returns:
        an ``nn.Module`` in train mode: ``model(images, targets)`` -> dict of scalar losses;
        in eval mode ``model(images)`` -> one ``{"boxes" (K, 4) xyxy pixels, "scores" (K,),
        "labels" (K,) in 1..num_classes}`` per image (Mask R-CNN adds ``"masks"``).

    Raises:
        ValueError: an unknown ``name`` (the message lists the known ones) or a bad ``num_classes``.
    """
    _check_name(name)
    _check_num_classes(num_classes)
    if name == "yolo":
        return build_yolo(num_classes, image_size, **kwargs)
    if name == "retinanet":
        return build_retinanet(num_classes + 1, image_size, **kwargs)  # torchvision counts the background
    if name == "faster_rcnn":
        return build_faster_rcnn(num_classes, image_size, **kwargs)
    if name == "mask_rcnn":
        return build_mask_rcnn(num_classes, image_size, **kwargs)
    if name == "centernet":
        return build_centernet(num_classes, image_size, **kwargs)
    return build_detr_detector(num_classes, image_size, **kwargs)


def _pretrained_two_stage(name: str, num_classes: int, progress: bool) -> nn.Module | None:
    model, pretrained = build_pretrained_mask_rcnn(num_classes, progress=progress)
    if not pretrained:
        return None
    if name == "faster_rcnn":  # COCO's Faster R-CNN = the pretrained Mask R-CNN without its mask branch
        model.roi_heads.mask_roi_pool = model.roi_heads.mask_head = model.roi_heads.mask_predictor = None
    return model


def _pretrained_retinanet(num_classes: int, progress: bool, detections_per_img: int) -> nn.Module | None:
    model = load_pretrained_retinanet(progress=progress, detections_per_img=detections_per_img)
    return replace_classifier(model, num_classes + 1) if model.pretrained else None


def load_pretrained_detector(name: str, num_classes: int, image_size: int = 128, *, progress: bool = True,
                             detections_per_img: int = 100, fallback: Mapping[str, Any] | None = None
                             ) -> nn.Module:
    """A detector starting from torchvision's COCO weights, its classifier replaced for ``num_classes``.

    RetinaNet is ``retinanet_resnet50_fpn``; Faster and Mask R-CNN are ``maskrcnn_resnet50_fpn``
    (Faster R-CNN without the mask branch); both fine-tune with their own image transform
    (torchvision's 800-px resizing). The course's YOLO, DETR and CenterNet have no published weights: they
    are built from scratch, as is any detector whose weights cannot be downloaded; a notice says so.

    Args:
        name: one of :data:`DETECTOR_NAMES`.
        num_classes: object classes, background **not** counted (as :func:`build_detector`).
        image_size: side of the images, for the from-scratch detectors.
        progress: show a download progress bar.
        detections_per_img: the most detections per image (RetinaNet; the R-CNNs keep theirs).
        fallback: extra :func:`build_detector` arguments for a detector built from scratch.

    Returns:
        the same kind of module as :func:`build_detector`, with ``model.pretrained`` True (COCO
        weights loaded) or False (built from scratch).
    """
    _check_name(name)
    _check_num_classes(num_classes)
    model = None
    if name == "retinanet":
        model = _pretrained_retinanet(num_classes, progress, detections_per_img)
    elif name in ("faster_rcnn", "mask_rcnn"):
        model = _pretrained_two_stage(name, num_classes, progress)
    else:
        print(f"{NOTICE} {name} has no pretrained weights in this course: built from scratch")
    if model is None:
        model = build_detector(name, num_classes, image_size, **dict(fallback or {}))
        model.pretrained = False
    else:
        model.pretrained = True
    return model


def load_pretrained_keypoint_rcnn(progress: bool = True) -> nn.Module | None:
    """torchvision's ``keypointrcnn_resnet50_fpn`` with its COCO weights
    (``KeypointRCNN_ResNet50_FPN_Weights.DEFAULT``, COCO val2017 keypoint AP 65.0), in eval mode.

    Built as torchvision's builder does for these weights (frozen BatchNorm with eps 0, the first
    two ResNet stages frozen); the weights are downloaded once into torch hub's cache (59 M
    parameters, about 226 MiB), sha256-checked and read with ``torch.load(weights_only=True)``.

    ``model(images)`` with ``images`` a list of (3, H, W) float tensors in [0, 1] returns one dict
    per image: ``boxes`` (P, 4) xyxy pixels, ``labels`` (P,) (1 = person), ``scores`` (P,),
    ``keypoints`` (P, 17, 3) rows ``(x, y, 1)`` in the input's pixels and ``keypoints_scores``
    (P, 17); :func:`course_utils.data.keypoint_detections_to_coco` turns them into COCO results.

    Args:
        progress: show a download progress bar.

    Returns:
        the model (``model.pretrained`` is True), or ``None`` when the weights cannot be downloaded
        (offline, host down), after a printed notice naming the URL and where to put the file by
        hand. A randomly initialised keypoint R-CNN predicts nothing useful, so none is returned.
    """
    from torchvision.models.detection import KeypointRCNN
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNN_ResNet50_FPN_Weights
    from torchvision.ops import FrozenBatchNorm2d

    weights = KeypointRCNN_ResNet50_FPN_Weights.DEFAULT
    try:
        state = pretrained_state_dict("keypointrcnn_resnet50_fpn", "DEFAULT", progress=progress)
    except WeightsUnavailable as err:
        print(f"{NOTICE} offline? {err}\n{NOTICE} no pretrained keypoint R-CNN: load_pretrained_keypoint_rcnn "
              "returned None (full mode's COCO person keypoints need these weights)")
        return None
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=3)
    model = KeypointRCNN(backbone, num_classes=len(weights.meta["categories"]),
                         num_keypoints=len(weights.meta["keypoint_names"]))
    model.load_state_dict(state)
    overwrite_eps(model, 0.0)  # these weights were trained with eps 0, as torchvision's builder sets
    model.pretrained = True
    return model.eval()


__all__ = ["DETECTOR_NAMES", "DetectorWrapper", "build_detector", "build_detr_detector", "load_pretrained_detector",
           "load_pretrained_keypoint_rcnn"]
