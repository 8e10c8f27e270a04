"""The lab sources (jupytext percent scripts in notebook_src/) build the committed solution notebooks,
without torch, and an edit made in Jupyter to a solution notebook syncs back into its source."""

import contextlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "notebook_src" / "build.py"
SOURCES = sorted((ROOT / "notebook_src").glob("[0-9][0-9]_*.py"))
LAB = "01_localisation"


def load_build():
    spec = importlib.util.spec_from_file_location("notebook_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()


def run_build(*args: str) -> tuple[int, str, str]:
    """``python notebook_src/build.py ARGS`` in this process (its imports are slow in the course venv)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = build.main(list(args))
    return status, out.getvalue(), err.getvalue()


def course_copy(tmp_path: Path, lab: str = LAB) -> Path:
    """A course folder holding one lab's source and solution notebook (not a git checkout)."""
    (tmp_path / "notebook_src").mkdir()
    (tmp_path / "solutions" / lab).mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "notebook_src" / f"{lab}.py", tmp_path / "notebook_src")
    shutil.copy(ROOT / "solutions" / lab / f"{lab}.ipynb", tmp_path / "solutions" / lab)
    return tmp_path


def cell(notebook, cell_id: str):
    (found,) = [c for c in notebook.cells if c.id == cell_id]
    return found


def test_every_lab_has_a_source():
    labs = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    assert [p.stem for p in SOURCES] == labs


def test_solution_notebooks_are_what_their_sources_build(tmp_path):
    assert run_build("build", "--out", str(tmp_path))[0] == 0
    stale = [source.stem for source in SOURCES
             if (tmp_path / f"{source.stem}.ipynb").read_bytes()
             != (ROOT / "solutions" / source.stem / f"{source.stem}.ipynb").read_bytes()]
    assert not stale, (
        f"solutions/ differs from what notebook_src/ builds for {stale}. Edited the source? Run `make notebooks`. "
        "Edited the notebook in Jupyter? Run `make sync-notebooks LABS=<lab>` first: it copies the edit into "
        "the source, then `make notebooks` keeps it.")


