"""Lab 07's graded test accepts the solution and rejects plausible wrong ways of measuring throughput.

Each wrong answer replaces the solution's function after the solution cells ran; the test cell must
then raise (nbgrader scores a test cell that raises anything 0).
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "07_benchmark"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-throughput", "published", "ex2-pareto"]
TEST_CELLS = ["test-throughput", "test-pareto"]


def test_solution_agrees_with_the_reference_on_a_real_model(solved):
    """On a real (tiny) network both measure the same order of magnitude (real clocks: loose)."""
    import torch

    from course_utils.benchmark import measure_throughput as reference_measure_throughput

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1))
    images = torch.rand(4, 3, 32, 32)
    stacking = _Stacking(model)
    ours = solved["measure_throughput"](stacking, list(images), 4, 2, 9)
    ref = reference_measure_throughput(stacking, list(images), 4, 2, 9)
    assert 0.1 < ours / ref < 10


class _Stacking:
    def __init__(self, model):
        self.model, self.training = model, True

    def eval(self):
        self.training = False
        self.model.eval()
        return self

    def train(self, mode=True):
        self.training = mode
        self.model.train(mode)
        return self

    def __call__(self, images):
        import torch

        return self.model(torch.stack(list(images)))


def src(*changes):
    return mutate(CELLS, "ex1-throughput", *changes)


def pareto(*changes):
    return mutate(CELLS, "ex2-pareto", *changes)


DOMINATES = "c <= cost and q >= quality and (c < cost or q > quality)"
KEEP = "row.get(cost_key) is not None and row.get(quality_key) is not None"
SWEEP = """
def pareto_front(rows, cost_key, quality_key, lower_cost_is_better=True):
    sign = 1 if lower_cost_is_better else -1
    points = [(sign * r[cost_key], -r[quality_key], i) for i, r in enumerate(rows)
              if r.get(cost_key) is not None and r.get(quality_key) is not None]
    points.sort()
    front, best, last = [], None, None
    for cost, neg_quality, i in points:
        if best is None or -neg_quality > best or (cost, neg_quality) == last:
            front.append(i)
            best, last = max(-neg_quality, best if best is not None else -neg_quality), (cost, neg_quality)
    return {ORDER}
