"""Each solution notebook, run top to bottom in fast mode, reaches its quality floors in time.

One run per lab (they take minutes): marked slow. The figures come from `course_utils.config.record`
through the COURSE_RESULTS file.
"""

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))

# per lab: minimum values of the recorded figures, and the time budget of the whole notebook (2 cores)
FLOORS = {
    "01_localisation": {
        "floors": {"01_localisation/mean_iou": 0.7, "01_localisation/class_accuracy": 0.95},
        "seconds": 180,
        "min_figures": 6,
    },
    "02_yolo": {
        "floors": {"02_yolo/mAP50": 0.9, "02_yolo/mAP": 0.5},
        "seconds": 180,
        "min_figures": 4,  # + the detections slider figure, an Image widget
    },
    "07_benchmark": {
        # every detector is trained, evaluated and timed (DETR barely starts learning in its ~40 s: floor just above 0)
        "floors": {**{f"07_benchmark/{m}/mAP": 1e-3 for m in ("yolo", "retinanet", "faster_rcnn", "mask_rcnn")},
                   "07_benchmark/detr/mAP": 1e-5,
                   **{f"07_benchmark/{m}/images_per_s": 0.1
                      for m in ("yolo", "retinanet", "faster_rcnn", "mask_rcnn", "detr")}},
        "seconds": 300,
        "min_figures": 3,
    },
}


def lesson_checks(lab: str, results: dict) -> None:
    """What each lab claims to show must show in its numbers."""
    if lab == "01_localisation":
        pooled, spatial = results["01_localisation/frozen_pooled_iou"], results["01_localisation/frozen_spatial_iou"]
        assert spatial > pooled + 0.15, f"spatial head should localise clearly better: {spatial:.3f} vs {pooled:.3f}"
        assert results["01_localisation/mean_iou"] > spatial, "fine-tuning should improve on the frozen backbone"
    if lab == "02_yolo":
        easy, crowded = results["02_yolo/mAP50"], results["02_yolo/crowded_mAP50"]
        gap = results["02_yolo/your_ap_vs_voc_eval"]
        assert gap < 1e-9, f"average_precision on the lab's detections differs from metrics.voc_eval by {gap}"
        assert crowded < easy - 0.3, f"the grid's failure should show on crowded shapes: {crowded:.3f} vs {easy:.3f}"
    if lab == "07_benchmark":
        name = "07_benchmark/{}/{}".format
        ap = {m: results[name(m, "mAP")] for m in ("yolo", "retinanet", "faster_rcnn", "mask_rcnn", "detr")}
        assert max(ap.values()) < 0.9, f"the hard preset should not saturate any detector: {ap}"
        assert results[name("faster_rcnn", "APs")] > results[name("yolo", "APs")], \
            "stride-8 RoIAlign features should find more small objects than YOLO v1's 8x8 grid"
        assert ap["faster_rcnn"] > ap["detr"] + 0.05, f"DETR converges slowly: in equal time it should trail {ap}"
        fast, mask = results[name("faster_rcnn", "images_per_s")], results[name("mask_rcnn", "images_per_s")]
        assert mask < fast / 2, f"the mask branch should cost at test time: {mask:.1f} vs {fast:.1f} images/s"


def execute(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("lab", LABS)
def test_fast_mode_reaches_floors(lab, tmp_path, monkeypatch):
    assert lab in FLOORS, f"lab {lab} declares no quality floors in {__file__}"
    spec = FLOORS[lab]
    results_file = tmp_path / "results.json"
    monkeypatch.setenv("COURSE_MODE", "fast")
    monkeypatch.setenv("COURSE_RESULTS", str(results_file))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the figures
    nb, seconds = execute(ROOT / "solutions" / lab / f"{lab}.ipynb", timeout=600)

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    from course_utils.config import read_results

    results = read_results(results_file)
    print(f"{lab}: {seconds:.0f} s, {figures} figures, {results}")
    for name, floor in spec["floors"].items():
        assert name in results, f"{lab} did not record {name}"
        assert results[name] >= floor, f"{name} = {results[name]:.3f} < floor {floor}"
    lesson_checks(lab, results)
    assert figures >= spec["min_figures"], f"{lab} showed {figures} figures"
    assert seconds <= spec["seconds"], f"{lab} took {seconds:.0f} s in fast mode (budget {spec['seconds']} s)"
    assert os.environ["COURSE_MODE"] == "fast"
