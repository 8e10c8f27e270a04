"""A class that tries to cheat, graded in ONE batch through `make grade` (lab 01, the quickest).

Each cheater's notebook holds a correct answer to exercise 1 (2 points) unless the cheat is in
exercise 1 itself, and the cheat elsewhere: a cheat that worked would show as more points than the
honest part earns. Expected scores come from the source notebook's point values, not from the
grader. After the batch: solutions/, labs/, the inbox and every submission are byte-identical,
no sandbox process is left, and no feedback shows a hidden test line.
"""

import copy
import csv
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from course_utils import instructor
from course_utils.sandbox import sandbox_available

REPO = Path(__file__).resolve().parents[1]
LAB = "01_localisation"
SOURCE = REPO / "solutions" / LAB / f"{LAB}.ipynb"
RELEASE = REPO / "labs" / LAB / f"{LAB}.ipynb"
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*", re.S | re.M)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sandbox_available(), reason="grading needs bubblewrap (.ci/run installs it)")]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def points() -> dict[str, float]:
    """Points of each test cell, by the grade_id of the answer cell before it (from the source)."""
    out, answer = {}, None
    for cell in load(SOURCE)["cells"]:
        if meta(cell).get("solution") and cell["cell_type"] == "code":
            answer = meta(cell)["grade_id"]
        elif meta(cell).get("grade") and cell["cell_type"] == "code":
            out[answer] = out.get(answer, 0) + float(meta(cell)["points"])
    return out


POINTS = points()
SOLVED = {meta(c)["grade_id"]: "".join(c["source"]) for c in load(SOURCE)["cells"]
          if meta(c).get("solution") and c["cell_type"] == "code"}


def submission(answers: dict[str, str], base: Path = RELEASE) -> dict:
    """The release with some answer cells replaced (``"solved"`` means the model solution)."""
    nb = load(base)
    for cell in nb["cells"]:
        grade_id = meta(cell).get("grade_id")
        if grade_id in answers:
            cell["source"] = SOLVED[grade_id] if answers[grade_id] == "solved" else answers[grade_id]
    return nb


def with_ex1(**answers: str) -> dict:
    return submission({"ex1-box-conversions": "solved", **answers})


def added_cell(nb: dict, source: str, at: int = 1) -> dict:
    nb["cells"].insert(at, {"cell_type": "code", "id": "added-by-student", "metadata": {}, "source": source,
                            "outputs": [], "execution_count": None})
    return nb


def fake_graded_cell(nb: dict) -> dict:
    """An added test cell worth 100 points that cannot fail, with a grade_id of its own."""
    nb["cells"].insert(2, {"cell_type": "code", "id": "bonus", "source": "pass", "outputs": [],
                           "execution_count": None, "metadata": {"nbgrader": {
                               "grade": True, "solution": False, "locked": True, "grade_id": "bonus",
                               "points": 100, "schema_version": 3}}})
    return nb


def recomputed_checksums() -> dict:
    """The release with every test cell replaced by `pass` and nbgrader's checksum recomputed."""
    import nbformat
    from nbgrader.utils import compute_checksum

    nb = nbformat.from_dict(with_ex1())
    for cell in nb.cells:
        if meta(cell).get("grade") and not meta(cell).get("solution"):
            cell.source = "pass"
            cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    return json.loads(nbformat.writes(nb))


def course_paths(root: Path) -> dict[str, str]:
    return {"gradebook": str(root / "gradebook.db"), "solutions": str(root / "solutions" / LAB / f"{LAB}.ipynb"),
            "other": str(root / "submitted" / "h_solution" / LAB / f"{LAB}.ipynb")}


