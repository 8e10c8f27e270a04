"""The notebook the grader runs for a submission, and what it takes back from the run.

A submission is never executed as the student saved it. :func:`rebuild_notebook` takes every cell
from the instructor's source (``solutions/<lab>/<lab>.ipynb``: setup, read-only cells and test
cells with their hidden tests) and only the answer cells from the submission, matched by nbgrader
``grade_id``, each checked by :mod:`course_utils.answer_policy` first. Cells a student added are
not run. After the sandboxed run, :func:`graded_outputs` keeps only the outputs of the rebuilt
notebook's own cells, with test-cell errors reduced to ``ename: evalue`` (a traceback would show
hidden test source), and marks every test cell that did not run as an error, so it scores 0.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path

from course_utils.answer_policy import blocked_answer, check_answer, defined_names, exercise_policies

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_OUTPUTS_PER_CELL = 200


class SubmissionError(ValueError):
    """A submission that cannot be graded; the message says why (it goes into the grades CSV)."""


def _source(cell: Mapping) -> str:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    if isinstance(source, str):
        return source
    raise SubmissionError(f"a cell's source should be text, got {type(source).__name__}")


def nbgrader_meta(cell: Mapping) -> dict:
    """A cell's ``metadata.nbgrader`` dict, or ``{}`` when it has none or it is not a dict."""
    meta = cell.get("metadata") if isinstance(cell, Mapping) else None
    meta = meta.get("nbgrader") if isinstance(meta, Mapping) else None
    return meta if isinstance(meta, dict) else {}


def read_submission(path: str | Path) -> dict:
    """A submitted notebook as a dict, checked enough that the grader can take answers from it.

    Args:
        path: the submitted ``.ipynb`` (a regular file, not a symlink).

    Returns:
        the notebook.

    Raises:
        SubmissionError: not a regular file, too large, not JSON, nesting too deep, or no list of
            cells that are dicts (``cells: [null]``, ``metadata: null``, ...).
    """
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise SubmissionError(f"{path.name} is not a regular file (symlinks are never followed)")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{path.name} is {size} bytes; at most {MAX_NOTEBOOK_BYTES} are graded")
    try:
        nb = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise SubmissionError(f"{path.name} is nested too deeply to be a notebook") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise SubmissionError(f"{path.name} is not a JSON notebook ({str(err)[:120]})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path.name} is not a Jupyter notebook (no list of cells)")
    if not isinstance(nb.get("metadata", {}), dict):
        kind = type(nb["metadata"]).__name__
        raise SubmissionError(f"{path.name}: the notebook's metadata should be a dict, got {kind}")
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("metadata", {}), dict):
            raise SubmissionError(f"{path.name}: cells[{i}] is not a notebook cell (a dict with dict metadata)")
        _source(cell)
    try:
        import nbformat

        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)))
    except Exception as err:  # noqa: BLE001 - nbformat raises several kinds; all mean "not gradable"
        first = (str(err).splitlines() or [""])[0][:160]
        raise SubmissionError(f"{path.name} is not a valid nbformat 4 notebook ({first})") from None
    return nb


def answers_of(nb: Mapping) -> dict[str, str]:
    """The student's answer sources by ``grade_id`` (the first cell with each id wins)."""
    answers: dict[str, str] = {}
    for cell in nb.get("cells", []):
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if meta.get("solution") and isinstance(grade_id, str) and grade_id not in answers:
            answers[grade_id] = _source(cell)
    return answers


def rebuild_notebook(source: Mapping, release: Mapping, submission: Mapping) -> tuple[dict, dict[str, list[str]]]:
    """The notebook to execute: the source's cells with the submission's answers (policy-checked).

    Args:
        source: the instructor's notebook (``solutions/<lab>/<lab>.ipynb``), as a dict.
        release: the released notebook (its answer cells are the stubs a missing answer gets).
        submission: the student's notebook, as read by :func:`read_submission`.

    Returns:
        ``(notebook, refused)``: the notebook (a dict, outputs cleared) and, per answer ``grade_id``,
        the policy violations of the answers that were replaced by :func:`blocked_answer`.
    """
    policies = exercise_policies(source["cells"])
    stubs = answers_of(release)
    answers = answers_of(submission)
    refused: dict[str, list[str]] = {}
    nb = copy.deepcopy(dict(source))
    cells = []
    for cell in nb["cells"]:
        cells.append(cell)
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if not meta.get("solution"):
            continue
        grade_id = meta["grade_id"]
        answer = answers.get(grade_id, stubs.get(grade_id, ""))
        if cell.get("cell_type") == "code":
            problems = check_answer(answer, policies[grade_id]) if answer != stubs.get(grade_id) else []
            if problems:
                refused[grade_id] = problems
                answer = blocked_answer(_blocked_names(answer, _source(cell), policies[grade_id]), problems)
            else:
                cells.append(input_guard_cell(grade_id, answer))
        cell["source"] = answer
    nb["cells"] = cells
    return nb, refused


