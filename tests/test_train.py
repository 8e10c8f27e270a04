"""fit / evaluate / predict / checkpoints and the checkpoint cache on tiny models."""

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.config import COURSE_MARKERS, SMOKE_STEPS
from course_utils.train import (
    History,
    checkpoint_path,
    evaluate,
    fit,
    load_cached,
    load_checkpoint,
    predict,
    save_cached,
    save_checkpoint,
    to_device,
    warm_start,
)


def regression_loader(n=256, seed=0, shuffle=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=shuffle)


def make_model():
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))


def train_once(steps=60, seed=0):
    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = fit(model, regression_loader(), opt, steps, loss_fn=nn.MSELoss(), seed=seed,
                  device="cpu", progress=False, log_every=10)
    return model, history


def test_fit_learns_and_logs(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    model, history = train_once(steps=200)
    assert history["step"] == list(range(10, 201, 10))
    assert history["loss"][-1] < 0.05 * history["loss"][0]
    assert len(history["lr"]) == len(history["loss"])
    mse = evaluate(model, regression_loader(shuffle=False), loss_fn=nn.MSELoss(), device="cpu")
    assert mse["loss"] == pytest.approx(history["loss"][-1], rel=1.0)


def test_fit_is_deterministic_under_a_seed(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    (m1, h1), (m2, h2) = train_once(seed=3), train_once(seed=3)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert h1["loss"] == h2["loss"]
    m3, _ = train_once(seed=4)
    assert not torch.equal(next(m1.parameters()), next(m3.parameters()))


def test_smoke_mode_caps_steps(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    _, history = train_once(steps=500)
    assert history["step"] == [SMOKE_STEPS]


def test_max_steps_env_caps_any_mode(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    monkeypatch.setenv("COURSE_MAX_STEPS", "7")
    _, history = train_once(steps=500)
    assert history["step"] == [7]
    monkeypatch.setenv("COURSE_MAX_STEPS", "0")
    with pytest.raises(ValueError, match="COURSE_MAX_STEPS"):
        train_once(steps=5)


def test_eval_fn_runs_in_eval_mode_and_is_logged(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    modes = []

    def eval_fn(m):
        modes.append(m.training)
        assert not torch.is_grad_enabled()
        return {"score": len(modes)}

    history = fit(model, regression_loader(), torch.optim.SGD(model.parameters(), lr=0.01), 25,
                  loss_fn=nn.MSELoss(), eval_fn=eval_fn, eval_every=10, progress=False, device="cpu")
    assert modes == [False, False, False]
    assert history["val_step"] == [10, 20, 25] and history["val_score"] == [1, 2, 3]
    assert model.training  # back in train mode


class ToyDetector(nn.Module):
    """Returns a loss dict in train mode and predictions in eval mode, like torchvision detectors."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))
        self.bn = nn.BatchNorm1d(4)

    def forward(self, images, targets=None):
        feats = self.bn(torch.stack([im.mean(dim=(1, 2)).repeat(2)[:4] for im in images]))
        if self.training:
            boxes = torch.stack([t["boxes"][0] for t in targets])
            return {"loss_box": ((feats + self.w - boxes / 100) ** 2).mean(), "loss_cls": self.w.abs().sum()}
        return [{"boxes": (feats[i] + self.w)[None] * 100, "scores": torch.ones(1)} for i in range(len(images))]


def detection_loader():
    images = [torch.rand(3, 8, 8) for _ in range(8)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]])} for _ in range(8)]
    return DataLoader(list(zip(images, targets)), batch_size=4, collate_fn=lambda b: tuple(map(list, zip(*b))))


def test_fit_detection_model_sums_loss_dict(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    model = ToyDetector()
    history = fit(model, detection_loader(), torch.optim.SGD(model.parameters(), lr=0.1), 20,
                  log_every=5, progress=False, device="cpu")
    assert {"loss", "loss_box", "loss_cls"} <= set(history.as_dict())
    for total, a, b in zip(history["loss"], history["loss_box"], history["loss_cls"]):
        assert total == pytest.approx(a + b)
    # evaluate returns losses without touching BatchNorm statistics
    before = model.bn.running_mean.clone()
    losses = evaluate(model, detection_loader(), device="cpu")
    assert torch.equal(model.bn.running_mean, before) and {"loss", "loss_box"} <= set(losses)
    outputs, targets = predict(model, detection_loader(), device="cpu")
    assert len(outputs) == 8 and len(targets) == 8 and outputs[0]["boxes"].shape == (1, 4)


def test_fit_without_loss_fn_needs_a_loss_dict():
    with pytest.raises(TypeError, match="loss_fn"):
        fit(make_model(), regression_loader(), torch.optim.SGD(make_model().parameters(), lr=0.1), 1,
            progress=False, device="cpu")


def test_fit_stops_on_nan_loss(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    model = make_model()
    with pytest.raises(FloatingPointError, match="step 1"):
        fit(model, regression_loader(), torch.optim.SGD(model.parameters(), lr=0.1), 5,
            loss_fn=lambda out, y: out.mean() * float("nan"), progress=False, device="cpu")


def test_fit_rejects_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        fit(make_model(), regression_loader(), None, -1, loss_fn=nn.MSELoss())


def test_predict_concatenates_tensors():
    model = make_model()
    out, y = predict(model, regression_loader(n=70, shuffle=False), device="cpu")
    assert out.shape == (70, 1) and y.shape == (70, 1)
    torch.testing.assert_close(out, model(regression_loader(n=70, shuffle=False).dataset.tensors[0]))


class TwoOutputs(nn.Module):
    def forward(self, x):
        return x.sum(1), x[:, :2]


def test_predict_concatenates_tuples_of_tensors():
    (sums, firsts), _ = predict(TwoOutputs(), regression_loader(n=70, shuffle=False), device="cpu")
    assert sums.shape == (70,) and firsts.shape == (70, 2)


def test_checkpoint_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    model, history = train_once(steps=20)
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path / "ckpt" / "m.pt", model, opt, history=history, epoch=3, note="hi")
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]
    fresh = make_model()
    state = load_checkpoint(path, fresh, torch.optim.Adam(fresh.parameters()))
    for p1, p2 in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p1, p2)
    assert state["meta"] == {"epoch": 3, "note": "hi"}
    assert isinstance(state["history"], History) and state["history"]["loss"] == history["loss"]
    with pytest.raises(RuntimeError):
        load_checkpoint(path, nn.Linear(3, 1))  # strict: other architecture refused
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_load_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "meta": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_to_device_nested():
    obj = {"a": [torch.zeros(1), (torch.ones(1), 3)], "b": "x"}
    moved = to_device(obj, "cpu")
    assert moved["b"] == "x" and isinstance(moved["a"][1], tuple) and moved["a"][1][1] == 3


def test_checkpoint_cache(tmp_path):
    path = tmp_path / "07_benchmark" / "m.pt"
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    config = {"steps": 10, "lr": 1e-3, "model": "m"}
    assert load_cached(path, nn.Linear(3, 2), config) is None
    save_cached(path, model, config, train_seconds=1.5)
    fresh = nn.Linear(3, 2)
    meta = load_cached(path, fresh, config)
    assert meta == {"config": config, "train_seconds": 1.5}
    assert torch.equal(fresh.weight, model.weight)
    other = nn.Linear(3, 2)
    w = other.weight.clone()
    assert load_cached(path, other, {**config, "steps": 11}) is None and torch.equal(other.weight, w)
    assert load_cached(path, nn.Linear(4, 2), config) is None, "another architecture under the same config"
    half = nn.Linear(3, 2, bias=False)  # its weight fits, the saved bias has no place
    w = half.weight.clone()
    assert load_cached(path, half, config) is None and torch.equal(half.weight, w), "a model half fitting is unchanged"
    path.write_bytes(b"not a checkpoint")
    assert load_cached(path, nn.Linear(3, 2), config) is None


def test_warm_start_copies_what_fits(tmp_path):
    from course_utils.models.retinanet import build_retinanet

    path = tmp_path / "03_retinanet" / "retinanet.pt"
    assert warm_start(path, build_retinanet(7)) is None, "no checkpoint"
    torch.manual_seed(0)
    lab03 = build_retinanet(4)  # 3 shapes + background
    save_cached(path, lab03, {"mode": "fast", "steps": 300})
    torch.manual_seed(1)
    lab07 = build_retinanet(7)  # 6 shapes + background: another classifier
    before = copy.deepcopy(lab07.state_dict())
    info = warm_start(path, lab07)
    assert info["config"] == {"mode": "fast", "steps": 300}
    assert info["fresh"] == ["head.classification_head.cls_logits.bias", "head.classification_head.cls_logits.weight"]
    after, source = lab07.state_dict(), lab03.state_dict()
    assert set(info["loaded"]) | set(info["fresh"]) == set(after)
    assert all(torch.equal(after[k], source[k]) for k in info["loaded"])
    assert all(torch.equal(after[k], before[k]) for k in info["fresh"])
    fpn = "backbone.fpn.layer_blocks.0.0.weight"
    assert not torch.equal(after[fpn], before[fpn]), "the two models were initialised differently"

    untouched = build_retinanet(7)
    state = copy.deepcopy(untouched.state_dict())
    assert warm_start(path, untouched, mode="full") is None, "a checkpoint of another mode is not used"
    assert warm_start(path, nn.Linear(3, 2)) is None, "nothing fits"
    path.write_bytes(b"not a checkpoint")
    assert warm_start(path, untouched) is None
    assert all(torch.equal(v, state[k]) for k, v in untouched.state_dict().items())


def test_checkpoint_path_follows_course_results(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "r" / "results.json"))
    assert checkpoint_path("07_benchmark", "yolo") == tmp_path / "r" / "07_benchmark" / "yolo.pt"
    monkeypatch.delenv("COURSE_RESULTS")
    monkeypatch.chdir(tmp_path)  # a student's copy of one lab: no course folder above
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert checkpoint_path("02_yolo", "yolo") == tmp_path / "home" / ".cache" / "cnns-part2" / "results" / "02_yolo" \
        / "yolo.pt", "in the user's cache, not in the assignment folder"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checkpoint_path("07_benchmark", "yolo") == tmp_path / "xdg" / "cnns-part2" / "results" / "07_benchmark" \
        / "yolo.pt"
    (tmp_path / "course" / "labs" / "07_benchmark").mkdir(parents=True)
    for marker in COURSE_MARKERS:
        (tmp_path / "course" / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "course" / marker).write_text("")
    monkeypatch.chdir(tmp_path / "course" / "labs" / "07_benchmark")
    assert checkpoint_path("07_benchmark", "yolo") == tmp_path / "course" / "results" / "07_benchmark" / "yolo.pt"
