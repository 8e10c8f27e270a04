"""benchmarks/bench_convergence.py: its recipes match the notebooks, its pure parts, a whole --tiny run on the CPU."""

from __future__ import annotations

import ast
import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_convergence as bc  # noqa: E402

# every model labs 02-06 train in fast mode on a test set: measured, or listed with the reason it is not
FAST_MODE_MODELS = {"yolo", "retinanet", "mask_rcnn", "crop_classifier", "unet", "unet_noskip", "hourglass", "fcn32s",
                    "detr", "keypoint_hourglass", "centernet"}


def lab_source(lab: str) -> str:
    return (ROOT / "notebook_src" / f"{lab}.py").read_text()


def test_every_fast_mode_model_of_labs_02_to_06_and_08_has_a_recipe():
    assert set(bc.RECIPES) == FAST_MODE_MODELS
    assert {r.lab for r in bc.RECIPES.values()} == {"02_yolo", "03_retinanet", "04_rcnn", "05_segmentation", "06_detr",
                                                    "08_heatmaps"}
    assert all(r.default_k in bc.K_CHOICES for r in bc.RECIPES.values())


@pytest.mark.parametrize("recipe", list(bc.RECIPES.values()), ids=lambda r: r.model)
def test_recipes_are_the_notebooks(recipe):
    source = lab_source(recipe.lab)
    assert f"steps(fast={recipe.fast_steps}," in source or f"fast={recipe.fast_steps}, full=" in source, (
        f"{recipe.lab} has no fast-mode budget of {recipe.fast_steps} steps: update RECIPES")
    rates = {float(x) for x in re.findall(r"\b(?:lr|LR)\s*[=:]\s*(\d[\d.]*(?:e-?\d+)?)", source)}
    assert recipe.lr in rates, f"{recipe.lab}: no lr {recipe.lr:g} among {sorted(rates)}"
    assert re.search(rf"batch_size={recipe.batch_size}\b|BATCH = [^\n]*, {recipe.batch_size}\b", source), (
        f"{recipe.lab}: no batch of {recipe.batch_size}")
    assert re.search(rf"fast={recipe.n_train}\b|ShapesDataset\(by_mode\(smoke=\d+, fast={recipe.n_train}", source)
    if recipe.pct_start is not None:
        assert f"pct_start={recipe.pct_start}" in source, f"{recipe.lab}: no pct_start={recipe.pct_start}"


def test_not_measured_names_labs_02_to_06_only():
    assert all(key.split(" / ")[0] in {"03_retinanet", "04_rcnn", "05_segmentation", "06_detr"}
               for key in bc.NOT_MEASURED)


def test_long_steps_and_ratio():
    assert bc.long_steps(300, 10) == 3000
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            bc.long_steps(bad, 4)
    with pytest.raises(ValueError, match="k must be one of"):
        bc.long_steps(300, 5)
    assert bc.quality_ratio(0.3, 0.6) == 0.5
    assert math.isnan(bc.quality_ratio(0.3, 0.0))


def test_class_weights_have_mean_one_and_favour_rare_classes():
    masks = bc.torch.tensor([[[0, 0, 0, 1], [0, 0, 2, bc.IGNORE_INDEX]]])
    weights = bc.class_weights(masks, 3)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[1] > weights[0] and weights[1] == pytest.approx(weights[2].item())


@pytest.mark.parametrize("script", ["bench_convergence.py", "gpu_check.py"])
def test_importing_the_scripts_leaves_the_environment_alone(script):
    # conftest clears COURSE_MODE in each test, so an import-time default would not show in a test, yet it would
    # leak into session fixtures (and subprocesses) of the whole run: the mode is set in main(), never at import
    tree = ast.parse((ROOT / "benchmarks" / script).read_text())
    top_level = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.If))]
    assert not [ast.unparse(n) for n in top_level if "environ" in ast.unparse(n)]


def test_a_capped_step_budget_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MAX_STEPS", "2")
    with pytest.raises(SystemExit):
        bc.main(["--tiny"])
    assert "unset COURSE_MAX_STEPS" in capsys.readouterr().err


def test_tiny_run_on_cpu_prints_every_model(tmp_path, monkeypatch, capsys):
    # conftest removed COURSE_MODE (smoke mode would cap fit at 3 steps); main() sets fast mode, and the test
    # does too so that monkeypatch restores the environment afterwards
    monkeypatch.setenv("COURSE_MODE", "fast")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("COURSE_MAX_STEPS", raising=False)
    status = bc.main(["--tiny", "--out", str(tmp_path / "convergence.json")])
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "convergence.json").read_text())

    assert status == 0, [r for r in report["results"] if "error" in r]
    assert report["tiny"] is True and report["device"] == "cpu"
    assert [r["model"] for r in report["results"]] == list(bc.RECIPES)
    for r in report["results"]:
        recipe, metric = bc.RECIPES[r["model"]], bc.METRICS[bc.RECIPES[r["model"]].task]
        assert r["metric"] == metric and r["k"] == bc.TINY_K
        assert (r["fast"]["steps"], r["longest"]["steps"]) == (1, bc.TINY_K)
        assert 0 <= r["fast"][metric] <= 1 and 0 <= r["longest"][metric] <= 1
        assert r["fast"]["seconds"] >= 0 and r["longest"]["seconds"] >= 0
        line = next(x for x in printed.splitlines() if f" {r['model']} " in x and x.startswith(recipe.lab))
        assert f"fast {r['fast'][metric]:.3f} (1 steps" in line and f"{bc.TINY_K}x " in line and "ratio " in line
    for what in bc.NOT_MEASURED:
        assert f"not measured: {what}" in printed
