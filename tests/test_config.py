import json
import random

import numpy as np
import pytest
import torch

from course_utils import config


def test_mode_from_env(monkeypatch):
    for mode in ("smoke", "fast", "full"):
        monkeypatch.setenv("COURSE_MODE", mode)
        assert config.get_mode() == mode
    monkeypatch.setenv("COURSE_MODE", " FAST ")
    assert config.get_mode() == "fast"


def test_unknown_mode_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "quick")
    with pytest.raises(ValueError) as err:
        config.get_mode()
    msg = str(err.value)
    assert "quick" in msg and all(m in msg for m in ("smoke", "fast", "full"))


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "fast")])
def test_default_mode_follows_hardware(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert config.get_mode() == expected


def test_nbgrader_execution_means_smoke_unless_mode_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert config.get_mode() == "smoke"
    monkeypatch.setenv("COURSE_MODE", "fast")
    assert config.get_mode() == "fast"


def test_by_mode(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    assert config.by_mode(smoke=1, fast=2, full=3) == 1
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.by_mode(smoke=1, fast=2, full=3) == 3


def test_device_preference(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert config.get_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.get_device().type == "cpu"


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    config.seed_everything(123)
    first = draw()
    config.seed_everything(123)
    assert draw() == first
    config.seed_everything(124)
    assert draw() != first
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(-1)


def test_setup_prints_one_banner_line(monkeypatch, capsys):
    import torchvision

    monkeypatch.setenv("COURSE_MODE", "fast")
    info = config.setup(seed=7)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    for part in ("mode=fast", "device=cpu", torch.__version__, torchvision.__version__, "seed=7"):
        assert part in out
    assert info.mode == "fast" and info.seed == 7 and info.device.type == "cpu"
    assert torch.initial_seed() == 7


def test_record_merges_into_results_file(monkeypatch, tmp_path):
    path = tmp_path / "sub" / "results.json"
    monkeypatch.setenv("COURSE_RESULTS", str(path))
    assert config.record("02_yolo/mAP50", np.float32(0.5)) == 0.5
    assert config.record("02_yolo/mAP", torch.tensor([0.25])) == 0.25
    assert config.record("02_yolo/mAP50", 0.75) == 0.75  # overwrite keeps the others
    assert json.loads(path.read_text()) == {"02_yolo/mAP": 0.25, "02_yolo/mAP50": 0.75}
    assert config.read_results() == {"02_yolo/mAP": 0.25, "02_yolo/mAP50": 0.75}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp files left


def test_record_without_results_file_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.record("lab/x", 3) == 3.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("mAP50", 0.5, "name"),
        ("/x", 0.5, "name"),
        ("lab/x", float("nan"), "finite"),
        ("lab/x", "high", "number"),
        ("lab/x", torch.ones(2), "single number"),
    ],
)
def test_record_rejects_bad_input(name, value, match):
    with pytest.raises(ValueError, match=match):
        config.record(name, value)


@pytest.mark.parametrize("mode, expected", [("smoke", config.SMOKE_STEPS), ("fast", 600), ("full", 20_000)])
def test_steps_picks_the_mode_and_smoke_is_capped_in_one_place(monkeypatch, mode, expected):
    monkeypatch.setenv("COURSE_MODE", mode)
    monkeypatch.delenv("COURSE_MAX_STEPS", raising=False)
    assert config.steps(fast=600, full=20_000) == expected
    assert config.steps(fast=1, full=1) == 1, "a budget below the smoke cap stays as it is"


def test_max_steps_caps_every_mode_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    monkeypatch.setenv("COURSE_MAX_STEPS", "2")
    assert config.step_cap() == 2 and config.steps(fast=600, full=20_000) == 2
    monkeypatch.setenv("COURSE_MODE", "smoke")
    monkeypatch.setenv("COURSE_MAX_STEPS", "50")
    assert config.step_cap() == config.SMOKE_STEPS, "the lower of the two caps"
    for bad in ("0", "-3", "ten"):
        monkeypatch.setenv("COURSE_MAX_STEPS", bad)
        with pytest.raises(ValueError, match="COURSE_MAX_STEPS"):
            config.step_cap()
    monkeypatch.delenv("COURSE_MAX_STEPS")
    with pytest.raises(ValueError, match="fast must be a non-negative int"):
        config.steps(fast=-1, full=3)
    with pytest.raises(ValueError, match="full must be a non-negative int"):
        config.steps(fast=1, full=2.5)


def test_course_root_is_the_nearest_folder_with_the_marker(tmp_path, monkeypatch):
    lab = tmp_path / "course" / "labs" / "02_yolo"
    lab.mkdir(parents=True)
    assert config.course_root(lab) is None, "a student's copy of one lab has no course folder"
    (tmp_path / "course" / "pyproject.toml").write_text("")
    assert config.course_root(lab) is None, "a pyproject.toml alone is not the course"
    (tmp_path / "course" / "course_utils").mkdir()
    (tmp_path / "course" / "course_utils" / "__init__.py").write_text("")
    assert config.course_root(lab) == tmp_path / "course"
    assert config.course_root(lab / "02_yolo.ipynb") == tmp_path / "course", "a file's folder counts"
    monkeypatch.chdir(lab)
    assert config.course_root() == tmp_path / "course", "default: the working directory"
