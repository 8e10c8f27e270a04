"""Lab 07 starts each detector from the model its lab saved: only the class- and query-dependent tensors stay fresh.

Each source model is built as its lab builds it in fast mode (3 shapes), each target as lab 07
builds it (6 shapes). The whole chain (labs 02, 03, 04 and 06 in fast mode, then lab 07 from their
checkpoints) runs in ``tests/test_lab_quality.py::test_benchmark_from_the_labs_checkpoints``.
"""

import pytest

from course_utils.benchmark import save_cached, warm_start
from course_utils.models.detr import build_small_detr
from course_utils.models.rcnn import build_faster_rcnn, build_mask_rcnn
from course_utils.models.retinanet import build_retinanet
from course_utils.models.yolo import TinyYOLO, build_yolo

BOX_PREDICTOR = ["roi_heads.box_predictor.bbox_pred.bias", "roi_heads.box_predictor.bbox_pred.weight",
                 "roi_heads.box_predictor.cls_score.bias", "roi_heads.box_predictor.cls_score.weight"]
CASES = {  # lab 02-06's model, lab 07's (the part warm-started), the tensors that must stay fresh
    "yolo": (lambda: TinyYOLO(8, 2, 3), lambda: build_yolo(6, 128).net, ["head.bias", "head.weight"]),
    "retinanet": (lambda: build_retinanet(4, 128, anchor_scale=1.5),
                  lambda: build_retinanet(7, 128, anchor_scale=1.5, levels=(3, 4, 5)),
                  ["head.classification_head.cls_logits.bias", "head.classification_head.cls_logits.weight"]),
    "faster_rcnn": (lambda: build_mask_rcnn(3, 128), lambda: build_faster_rcnn(6, 128), BOX_PREDICTOR),
    "mask_rcnn": (lambda: build_mask_rcnn(3, 128), lambda: build_mask_rcnn(6, 128),
                  BOX_PREDICTOR + ["roi_heads.mask_predictor.mask_fcn_logits.bias",
                                   "roi_heads.mask_predictor.mask_fcn_logits.weight"]),
    "detr": (lambda: build_small_detr(3, 9), lambda: build_small_detr(6, 25),
             ["class_head.bias", "class_head.weight", "query_embed.weight", "reference_points.weight"]),
}


@pytest.mark.parametrize("name", CASES)
def test_only_class_and_query_tensors_stay_fresh(name, tmp_path):
    source, target, fresh = CASES[name]
    save_cached(tmp_path / "m.pt", source(), {"mode": "fast"})
    info = warm_start(tmp_path / "m.pt", target())
    assert info["fresh"] == fresh
