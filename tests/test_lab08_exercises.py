"""Lab 08's graded tests accept the solution and reject plausible wrong answers (visible + hidden).

Each wrong answer replaces the solution's function after the solution cells ran; the exercise's
test cell must then raise (nbgrader scores a test cell that raises anything 0).
"""

import pytest

from tests.notebook_cells import assert_rejected, load_cells, mutate, run_cells, wrong_answer_cases

LAB = "08_heatmaps"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-heatmap", "ex2-decode", "ex3-focal", "ex4-peaks", "ex5-corner-pool"]
TEST_CELLS = ["test-heatmap", "test-decode", "test-focal", "test-peaks", "test-corner-pool"]


@pytest.fixture(scope="module")
def solved():
    return run_cells(CELLS, SOLUTIONS)


@pytest.mark.parametrize("test_cell", TEST_CELLS)
def test_solution_passes(solved, test_cell):
    run_cells(CELLS, [test_cell], dict(solved))


def heat(*changes):
    return mutate(CELLS, "ex1-heatmap", *changes)


def decode(*changes):
    return mutate(CELLS, "ex2-decode", *changes)


def focal(*changes):
    return mutate(CELLS, "ex3-focal", *changes)


def peaks(*changes):
    return mutate(CELLS, "ex4-peaks", *changes)


def corners(*changes):
    return mutate(CELLS, "ex5-corner-pool", *changes)


GAUSS = "gaussian = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))"
POOL = "F.max_pool2d(heatmap, kernel_size=3, stride=1, padding=1) == heatmap"

