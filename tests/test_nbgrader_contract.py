"""The nbgrader contract, for the fixture lab and every real lab in solutions/ (smoke mode).

Everything goes through nbgrader's Python API (``NbGraderAPI``) on a temporary course root with
its own sqlite gradebook, via ``course_utils.instructor``; the batch is graded the way `make grade`
grades (rebuilt notebooks executed in the bubblewrap sandbox, the gradebook written by nbgrader
from the outputs that came back). A batch of fake students is autograded
once per lab (solution, untouched release, edited and deleted test cells; for the fixture lab also
an endless loop) and the tests read the gradebook and the autograded notebooks.
"""

import copy
import csv
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from traitlets.config import Config

from course_utils import instructor
from course_utils.grading import check_submission

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "course"

LABS = [pytest.param((FIXTURE, lab), id=lab) for lab in instructor.find_labs(FIXTURE)] + \
       [pytest.param((REPO, lab), id=lab) for lab in instructor.find_labs(REPO)]

# nbgrader's own SQLAlchemy/nbformat warnings while it re-adds deleted cells; nothing to act on here
pytestmark = [pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning"),
              pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")]

# The fixture's batch holds an endless loop, which costs one full cell timeout. The fixture's cells
# take well under a second, so its batch runs with a shorter timeout than nbgrader_config.py's to
# keep the suite quick. Real labs are graded with the production settings, without the looper:
# stopping a loop is nbgrader's timeout at work, the same for every lab, and it would cost each
# lab a full production timeout (60 s) of a suite that must stay under its time budget.
FIXTURE_TIMEOUT = Config({"Execute": {"timeout": 20}})

SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?### END SOLUTION[^\n]*", re.S | re.M)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*", re.S | re.M)
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


# --- notebook helpers ---------------------------------------------------------------------------

def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell) -> bool:
    """An autograder test cell: graded code that is not a student's answer."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def is_answer_cell(cell) -> bool:
    return cell.cell_type == "code" and nbgrader_meta(cell).get("solution", False)


def read_nb(path: Path):
    return nbformat.read(path, as_version=4)


def secret_lines(source_nb) -> set[str]:
    """Lines of solution and hidden-test regions that appear nowhere else in the source notebook."""
    regions, rest = [], []
    for cell in source_nb.cells:
        found = SOLUTION.findall(cell.source) + HIDDEN.findall(cell.source)
        regions += found
        rest.append(HIDDEN.sub("", SOLUTION.sub("", cell.source)))
    outside = "\n".join(rest)
    lines = {ln.strip() for region in regions for ln in region.splitlines()[1:-1]}
    return {ln for ln in lines if len(ln) >= 12 and ln not in outside}


def replace_solution_with_loop(source: str) -> str:
    """The first solution region replaced by ``while True: pass`` at the same indentation."""
    def loop(match):
        indent = re.match(r"[ \t]*", match.group(0)).group(0)
        return f"{indent}while True:\n{indent}    pass"
    return SOLUTION.sub(loop, source, count=1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a course per lab, and a batch of students graded once ----------------------------------------

@pytest.fixture(scope="module", params=LABS)
def lab(request):
    """One lab's committed files: the solutions source and the release in labs/."""
    src_root, name = request.param
    return SimpleNamespace(src_root=src_root, lab=name, source=src_root / "solutions" / name / f"{name}.ipynb",
                           release=src_root / "labs" / name / f"{name}.ipynb")


@pytest.fixture(scope="module")
def course(lab, tmp_path_factory):
    """A temporary course root holding the lab's solutions/ and committed labs/, registered in its gradebook."""
    root = tmp_path_factory.mktemp(f"course-{lab.lab}")
    shutil.copytree(lab.src_root / "solutions" / lab.lab, root / "solutions" / lab.lab)
    shutil.copytree(lab.src_root / "labs" / lab.lab, root / "labs" / lab.lab)
    fresh = instructor.generate_release(root, lab.lab, root / "fresh")
    return SimpleNamespace(root=root, lab=lab.lab, src_root=lab.src_root, fresh=fresh,
                           source=root / "solutions" / lab.lab / f"{lab.lab}.ipynb",
                           release=root / "labs" / lab.lab / f"{lab.lab}.ipynb")


