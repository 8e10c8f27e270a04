"""Helpers for writing lab notebooks from Python: one call per cell, nbgrader metadata included.

Each ``notebook_src/NN_topic.py`` builds ``solutions/NN_topic/NN_topic.ipynb`` (the nbgrader
source) with these functions; cell ids are fixed strings, so rebuilding gives identical files.
``make notebooks`` rebuilds them all; a test checks the committed solutions match their sources.
"""

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list = []


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
