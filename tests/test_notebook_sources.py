"""The committed solution notebooks are exactly what their Python sources in notebook_src/ build."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebook_src").glob("[0-9]*.py"))


def test_every_lab_has_a_source():
    labs = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    assert [p.stem for p in SOURCES] == labs


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_solution_notebook_is_built_from_its_source(source, tmp_path):
    out = tmp_path / f"{source.stem}.ipynb"
    subprocess.run([sys.executable, str(source), str(out)], check=True, capture_output=True, cwd=ROOT)
    committed = ROOT / "solutions" / source.stem / f"{source.stem}.ipynb"
    assert out.read_bytes() == committed.read_bytes(), f"{committed} is stale: run `make notebooks`"


@pytest.mark.slow
def test_colab_badge_and_pinned_install_when_the_repository_is_known(tmp_path):
    """An instructor who sets [project.urls] Repository gets a badge and a pinned Colab install."""
    import tomllib

    import nbformat
    from nbclient import NotebookClient

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = tmp_path / "01_localisation.ipynb"
    env = {**__import__("os").environ, "COURSE_REPOSITORY": "https://github.com/example-org/cnn-part2.git"}
    subprocess.run([sys.executable, str(ROOT / "notebook_src" / "01_localisation.py"), str(out)], check=True,
                   capture_output=True, cwd=ROOT, env=env)
    nb = nbformat.read(out, as_version=4)
    intro, setup = nb.cells[0].source, nb.cells[1].source
    assert (f"(https://colab.research.google.com/github/example-org/cnn-part2/blob/v{version}/"
            "labs/01_localisation/01_localisation.ipynb)") in intro
    assert f'%pip install -q "course-utils @ git+https://github.com/example-org/cnn-part2@v{version}"' in setup
    assert setup.index('"google.colab" in sys.modules') < setup.index("%pip")
    # outside Colab the cell runs without installing anything
    nb.cells = nb.cells[1:2]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert not [o for o in nb.cells[0].outputs if o.output_type == "error"]
