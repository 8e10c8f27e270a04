"""fit / evaluate / predict / checkpoints on tiny models."""

import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.config import SMOKE_STEPS
from course_utils.train import (
    History,
    evaluate,
    fit,
    load_checkpoint,
    predict,
    save_checkpoint,
    to_device,
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
