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
