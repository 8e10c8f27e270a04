"""Helpers for writing lab notebooks from Python: one call per cell, nbgrader metadata included.

Each ``notebook_src/NN_topic.py`` builds ``solutions/NN_topic/NN_topic.ipynb`` (the nbgrader
source) with these functions; cell ids are fixed strings, so rebuilding gives identical files.
``make notebooks`` rebuilds them all; a test checks the committed solutions match their sources.
"""

import os
import re
import sys
import tomllib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list = []
ROOT = Path(__file__).resolve().parents[1]


def course_release() -> tuple[str | None, str]:
    """(repository URL or None, version) of this course: ``$COURSE_REPOSITORY`` or pyproject's
    ``[project.urls] Repository``, and pyproject's ``version`` (released as tag ``v<version>``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    url = os.environ.get("COURSE_REPOSITORY") or project.get("urls", {}).get("Repository")
    return (url.rstrip("/").removesuffix(".git") if url else None), project["version"]


def colab_badge(lab: str) -> str:
    """Markdown for an "Open in Colab" badge of ``labs/<lab>/<lab>.ipynb`` at this release ("" if the
    repository is not on GitHub or not set)."""
    url, version = course_release()
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url or "")
    if not match:
        return ""
    target = f"https://colab.research.google.com/github/{match.group(1)}/blob/v{version}/labs/{lab}/{lab}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({target})\n\n"


def colab_install() -> str:
    """Setup-cell lines that install the course package at this release, on Colab only."""
    url, version = course_release()
    if url is None:
        return (
            'if "google.colab" in sys.modules and importlib.util.find_spec("course_utils") is None:\n'
            '    raise ImportError("This copy of the course names no repository to install from on Colab "\n'
            '                      "(pyproject.toml: [project.urls] Repository). Ask your instructor for the "\n'
            '                      "package, or run the lab locally with `make lab`.")\n'
        )
    return (
        'if "google.colab" in sys.modules:  # Colab only: install the course package of this release\n'
        f'    %pip install -q "course-utils @ git+{url}@v{version}"\n'
    )


def _nbgrader(cell, nbg: dict):
    if nbg:
        cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, **nbg}
    CELLS.append(cell)


def md(cid: str, text: str, **nbg) -> None:
    """A markdown cell (``nbg``: nbgrader fields, e.g. for a manually graded answer)."""
    cell = new_markdown_cell(text.strip("\n"))
    cell.id = cid
    _nbgrader(cell, nbg)


def code(cid: str, text: str, **nbg) -> None:
    """A code cell; ``\\"\\"\\"`` in ``text`` becomes a triple quote (for docstrings inside r-strings)."""
    cell = new_code_cell(text.strip("\n").replace('\\"\\"\\"', '"""'))
    cell.id = cid
    _nbgrader(cell, nbg)


def readonly(cid: str, text: str) -> None:
    """A locked code cell (nbgrader restores it if a student edits it)."""
    code(cid, text, grade=False, grade_id=cid, locked=True, solution=False)


def solution(cid: str, text: str) -> None:
    """An answer cell: code between ``### BEGIN SOLUTION`` / ``### END SOLUTION`` is removed in the release."""
    code(cid, text, grade=False, grade_id=cid, locked=False, solution=True)


def tests(cid: str, text: str, points: int) -> None:
    """An autograded test cell; ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` are hidden in the release."""
    code(cid, text, grade=True, grade_id=cid, locked=True, points=points, solution=False)


def setup_cell(imports: str) -> None:
    """The locked first code cell of every lab: the Colab-only install, a clear error when
    ``course_utils`` is missing, the lab's ``imports``, then ``setup()`` (banner, seed, mode, device)."""
    readonly("setup", (
        "# Setup: imports, run mode, device and seed. Run this cell first.\n"
        "import importlib.util\nimport sys\n\n"
        + colab_install()
        + "\ntry:\n"
        "    import course_utils  # noqa: F401\n"
        "except ImportError as err:\n"
        "    raise ImportError(\n"
        '        "course_utils is not installed in this kernel. From the course folder run `make lab`, "\n'
        '        "or `pip install -e .` in the environment of this kernel."\n'
        "    ) from err\n\n"
        + imports.strip("\n")
        + "\n\nSETUP = setup(seed=0)\nMODE, DEVICE = SETUP.mode, SETUP.device\n"
    ))


def write() -> None:
    """Write the cells to the path given on the command line."""
    nb = new_notebook(cells=CELLS)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    out.write_text(nbformat.writes(nb) + "\n")
    print("wrote", out, len(CELLS), "cells")
