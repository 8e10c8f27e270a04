"""benchmarks/gpu_check.py: its table matches the notebooks, its pure parts, and a whole --tiny run on the CPU."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

STEPS_CALL = re.compile(r"steps\(fast=(\d+), full=(\d+)\)")


def notebook_budgets(lab: str) -> set[tuple[int, int]]:
    """Every ``steps(fast=F, full=N)`` in ``notebook_src/<lab>.py``, read here from the source itself."""
    source = (ROOT / "notebook_src" / f"{lab}.py").read_text()
    return {(int(f), int(n)) for f, n in STEPS_CALL.findall(source)}


def test_the_parser_reads_steps_calls():
    assert STEPS_CALL.findall("x = steps(fast=300, full=6000); fit(m, l, o, steps(fast=3, full=600))") == [
        ("300", "6000"), ("3", "600")]


@pytest.mark.parametrize("spec", [s for s in gpu_check.LAB_LOOPS if s.lab != "04_rcnn"], ids=lambda s: s.builder)
def test_full_mode_steps_are_the_notebooks(spec):
    assert (spec.fast_steps, spec.full_steps) in notebook_budgets(spec.lab), (
        f"{spec.lab} has no steps(fast={spec.fast_steps}, full={spec.full_steps}): update LAB_LOOPS")


def test_lab04_full_mode_budget_is_the_notebooks():
    # lab 04's full mode sets its budget as a literal (torchvision's tutorial: 10 epochs of 60 batches of 2)
    source = (ROOT / "notebook_src" / "04_rcnn.py").read_text()
    steps, batch = map(int, re.search(r"STEPS, BATCH = (\d+), (\d+)", source).groups())
    [spec] = [s for s in gpu_check.LAB_LOOPS if s.lab == "04_rcnn"]
    assert (spec.full_steps, spec.batch_size) == (steps, batch)


def test_every_full_mode_training_loop_is_timed_or_listed():
    for lab in gpu_check.LAB_NAMES:
        timed = {(s.fast_steps, s.full_steps) for s in gpu_check.LAB_LOOPS if s.lab == lab}
        listed = {(fa, fu) for (name, fa, fu) in gpu_check.NOT_TIMED if name == lab}
        missing = {b for b in notebook_budgets(lab) if b[1] > 0} - timed - listed
        assert not missing, f"{lab}: full-mode loops steps(fast, full)={sorted(missing)} are neither timed nor listed"
    assert {s.lab for s in gpu_check.LAB_LOOPS} == set(gpu_check.LAB_NAMES)


def test_batch_sizes_and_image_sizes_appear_in_the_notebooks():
    for spec in gpu_check.LAB_LOOPS:
        source = (ROOT / "notebook_src" / f"{spec.lab}.py").read_text()
        b = spec.batch_size
        batch = rf"batch_size={b}\b|BATCH = {b}\b|full={b}\)|, {b}  #|_boxes, {b}\)|ShapesDataset\({b}, IMAGE_SIZE"
        assert re.search(batch, source), f"{spec.lab}: no batch of {b}"
        assert re.search(rf"IMAGE_SIZE(, \w+)* = {spec.image_size}\b|full={spec.image_size}\)", source), (
            f"{spec.lab}: no image size {spec.image_size}")


def test_projected_seconds():
    assert gpu_check.projected_seconds(6000, 1, 20.0) == 300.0
    assert gpu_check.projected_seconds(3000, 2, 10.0) == 600.0
    assert gpu_check.projected_seconds(100, 1, 0.0) == math.inf


def test_lab_totals_sum_the_loops_and_say_when_one_is_missing():
    rows = [{"lab": "01_localisation", "projected_s": 10.0}, {"lab": "01_localisation", "projected_s": 5.0},
            {"lab": "02_yolo", "projected_s": 7.0}, {"lab": "03_retinanet", "skipped": "past --max-seconds"}]
    totals = gpu_check.lab_totals(rows)
    assert totals["01_localisation"] == 15.0 and totals["02_yolo"] == 7.0
    assert totals["03_retinanet"] is None and totals["07_benchmark"] is None
    assert list(totals) == list(gpu_check.LAB_NAMES)


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.main(["--labs", "99_nothing"])


@pytest.mark.slow
def test_tiny_run_on_cpu_reports_every_lab(tmp_path, monkeypatch, capsys):
    # full mode, as on a GPU machine (conftest removed COURSE_MODE; main() sets it, the test says so too, and
    # monkeypatch restores the environment afterwards), with an empty torch hub cache and no network: every
    # pretrained model must take full mode's download path, fail, and fall back, saying so
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network in this test ({url})")

    monkeypatch.setenv("COURSE_MODE", "full")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("COURSE_MAX_STEPS", raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    status = gpu_check.main(["--tiny", "--out", str(tmp_path / "report")])
    assert os.environ["COURSE_MODE"] == "full"
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "gpu_check.json").read_text())
    markdown = (tmp_path / "report" / "gpu_check.md").read_text()

    assert status == 0, [c for c in report["checks"] if not c["ok"]]
    assert f"report: {tmp_path / 'report' / 'gpu_check.json'}" in printed
    assert report["tiny"] is True and report["mode"] == "full" and report["environment"]["device"] == "cpu"
    assert "no network in this test" in printed and "fast mode: using SmallBackbone" not in printed
    checked = " ".join(c["check"] for c in report["checks"])
    for name in ("box_iou", "generalized_box_iou", "nms", "batched_nms", "coco_eval", "confusion_matrix",
                 *(f"build_detector({d!r})" for d in gpu_check.DETECTOR_NAMES)):
        assert name in checked
    assert all(c["ok"] for c in report["checks"])

    loops = report["loops"]
    assert [(r["lab"], r["loop"]) for r in loops] == [(s.lab, s.loop) for s in gpu_check.LAB_LOOPS]
    for r in loops:
        assert "skipped" not in r, r
        assert r["timed_steps"] == 1 and r["steps_per_s"] > 0 and math.isfinite(r["final_loss"])
        assert r["images_per_s"] == pytest.approx(r["steps_per_s"] * r["batch_size"])
        assert r["projected_s"] == pytest.approx(r["full_steps"] * r["runs"] / r["steps_per_s"])
        assert r["peak_memory_mib"] is None  # no CUDA
    for lab in gpu_check.LAB_NAMES:
        assert f"| {lab} |" in markdown
        assert report["lab_totals"][lab] > 0
    fallbacks = [r for r in loops if r["weights"].startswith("FALLBACK")]
    assert {r["builder"] for r in fallbacks} == {"localisation_heads", "localisation", "retinanet_coco",
                                                 "mask_rcnn_coco", "fcn32s", "bench_retinanet",
                                                 "bench_faster_rcnn", "bench_mask_rcnn"}
    assert "FALLBACK" in markdown and "tiny steps" in markdown and "COURSE_MODE=full" in markdown