def submit(course, student: str, nb) -> Path:
    path = course.root / "submitted" / student / course.lab / f"{course.lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def tampered_tests(course):
    """The untouched release with every test cell's asserts replaced by ``pass``."""
    nb = read_nb(course.release)
    for cell in nb.cells:
        if is_test_cell(cell):
            cell.source = "pass"
    return nb


def deleted_tests(course):
    """The solution notebook with every test cell deleted."""
    nb = read_nb(course.source)
    nb.cells = [c for c in nb.cells if not is_test_cell(c)]
    return nb


def tampered_and_deleted_tests(course):
    """The untouched release with test cells alternately replaced by ``pass`` and deleted (real labs:
    one submission for both cases saves a notebook run per lab)."""
    nb = read_nb(course.release)
    kept, k = [], 0
    for cell in nb.cells:
        if is_test_cell(cell):
            k += 1
            if k % 2 == 0:
                continue
            cell.source = "pass"
        kept.append(cell)
    nb.cells = kept
    return nb


def endless_loop(course):
    """The solution notebook whose first answer loops forever."""
    nb = read_nb(course.source)
    first = next(c for c in nb.cells if is_answer_cell(c) and SOLUTION.search(c.source))
    first.source = replace_solution_with_loop(first.source)
    return nb


@pytest.fixture(scope="module")
def batch(course):
    """Students autograded in one batch. The fixture lab's batch has one student per case, an endless
    loop graded first; a real lab's batch has the solution, the untouched release, and one release
    whose test cells were alternately edited and deleted."""
    if course.src_root == FIXTURE:
        cases = {"s1_looper": endless_loop(course), "s2_tamperer": tampered_tests(course),
                 "s3_deleter": deleted_tests(course)}
    else:
        cases = {"s23_tamper_delete": tampered_and_deleted_tests(course)}
    students = {**cases, "s4_solution": read_nb(course.source), "s5_untouched": read_nb(course.release)}
    paths = {name: submit(course, name, nb) for name, nb in students.items()}
    hashes = {name: sha256(p) for name, p in paths.items()}
    # the production path of `make grade`: rebuilt notebooks, run in the sandbox, gradebook written here
    api, results = instructor.autograde_sandboxed(course.root, course.lab, sorted(students),
                                                  FIXTURE_TIMEOUT if course.src_root == FIXTURE else None, jobs=2)
    return SimpleNamespace(api=api, results=results, paths=paths, hashes=hashes,
                           rows={r["student"]: r for r in instructor.scores(api, course.lab, sorted(students))})


def autograded(course, student: str):
    return read_nb(course.root / "autograded" / student / course.lab / f"{course.lab}.ipynb")


