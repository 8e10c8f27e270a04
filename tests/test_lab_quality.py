"""Each solution notebook, run top to bottom in fast mode, reaches its quality floors.

One run per lab (they take minutes): marked slow. The figures come from `course_utils.config.record`
through the COURSE_RESULTS file. Time is not what this test measures: it only holds every lab
under a generous ceiling (a lab that went wrong, e.g. a step budget lost); how long each lab takes
against its budget is measured by ``benchmarks/bench_lab_times.py`` (``make bench``).
"""

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))
# lab 07 runs once, after labs 02-06 and from their models (test_benchmark_from_the_labs_checkpoints),
# as the lab tells students to run it; its floors and lesson checks are asserted there
CHAINED = "07_benchmark"

# a lab that takes longer than this in fast mode has lost its step budget, whatever else runs on the machine
CEILING_SECONDS = 600

# per lab: minimum values of the recorded figures and how many figures it shows
FLOORS = {
    "01_localisation": {
        "floors": {"01_localisation/mean_iou": 0.7, "01_localisation/class_accuracy": 0.95},
        "min_figures": 6,
    },
    "02_yolo": {
        "floors": {"02_yolo/mAP50": 0.9, "02_yolo/mAP": 0.5},
        "min_figures": 4,  # + the detections slider figure, an Image widget
    },
    "03_retinanet": {
        "floors": {"03_retinanet/mAP50": 0.8, "03_retinanet/mAP": 0.45},
        "min_figures": 7,  # + the anchors explorer, an Image widget
    },
    "04_rcnn": {
        "floors": {"04_rcnn/box_mAP50": 0.85, "04_rcnn/mask_mAP50": 0.8},
        "min_figures": 4,  # + the proposals/detections/masks slider figure, an Image widget
    },
    "05_segmentation": {
        "floors": {"05_segmentation/unet_mIoU": 0.85, "05_segmentation/hourglass_mIoU": 0.8},
        "min_figures": 8,  # + the U-Net comparison slider, an Image widget
    },
    "06_detr": {
        "floors": {"06_detr/mAP50": 0.7},
        "min_figures": 6,
    },
    "07_benchmark": {
        # every detector is trained, evaluated and timed (DETR barely starts learning in its ~40 s: floor just above 0)
        "floors": {**{f"07_benchmark/{m}/mAP": 1e-3 for m in ("yolo", "retinanet", "faster_rcnn", "mask_rcnn",
                                                             "centernet")},
                   "07_benchmark/detr/mAP": 1e-5,
                   **{f"07_benchmark/{m}/images_per_s": 0.1
                      for m in ("yolo", "retinanet", "faster_rcnn", "mask_rcnn", "detr", "centernet")}},
        "min_figures": 3,
    },
    "08_heatmaps": {
        "floors": {"08_heatmaps/keypoint_AP50": 0.8, "08_heatmaps/keypoint_AP": 0.6, "08_heatmaps/PCK": 0.8,
                   "08_heatmaps/centernet_mAP50": 0.8},
        "min_figures": 4,  # + the heatmap explorer, an Image widget
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
    if lab == "03_retinanet":
        ce, fl = results["03_retinanet/easy_negative_share_ce"], results["03_retinanet/easy_negative_share_fl"]
        assert ce > 0.3 and fl < ce / 5, f"the focal loss should silence the easy negatives: CE {ce:.1%}, FL {fl:.1%}"
        small = {level: results[f"03_retinanet/P{level}_APs"] for level in (3, 4, 5)}
        medium = {level: results[f"03_retinanet/P{level}_APm"] for level in (3, 4, 5)}
        assert small[3] > max(small[4], small[5]) + 0.1, f"P3 alone should find the small objects best: {small}"
        assert medium[4] > medium[3] + 0.3, f"P4 alone should find the medium objects, P3 not: {medium}"
    if lab == "04_rcnn":
        gap = results["04_rcnn/paste_vs_model"]
        assert gap < 1e-5, f"paste_masks on the model's 28x28 masks differs from the model's own masks by {gap}"
        assert results["04_rcnn/faster_same_boxes"] == 1.0, "the box branch loaded into FasterRCNN gave other boxes"
        assert results["04_rcnn/mean_best_mask_iou"] > 0.7, "mask_iou of the trained model's masks should be high"
        assert results["04_rcnn/mask_mAP"] > 0.5 and results["04_rcnn/box_mAP"] > 0.5, results
        scratch, pretrained = (results[f"04_rcnn/{s}_backbone_box_mAP50"] for s in ("scratch", "pretrained"))
        assert pretrained > scratch + 0.2, \
            f"a backbone pretrained on the source task should pay at equal steps: {pretrained:.3f} vs {scratch:.3f}"
    if lab == "05_segmentation":
        unet, noskip = results["05_segmentation/unet_mIoU"], results["05_segmentation/unet_noskip_mIoU"]
        assert unet > noskip + 0.05, f"skip connections should help clearly: U-Net {unet:.3f} vs no skips {noskip:.3f}"
        sharp, blurry = (results[f"05_segmentation/unet{s}_boundary_accuracy"] for s in ("", "_noskip"))
        assert sharp > blurry + 0.05, f"skips should sharpen the boundaries: {sharp:.3f} vs {blurry:.3f}"
        stacks = [v for s in range(1, 9) if (v := results.get(f"05_segmentation/hourglass_stack{s}_mIoU")) is not None]
        assert len(stacks) >= 2, f"the hourglass should have several stacks, each recorded: {stacks}"
        assert all(b >= a - 0.01 for a, b in zip(stacks, stacks[1:])), f"each stack should refine the last: {stacks}"
        assert results["05_segmentation/convolutionized_mIoU"] < unet - 0.2, "the convolutionized heatmap is coarse"
        gap = results["05_segmentation/your_miou_vs_reference"]
        assert gap < 1e-9, f"segmentation_iou on the lab's predictions differs from metrics.mean_iou by {gap}"
        assert results["05_segmentation/crop_classifier_accuracy"] > 0.9, "the classifier to convolutionize must work"
        # semantic vs instance on touching same-class objects (fast run: 97 and 95 of 444 objects merged, 0 with
        # instance masks): connected components of a semantic mask merge them, even of a perfect one
        objects = results["05_segmentation/touching_objects"]
        for key in ("merged_unet_components", "merged_true_semantic_components"):
            merged = results[f"05_segmentation/{key}"]
            assert merged > 0.1 * objects, f"{key}: touching same-class objects should merge: {merged} of {objects}"
    if lab == "06_detr":
        assert results["06_detr/mAP"] > 0.2, f"DETR's boxes should be precise too: mAP {results['06_detr/mAP']:.3f}"
        spread = results["06_detr/query_centre_spread"]
        assert spread < 0.8, f"each query should specialise in a region: centre spread ratio {spread:.2f}"
        gain = results["06_detr/last_layer_nms_gain"]
        assert gain < 0.02, f"DETR's last decoder layer should not need NMS: NMS changes its AP50 by {gain:+.3f}"
    if lab == "07_benchmark":
        name = "07_benchmark/{}/{}".format
        detectors = ("yolo", "retinanet", "faster_rcnn", "mask_rcnn", "detr", "centernet")
        ap = {m: results[name(m, "mAP")] for m in detectors}
        assert max(ap.values()) < 0.9, f"the hard preset should not saturate any detector: {ap}"
        seconds = {m: results[name(m, "train_seconds")] for m in ("yolo", "centernet")}
        assert ap["centernet"] >= ap["yolo"] and seconds["centernet"] < 1.5 * seconds["yolo"], \
            f"anchor-free CenterNet should match or beat YOLO v1 in about the same training time: {ap}, {seconds}"
        assert results[name("faster_rcnn", "APs")] > results[name("yolo", "APs")], \
            "stride-8 RoIAlign features should find more small objects than YOLO v1's 8x8 grid"
        assert ap["faster_rcnn"] > ap["detr"] + 0.05, f"DETR converges slowly: in equal time it should trail {ap}"
        fast, mask = results[name("faster_rcnn", "images_per_s")], results[name("mask_rcnn", "images_per_s")]
        assert mask < fast / 2, f"the mask branch should cost at test time: {mask:.1f} vs {fast:.1f} images/s"
        # exercise 2's Pareto front of the lab's own table (images/s at batch 8 up, mAP up)
        speed = {m: results[name(m, "images_per_s")] for m in detectors}
        on_front = {m: results[name(m, "on_pareto_front")] == 1.0 for m in detectors}

        def dominates(a, b):
            return speed[a] >= speed[b] and ap[a] >= ap[b] and (speed[a] > speed[b] or ap[a] > ap[b])

        front = sorted(m for m in detectors if on_front[m])
        assert front and results["07_benchmark/pareto_front_size"] == len(front), (front, results)
        for m in detectors:
            assert on_front[m] == (not any(dominates(o, m) for o in detectors)), f"{m}: {on_front}, {speed}, {ap}"
            assert on_front[m] or any(dominates(o, m) for o in front), f"{m} off the front, dominated by none on it"
        assert max(ap, key=ap.get) in front and max(speed, key=speed.get) in front, (front, ap, speed)
        assert not on_front["mask_rcnn"], f"Mask R-CNN should be dominated (slowest, not most accurate): {front}"
    if lab == "08_heatmaps":
        ap, plain_ap = results["08_heatmaps/keypoint_AP"], results["08_heatmaps/keypoint_AP_no_quarter_offset"]
        assert ap > plain_ap + 0.08, f"the quarter offset should pay at high OKS: AP {ap:.3f} vs {plain_ap:.3f} without"
        ap75, plain75 = results["08_heatmaps/keypoint_AP75"], results["08_heatmaps/keypoint_AP75_no_quarter_offset"]
        assert ap75 > plain75 + 0.1, f"... and at OKS 0.75: {ap75:.3f} vs {plain75:.3f}"
        curves = {key: sorted((int(k.rsplit("step", 1)[1]), v) for k, v in results.items()
                              if k.startswith(f"08_heatmaps/{key}_supervision_AP_step"))
                  for key in ("intermediate", "last_only")}
        assert len(curves["intermediate"]) == len(curves["last_only"]) >= 3, curves
        (_, inter_early), (_, last_early) = curves["intermediate"][0], curves["last_only"][0]
        assert inter_early > last_early + 0.1, f"intermediate supervision should learn faster: {curves}"
        assert abs(curves["intermediate"][-1][1] - curves["last_only"][-1][1]) < 0.1, \
            f"after the full budget the two should be close, as the lab says: {curves}"
        gain = results["08_heatmaps/centernet_nms_gain"]
        assert abs(gain) < 0.02, f"CenterNet's 3x3 peaks should need no NMS: NMS changes its AP50 by {gain:+.3f}"

def execute(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def run_fast_mode(lab: str, results_file: Path, monkeypatch, timeout: int = 600):
    """Run ``solutions/<lab>`` top to bottom in fast mode, recording into ``results_file``.

    Returns the executed notebook, its seconds and its recorded figures; fails on any error output.
    """
    monkeypatch.setenv("COURSE_MODE", "fast")
    monkeypatch.setenv("COURSE_RESULTS", str(results_file))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the figures
    nb, seconds = execute(ROOT / "solutions" / lab / f"{lab}.ipynb", timeout=timeout)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    from course_utils.config import read_results

    return nb, seconds, read_results(results_file)


# the models labs 02-06 save in fast mode, which lab 07 starts from: lab -> the model file's name
BENCHMARK_SOURCES = {"02_yolo": "yolo", "03_retinanet": "retinanet", "04_rcnn": "mask_rcnn", "06_detr": "detr",
                     "08_heatmaps": "centernet"}


@pytest.fixture(scope="session")
def saved_models():
    """Checkpoints saved by this session's fast-mode lab runs: lab -> file (filled by the tests below)."""
    return {}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("lab", [lab for lab in LABS if lab != CHAINED])
def test_fast_mode_reaches_floors(lab, tmp_path, monkeypatch, saved_models):
    nb, seconds, results = run_fast_mode(lab, tmp_path / "results.json", monkeypatch)
    print(f"{lab}: {seconds:.0f} s, {results}")
    if lab in BENCHMARK_SOURCES:
        saved = tmp_path / lab / f"{BENCHMARK_SOURCES[lab]}.pt"
        assert saved.is_file(), f"{lab} should save its trained model for lab 07 at {saved}"
        saved_models[lab] = saved
    assert_floors_and_lessons(lab, nb, results)
    assert seconds <= CEILING_SECONDS, f"{lab} took {seconds:.0f} s in fast mode (ceiling {CEILING_SECONDS} s)"
    assert os.environ["COURSE_MODE"] == "fast"


def assert_floors_and_lessons(lab: str, nb: nbformat.NotebookNode, results: dict) -> None:
    assert lab in FLOORS, f"lab {lab} declares no quality floors in {__file__}"
    spec = FLOORS[lab]
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    for name, floor in spec["floors"].items():
        assert name in results, f"{lab} did not record {name}"
        assert results[name] >= floor, f"{name} = {results[name]:.3f} < floor {floor}"
    lesson_checks(lab, results)
    assert figures >= spec["min_figures"], f"{lab} showed {figures} figures"


def test_every_lab_runs_in_fast_mode_here():
    assert CHAINED in LABS and set(FLOORS) == set(LABS), "every lab declares floors; the chained one runs below"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_benchmark_from_the_labs_checkpoints(tmp_path, monkeypatch, saved_models):
    """Lab 07 after labs 02-06 and 08: every detector starts from its lab's model, and the table shows the lessons.

    Uses the checkpoints of this session's runs above; a lab that did not run here (e.g. with
    ``-k``) is run first, in fast mode.
    """
    for lab, name in BENCHMARK_SOURCES.items():
        target = tmp_path / lab / f"{name}.pt"
        if lab in saved_models:
            target.parent.mkdir(parents=True)
            shutil.copy(saved_models[lab], target)
        else:
            run_fast_mode(lab, tmp_path / f"{lab}.json", monkeypatch, timeout=900)
        assert target.is_file(), f"{lab} did not save {target}"
    nb, seconds, results = run_fast_mode("07_benchmark", tmp_path / "results.json", monkeypatch)
    printed = "".join(o.get("text", "") for c in nb.cells if c.get("id") == "train" for o in c.get("outputs", []))
    print(f"07_benchmark from the labs' models: {seconds:.0f} s, {results}")
    for title, lab in [("YOLO v1", "02_yolo"), ("RetinaNet", "03_retinanet"), ("Faster R-CNN", "04_rcnn"),
                       ("Mask R-CNN", "04_rcnn"), ("DETR", "06_detr"), ("CenterNet", "08_heatmaps")]:
        assert f"{title:13} starts from lab {lab}'s weights" in printed, f"{title} did not start from {lab}:\n{printed}"
    ap = {m: results[f"07_benchmark/{m}/mAP"] for m in ("yolo", "retinanet", "faster_rcnn", "mask_rcnn", "detr",
                                                         "centernet")}
    aps = {m: results[f"07_benchmark/{m}/APs"] for m in ap}
    assert min(ap.values()) > 5e-3 and max(ap.values()) < 0.9, f"every detector learns, none saturates: {ap}"
    assert aps["retinanet"] > 2 * aps["yolo"], f"the pyramid's gain on small objects: APs {aps}"
    assert ap["faster_rcnn"] > max(ap["yolo"], ap["retinanet"], ap["detr"]), f"two stages, most accurate: {ap}"
    assert_floors_and_lessons("07_benchmark", nb, results)
    assert seconds <= CEILING_SECONDS, f"lab 07 took {seconds:.0f} s (ceiling {CEILING_SECONDS} s)"