"""


SYNC_BEFORE = ("                if device.type == \"cuda\":\n                    torch.cuda.synchronize(device)\n"
               "                start = time.perf_counter()", "                start = time.perf_counter()")
SYNC_AFTER = ("                model(batch)\n                if device.type == \"cuda\":\n"
              "                    torch.cuda.synchronize(device)\n                seconds",
              "                model(batch)\n                seconds")

WRONG = {
    "test-throughput": {
        "no warm-up": src(("            for _ in range(warmup):\n                model(batch)\n", "")),
        "warm-up calls timed too": src(
            ("            for _ in range(warmup):\n                model(batch)\n", ""),
            ("for _ in range(repeats):", "for _ in range(warmup + repeats):")),
        "train mode left on": src(("    model.eval()\n", "")),
        "gradients enabled": src(("with torch.no_grad():", "if True:")),
        "no CUDA synchronisation": src(SYNC_BEFORE, SYNC_AFTER),
        "synchronise only after the call": src(SYNC_BEFORE),
        "synchronise only before the call": src(SYNC_AFTER),
        "batches per second": src(("return batch_size / statistics.median(seconds)",
                                   "return 1 / statistics.median(seconds)")),
        "seconds per image": src(("return batch_size / statistics.median(seconds)",
                                  "return statistics.median(seconds) / batch_size")),
        "mean instead of median": src(("statistics.median(seconds)", "statistics.mean(seconds)")),
        "total images over total time": src(("batch_size / statistics.median(seconds)",
                                             "batch_size * repeats / sum(seconds)")),
        "batch loaded inside the timing": src(
            ("start = time.perf_counter()\n                model(batch)",
             "start = time.perf_counter()\n                model(images[:batch_size])")),
        "all images in one batch": src(("batch = images[:batch_size]", "batch = images")),
        "one clock around all repeats": src(
            ("            for _ in range(repeats):\n", "            start = time.perf_counter()\n"
                                                         "            for _ in range(repeats):\n"),
            ("                start = time.perf_counter()\n", ""),
            ("                seconds.append(time.perf_counter() - start)\n", ""),
            ("        model.train(was_training)\n", "        model.train(was_training)\n"
                                                   "    seconds = [(time.perf_counter() - start) / repeats]\n")),
        "mode not restored": src(("        model.train(was_training)", "        pass")),
        "always back to train mode": src(("        model.train(was_training)", "        model.train()")),
        "no error for too few images": src(("        raise ValueError", "        print")),
        # issue 17: requirements the visible test now checks (a faster-than-normal call tells min from median)
        "minimum instead of median": src(("statistics.median(seconds)", "min(seconds)")),
        "warm-up before model.eval()": src(("    model.eval()\n", ""),
                                           ("            for _ in range(warmup):\n                model(batch)\n",
                                            "            for _ in range(warmup):\n                model(batch)\n"
                                            "            model.eval()\n")),
        "warm-up outside torch.no_grad()": src(
            ("        with torch.no_grad():\n            for _ in range(warmup):\n                model(batch)\n",
             "        for _ in range(warmup):\n            model(batch)\n        with torch.no_grad():\n")),
        "from time import perf_counter (bound to the real clock before the test replaces it)":
            "from time import perf_counter\n" + src(("time.perf_counter()", "perf_counter()")),
        "ValueError also with exactly batch_size images": src(
            ("if len(images) < batch_size", "if len(images) <= batch_size")),
        "an assert instead of a ValueError": src(("raise ValueError(", "raise AssertionError(")),
        "a 0-d tensor instead of a float": src(("return batch_size / statistics.median(seconds)",
                                                 "return batch_size / torch.tensor(seconds).median()")),
    },
    "test-pareto": {
        "strict domination (better on both axes)": pareto((DOMINATES, "c < cost and q > quality")),
        "weak domination (equal rows dominate each other)": pareto((DOMINATES, "c <= cost and q >= quality and j != i"),
                                                                  ("for _, c, q in points", "for j, c, q in points")),
        "a tie in cost keeps the less accurate row": pareto((DOMINATES, "c <= cost and q > quality")),
        "a tie in AP keeps the costlier row": pareto((DOMINATES, "c < cost and q >= quality")),
        "lower_cost_is_better ignored": pareto(("sign = 1 if lower_cost_is_better else -1", "sign = 1")),
        "direction inverted": pareto(("sign = 1 if lower_cost_is_better else -1",
                                      "sign = -1 if lower_cost_is_better else 1")),
        "lower AP taken as better": pareto(("q >= quality and (c < cost or q > quality)",
                                            "q <= quality and (c < cost or q < quality)")),
        "the rows instead of their indices": pareto(("front.append(i)", "front.append(rows[i])")),
        "indices into the rows that have both values": pareto(
            ("for i, row in enumerate(rows)\n              if " + KEEP,
             "for i, row in enumerate([r for r in rows if " + KEEP.replace("row.", "r.") + "])\n"
             "              if True")),
        "None not skipped": pareto((KEEP, "True")),
        "None counted as 0": pareto(("sign * row[cost_key], row[quality_key])", "sign * (row.get(cost_key) or 0), "
                                     "row.get(quality_key) or 0)"), ("\n              if " + KEEP, "")),
        "a missing key raises KeyError": pareto(("row.get(cost_key) is not None", "row[cost_key] is not None")),
        "a sweep in cost order (indices not sorted)": SWEEP.replace("{ORDER}", "front"),
        "a sweep that crashes on no rows": SWEEP.replace("{ORDER}", "sorted(front)").replace(
            "    for cost, neg_quality, i in points:\n",
            "    best, last, front = -points[0][1], points[0][:2], [points[0][2]]\n"
            "    for cost, neg_quality, i in points[1:]:\n"),
        "a sweep that sorts the rows in place": SWEEP.replace("{ORDER}", "sorted(front)").replace(
            "    sign = 1",
            "    rows.sort(key=lambda r: (r.get(cost_key) is None, str(r.get(cost_key))))\n    sign = 1"),
        "a sweep that keeps only the first of equal rows": SWEEP.replace("{ORDER}", "sorted(front)").replace(
            " or (cost, neg_quality) == last", ""),
        "numpy indices": "import numpy as np\n" + pareto(("    return front",
                                                            "    return list(np.array(front, dtype=int))")),
        "a tuple instead of a list": pareto(("    return front", "    return tuple(front)")),
    },
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)