@pytest.mark.slow
def test_the_build_needs_no_torch(tmp_path):
    """The build runs where torch cannot be imported, and its import list holds no torch (nor course_utils)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is not installed here')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(blocker)}
    out = subprocess.run([sys.executable, "-X", "importtime", str(BUILD), "build", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "jupytext" in imported and "nbformat" in imported  # the timing list is real
    heavy = sorted(m for m in imported if m.split(".")[0] in {"torch", "torchvision", "numpy", "course_utils"})
    assert heavy == [], f"the notebook build imported {heavy}"
    for source in SOURCES:
        committed = ROOT / "solutions" / source.stem / f"{source.stem}.ipynb"
        assert (tmp_path / "out" / f"{source.stem}.ipynb").read_bytes() == committed.read_bytes()


def test_the_source_is_a_percent_script_whose_headers_carry_ids_and_nbgrader_roles():
    text = (ROOT / "notebook_src" / f"{LAB}.py").read_text()
    headers = [line for line in text.splitlines() if line.startswith("# %%")]
    built = nbformat.read(ROOT / "solutions" / LAB / f"{LAB}.ipynb", as_version=4)
    assert len(headers) == len(built.cells)
    assert headers[:2] == ['# %% [markdown] id="intro"', '# %% id="setup" role="readonly"']
    assert '# %% id="ex1-box-conversions" role="solution"' in headers
    assert '# %% id="test-box-conversions" role="tests" points=2' in headers
    assert '# %% [markdown] id="written-answer" role="answer" points=2' in headers
    assert cell(built, "test-box-conversions").metadata.nbgrader == {
        "grade": True, "grade_id": "test-box-conversions", "locked": True, "points": 2, "schema_version": 3,
        "solution": False, "task": False}
    assert cell(built, "written-answer").metadata.nbgrader == {
        "grade": True, "grade_id": "written-answer", "locked": False, "points": 2, "schema_version": 3,
        "solution": True, "task": False}
    assert cell(built, "intro").metadata == {}


def test_colab_badge_and_pinned_install_come_from_pyproject_when_the_repository_is_known(tmp_path, monkeypatch):
    """An instructor who sets [project.urls] Repository gets a badge and a pinned Colab install."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    monkeypatch.setenv("COURSE_REPOSITORY", "https://github.com/example-org/cnn-part2.git")
    assert run_build("build", "--out", str(tmp_path), LAB)[0] == 0
    nb = nbformat.read(tmp_path / f"{LAB}.ipynb", as_version=4)
    intro, setup = nb.cells[0].source, nb.cells[1].source
    assert intro.startswith("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                            f"(https://colab.research.google.com/github/example-org/cnn-part2/blob/v{version}/"
                            "labs/01_localisation/01_localisation.ipynb)\n\n# Lab 01")
    assert f'    %pip install -q "course-utils @ git+https://github.com/example-org/cnn-part2@v{version}"\n' in setup
    assert setup.index('if "google.colab" in sys.modules:') < setup.index("%pip")
    assert "COLAB_" not in intro + setup
    # without a repository: no badge, and on Colab the setup cell says why it cannot install
    committed = nbformat.read(ROOT / "solutions" / LAB / f"{LAB}.ipynb", as_version=4)
    assert committed.cells[0].source.startswith("# Lab 01")
    assert "names no repository to install from on Colab" in committed.cells[1].source
    assert "COLAB_" not in committed.cells[0].source + committed.cells[1].source


@pytest.mark.slow
def test_the_setup_cell_installs_nothing_outside_colab(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("COURSE_REPOSITORY", "https://github.com/example-org/cnn-part2.git")
    assert run_build("build", "--out", str(tmp_path), LAB)[0] == 0
    nb = nbformat.read(tmp_path / f"{LAB}.ipynb", as_version=4)
    nb.cells = nb.cells[1:2]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert not [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert "pip" not in json.dumps(nb.cells[0].outputs).lower()


def edit_in_jupyter(notebook_path: Path) -> tuple[str, str]:
    """Edit a solution notebook as a contributor would in JupyterLab: change a line of an answer, a test's
    points and a markdown cell, run a cell (outputs, execution count) and let the editor add its metadata."""
    nb = nbformat.read(notebook_path, as_version=4)
    answer = cell(nb, "ex1-box-conversions")
    old_line = "    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)"
    new_line = "    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)  # (x, y, w, h)"
    assert old_line in answer.source
    answer.source = answer.source.replace(old_line, new_line, 1)
    cell(nb, "test-iou").metadata.nbgrader["points"] = 4
    text = cell(nb, "ex1-md")
    text.source = text.source.replace("Three formats appear", "Three box formats appear")
    answer.execution_count = 3
    answer.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    answer.metadata["execution"] = {"iopub.status.busy": "2026-12-03T08:00:00.000Z"}
    nb.metadata["language_info"]["version"] = "3.11.7"
    nbformat.write(nb, notebook_path)
    return old_line, new_line


def test_an_edit_made_in_jupyter_syncs_back_into_the_source_and_rebuilds_the_same(tmp_path):
    root = course_copy(tmp_path)
    source, notebook = root / "notebook_src" / f"{LAB}.py", root / "solutions" / LAB / f"{LAB}.ipynb"
    before = source.read_text()
    old_line, new_line = edit_in_jupyter(notebook)
    edited = nbformat.read(notebook, as_version=4)

    status, _, err = run_build("--root", str(root), "sync", LAB)
    assert status == 0, err
    after = source.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert changed == [
        ("# Three formats appear in this course, all with 4 numbers per box:",
         "# Three box formats appear in this course, all with 4 numbers per box:"),
        (old_line, new_line),
        ('# %% id="test-iou" role="tests" points=3', '# %% id="test-iou" role="tests" points=4'),
    ]
    # rebuilding gives the edited notebook back, outputs and editor state aside
    assert run_build("--root", str(root), "build", "--out", str(tmp_path / "rebuilt"), LAB)[0] == 0
    rebuilt = nbformat.read(tmp_path / "rebuilt" / f"{LAB}.ipynb", as_version=4)
    assert [(c.id, c.source, c.metadata) for c in rebuilt.cells] == [
        (c.id, c.source, {k: v for k, v in c.metadata.items() if k == "nbgrader"}) for c in edited.cells]
    assert cell(rebuilt, "ex1-box-conversions").outputs == []
    # and syncing again changes nothing
    assert "up to date" in run_build("--root", str(root), "sync", LAB)[1]
    assert source.read_text() == after


def test_sync_refuses_a_notebook_that_no_source_can_build_and_leaves_the_source_alone(tmp_path):
    root = course_copy(tmp_path)
    source, notebook = root / "notebook_src" / f"{LAB}.py", root / "solutions" / LAB / f"{LAB}.ipynb"
    before = source.read_text()
    nb = nbformat.read(notebook, as_version=4)
    cell(nb, "data").metadata.nbgrader["locked"] = False  # grade=False, locked=False, solution=False: no role
    nbformat.write(nb, notebook)
    with pytest.raises(ValueError, match=r"'data'.*matches none of the roles"):
        run_build("--root", str(root), "sync", LAB)
    assert source.read_text() == before


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=root, check=True,
                   capture_output=True)


def test_building_over_an_edit_made_in_jupyter_is_refused_until_it_is_synced(tmp_path):
    """The old advice ("stale: rebuild") erased such an edit; now the build keeps it and says how to sync."""
    root = course_copy(tmp_path)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "lab")
    notebook = root / "solutions" / LAB / f"{LAB}.ipynb"
    _, new_line = edit_in_jupyter(notebook)
    edited = notebook.read_bytes()

    status, _, err = run_build("--root", str(root), "build", LAB)
    assert status == 1
    assert f"make sync-notebooks LABS={LAB}" in err
    assert notebook.read_bytes() == edited  # nothing lost

    assert run_build("--root", str(root), "sync", LAB)[0] == 0
    assert new_line in (root / "notebook_src" / f"{LAB}.py").read_text()
    assert run_build("--root", str(root), "build", LAB)[0] == 0
    assert new_line in cell(nbformat.read(notebook, as_version=4), "ex1-box-conversions").source
    assert cell(nbformat.read(notebook, as_version=4), "ex1-box-conversions").outputs == []


def test_a_source_edit_rebuilds_over_a_notebook_that_was_only_run(tmp_path):
    """Outputs alone are no edit: the build replaces a run notebook when the source changed."""
    root = course_copy(tmp_path)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "lab")
    source, notebook = root / "notebook_src" / f"{LAB}.py", root / "solutions" / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    cell(nb, "data").outputs = [nbformat.v4.new_output("stream", name="stdout", text="train (64, 3, 64, 64)\n")]
    nbformat.write(nb, notebook)
    source.write_text(source.read_text().replace("## 1. The data: one shape per image", "## 1. The data"))
    assert run_build("--root", str(root), "build", LAB)[0] == 0
    rebuilt = nbformat.read(notebook, as_version=4)
    assert cell(rebuilt, "data-md").source.startswith("## 1. The data\n")
    assert cell(rebuilt, "data").outputs == []


