"""`make student-release`: the students' copy holds the labs and the package, no secret."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from course_utils import instructor

REPO = Path(__file__).resolve().parents[1]
SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?### END SOLUTION[^\n]*", re.S | re.M)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*", re.S | re.M)


def package_text() -> str:
    """The source of course_utils, which students need and which holds the library versions of many
    exercises (e.g. ``course_utils.models.yolo``): its lines are public by necessity."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "course_utils").rglob("*.py")))


def secret_lines() -> set[str]:
    """Lines of every solution region and hidden test of solutions/*.ipynb that appear nowhere else
    (not in the notebooks' other cells, not in course_utils)."""
    secrets, elsewhere = set(), []
    for path in sorted((REPO / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            for region in SOLUTION.findall(source) + HIDDEN.findall(source):
                secrets |= {ln.strip() for ln in region.splitlines()[1:-1]}
            elsewhere.append(HIDDEN.sub("", SOLUTION.sub("", source)))
    rest = "\n".join(elsewhere) + package_text()
    return {ln for ln in secrets if len(ln) >= 24 and ln not in rest}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    dest = tmp_path_factory.mktemp("student") / "copy"
    return instructor.student_release(REPO, dest)


def test_the_copy_holds_labs_package_and_student_guide(tree):
    for rel in ("labs/01_localisation/01_localisation.ipynb", "course_utils/grading.py", "data_scripts",
                "docs/student.md", "pyproject.toml", "README.md", "environment.yml", "requirements.txt"):
        assert (tree / rel).exists(), rel
    for rel in ("solutions", "notebook_src", "tests", "benchmarks", "docs/instructor.md", "gradebook.db"):
        assert not (tree / rel).exists(), rel


def test_no_solution_or_hidden_test_text_anywhere_in_the_copy(tree):
    secrets = secret_lines()
    assert len(secrets) > 100  # the scan has something to find
    found = {}
    for path in tree.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            hits = [ln for ln in secrets if ln in text]
            if hits:
                found[str(path.relative_to(tree))] = hits[:3]
    assert found == {}


def test_the_scan_would_see_a_leaked_solution(tmp_path):
    leaked = tmp_path / "leak.py"
    leaked.write_text("\n".join(sorted(secret_lines())[:5]))
    text = leaked.read_text()
    assert any(ln in text for ln in secret_lines())


def test_dest_must_be_new_and_outside_the_course(tmp_path):
    with pytest.raises(FileExistsError, match="dest"):
        instructor.student_release(REPO, tmp_path)
    with pytest.raises(ValueError, match="outside the course root"):
        instructor.student_release(REPO, REPO / "student-copy")


def test_make_student_release_calls_the_instructor_module():
    out = subprocess.run(["make", "-n", "student-release", "DEST=/tmp/x"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert re.search(r"-m course_utils\.instructor --root \S+ student-release /tmp/x", out)
