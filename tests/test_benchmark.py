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
    ThroughputProbe,
    coco_ap_row,
    count_flops,
    count_parameters,
    markdown_table,
    measure_throughput,
    rescale_coco,
    size_counts,
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


def test_old_names_still_import_from_benchmark():
    """Labs import the cache and the wrapper from here; the code lives once, in train and models."""
    from course_utils import benchmark, models, train

    for name in ("checkpoint_path", "load_cached", "save_cached", "warm_start", "count_parameters"):
        assert getattr(benchmark, name) is getattr(train, name)
    assert benchmark.DetectorWrapper is models.DetectorWrapper
