"""The static policy on answer cells: every model solution passes, every known cheat is refused."""

import ast
import json
from pathlib import Path

import pytest

from course_utils.answer_policy import (
    PolicyError,
    blocked_answer,
    check_answer,
    defined_names,
    exercise_policies,
)

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "solutions").glob("*/*.ipynb"))


def cells_of(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def answer_cells(path: Path) -> list[tuple[str, str]]:
    return [(c["metadata"]["nbgrader"]["grade_id"], "".join(c["source"])) for c in cells_of(path)
            if c["cell_type"] == "code" and (c["metadata"].get("nbgrader") or {}).get("solution")]


@pytest.fixture(scope="module")
def lab01():
    return exercise_policies(cells_of(REPO / "solutions" / "01_localisation" / "01_localisation.ipynb"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_model_solution_passes_the_policy(source):
    policies = exercise_policies(cells_of(source))
    answers = answer_cells(source)
    assert answers and sorted(policies) == sorted(g for g, _ in answers)
    for grade_id, answer in answers:
        assert check_answer(answer, policies[grade_id]) == [], grade_id


def test_every_answer_cell_of_the_labs_is_definitions_only():
    # the fact the policy relies on: answers are def/class (and lab 04's one constant)
    for source in SOURCES:
        for grade_id, answer in answer_cells(source):
            kinds = {type(s).__name__ for s in ast.parse(answer).body}
            assert kinds <= {"FunctionDef", "ClassDef", "Assign"}, (source.stem, grade_id, kinds)


def test_the_references_each_exercise_is_compared_with_are_forbidden(lab01):
    assert "box_convert" in lab01["ex1-box-conversions"].forbidden_attributes
    assert {"box_iou", "paired_box_iou"} <= lab01["ex2-iou"].forbidden_attributes  # course_utils.boxes' pair kernel too
    assert {"reference_box_iou", "check_close", "viz", "sys", "importlib"} <= lab01["ex2-iou"].forbidden_names
    assert {"check_close", "torch", "ops", "reference_box_iou"} <= lab01["ex1-box-conversions"].protected_names


CHEATS = {
    "rebinds check_close": ("ex1-box-conversions", "check_close = lambda *a, **k: None\n", "check_close"),
    "redefines a check": ("ex1-box-conversions", "def check_shape(*a, **k):\n    pass\n", "check_shape"),
    "patches the grading module": ("ex1-box-conversions",
                                   "import course_utils.grading as g\ng._fail = print\n", "course_utils.grading"),
    "patches torch.isclose": ("ex1-box-conversions", "def f(x):\n    torch.isclose = lambda *a, **k: True\n",
                              "only be assigned on `self`"),
    "patches torch.allclose at the top": ("ex1-box-conversions", "torch.allclose = max\n",
                                          "only be assigned on `self`"),
    "patches numpy.testing": ("ex1-box-conversions", "import numpy as np\nnp.testing.assert_allclose = print\n",
                              ".testing"),
    "setattr": ("ex1-box-conversions", "def f():\n    setattr(torch, 'isclose', max)\n", "'setattr'"),
    "getattr on a dunder string": ("ex1-box-conversions", "def f(x):\n    return getattr(x, '__class__')\n",
                                   "'getattr'"),
    "calls ops.box_iou": ("ex2-iou", "def iou(a, b):\n    return ops.box_iou(a[None], b[None])[0, 0]\n", "box_iou"),
    "calls the course's box_iou": ("ex2-iou", "def pairwise_iou(a, b):\n    return reference_box_iou(a, b)\n",
                                   "reference_box_iou"),
    "imports course_utils.boxes": ("ex2-iou", "from course_utils.boxes import box_iou as pairwise_iou\n",
                                   "course_utils.boxes"),
    "torch.ops.torchvision": ("ex2-iou", "def f(b, s):\n    return torch.ops.torchvision.nms(b, s, 0.5)\n", ".ops"),
    "exec of the solutions": ("ex1-box-conversions",
                              "exec(open('../../../solutions/01_localisation/01_localisation.ipynb').read())\n",
                              "'exec'"),
    "writes the gradebook": ("ex1-box-conversions", "import sqlite3\ndef f():\n    sqlite3.connect('gradebook.db')\n",
                             "sqlite3"),
    "os._exit": ("ex1-box-conversions", "import os\nos._exit(0)\n", "'os'"),
    "fork bomb": ("ex1-box-conversions", "def f():\n    import os\n    while True:\n        os.fork()\n", "'os'"),
    "network": ("ex1-box-conversions", "import socket\n", "'socket'"),
    "a subprocess that outlives the kernel": ("ex1-box-conversions",
                                              "import subprocess\nsubprocess.Popen(['sleep', '600'])\n", "subprocess"),
    "IPython input transformers": ("ex1-box-conversions",
                                   "get_ipython().input_transformers_cleanup.append(lambda l: ['pass'])\n",
                                   "get_ipython"),
    "a shell line": ("ex1-box-conversions", "!cat ../../../solutions/*/*.ipynb\n", "not valid Python"),
    "a magic": ("ex1-box-conversions", "%load ../../../solutions/01_localisation/01_localisation.ipynb\n",
                "not valid Python"),
    "__torch_function__ on a Tensor subclass": (
        "ex1-box-conversions", "class T(torch.Tensor):\n    def __torch_function__(self, *a):\n        return True\n",
        "torch.nn classes"),
    "a dunder in a format string": ("ex1-box-conversions", "def f(x):\n    return '{0.__class__}'.format(x)\n",
                                    ".format"),
    "globals()": ("ex1-box-conversions", "def f():\n    globals()['check_close'] = print\n", "'globals'"),
    "global statement": ("ex1-box-conversions", "def f():\n    global check_close\n    check_close = print\n",
                         "global"),
    "del of a lab name": ("ex1-box-conversions", "del check_close\n", "Delete"),
    "top-level call": ("ex1-box-conversions", "print(open('/etc/passwd').read())\n", "Expr"),
    "private attribute": ("ex1-box-conversions", "def f(x):\n    return x._version\n", "_version"),
    "torch.load": ("ex1-box-conversions", "def f(p):\n    return torch.load(p, weights_only=False)\n", ".load"),
    "metaclass": ("ex3-model", "class M(nn.Module, metaclass=type):\n    pass\n", "metaclass"),
    # a method read through its class takes any object as `self`, and methods may set attributes on `self`
    "a method called with torch as self": (
        "ex2-iou", "class P(nn.Module):\n    def run(self):\n        self.allclose = max\n\n\n"
                   "def iou(a, b):\n    P.run(torch)\n", "read from the class"),
    "a class renamed, then its method": (
        "ex2-iou", "class P(nn.Module):\n    def run(self):\n        self.allclose = max\n\n\nQ = P\n\n\n"
                   "def iou(a, b):\n    f = Q.run\n    return f\n", "only be called"),
    "a staticmethod's first argument": (
        "ex2-iou", "class P(nn.Module):\n    @staticmethod\n    def run(self):\n        self.allclose = max\n",
        "only be assigned on `self`"),
    "a property setter's first argument": (
        "ex2-iou", "class P(nn.Module):\n    @property\n    def run(self):\n        self.allclose = max\n",
        "only be assigned on `self`"),
    "functools.update_wrapper on a module": (
        "ex2-iou", "import functools\n\n\ndef iou(a, b):\n    functools.update_wrapper(ops, iou, (), ('__dict__',))\n",
        "the module 'ops'"),
    "dataclass on torch.Tensor": ("ex2-iou", "import dataclasses\n\n\ndef iou(a, b):\n"
                                             "    dataclasses.dataclass(torch.Tensor)\n", "the class 'torch.Tensor'"),
    "a submodule as a value": ("ex2-iou", "def iou(a, b, m=torch.nn.functional):\n    return m\n", "the module"),
    "a global forward hook": ("ex3-model",
                              "def f():\n    torch.nn.modules.module.register_module_forward_hook(print)\n",
                              "register_module_forward_hook"),
    "a global default device": ("ex2-iou", "def iou(a, b):\n    torch.set_default_device('meta')\n",
                                "set_default_device"),
    "numpy error settings": ("ex2-iou", "def iou(a, b):\n    np.seterr(all='ignore')\n", "seterr"),
    "a Parameter subclass overriding tensor methods": (
        "ex2-iou", "class Fake(nn.Parameter):\n    def item(self):\n        return 0.14\n", "derive from nn.Module"),
    # ways to run code the policy never saw
    "torch.package imports code": ("ex2-iou", "def iou(a, b):\n    return torch.package.PackageImporter('x.zip')\n",
                                   "torch.package"),
    "torch.multiprocessing spawns": ("ex2-iou", "def iou(a, b):\n    torch.multiprocessing.spawn(print)\n",
                                     "torch.multiprocessing"),
    "typing evaluates annotation strings": ("ex2-iou", "import typing\n\n\ndef iou(a, b):\n    return 0\n",
                                            "'typing'"),
    "functools.singledispatch evaluates them too": ("ex2-iou", "import functools\n", "'functools'"),
    "an async generator's frame": ("ex2-iou", "def iou(a, b):\n    return a.ag_frame.f_back.f_builtins\n", "ag_frame"),
    "an async def": ("ex2-iou", "async def iou(a, b):\n    return 0\n", "AsyncFunctionDef"),
    "numpy writes a file": ("ex2-iou", "def iou(a, b):\n    np.savetxt('/proc/1/fd/3', a, header='{}')\n",
                            "savetxt"),
    # a model that hides what the tests read through nn.Module's API
    "overrides named_parameters": ("ex3-model", "class M(nn.Module):\n    def named_parameters(self, *a, **k):\n"
                                                "        return iter([])\n", "'named_parameters' is nn.Module"),
    "shadows parameters on self": ("ex3-model", "class M(nn.Module):\n    def __init__(self):\n"
                                                "        super().__init__()\n        self.parameters = list\n",
                                   "self.parameters"),
    "reads the hidden tests from IPython's history": ("ex2-iou", "def iou(a, b):\n    return In[-1]\n", "'In'"),
    "reads them as _ih": ("ex2-iou", "def iou(a, b):\n    return _ih[-1]\n", "'_ih'"),
    "the lab's downloader": ("ex2-iou", "def iou(a, b):\n    return fetch_dataset('oxford_pets', root='.')\n",
                             "'fetch_dataset'"),
    # rebinding a name of the notebook without an assignment statement
    "an import rebinds a check": ("ex2-iou", "from torch.nn import Identity as check_close\n", "an import may not"),
    "an import rebinds ops": ("ex2-iou", "import numpy as ops\n", "an import may not"),
    "a walrus in a lambda's default": ("ex2-iou", "f = lambda a, x=(len := print): 0\n", "`:=`"),
    "a walrus in a default": ("ex2-iou", "def iou(a, b, x=(ops := 1)):\n    return 0\n", "`:=`"),
    "changes a lab tensor in place": ("ex2-iou", "def iou(a, b):\n    IMAGE_SIZE[0] = 'x'\n",
                                      "may not be assigned into"),
}


@pytest.mark.parametrize("case", sorted(CHEATS))
def test_cheats_are_refused_with_a_reason(lab01, case):
    grade_id, source, reason = CHEATS[case]
    problems = check_answer(source, lab01[grade_id])
    assert problems, f"{case} was not refused"
    assert any(reason in p for p in problems), (case, problems)


def test_an_honest_answer_with_imports_and_helpers_passes(lab01):
    honest = ("import math\nfrom torch import nn\n\nSCALE = 2.0\n\n\n"
              "def _helper_free(x):\n    return x\n")
    assert any("_helper_free" in p for p in check_answer(honest, lab01["ex2-iou"]))  # private defs refused
    honest = ("import math\n\nEPS = 1e-9\n\n\n"
              "def iou(a, b, eps=EPS):\n    \"\"\"IoU.\"\"\"\n    boxes = torch.stack([a, b])\n"
              "    x1 = torch.max(boxes[:, 0])\n    return torch.clamp(x1 - x1, min=0) / max(eps, math.pi)\n")
    assert check_answer(honest, lab01["ex2-iou"]) == []


def test_blocked_answer_defines_the_same_names_raising_grading_error(lab01):
    source = "def iou(a, b):\n    return ops.box_iou(a, b)\n\ndef pairwise_iou(a, b):\n    return 1\n"
    names = defined_names(source)
    assert names == ["iou", "pairwise_iou"]
    code = blocked_answer(names, ["line 2: `.box_iou` is what this exercise's tests compare with"])
    namespace: dict = {}
    exec(code, namespace)  # the grader's own replacement, not student code
    from course_utils.grading import GradingError

    for name in names:
        with pytest.raises(GradingError, match="box_iou"):
            namespace[name](1, 2)


def test_defined_names_reads_invalid_code_by_its_def_lines():
    assert defined_names("%magic\ndef iou(a, b):\n  !ls\nclass Net:\n") == ["iou", "Net"]


def test_bad_arguments_are_named():
    with pytest.raises(PolicyError, match=r"cells\[0\]"):
        exercise_policies([None])
    with pytest.raises(PolicyError, match="identifiers"):
        blocked_answer(["not a name"], ["x"])
    policy = exercise_policies([])
    assert policy == {}


def test_a_refused_answer_that_rebinds_a_lab_name_takes_only_its_own_names_down():
    # a cheat in lab 08's exercise 2 rebinds check_close: the replacement must stub decode_heatmaps (and the
    # cheat's own helper), never check_close, which the other exercises' tests call
    from course_utils.rebuild import rebuild_notebook

    source = json.loads((REPO / "solutions" / "08_heatmaps" / "08_heatmaps.ipynb").read_text(encoding="utf-8"))
    release = json.loads((REPO / "labs" / "08_heatmaps" / "08_heatmaps.ipynb").read_text(encoding="utf-8"))
    submission = json.loads(json.dumps(release))
    cheat = ("import course_utils.grading as grading_module\n\ncheck_close = grading_module.check_close\n\n\n"
             "def shortcut(heatmaps):\n    return heatmaps\n\n\n"
             "def decode_heatmaps(heatmaps, quarter=True):\n    return shortcut(heatmaps)\n")
    for cell in submission["cells"]:
        if (cell["metadata"].get("nbgrader") or {}).get("grade_id") == "ex2-decode":
            cell["source"] = cheat
    nb, refused = rebuild_notebook(source, release, submission)
    assert any("check_close" in p for p in refused["ex2-decode"]), refused
    [replacement] = ["".join(c["source"]) for c in nb["cells"]
                     if (c["metadata"].get("nbgrader") or {}).get("grade_id") == "ex2-decode"]
    assert defined_names(replacement) == ["decode_heatmaps", "shortcut"]
    assert "def check_close" not in replacement and "check_close =" not in replacement
