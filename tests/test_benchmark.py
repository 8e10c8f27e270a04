"""course_utils.benchmark: FLOPs against hand counts, the reference throughput measurement on the probe,
COCO AP by size against pycocotools with rescaled area ranges, tables, the checkpoint cache."""

import copy

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from course_utils.benchmark import (
    DetectorWrapper,
    ThroughputProbe,
    coco_ap_row,
    count_flops,
    count_parameters,
    load_cached,
    markdown_table,
    measure_throughput,
    rescale_coco,
    save_cached,
    size_counts,
    warm_start,
)
from course_utils.data import ShapesDataset, detections_to_coco
from course_utils.tensors import plain


class Stack(nn.Module):
    """A 'detector' taking a list of images, like torchvision's."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net(torch.stack(list(images)))


def test_count_flops_matches_hand_count():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 16 * 16, 5))
    model = Stack(net).train()
    conv = 2 * 8 * 3 * 9 * 16 * 16  # 2 FLOPs per multiply-add, per output element
    linear = 2 * 8 * 16 * 16 * 5
    assert count_flops(model, [torch.rand(3, 16, 16)] * 3) == conv + linear  # per image; BN and ReLU not counted
    assert model.training, "count_flops restores the mode"
    assert count_parameters(model) == sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="empty"):
        count_flops(model, [])


def test_count_flops_sees_transformer_layers():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, images):
            return self.layer(torch.stack(list(images)))

    flops = count_flops(Tokens(), [torch.rand(10, 16)])
    # in-proj 3 * 10 * 16 * 16, scores 10 * 10 * 16, weighted sum 10 * 10 * 16, out-proj 10 * 16 * 16,
    # FFN 2 * 10 * 16 * 32
    macs = 3 * 10 * 16 * 16 + 2 * 10 * 10 * 16 + 10 * 16 * 16 + 2 * 10 * 16 * 32
    assert flops == 2 * macs  # attention included (PyTorch's fused CPU kernel has no formula of its own)


@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("batch_size, warmup, repeats, spike", [(4, 3, 5, None), (1, 2, 1, None), (8, 2, 5, 4)])
def test_reference_throughput_on_the_probe(cuda, batch_size, warmup, repeats, spike):
    with ThroughputProbe(16, cuda=cuda, cold_calls=warmup, spike_call=spike) as probe:
        probe.model.train()
        rate = measure_throughput(probe.model, probe.images, batch_size, warmup, repeats, probe.device)
    assert rate == pytest.approx(probe.expected(batch_size), rel=1e-9)
    assert len(probe.calls) == warmup + repeats and probe.model.training
    assert all(c["batch_size"] == batch_size and not c["training"] and not c["grad_enabled"] for c in probe.calls)
    assert probe.synchronize_calls == (2 * repeats if cuda else 0)


def test_probe_restores_the_clocks_and_punishes_naive_timing():
    import time

    real = time.perf_counter
    with ThroughputProbe(8, cuda=True) as probe:
        start = time.perf_counter()
        batch = probe.images[:4]  # reading the images costs load_cost
        loaded = time.perf_counter() - start
        probe.model(batch)  # asynchronous: returns at once
        naive = time.perf_counter() - start
        torch.cuda.synchronize()
        waited = time.perf_counter() - start
    assert time.perf_counter is real
    assert loaded == pytest.approx(probe.load_cost) and naive == pytest.approx(probe.load_cost + probe.launch_cost)
    assert waited == pytest.approx(probe.load_cost + 5.0 + 0.2 + 4 * 0.05)  # a cold call


def test_measure_throughput_rejects_bad_arguments():
    with ThroughputProbe(3) as probe, pytest.raises(ValueError, match="batch_size=4"):
        measure_throughput(probe.model, probe.images, 4)
    with ThroughputProbe(3) as probe, pytest.raises(ValueError, match="repeats"):
        measure_throughput(probe.model, probe.images, 2, repeats=0)


@pytest.fixture(scope="module")
def shapes_eval():
    ds = ShapesDataset(12, 128, preset="hard", seed=5)
    gt = ds.to_coco()
    g = torch.Generator().manual_seed(0)
    dets = []
    for i in range(len(ds)):  # noisy copies of the ground truth, some wrong labels, some false positives
        t = ds[i][1]
        boxes = plain(t["boxes"]) + torch.randn(len(t["labels"]), 4, generator=g) * 1.5
        labels = torch.where(torch.rand(len(t["labels"]), generator=g) < 0.2, 1, t["labels"])
        extra = torch.rand(3, 2, generator=g) * 100
        boxes = torch.cat([boxes, torch.cat([extra, extra + 10], 1)])
        labels = torch.cat([labels, torch.tensor([1, 2, 3])])
        dets.append({"boxes": boxes, "scores": torch.rand(len(labels), generator=g), "labels": labels})
    return gt, detections_to_coco(list(range(len(ds))), dets)


def _pycocotools(gt: dict, dt: list, area_rng: list) -> np.ndarray:
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    coco_gt.createIndex()
    e = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dt)), "bbox")
    e.params.areaRng = area_rng
    e.evaluate()
    e.accumulate()
    e.summarize()
    return e.stats


def test_ap_by_size_equals_pycocotools_with_rescaled_area_ranges(shapes_eval):
    """Scaling every coordinate by 5 = keeping the data and dividing COCO's area bounds by 25."""
    gt, dt = shapes_eval
    row = coco_ap_row(gt, dt, image_size=128)
    k2 = 5.0**2
    stats = _pycocotools(gt, dt, [[0, 1e10], [0, 32**2 / k2], [32**2 / k2, 96**2 / k2], [96**2 / k2, 1e10]])
    want = dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), stats[:6]))
    for k in want:
        assert row[k] == pytest.approx(want[k], abs=1e-12), k
    assert 0 < row["AP"] < 1 and row["APs"] != row["APm"]
    plain = _pycocotools(gt, dt, [[0, 1e10], [0, 32**2], [32**2, 96**2], [96**2, 1e10]])
    assert row["AP"] == pytest.approx(plain[0], abs=1e-12), "rescaling must not change AP"
    counts = size_counts(gt, 128)
    assert sum(counts.values()) == len(gt["annotations"]) and min(counts.values()) > 0