WRONG = {
    "test-heatmap": {
        "off-by-one centre: pixel (i, j) centred at (j, i)": heat(
            ("+ 0.5  # (H, 1) pixel centres", "  # (H, 1)"), ("+ 0.5  # (1, W)", "  # (1, W)")),
        "sum of the Gaussians instead of their max": heat(
            ("heatmap = torch.maximum(heatmap, gaussian)", "heatmap = heatmap + gaussian")),
        "wrong sigma: exp(-d^2 / sigma^2)": heat((GAUSS, GAUSS.replace("(2 * sigma**2)", "(sigma**2)"))),
        "centre rounded to the pixel": heat(
            (GAUSS, "gaussian = torch.exp(-((xs - (int(x) + 0.5)) ** 2 + (ys - (int(y) + 0.5)) ** 2)"
                    " / (2 * sigma**2))")),
        "unlabelled points (v = 0) drawn too": heat(("if v > 0:", "if True:")),
        "hidden points (v = 1) left out": heat(("if v > 0:", "if v == 2:")),
        "no border handling: points clipped into the map": heat(
            ("for x, y, v in points.tolist():", "for x, y, v in points.clamp(min=0).tolist():")),
        "x and y swapped in the Gaussian": heat(
            (GAUSS, GAUSS.replace("(xs - x)", "(xs - y)").replace("(ys - y)", "(ys - x)"))),
        "a normalised Gaussian (divided by 2 pi sigma^2): peak below 1": heat(
            (GAUSS, GAUSS.replace("gaussian = torch.exp(", "gaussian = 1 / (2 * np.pi * sigma**2) * torch.exp("))),
        "float64 map": heat(
            ("heatmap = torch.zeros(height, width)", "heatmap = torch.zeros(height, width, dtype=torch.float64)"),
            ("dtype=torch.float32)[:, None]", "dtype=torch.float64)[:, None]"),
            ("dtype=torch.float32)[None, :]", "dtype=torch.float64)[None, :]")),
        "vectorised over the points, but crashes on no point (amax of an empty stack)": heat(
            ("    heatmap = torch.zeros(height, width)\n", "    labelled = points[points[:, 2] > 0]\n"
             "    heatmap = torch.exp(-((xs[None] - labelled[:, 0, None, None]) ** 2"
             " + (ys[None] - labelled[:, 1, None, None]) ** 2) / (2 * sigma**2)).amax(0)\n    return heatmap\n")),
    },
    "test-decode": {
        "off by half a pixel: no + 0.5": decode(
            ("x, y = xs.float() + 0.5, ys.float() + 0.5", "x, y = xs.float(), ys.float()")),
        "half a pixel instead of a quarter": decode(
            ("0.25 * torch.sign(at(ys, xs + 1)", "0.5 * torch.sign(at(ys, xs + 1)")),
        "shift away from the higher neighbour": decode(
            ("at(ys, xs + 1) - at(ys, xs - 1)", "at(ys, xs - 1) - at(ys, xs + 1)")),
        "rows and columns swapped": decode(("ys, xs = index // w, index % w", "xs, ys = index % h, index // h")),
        "shifted on the border too": decode(
            ("inside_x = (xs > 0) & (xs < w - 1)", "inside_x = xs >= 0"),
            ("inside_y = (ys > 0) & (ys < h - 1)", "inside_y = ys >= 0")),
        "quarter offset ignored": decode(("    if quarter:\n", "    if False:\n")),
        "border test of x against the height (square maps only)": decode(
            ("inside_x = (xs > 0) & (xs < w - 1)", "inside_x = (xs > 0) & (xs < h - 1)")),
        "shift by a quarter of the difference instead of its sign": decode(
            ("0.25 * torch.sign(at(ys, xs + 1) - at(ys, xs - 1))", "0.25 * (at(ys, xs + 1) - at(ys, xs - 1))")),
        "score of the wrong cell: the mean of the map": decode(("score.float()", "flat.mean(dim=2).float()")),
    },
    "test-focal": {
        "missing (1 - Y)^beta weight on the negatives": focal(
            ("neg = (1 - target) ** beta * p**alpha", "neg = p**alpha")),
        "normalised by all cells instead of the positives": focal(
            ("-total / positive.sum().clamp(min=1)", "-total / target.numel()")),
        "positives where Y > 0.9 instead of Y == 1": focal(("positive = target == 1", "positive = target > 0.9")),
        "no p^alpha on the negatives": focal(("* p**alpha * F.logsigmoid(-logits)", "* F.logsigmoid(-logits)")),
        "alpha hard-coded to 2": focal(("(1 - p) ** alpha", "(1 - p) ** 2"), ("p**alpha", "p**2")),
        "log(1 - sigmoid) instead of logsigmoid: infinite when confident": focal(
            ("F.logsigmoid(-logits)", "torch.log(1 - p)")),
        "mean instead of sum over the positives' and negatives' cells": focal(
            ("pos[positive].sum() + neg[~positive].sum()", "pos[positive].mean() + neg[~positive].mean()")),
        "no clamp: N = 0 when there is no positive (infinite or NaN loss)": focal(
            ("-total / positive.sum().clamp(min=1)", "-total / positive.sum()")),
        "sign flipped: a negative loss": focal(("return -total / positive.sum().clamp(min=1)",
                                                "return total / positive.sum().clamp(min=1)")),
        "weights detached: (1 - p)^alpha and p^alpha carry no gradient": focal(
            ("p = torch.sigmoid(logits)", "p = torch.sigmoid(logits).detach()")),
        "normalised per image instead of over the batch": focal(
            ("-total / positive.sum().clamp(min=1)", "-total / positive.sum().clamp(min=1) * logits.shape[0]")),
    },
    "test-peaks": {
        "max-pool without the equality test": peaks((POOL, "F.max_pool2d(heatmap, kernel_size=3, stride=1, "
                                                           "padding=1) > 0")),
        "zero padding: border peaks of negative maps lost": peaks(
            (POOL, "F.max_pool2d(F.pad(heatmap, (1, 1, 1, 1)), kernel_size=3, stride=1) == heatmap")),
        "5x5 window": peaks(("kernel_size=3, stride=1, padding=1", "kernel_size=5, stride=1, padding=2")),
        "strict maximum (> every neighbour): plateaus lost": peaks(
            (POOL, "torch.stack([F.pad(heatmap, (1, 1, 1, 1), value=-float('inf')).unfold(2, 3, 1).unfold(3, 3, 1)"
                   ".flatten(-2)[..., k] for k in (0, 1, 2, 3, 5, 6, 7, 8)]).lt(heatmap).all(0)")),
        "no padding: the border is lost (wrong shape)": peaks(
            ("kernel_size=3, stride=1, padding=1", "kernel_size=3, stride=1, padding=0")),
        "average instead of max pooling": peaks(
            (POOL, "F.avg_pool2d(heatmap, kernel_size=3, stride=1, padding=1) <= heatmap")),
        "peaks over all classes at once": peaks(
            (POOL, "(F.max_pool2d(heatmap.amax(1, keepdim=True), kernel_size=3, stride=1, padding=1) "
                   "== heatmap)")),
    },
}
TOP = "top = f_top.flip(2).cummax(dim=2).values.flip(2)"
LEFT = "left = f_left.flip(3).cummax(dim=3).values.flip(3)"
WRONG["test-corner-pool"] = {
    "pools up instead of down (the bottom-right corner's direction)": corners(
        (TOP, "top = f_top.cummax(dim=2).values")),
    "pools left instead of right": corners((LEFT, "left = f_left.cummax(dim=3).values")),
    "rows and columns swapped": corners(
        (TOP, "top = f_top.flip(3).cummax(dim=3).values.flip(3)"),
        (LEFT, "left = f_left.flip(2).cummax(dim=2).values.flip(2)")),
    "max of the two instead of their sum": corners(("return top + left", "return torch.maximum(top, left)")),
    "the whole column and row, not only below and to the right": corners(
        (TOP, "top = f_top.amax(dim=2, keepdim=True).expand_as(f_top)"),
        (LEFT, "left = f_left.amax(dim=3, keepdim=True).expand_as(f_left)")),
    "the cell itself excluded (max over k > i), -1e9 padded": corners(
        (TOP, "top = F.pad(f_top[:, :, 1:], (0, 0, 0, 1), value=-1e9).flip(2).cummax(dim=2).values.flip(2)")),
    "running max from zero (a clamp at 0)": corners(
        ("return top + left", "return top.clamp(min=0) + left.clamp(min=0)")),
    "a Python loop over the rows": corners(
        (TOP, "top = torch.stack([f_top[:, :, i:].amax(dim=2) for i in range(f_top.shape[2])], dim=2)")),
}
CASES, IDS = wrong_answer_cases(WRONG)


@pytest.mark.parametrize("test_cell, name, code", CASES, ids=IDS)
def test_wrong_answer_rejected(solved, test_cell, name, code):
    assert_rejected(CELLS, solved, test_cell, code)
