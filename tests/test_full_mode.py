"""Each lab's full-mode path runs end to end on tiny fake datasets laid out like the real ones.

Offline, so pretrained weights fall back to the small from-scratch backbone (with a printed
notice), and ``COURSE_MAX_STEPS`` keeps every training loop to a couple of steps: this checks the
code paths students with a GPU will run, not the figures they will get.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fake_datasets import make_coco_keypoints_val2017, make_coco_val2017, make_oxford_pets, make_pennfudan

ROOT = Path(__file__).resolve().parents[1]
# the fake datasets each lab's full mode reads
FAKE_DATA = {
    "01_localisation": [make_oxford_pets],
    "02_yolo": [],
    "03_retinanet": [make_coco_val2017, make_pennfudan],
    "04_rcnn": [make_pennfudan],
    "05_segmentation": [make_oxford_pets],
    "06_detr": [make_coco_val2017],
    "07_benchmark": [],
    "08_heatmaps": [make_coco_keypoints_val2017],
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("lab", sorted(FAKE_DATA))
def test_full_mode_runs_on_fake_data(lab, tmp_path, monkeypatch):
    for make in FAKE_DATA[lab]:
        make(tmp_path)
    monkeypatch.setenv("COURSE_MODE", "full")
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.setenv("COURSE_MAX_STEPS", "2")
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results.json"))
    path = ROOT / "solutions" / lab / f"{lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")
    assert "mode=full" in text
    if lab == "01_localisation":
        assert "classes ['cat', 'dog']" in text, "full mode must read the (fake) Oxford-IIIT Pet set"
        assert "[course_utils.models]" in text, "offline, the fallback backbone must say so"
    if lab == "04_rcnn":
        assert "1 training images, 1 test images, classes ['person']" in text, \
            "full mode must read the (fake) PennFudan set"
        assert "COCO-pretrained Mask R-CNN: False" in text and "[course_utils.models]" in text, \
            "offline, maskrcnn_resnet50_fpn must fall back to random weights and say so"
        assert "masks" in text and "max difference" in text, "the full-mode model must be evaluated for masks"
    if lab == "06_detr":
        assert "COCO val2017 subset: 3 images" in text, "full mode must read the (fake) COCO val2017 subset"
        assert "[course_utils.models] offline?" in text and "would run the pretrained DETR-R50" in text, \
            "offline, the DETR-R50 cell must say what it could not fetch and what it would do"
    if lab == "03_retinanet":
        assert "[course_utils.models]" in text, "offline, the COCO RetinaNet must fall back with a notice"
        assert "pretrained=False: COCO val2017, 3 images" in text, "full mode must evaluate on the (fake) COCO subset"
        assert "Penn-Fudan test set of 1 image(s)" in text, "full mode must fine-tune on the (fake) Penn-Fudan"
    if lab == "05_segmentation":
        assert "classes ['background', 'cat', 'dog']" in text, "full mode must segment the (fake) Oxford-IIIT Pet"
        assert "[course_utils.models]" in text, "offline, the fallback backbone of FCN-32s must say so"
        assert "fcn_resnet50" in text, "the fcn_resnet50 cell must run or say why it cannot"
    if lab == "08_heatmaps":
        assert "COCO person keypoints:" in text and "images with annotated people" in text, \
            "full mode must read the (fake) COCO person keypoints"
        assert "[course_utils.models]" in text and "would run keypointrcnn_resnet50_fpn" in text, \
            "offline, the keypoint R-CNN cell must say what it could not fetch and what it would do"
    if lab == "07_benchmark":
        assert "[course_utils.models]" in text, "offline, the pretrained detectors' fallback must say so"
        assert text.count("images/s at batch 1") == 6 and "CenterNet" in text, "all six detectors must be timed"
