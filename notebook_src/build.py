"""Build the lab notebooks from their jupytext sources, and sync edits made in Jupyter back.

Each lab is written as ``notebook_src/NN_topic.py``, a jupytext "percent" script: every cell starts
with a ``# %%`` line (``# %% [markdown]`` for text), so the file is plain Python that ruff checks and
that JupyterLab (with jupytext) opens as a notebook. ``build`` turns it into
``solutions/NN_topic/NN_topic.ipynb``, the nbgrader source; ``make release`` then makes ``labs/``.

The cell header carries a compact house convention that the build expands, so the source stays
readable and nbgrader's bookkeeping is written in one place (this file) instead of in every cell::

    # %% [markdown] id="ex1-md"                      teaching text
    # %% id="data" role="readonly"                   locked code
    # %% id="ex1-box-conversions" role="solution"    answer cell (### BEGIN/END SOLUTION)
    # %% id="test-box-conversions" role="tests" points=2    autograded test cell
    # %% [markdown] id="written-answer" role="answer" points=2   manually graded written answer

``id`` becomes the cell id and nbgrader's ``grade_id`` (stable: rebuilding gives identical files);
``role`` and ``points`` become nbgrader's metadata (``schema_version`` 3). Two lines are computed
from ``pyproject.toml`` (version, ``[project.urls] Repository`` or ``$COURSE_REPOSITORY``):
``COLAB_BADGE`` at the start of a markdown cell becomes the "Open in Colab" badge (or nothing when
no GitHub repository is set), and ``COLAB_INSTALL`` in a code cell becomes the Colab-only install.

``sync`` is the way back: it reads ``solutions/NN_topic/NN_topic.ipynb`` (say, after an edit in
Jupyter), folds the nbgrader metadata and the computed lines back into the convention, checks that
building the result gives the same notebook, and writes ``notebook_src/NN_topic.py``.

Only jupytext and nbformat are needed (no torch): ``python notebook_src/build.py build [LAB ...]``,
``python notebook_src/build.py sync LAB ...``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

COLAB_BADGE = "<!-- COLAB_BADGE: notebook_src/build.py puts the Open-in-Colab badge here -->"
COLAB_INSTALL = "# COLAB_INSTALL: notebook_src/build.py puts the Colab-only install of this release here"

NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
# What the source's cell headers hold; jupytext keeps exactly these keys when it saves the script.
JUPYTEXT_SETTINGS = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "id,role,points,-all"}
# Cell metadata that JupyterLab (and Colab) add while one works in a notebook: not part of a lab.
EDITOR_CELL_KEYS = {"collapsed", "scrolled", "execution", "jupyter", "ExecuteTime", "trusted", "editable",
                    "deletable", "colab", "outputId", "id"}

# role -> (cell type, nbgrader fields besides grade_id and points, whether it takes points)
ROLES: dict[str, tuple[str, dict[str, bool], bool]] = {
    "readonly": ("code", {"grade": False, "locked": True, "solution": False}, False),
    "solution": ("code", {"grade": False, "locked": False, "solution": True}, False),
    "tests": ("code", {"grade": True, "locked": True, "solution": False}, True),
    "answer": ("markdown", {"grade": True, "locked": False, "solution": True}, True),
}


def course_release(root: Path) -> tuple[str | None, str]:
    """The repository URL and the version that the computed lines point at.

    Args:
        root: the course folder (holds ``pyproject.toml``).

    Returns:
        ``($COURSE_REPOSITORY or [project.urls] Repository, without ".git"; None if neither is set,
        pyproject's version)``. The version is released as the git tag ``v<version>``.
    """
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    url = os.environ.get("COURSE_REPOSITORY") or project.get("urls", {}).get("Repository")
    return (url.rstrip("/").removesuffix(".git") if url else None), project["version"]


def colab_badge(lab: str, url: str | None, version: str) -> str:
    """Markdown for an "Open in Colab" badge of ``labs/<lab>/<lab>.ipynb`` at this release.

    Args:
        lab: the lab folder name, e.g. ``"01_localisation"``.
        url: the course repository (see :func:`course_release`).
        version: the course version.

    Returns:
        The badge followed by a blank line, or ``""`` when the repository is not on GitHub or not set.
    """
    match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url or "")
    if not match:
        return ""
    target = f"https://colab.research.google.com/github/{match.group(1)}/blob/v{version}/labs/{lab}/{lab}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({target})\n\n"


def colab_install(url: str | None, version: str) -> str:
    """Setup-cell lines that install the course package at this release, on Colab only.

    Args:
        url: the course repository, or None when it is not set.
        version: the course version.

    Returns:
        Lines ending in a newline: a ``%pip install`` of ``v<version>`` guarded by a Colab check, or,
        without a repository, a Colab-only error that says why nothing can be installed.
    """
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


def nbgrader_metadata(role: str, cell_type: str, grade_id: str, points: int | None) -> dict:
    """nbgrader's cell metadata for a cell of the given role.

    Args:
        role: one of ``ROLES`` (``readonly``, ``solution``, ``tests``, ``answer``).
        cell_type: ``"code"`` or ``"markdown"``; each role belongs to one of them.
        grade_id: the cell id, which nbgrader uses to match submissions to the source.
        points: the marks of a ``tests`` or ``answer`` cell; None for the other roles.

    Returns:
        The ``metadata["nbgrader"]`` dictionary (schema version 3).
    """
    if role not in ROLES:
        raise ValueError(f"cell {grade_id!r}: role={role!r} is not one of {', '.join(ROLES)}")
    wanted_type, fields, takes_points = ROLES[role]
    if cell_type != wanted_type:
        raise ValueError(f"cell {grade_id!r}: role={role!r} needs a {wanted_type} cell, not {cell_type}")
    if takes_points and (not isinstance(points, int) or isinstance(points, bool) or points <= 0):
        raise ValueError(f"cell {grade_id!r}: role={role!r} needs points=<positive int> in its header, got {points!r}")
    if not takes_points and points is not None:
        raise ValueError(f"cell {grade_id!r}: points= is only for role=\"tests\" or \"answer\", not {role!r}")
    meta = {"schema_version": 3, "task": False, **fields, "grade_id": grade_id}
    if takes_points:
        meta["points"] = points
    return meta


def role_of(nbgrader: dict, grade_id: str) -> tuple[str, int | None]:
    """The inverse of :func:`nbgrader_metadata`: which role (and points) a built cell has.

    Args:
        nbgrader: a cell's ``metadata["nbgrader"]``.
        grade_id: the cell id; nbgrader's ``grade_id`` must equal it.

    Returns:
        ``(role, points or None)``.
    """
    if nbgrader.get("grade_id") != grade_id:
        raise ValueError(f"cell {grade_id!r}: nbgrader grade_id {nbgrader.get('grade_id')!r} differs from the cell id")
    fields = {key: nbgrader.get(key) for key in ("grade", "locked", "solution")}
    for role, (_, wanted, _) in ROLES.items():
        if fields == wanted:
            return role, nbgrader.get("points")
    raise ValueError(f"cell {grade_id!r}: nbgrader metadata {nbgrader} matches none of the roles {', '.join(ROLES)}")


def expand(text: str, cell_id: str, badge: str, install: str) -> str:
    """Replace the placeholders of a cell's text with the lines computed for this release.

    Args:
        text: the cell's text as written in the source.
        cell_id: for error messages.
        badge: what ``COLAB_BADGE`` becomes (see :func:`colab_badge`).
        install: what ``COLAB_INSTALL`` becomes (see :func:`colab_install`).

    Returns:
        The text of the built cell.
    """
    if COLAB_BADGE in text:
        if not text.startswith(COLAB_BADGE + "\n\n"):
            raise ValueError(f"cell {cell_id!r}: {COLAB_BADGE} must open the cell, followed by a blank line")
        text = badge + text.removeprefix(COLAB_BADGE + "\n\n")
    return text.replace(COLAB_INSTALL + "\n", install)


def fold(text: str, old_text: str, badge: str, install: str) -> str:
    """The inverse of :func:`expand`: put the placeholders back into a built cell's text.

    Args:
        text: the built cell's text (e.g. edited in Jupyter).
        old_text: the same cell in the current source, which says whether it had a badge (an empty
            badge leaves no trace in the built cell).
        badge: what ``COLAB_BADGE`` became in the build.
        install: what ``COLAB_INSTALL`` became in the build.

    Returns:
        The cell's text for the source.
    """
    if old_text.startswith(COLAB_BADGE + "\n\n"):
        text = COLAB_BADGE + "\n\n" + text.removeprefix(badge)
    if COLAB_INSTALL in old_text:
        text = text.replace(install, COLAB_INSTALL + "\n")
    return text


def build_notebook(source: str, lab: str, root: Path = ROOT) -> NotebookNode:
    """The solution notebook that a lab's jupytext source describes.

    Args:
        source: the text of ``notebook_src/<lab>.py``.
        lab: the lab folder name (for the Colab badge).
        root: the course folder (its ``pyproject.toml`` gives the release).

    Returns:
        A validated nbformat 4.5 notebook with stable cell ids and nbgrader metadata.
    """
    url, version = course_release(root)
    badge, install = colab_badge(lab, url, version), colab_install(url, version)
    cells, seen = [], set()
    for number, cell in enumerate(jupytext.reads(source, fmt="py:percent").cells, start=1):
        meta = dict(cell.metadata)
        cell_id = meta.pop("id", None)
        if not isinstance(cell_id, str) or not cell_id:
            raise ValueError(f"{lab}: cell {number} has no id in its header, e.g. # %% id=\"data\" role=\"readonly\"")
        if cell_id in seen:
            raise ValueError(f"{lab}: cell id {cell_id!r} is used twice")
        seen.add(cell_id)
        role, points = meta.pop("role", None), meta.pop("points", None)
        meta.pop("lines_to_next_cell", None)  # jupytext's blank-line bookkeeping, not part of the notebook
        if meta:
            raise ValueError(f"{lab}: cell {cell_id!r} has header keys {sorted(meta)}; known: id, role, points")
        if cell.cell_type not in ("code", "markdown"):
            raise ValueError(f"{lab}: cell {cell_id!r} is a {cell.cell_type} cell; labs hold code and markdown only")
        new_cell = new_code_cell if cell.cell_type == "code" else new_markdown_cell
        built = new_cell(expand(cell.source, cell_id, badge, install), id=cell_id)
        if role is not None:
            built.metadata["nbgrader"] = nbgrader_metadata(role, cell.cell_type, cell_id, points)
        elif points is not None:
            raise ValueError(f"{lab}: cell {cell_id!r} has points= but no role")
        cells.append(built)
    notebook = new_notebook(cells=cells, metadata=copy.deepcopy(NOTEBOOK_METADATA))
    nbformat.validate(notebook)
    return notebook


def notebook_text(notebook: NotebookNode) -> str:
    """The bytes (as text) of a notebook file, as nbformat writes it plus a final newline."""
    return nbformat.writes(notebook) + "\n"


def without_editor_state(notebook: NotebookNode) -> NotebookNode:
    """A copy of a notebook without what running and saving it in Jupyter adds.

    Args:
        notebook: a solution notebook, e.g. saved from JupyterLab.

    Returns:
        The copy: no outputs or execution counts, the build's notebook metadata, and cell metadata
        without the editor's keys (``EDITOR_CELL_KEYS``); cell text, ids and nbgrader metadata are kept.
    """
    clean = copy.deepcopy(notebook)
    clean.metadata = copy.deepcopy(NOTEBOOK_METADATA)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in EDITOR_CELL_KEYS & set(cell.metadata):
            del cell.metadata[key]
    return clean


def notebook_to_source(notebook: NotebookNode, old_source: str, lab: str, root: Path = ROOT) -> str:
    """The jupytext source of a built (possibly edited) notebook: the way back from Jupyter.

    Args:
        notebook: a solution notebook as :func:`build_notebook` makes it, with edits; outputs and
            editor state are dropped (:func:`without_editor_state`).
        old_source: the lab's current source (where its placeholders sit).
        lab: the lab folder name.
        root: the course folder.

    Returns:
        The text for ``notebook_src/<lab>.py``. Raises ValueError when building it would not give
        the notebook back (e.g. a cell whose nbgrader metadata fits no role), so nothing is lost.
    """
    notebook = without_editor_state(notebook)
    url, version = course_release(root)
    badge, install = colab_badge(lab, url, version), colab_install(url, version)
    old_texts = {cell.metadata.get("id"): cell.source for cell in jupytext.reads(old_source, fmt="py:percent").cells}
    cells = []
    for cell in notebook.cells:
        unknown = set(cell.metadata) - {"nbgrader"}
        if unknown:
            raise ValueError(f"{lab}: cell {cell.id!r} has metadata {sorted(unknown)} that a lab source cannot hold")
        header = {"id": cell.id}
        if "nbgrader" in cell.metadata:
            role, points = role_of(cell.metadata["nbgrader"], cell.id)
            header["role"] = role
            if points is not None:
                header["points"] = points
        text = fold(cell.source, old_texts.get(cell.id, ""), badge, install)
        new_cell = new_code_cell if cell.cell_type == "code" else new_markdown_cell
        cells.append(new_cell(text, metadata=header))
    source = jupytext.writes(new_notebook(cells=cells, metadata={"jupytext": JUPYTEXT_SETTINGS}), fmt="py:percent")
    if notebook_text(build_notebook(source, lab, root)) != notebook_text(notebook):
        raise ValueError(f"{lab}: the notebook cannot be written back as a source that builds it unchanged "
                         "(outputs or metadata that a lab source does not hold?); copy the edit by hand")
    return source


def committed_text(path: Path) -> str | None:
    """The text of ``path`` at git's ``HEAD`` (None outside a git checkout or for a new file)."""
    try:
        result = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return result.stdout if result.returncode == 0 else None


def lab_names(root: Path, labs: list[str]) -> list[str]:
    """The labs named on the command line, or every ``notebook_src/NN_*.py`` when none is named."""
    sources = root / "notebook_src"
    names = labs or sorted(p.stem for p in sources.glob("[0-9][0-9]_*.py"))
    missing = [name for name in names if not (sources / f"{name}.py").is_file()]
    if missing:
        raise SystemExit(f"no source notebook_src/<lab>.py for: {', '.join(missing)}")
    return names


def holds_an_edit(notebook_path: Path, source_path: Path, lab: str, root: Path, built: str) -> bool:
    """Whether a solution notebook holds cells that neither the source nor its last commit builds.

    Such a notebook was edited in Jupyter: building over it would lose the edit (``sync`` keeps it).

    Args:
        notebook_path: ``solutions/<lab>/<lab>.ipynb``.
        source_path: ``notebook_src/<lab>.py``.
        lab: the lab folder name.
        root: the course folder.
        built: what the current source builds (:func:`notebook_text`).

    Returns:
        False when the notebook, outputs aside, is what the current source or the committed source
        builds (or when there is no committed source to tell).
    """
    cells = notebook_text(without_editor_state(nbformat.read(notebook_path, as_version=4)))
    if cells == built:
        return False
    committed = committed_text(source_path)
    return committed is not None and cells != notebook_text(build_notebook(committed, lab, root))


def build(root: Path, labs: list[str], out: Path | None, force: bool) -> int:
    """``build`` command: write ``solutions/<lab>/<lab>.ipynb`` (or ``<out>/<lab>.ipynb``) for each lab."""
    refused = []
    for lab in lab_names(root, labs):
        source_path = root / "notebook_src" / f"{lab}.py"
        text = notebook_text(build_notebook(source_path.read_text(), lab, root))
        target = (out / f"{lab}.ipynb") if out else root / "solutions" / lab / f"{lab}.ipynb"
        if target.is_file() and target.read_text() == text:
            print(f"{target} is up to date")
            continue
        if out is None and not force and target.is_file() and holds_an_edit(target, source_path, lab, root, text):
            refused.append(lab)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    for lab in refused:
        print(f"solutions/{lab}/{lab}.ipynb holds an edit that notebook_src/{lab}.py does not have (made in "
              f"Jupyter?), so it was left alone. Keep the edit: `make sync-notebooks LABS={lab}` (copies it into "
              f"the source), then `make notebooks`. Drop it: `python notebook_src/build.py build --force {lab}`.",
              file=sys.stderr)
    return 1 if refused else 0


def sync(root: Path, labs: list[str], force: bool) -> int:
    """``sync`` command: write ``notebook_src/<lab>.py`` from ``solutions/<lab>/<lab>.ipynb`` for each lab."""
    refused = []
    for lab in lab_names(root, labs):
        path = root / "notebook_src" / f"{lab}.py"
        old = path.read_text()
        notebook = nbformat.read(root / "solutions" / lab / f"{lab}.ipynb", as_version=4)
        new = notebook_to_source(notebook, old, lab, root)
        if new == old:
            print(f"{path} is up to date")
            continue
        committed = committed_text(path)
        if not force and committed is not None and old != committed:
            refused.append(lab)
            continue
        path.write_text(new)
        print(f"wrote {path}")
    for lab in refused:
        print(f"notebook_src/{lab}.py has uncommitted edits of its own and solutions/{lab}/{lab}.ipynb differs from "
              "it: both were edited, so the source was left alone. Commit or merge by hand; "
              f"`python notebook_src/build.py sync --force {lab}` overwrites the source.", file=sys.stderr)
    return 1 if refused else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="course folder (default: this checkout)")
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="notebook_src/<lab>.py -> solutions/<lab>/<lab>.ipynb")
    build_cmd.add_argument("labs", nargs="*", help="lab folder names (default: all)")
    build_cmd.add_argument("--out", type=Path, help="write <out>/<lab>.ipynb instead of into solutions/")
    build_cmd.add_argument("--force", action="store_true", help="overwrite notebooks edited since the last commit")
    sync_cmd = commands.add_parser("sync", help="solutions/<lab>/<lab>.ipynb -> notebook_src/<lab>.py")
    sync_cmd.add_argument("labs", nargs="*", help="lab folder names (default: all)")
    sync_cmd.add_argument("--force", action="store_true", help="overwrite sources edited since the last commit")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build(args.root, args.labs, args.out, args.force)
    return sync(args.root, args.labs, args.force)


if __name__ == "__main__":
    sys.exit(main())