def error_names(nb) -> list[str]:
    return [o.ename for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def cell_score(api, course, student: str, grade_id: str) -> float:
    gb = api.gradebook
    try:
        return gb.find_grade(grade_id, course.lab, course.lab, student).score
    finally:
        gb.close()


# --- a. the release is regenerated deterministically and matches the committed labs/ ---------------

@pytest.mark.slow
def test_committed_release_equals_a_fresh_regeneration(course, tmp_path):
    shutil.copytree(course.root / "solutions", tmp_path / "solutions")
    again = instructor.generate_release(tmp_path, course.lab, tmp_path / "again")
    committed = instructor.read_tree(course.src_root / "labs" / course.lab)
    assert instructor.read_tree(course.fresh) == instructor.read_tree(again), "two generations differ"
    assert instructor.read_tree(course.fresh) == committed, f"labs/{course.lab} is stale: run `make release`"


# --- b. no solutions, no hidden tests, no outputs in the release ---------------------------------

def test_release_holds_no_solution_code_and_no_hidden_tests(lab):
    source, release_text = read_nb(lab.source), lab.release.read_text()
    secrets = secret_lines(source)
    assert secrets, "the source notebook should have solution regions to hide"
    assert [m for m in MARKERS if m in release_text] == []
    assert sorted(s for s in secrets if s in release_text) == []


def test_release_holds_no_outputs(lab):
    for cell in read_nb(lab.release).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_release_keeps_every_graded_cell_with_schema_3(lab):
    source, release = read_nb(lab.source), read_nb(lab.release)
    ids = [nbgrader_meta(c)["grade_id"] for c in source.cells if nbgrader_meta(c)]
    assert [nbgrader_meta(c)["grade_id"] for c in release.cells if nbgrader_meta(c)] == ids
    assert all(nbgrader_meta(c)["schema_version"] == 3 for c in release.cells if nbgrader_meta(c))
    first_code = next(c for c in release.cells if c.cell_type == "code")
    assert nbgrader_meta(first_code).get("locked") and "setup(" in first_code.source


# --- c. the solution gets full code marks, with no error ---------------------------------------

@pytest.mark.slow
def test_solution_autogrades_to_full_code_marks(course, batch):
    result, row = batch.results["s4_solution"], batch.rows["s4_solution"]
    assert result["success"], result.get("error")
    assert "[ERROR]" not in result.get("log", "")
    assert error_names(autograded(course, "s4_solution")) == []
    assert row["max_code_score"] > 0 and row["code_score"] == row["max_code_score"]


# --- d. the untouched release scores 0 without crashing ----------------------------------------

@pytest.mark.slow
def test_untouched_release_autogrades_to_zero(batch):
    result, row = batch.results["s5_untouched"], batch.rows["s5_untouched"]
    assert result["success"], result.get("error")
    assert row["max_code_score"] > 0 and row["code_score"] == 0


# --- e. tampered, deleted, endless: handled, and the batch goes on -------------------------------

@pytest.mark.slow
def test_edited_test_cells_are_restored_with_their_hidden_tests(course, batch):
    student = "s2_tamperer" if "s2_tamperer" in batch.rows else "s23_tamper_delete"
    assert batch.results[student]["success"], batch.results[student].get("error")
    assert batch.rows[student]["code_score"] == 0, "the `pass` test cells were graded instead of the originals"
    expected = [c.source for c in read_nb(course.source).cells if is_test_cell(c)]
    # cells deleted by the student come back with a line saying so in front of the original source
    restored = [re.sub(r"\A# This cell \(id:[^)]*\) was missing from the submission\..*\n\n", "", c.source)
                for c in autograded(course, student).cells if is_test_cell(c)]
    assert restored == expected


@pytest.mark.slow
def test_deleted_test_cells_are_added_back_and_graded(course, batch):
    student = "s3_deleter" if "s3_deleter" in batch.rows else "s23_tamper_delete"
    assert batch.results[student]["success"], batch.results[student].get("error")
    row = batch.rows[student]
    if student == "s3_deleter":  # the solution without its test cells: the re-added tests pass
        assert row["code_score"] == row["max_code_score"] > 0
    test_ids = [nbgrader_meta(c)["grade_id"] for c in read_nb(course.source).cells if is_test_cell(c)]
    regraded = [nbgrader_meta(c)["grade_id"] for c in autograded(course, student).cells if is_test_cell(c)]
    assert regraded == test_ids
    # every test cell, re-added or not, has its grade in the gradebook
    assert all(cell_score(batch.api, course, student, grade_id) is not None for grade_id in test_ids)


@pytest.mark.slow
def test_endless_loop_is_stopped_by_the_timeout_and_scores_zero(course, batch):
    if "s1_looper" not in batch.results:
        pytest.skip("the endless loop is graded on the fixture lab only (see FIXTURE_TIMEOUT)")
    assert batch.results["s1_looper"]["success"], batch.results["s1_looper"].get("error")
    nb = autograded(course, "s1_looper")
    assert {"CellTimeoutError", "KeyboardInterrupt"} & set(error_names(nb))
    # the first test cell after the looping answer scores 0; everything after it still ran
    cells = nb.cells
    looping = next(i for i, c in enumerate(cells) if "while True:" in c.source)
    first_test = next(c for c in cells[looping:] if is_test_cell(c))
    assert cell_score(batch.api, course, "s1_looper", nbgrader_meta(first_test)["grade_id"]) == 0
    assert batch.rows["s1_looper"]["code_score"] < batch.rows["s1_looper"]["max_code_score"]
    assert cells[-1].cell_type != "code" or cells[-1].execution_count is not None


@pytest.mark.slow
def test_every_student_of_the_batch_is_graded(course, batch):
    assert all(row["graded"] for row in batch.rows.values())
    cases = ["s1_looper", "s2_tamperer", "s3_deleter"] if course.src_root == FIXTURE else ["s23_tamper_delete"]
    assert sorted(batch.rows) == cases + ["s4_solution", "s5_untouched"]


@pytest.mark.slow
def test_regrading_with_force_keeps_the_submitted_files(course, batch):
    # the untouched release: its answers raise at once, so regrading it costs little time
    autograded_nb = course.root / "autograded" / "s5_untouched" / course.lab / f"{course.lab}.ipynb"
    autograded_nb.write_text("{}")  # force must rebuild this from the submission
    result = batch.api.autograde(course.lab, "s5_untouched", force=True)
    assert result["success"], result.get("error")
    assert {name: sha256(p) for name, p in batch.paths.items()} == batch.hashes
    assert read_nb(autograded_nb).cells


# --- f. a class of three, one via an LMS zip, end to end to a grades CSV --------------------------

@pytest.mark.slow
def test_grade_a_class_end_to_end_from_folder_and_zip(tmp_path):
    lab = "00_demo"
    root = tmp_path / "course"
    shutil.copytree(FIXTURE, root)
    source, release = root / "solutions" / lab / f"{lab}.ipynb", root / "labs" / lab / f"{lab}.ipynb"
    inbox = tmp_path / "inbox"
    for student, nb in (("alice", source), ("bob", release)):
        (inbox / student / lab).mkdir(parents=True)
        shutil.copy(nb, inbox / student / lab / f"{lab}.ipynb")
    lms_zip = tmp_path / "canvas-download.zip"
    with zipfile.ZipFile(lms_zip, "w") as zf:
        zf.write(source, f"carol_1234_5678_{lab}.ipynb")  # Canvas: <login>_<user id>_<submission id>_<file>
    before = {p: sha256(p) for p in [lms_zip, *inbox.rglob("*.ipynb")]}

    out = subprocess.run([sys.executable, "-m", "course_utils.instructor", "--root", str(root), "grade", lab,
                          "--submissions", str(inbox), "--zip", str(lms_zip)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr

    with open(root / "grades" / f"{lab}.csv", newline="") as f:
        grades = {row["student_id"]: row for row in csv.DictReader(f)}
    # the fixture: 2 autograded points + 1 manually graded point (not graded yet, so 0)
    assert {s: float(r["score"]) for s, r in grades.items()} == {"alice": 2.0, "bob": 0.0, "carol": 2.0}
    assert {float(r["max_score"]) for r in grades.values()} == {3.0}
    for student in ("alice", "bob", "carol"):
        assert (root / "submitted" / student / lab / f"{lab}.ipynb").is_file()
        assert (root / "feedback" / student / lab / f"{lab}.html").is_file()
    assert {p: sha256(p) for p in before} == before, "grading changed or deleted a submission"
    assert "to do in formgrader" in out.stdout


def test_collecting_never_overwrites_a_submission(tmp_path, capsys):
    lab = "00_demo"
    inbox, root = tmp_path / "inbox", tmp_path / "course"
    (inbox / "dan" / lab).mkdir(parents=True)
    (inbox / "dan" / lab / f"{lab}.ipynb").write_text("first")
    assert instructor.collect_folder(root, lab, inbox) == ["dan"]
    (inbox / "dan" / lab / f"{lab}.ipynb").write_text("second")
    instructor.collect_folder(root, lab, inbox)
    assert (root / "submitted" / "dan" / lab / f"{lab}.ipynb").read_text() == "first"
    assert "kept the existing" in capsys.readouterr().out


def test_canvas_file_names_are_read_by_the_default_pattern():
    match = re.match(instructor.CANVAS_REGEXP, "/x/extracted/doejane_late_1234_5678_01_localisation-1.ipynb")
    assert match and match["student_id"] == "doejane" and match["file_id"] == "01_localisation"


def test_make_grade_and_release_call_the_instructor_module():
    def dry(*args):
        return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    grade = dry("grade", "LAB=00_demo", "SUBMISSIONS=inbox", "ZIP=canvas.zip")
    assert re.search(r"-m course_utils\.instructor --root \S+ grade 00_demo --submissions inbox --zip canvas\.zip",
                     grade)
    assert re.search(r"-m course_utils\.instructor --root \S+ release", dry("release"))


# --- g. the students' self-check ----------------------------------------------------------------

@pytest.fixture
def student_copy(lab, tmp_path):
    """A student's untouched copy of the release, away from the course tree."""
    path = tmp_path / f"{lab.lab}.ipynb"
    shutil.copy(lab.release, path)
    return path


def test_check_submission_passes_a_good_copy(lab, student_copy, capsys):
    assert check_submission(student_copy, release=lab.release) == []
    assert "looks ready to submit" in capsys.readouterr().out


def test_check_submission_finds_the_release_itself(lab, tmp_path):
    # a student working in labs/<lab>/ in place, in the student copy (no solutions/ there)
    shutil.copytree(lab.src_root / "labs" / lab.lab, tmp_path / "labs" / lab.lab)
    in_place = tmp_path / "labs" / lab.lab / f"{lab.lab}.ipynb"
    assert check_submission(in_place, verbose=False) == []
    renamed = in_place.with_name(f"Copy of {lab.lab}.ipynb")
    shutil.copy(in_place, renamed)
    problems = check_submission(renamed, verbose=False)
    assert len(problems) == 1 and f"'{lab.lab}.ipynb'" in problems[0]


def test_check_submission_warns_about_a_renamed_file(lab, student_copy, capsys):
    renamed = student_copy.with_name(f"{lab.lab} (1).ipynb")
    student_copy.rename(renamed)
    problems = check_submission(renamed, release=lab.release)
    assert len(problems) == 1 and f"{lab.lab} (1).ipynb" in problems[0] and "rename" in problems[0]
    assert "1. the file is called" in capsys.readouterr().out


def test_check_submission_warns_about_a_deleted_graded_cell(lab, student_copy):
    nb = read_nb(student_copy)
    gone = next(c for c in nb.cells if is_test_cell(c))
    nb.cells.remove(gone)
    nbformat.write(nb, student_copy)
    problems = check_submission(student_copy, release=lab.release, verbose=False)
    assert len(problems) == 1 and nbgrader_meta(gone)["grade_id"] in problems[0] and "missing" in problems[0]


def test_check_submission_warns_about_a_duplicated_cell(lab, student_copy):
    nb = read_nb(student_copy)
    answer = next(c for c in nb.cells if is_answer_cell(c))
    twin = copy.deepcopy(answer)
    twin.id = "a-copied-cell"
    nb.cells.insert(nb.cells.index(answer) + 1, twin)
    nbformat.write(nb, student_copy)
    problems = check_submission(student_copy, release=lab.release, verbose=False)
    assert len(problems) == 1 and nbgrader_meta(answer)["grade_id"] in problems[0] and "2 times" in problems[0]


def test_check_submission_warns_about_stripped_metadata(lab, student_copy):
    nb = read_nb(student_copy)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(nb, student_copy)
    problems = check_submission(student_copy, release=lab.release, verbose=False)
    assert len(problems) == 1 and "metadata" in problems[0]


def test_check_submission_reports_a_file_that_is_not_a_notebook(lab, tmp_path):
    bad = tmp_path / f"{lab.lab}.ipynb"
    bad.write_text("<html>Colab sign-in page</html>")
    problems = check_submission(bad, release=lab.release, verbose=False)
    assert len(problems) == 1 and "cannot be read" in problems[0]


# --- the house rule: nothing in course_utils imports nbgrader at import time ---------------------

def test_course_utils_does_not_import_nbgrader():
    code = ("import sys, course_utils, course_utils.config, course_utils.grading, course_utils.instructor; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nbgrader'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_is_this_course_with_a_finite_cell_timeout(tmp_path):
    cfg = instructor.load_config(tmp_path)
    assert cfg.CourseDirectory.course_id == "cnn-part2"
    assert (cfg.CourseDirectory.source_directory, cfg.CourseDirectory.release_directory) == ("solutions", "labs")
    assert cfg.CourseDirectory.root == str(tmp_path.resolve())
    assert 0 < cfg.Execute.timeout <= 300 and cfg.OverwriteCells.add_missing_cells



@pytest.mark.slow  # two python processes that import torch
def test_check_submission_command_line_exit_status(lab, tmp_path):
    good, renamed = tmp_path / f"{lab.lab}.ipynb", tmp_path / "notebook.ipynb"
    shutil.copy(lab.release, good)
    shutil.copy(lab.release, renamed)
    run = [sys.executable, "-m", "course_utils.grading", "--release", str(lab.release)]
    assert subprocess.run([*run, str(good)], cwd=REPO, capture_output=True).returncode == 0
    out = subprocess.run([*run, str(renamed)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 1 and "notebook.ipynb" in out.stdout


def test_grading_forces_smoke_mode_over_an_exported_course_mode(monkeypatch, capsys):
    from course_utils.config import get_mode

    monkeypatch.setenv("COURSE_MODE", "full")
    instructor.force_smoke_mode()
    assert get_mode() == "smoke"
    assert "COURSE_MODE=full" in capsys.readouterr().out