@pytest.mark.parametrize("header, message", [
    ('# %% role="readonly"', "has no id in its header"),
    ('# %% id="setup" role="locked"', "role='locked' is not one of readonly, solution, tests, answer"),
    ('# %% id="setup" role="tests"', "role='tests' needs points=<positive int>"),
    ('# %% id="setup" role="readonly" points=2', "points= is only for"),
    ('# %% id="setup" role="answer" points=2', "role='answer' needs a markdown cell, not code"),
    ('# %% id="setup" role="readonly" tags=["x"]', "header keys ['tags']"),
    ('# %% id="intro" role="readonly"', "cell id 'intro' is used twice"),
])
def test_a_bad_cell_header_is_named_in_the_error(header, message):
    source = (ROOT / "notebook_src" / f"{LAB}.py").read_text()
    broken = source.replace('# %% id="setup" role="readonly"', header, 1)
    assert broken != source
    with pytest.raises(ValueError, match=re.escape(message)):
        build.build_notebook(broken, LAB)


def test_the_badge_placeholder_must_open_its_cell():
    source = (ROOT / "notebook_src" / f"{LAB}.py").read_text()
    moved = source.replace(f"# {build.COLAB_BADGE}\n#\n# # Lab 01", f"# # Lab 01\n#\n# {build.COLAB_BADGE}", 1)
    assert moved != source
    with pytest.raises(ValueError, match="must open the cell"):
        build.build_notebook(moved, LAB)