def test_rescale_coco_leaves_inputs_alone(shapes_eval):
    gt, dt = shapes_eval
    before = copy.deepcopy((gt, dt))
    gt2, dt2 = rescale_coco(gt, dt, 2.0)
    assert (gt, dt) == before
    assert gt2["annotations"][0]["bbox"] == [2 * v for v in gt["annotations"][0]["bbox"]]
    assert gt2["annotations"][0]["area"] == 4 * gt["annotations"][0]["area"]
    with pytest.raises(ValueError, match="factor"):
        rescale_coco(gt, dt, 0)


def test_markdown_table():
    text = markdown_table([{"name": "a", "ap": 0.51234, "n": 3}, {"name": "b", "ap": -1.0}],
                          {"name": "s", "ap": ".2f", "n": lambda n: f"{n} x"})
    assert text.splitlines() == ["| name | ap | n |", "|---|---|---|", "| a | 0.51 | 3 x |", "| b | – | – |"]


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
    from course_utils.benchmark import checkpoint_path

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
    (tmp_path / "course" / "nbgrader_config.py").write_text("")
    monkeypatch.chdir(tmp_path / "course" / "labs" / "07_benchmark")
    assert checkpoint_path("07_benchmark", "yolo") == tmp_path / "course" / "results" / "07_benchmark" / "yolo.pt"


def test_detector_wrapper():
    net = nn.Conv2d(3, 2, 1)
    wrapper = DetectorWrapper(net, lambda out, targets: {"l": out.mean() * len(targets)},
                              lambda out: [{"boxes": torch.zeros(0, 4), "scores": o.mean(), "labels": 1} for o in out])
    images = [torch.rand(3, 8, 8), torch.rand(3, 8, 8)]
    losses = wrapper(images, [{}, {}])
    assert set(losses) == {"l"} and losses["l"].requires_grad
    with pytest.raises(ValueError, match="targets"):
        wrapper(images)
    assert len(wrapper.eval()(torch.stack(images))) == 2
    assert list(wrapper.state_dict()) == ["model.weight", "model.bias"]