def _blocked_names(answer: str, solution: str, policy) -> list[str]:
    """The names a refused answer's replacement defines (each raising): the model solution's (the names
    the tests call), then the answer's other names except the lab's own (``policy.protected_names``,
    e.g. ``check_close``): a refused answer must not take a lab name down with it, which would fail the
    student's other exercises too."""
    expected = defined_names(solution)
    return expected + [n for n in defined_names(answer) if n not in expected and n not in policy.protected_names]


def input_guard_cell(grade_id: str, answer: str) -> dict:
    """The grader's cell after an answer: each function it defines gets copies of its tensor arguments (
    :func:`course_utils.grading.copy_tensor_arguments` (the cell has no ``grade_id``, so nothing of
    it reaches the gradebook or the feedback; ``__import__`` is a name answers cannot rebind).
    """
    names = [n for n in defined_names(answer) if n.isidentifier()]
    wrap = "__import__('course_utils.grading', fromlist=['grading']).copy_tensor_arguments"
    source = "\n".join(f"if {n!r} in globals():\n    {n} = {wrap}({n})" for n in names) or "pass"
    return {"cell_type": "code", "id": "grader-guard-" + re.sub(r"[^A-Za-z0-9_-]", "-", grade_id)[:48], "metadata": {},
            "source": source, "outputs": [], "execution_count": None}


def _error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}


def _clean_output(output: object, test_cell: bool) -> dict | None:
    """One output of the run, reduced to known fields; None when it is not an output."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "error":
        ename, evalue = str(output.get("ename", "Error"))[:200], str(output.get("evalue", ""))[:4000]
        return _error(ename, evalue) if test_cell else {**_error(ename, evalue), "traceback": [
            str(line)[:2000] for line in (output.get("traceback") or [])[:60] if isinstance(line, str)]}
    if kind == "stream" and output.get("name") in ("stdout", "stderr"):
        text = output.get("text", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        return {"output_type": "stream", "name": output["name"], "text": text[:20000]}
    if kind in ("display_data", "execute_result"):
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        kept = {k: v for k, v in data.items() if k in ("text/plain", "image/png", "text/html", "text/markdown")
                and isinstance(v, (str, list))}
        out = {"output_type": kind, "data": kept, "metadata": {}}
        if kind == "execute_result":
            out["execution_count"] = None
        return out
    return None


def graded_outputs(rebuilt: Mapping, executed: Mapping | None, reason: str) -> dict[str, dict]:
    """What the grader takes back from a run, by ``grade_id`` of the rebuilt notebook's code cells.

    Only cells of the rebuilt notebook count, matched by their cell ``id`` (a run cannot add a
    cell). A test cell that has no execution count, or none of its run at all, gets an error output
    naming ``reason``, so it scores 0 (nbgrader gives full marks to a test cell with no error).

    Args:
        rebuilt: the notebook given to the sandbox.
        executed: the notebook that came back, or None.
        reason: why cells may not have run (the sandbox status), for the error message.

    Returns:
        ``{grade_id: {"source", "outputs", "execution_count"}}``.
    """
    ran = {}
    for cell in (executed or {}).get("cells", []) if isinstance(executed, Mapping) else []:
        if isinstance(cell, dict) and isinstance(cell.get("id"), str):
            ran.setdefault(cell["id"], cell)
    graded = {}
    for cell in rebuilt["cells"]:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or not meta.get("grade_id"):
            continue
        test_cell = bool(meta.get("grade")) and not meta.get("solution")
        result = ran.get(cell.get("id"), {})
        count = result.get("execution_count")
        outputs = [o for o in (_clean_output(o, test_cell) for o in (result.get("outputs") or [])[:MAX_OUTPUTS_PER_CELL]
                               if isinstance(result.get("outputs"), list)) if o is not None]
        if not isinstance(count, int):
            count = None
            if test_cell:
                outputs.append(_error("NotRun", f"this test did not run ({reason})"))
        graded[meta["grade_id"]] = {"source": _source(cell), "outputs": outputs, "execution_count": count}
    return graded


def release_files(release_dir: str | Path, notebook_name: str) -> dict[str, bytes]:
    """The lab's release files other than its notebook, ``{relative path: bytes}`` (no symlinks)."""
    release_dir = Path(release_dir)
    return {p.relative_to(release_dir).as_posix(): p.read_bytes() for p in sorted(release_dir.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != notebook_name}
