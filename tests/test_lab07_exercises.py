"""Lab 07's graded test accepts the solution and rejects plausible wrong ways of measuring throughput.

Each wrong answer replaces the solution's function after the solution cells ran; the test cell must
then raise (nbgrader scores a test cell that raises anything 0).
"""


from tests.notebook_cells import exercise_tests, load_cells, mutate

LAB = "07_benchmark"
CELLS = load_cells(LAB)
SOLUTIONS = ["setup", "ex1-throughput"]
TEST_CELLS = ["test-throughput"]


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
}

solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)