def students(root: Path) -> dict[str, tuple[dict | bytes, float]]:
    """``{student: (notebook or raw bytes, expected code score)}``."""
    ex1 = POINTS["ex1-box-conversions"]
    paths = course_paths(root)
    return {
        # honest students
        "h_solution": (load(SOURCE), sum(POINTS.values())),
        "h_blank": (load(RELEASE), 0.0),
        "h_ex1_only": (with_ex1(), ex1),
        "h_ex1_ex2": (with_ex1(**{"ex2-iou": "solved"}), ex1 + POINTS["ex2-iou"]),
        # cheats that would have given full marks
        "c_input_transformer": (added_cell(submission({}), "get_ipython().input_transformers_cleanup.append("
                                           "lambda lines: ['pass\\n'])"), 0.0),
        "c_transformer_in_answer": (with_ex1(**{"ex2-iou": "get_ipython().input_transformers_cleanup.append("
                                                "lambda lines: ['pass\\n'])"}), ex1),
        "c_redefined_checks": (with_ex1(**{"ex2-iou": "def check_close(*a, **k):\n    pass\n\n\n"
                                                      "def check_shape(*a, **k):\n    pass\n"}), ex1),
        "c_patched_fail": (with_ex1(**{"ex2-iou": "import course_utils.grading\n"
                                                  "course_utils.grading._fail = lambda *a, **k: None\n"}), ex1),
        "c_patched_isclose": (with_ex1(**{"ex2-iou": "def iou(a, b):\n    torch.isclose = lambda *a, **k: "
                                                     "torch.ones((), dtype=torch.bool)\n    return 0\n"}), ex1),
        "c_patched_allclose": (with_ex1(**{"ex3-model": "torch.allclose = lambda *a, **k: True\n"}), ex1),
        "c_patched_numpy": (with_ex1(**{"ex4-loss": "import numpy as np\nnp.isclose = lambda *a, **k: True\n"
                                                    "np.testing.assert_allclose = print\n"}), ex1),
        "c_calls_ops_box_iou": (with_ex1(**{"ex2-iou": "def iou(a, b):\n    return ops.box_iou(a[None], b[None])"
                                                       "[0, 0]\n\n\ndef pairwise_iou(a, b):\n"
                                                       "    return ops.box_iou(a, b)\n"}), ex1),
        "c_calls_course_boxes": (with_ex1(**{"ex2-iou": "from course_utils.boxes import box_iou as pairwise_iou\n"
                                                        "\n\ndef iou(a, b):\n    return pairwise_iou(a[None], "
                                                        "b[None])[0, 0]\n"}), ex1),
        "c_box_convert": (submission({"ex1-box-conversions": "def xyxy_to_xywh(b):\n    return ops.box_convert("
                                                             "b, 'xyxy', 'xywh')\n"}), 0.0),
        "c_exec_solutions": (submission({"ex1-box-conversions": "exec(open('../../../solutions/01_localisation/"
                                                                "01_localisation.ipynb').read())\n"}), 0.0),
        "c_gradebook": (with_ex1(**{"ex2-iou": f"import sqlite3\nsqlite3.connect({paths['gradebook']!r})"
                                               ".execute('update grade set manual_score = 100')\n"}), ex1),
        "c_overwrites_other": (with_ex1(**{"ex2-iou": f"def iou(a, b):\n    open({paths['other']!r}, 'w')"
                                                      ".write('{{}}')\n"}), ex1),
        "c_edits_solutions": (with_ex1(**{"ex2-iou": f"def iou(a, b):\n    open({paths['solutions']!r}, 'w')"
                                                     ".write('')\n"}), ex1),
        "c_recomputed_checksums": (recomputed_checksums(), ex1),
        "c_outlives_kernel": (with_ex1(**{"ex2-iou": "import subprocess\nsubprocess.Popen(['sleep', '900'])\n"}), ex1),
        "c_os_exit": (with_ex1(**{"ex2-iou": "import os\nos._exit(0)\n"}), ex1),
        "c_fork_bomb": (with_ex1(**{"ex2-iou": "def iou(a, b):\n    import os\n    while True:\n"
                                               "        os.fork()\n"}), ex1),
        "c_network": (with_ex1(**{"ex2-iou": "import urllib.request\n\n\ndef iou(a, b):\n"
                                             "    return urllib.request.urlopen('http://10.0.0.1/key')\n"}), ex1),
        "c_torch_function": (with_ex1(**{"ex2-iou": "class T(torch.Tensor):\n    def __torch_function__(self, "
                                                    "*a, **k):\n        return True\n"}), ex1),
        "c_fake_graded_cell": (fake_graded_cell(with_ex1()), ex1),
        "c_import_rebinds_check": (with_ex1(**{"ex2-iou": IMPORT_REBINDS_CHECKS}), ex1),
        "c_method_with_torch_as_self": (with_ex1(**{"ex2-iou": PATCH_THROUGH_A_METHOD}), ex1),
        # an answer that writes into its inputs, so that the reference the test computes next agrees with it
        "c_writes_into_inputs": (with_ex1(**{"ex2-iou": SOLVED["ex2-iou"].replace(
            "def pairwise_iou(", "def true_pairwise_iou(") + WRITES_INTO_INPUTS}), ex1),
        # cheats the policy lets through: the sandbox's limits stop them, the other exercises count
        "c_6gib": (submission({"ex1-box-conversions": "def xyxy_to_xywh(b):\n    x = torch.empty(6 * 2**30, "
                                                      "dtype=torch.uint8)\n    x.fill_(1)\n    return b\n",
                               "ex2-iou": "solved"}), POINTS["ex2-iou"]),
        # broken notebooks: not graded, with the reason
        "m_not_json": (b"<html>Colab sign-in page</html>", None),
        "m_cells_null": (b'{"cells": [null], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', None),
        "m_metadata_null": (json.dumps({**load(RELEASE), "metadata": None}).encode(), None),
        "m_deep_nesting": (b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
    }


# sets torch.isclose and np.isclose through a method called with the module as `self`
PATCH_THROUGH_A_METHOD = """import numpy as np


class Patch(nn.Module):
    def run(self):
        self.isclose = lambda a, b, **k: torch.ones_like(torch.as_tensor(a), dtype=torch.bool)


def iou(a, b):
    Patch.run(torch)
    Patch.run(np)
    return torch.tensor(0.0)


def pairwise_iou(a, b):
    Patch.run(torch)
    Patch.run(np)
    return torch.zeros(len(a), len(b), dtype=a.dtype)
"""

# nn.Identity accepts any arguments: every later check_close/check_shape would pass
IMPORT_REBINDS_CHECKS = """from torch.nn import Identity as check_close, Identity as check_shape


def iou(a, b):
    return torch.tensor(0.0)


def pairwise_iou(a, b):
    return torch.zeros(len(a), len(b), dtype=a.dtype)
"""

# unit boxes in place of both inputs: ops.box_iou on them, computed next by the test, is all ones
WRITES_INTO_INPUTS = """

def pairwise_iou(boxes1, boxes2):
    if len(boxes1) == 1 and len(boxes2) == 1:
        return true_pairwise_iou(boxes1, boxes2)
    boxes1[:] = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes1.dtype)
    boxes2[:] = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes2.dtype)
    return torch.ones(len(boxes1), len(boxes2), dtype=boxes1.dtype)
"""


def sha256_tree(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for folder in folders
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def hidden_lines() -> set[str]:
    nb = load(SOURCE)
    hidden = [ln.strip() for c in nb["cells"] for region in HIDDEN.findall("".join(c["source"]))
              for ln in region.splitlines()[1:-1]]
    visible = "\n".join(HIDDEN.sub("", "".join(c["source"])) for c in nb["cells"])
    return {ln for ln in hidden if len(ln) >= 20 and ln not in visible}


def html_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cheating")
    root, inbox = tmp / "course", tmp / "inbox"
    for tree in ("solutions", "labs"):
        shutil.copytree(REPO / tree / LAB, root / tree / LAB)
    cases = students(root)
    expected = {}
    for student, (nb, score) in cases.items():
        (inbox / student / LAB).mkdir(parents=True)
        data = nb if isinstance(nb, bytes) else json.dumps(nb).encode()
        (inbox / student / LAB / f"{LAB}.ipynb").write_bytes(data)
        expected[student] = score
    # a symlink to solutions/ handed in as a student's work: refused, never followed
    (inbox / "s_symlink").mkdir()
    (inbox / "s_symlink" / LAB).symlink_to(root / "solutions" / LAB)
    expected["s_symlink"] = None
    # an LMS zip: one good student, one with two files, one entry escaping with ../
    lms = tmp / "canvas.zip"
    with zipfile.ZipFile(lms, "w") as zf:
        zf.writestr(f"zgood_11_22_{LAB}.ipynb", SOURCE.read_bytes())
        zf.writestr(f"zdup_11_22_{LAB}.ipynb", SOURCE.read_bytes())
        zf.writestr(f"zdup_11_23_{LAB}.ipynb", RELEASE.read_bytes())
        zf.writestr(f"../../zevil_11_22_{LAB}.ipynb", SOURCE.read_bytes())
    expected.update(zgood=sum(POINTS.values()), zdup=None)
    before = sha256_tree(root / "solutions", root / "labs", inbox)
    before[str(lms)] = hashlib.sha256(lms.read_bytes()).hexdigest()
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    out = subprocess.run(["make", "-s", "grade", f"LAB={LAB}", f"COURSE_ROOT={root}", f"SUBMISSIONS={inbox}",
                          f"ZIP={lms}", "JOBS=2"], cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    ps = subprocess.run(["ps", "-eo", "uid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    with open(root / "grades" / f"{LAB}-status.csv", newline="") as f:
        status = {r["student_id"]: r for r in csv.DictReader(f)}
    return SimpleNamespace(root=root, inbox=inbox, lms=lms, out=out, expected=expected, before=before,
                           status=status, ps=ps, cases=cases)


def test_the_batch_ends_non_zero_because_some_were_not_graded(batch):
    assert batch.out.returncode != 0, batch.out.stdout[-3000:] + batch.out.stderr[-3000:]
    assert "Traceback" not in batch.out.stderr, batch.out.stderr[-3000:]
    assert len([s for s in batch.cases if s.startswith("c_")]) >= 12


def test_every_cheat_scores_only_its_honest_part_and_honest_students_their_true_score(batch):
    got = {s: float(r["code_score"]) for s, r in batch.status.items() if r["status"] == "graded"}
    want = {s: v for s, v in batch.expected.items() if v is not None}
    assert got == want, batch.out.stdout[-4000:]


def test_broken_notebooks_symlinks_and_bad_zip_entries_are_not_graded_with_a_reason(batch):
    not_graded = {s: r["reason"] for s, r in batch.status.items() if r["status"] == "not graded"}
    assert {s for s, v in batch.expected.items() if v is None} <= set(not_graded)
    assert "not a JSON notebook" in not_graded["m_not_json"]
    assert "cells[0]" in not_graded["m_cells_null"]
    assert "metadata" in not_graded["m_metadata_null"]
    assert "nested too deeply" in not_graded["m_deep_nesting"]
    assert "symlink" in not_graded["s_symlink"] and not (batch.root / "submitted" / "s_symlink").exists()
    assert "2 files" in not_graded["zdup"]
    assert any("outside the archive" in r for r in not_graded.values())
    assert not list(batch.root.parent.glob("**/zevil*")) and "zevil" not in {p.name for p in batch.root.rglob("*")}


def test_solutions_labs_inbox_and_submissions_are_byte_identical_afterwards(batch):
    after = sha256_tree(batch.root / "solutions", batch.root / "labs", batch.inbox)
    after[str(batch.lms)] = hashlib.sha256(batch.lms.read_bytes()).hexdigest()
    assert after == batch.before
    for student in batch.cases:
        if student in ("m_deep_nesting",) or student.startswith("s_"):
            continue
        submitted = batch.root / "submitted" / student / LAB / f"{LAB}.ipynb"
        assert submitted.read_bytes() == (batch.inbox / student / LAB / f"{LAB}.ipynb").read_bytes(), student


def test_the_gradebook_holds_only_what_the_grader_decided(batch):
    api = instructor.make_api(batch.root)
    gradebook = api.gradebook
    try:
        grades = [g for s in gradebook.assignment_submissions(LAB) for n in s.notebooks for g in n.grades]
        assert grades and all(g.manual_score is None for g in grades)
        assert not any(g.needs_manual_grade for g in grades if g.cell_type == "code")
    finally:
        gradebook.close()


def test_no_sandbox_process_survives(batch):
    # zombies (stat Z: dead, waiting for init to reap them) are not survivors
    assert not [ln for ln in batch.ps.splitlines() if int(ln.split()[0]) >= 200_000 and ln.split()[1][0] != "Z"], \
        batch.ps
    assert "sleep 900" not in batch.ps


def test_feedback_shows_the_failed_test_and_its_message_but_no_hidden_test(batch):
    secrets = hidden_lines()
    assert len(secrets) > 10
    for student in ("h_solution", "h_ex1_only", "c_calls_ops_box_iou"):
        text = html_text(batch.root / "feedback" / student / LAB / f"{LAB}.html")
        assert "check_close(iou(a, b), 25 / 175" in text  # a visible test line: the scan can see code
        assert [ln for ln in secrets if ln in text] == [], student
    text = html_text(batch.root / "feedback" / "c_calls_ops_box_iou" / LAB / f"{LAB}.html")
    assert "GradingError" in text and "write it yourself" in text


def test_jobs_1_gives_the_same_scores_as_jobs_2(batch, tmp_path):
    root = tmp_path / "course"
    for tree in ("solutions", "labs"):
        shutil.copytree(batch.root / tree / LAB, root / tree / LAB)
    inbox = tmp_path / "inbox"
    chosen = ["h_solution", "h_ex1_only", "c_patched_fail", "c_6gib"]
    for student in chosen:
        shutil.copytree(batch.inbox / student, inbox / student)
    rows = instructor.grade(root, LAB, inbox, jobs=1)
    assert {r["student"]: float(r["code_score"]) for r in rows} == \
        {s: float(batch.status[s]["code_score"]) for s in chosen}


def test_submission_copies_stay_distinct():
    cases = students(Path("/nonexistent"))
    assert len({json.dumps(nb) if isinstance(nb, dict) else nb for nb, _ in cases.values()}) == len(cases)
    assert copy.deepcopy(cases["h_blank"][0]) == load(RELEASE)


def test_the_sanitize_steps_are_nbgraders_own_plus_the_foreign_cell_filter():
    from nbgrader.converters import Autograde

    default = Autograde.class_traits()["sanitize_preprocessors"].default()
    steps = instructor.sandboxed_autograde_config({}, {"ex1"}).Autograde.sanitize_preprocessors
    assert [s for s in steps if s.__name__ != "DropForeignGradeCells"] == list(default)
    assert [s.__name__ for s in steps].index("DropForeignGradeCells") < [s.__name__ for s in steps].index(
        "OverwriteCells")
