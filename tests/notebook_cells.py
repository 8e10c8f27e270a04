"""Run chosen cells of a solution notebook in one namespace, to test its graded exercises."""

import linecache
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_cells(lab: str) -> dict[str, str]:
    """{cell id: source} of ``solutions/<lab>/<lab>.ipynb``."""
    nb = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    return {c.id: c.source for c in nb.cells}


def strip_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _exec(source: str, filename: str, namespace: dict) -> None:
    """Run ``source`` as Jupyter does: registered in ``linecache``, so ``inspect.getsource`` reads it."""
    filename = f"{filename[:-1]} #{len(linecache.cache)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)


def run_cells(cells: dict[str, str], ids: list[str], namespace: dict | None = None, extra: str = "") -> dict:
    """Execute the cells ``ids`` in order, then ``extra`` (e.g. a wrong answer), in ``namespace``."""
    ns = {} if namespace is None else namespace
    for cid in ids:
        _exec(strip_magics(cells[cid]), f"<cell {cid}>", ns)
    if extra:
        _exec(extra, "<extra>", ns)
    return ns


def mutate(cells: dict[str, str], cell: str, *changes: tuple[str, str]) -> str:
    """The source of solution ``cell`` with each (old, new) replaced: a wrong answer a student could write."""
    source = cells[cell]
    for old, new in changes:
        assert old in source, f"{old!r} not in cell {cell}: update this wrong answer"
        source = source.replace(old, new)
    return source


def wrong_answer_cases(wrong: dict[str, dict[str, str]]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(test cell, name, code) triples and their pytest ids, from {test cell: {name: wrong code}}."""
    cases = [(cell, name, code) for cell, wrongs in wrong.items() for name, code in wrongs.items()]
    return cases, [f"{cell}: {name}" for cell, name, _ in cases]


def assert_rejected(cells: dict[str, str], solved: dict, test_cell: str, wrong_code: str) -> None:
    """The test cell must raise once ``wrong_code`` replaced the solution (nbgrader then scores it 0)."""
    namespace = run_cells(cells, [], dict(solved), extra=wrong_code)
    try:
        run_cells(cells, [test_cell], namespace)
    except Exception:  # noqa: BLE001 - any exception scores the cell 0
        return
    raise AssertionError(f"{test_cell} accepted a wrong answer")


def exercise_tests(lab: str, solutions: list[str], test_cells: list[str], wrong: dict[str, dict[str, str]],
                   env: dict[str, str] | None = None):
    """The standard tests of one lab's graded exercises, for a test module to bind at its top level:

        solved, test_solution_passes, test_wrong_answer_fails = exercise_tests(LAB, SOLUTIONS, TEST_CELLS, WRONG)

    Args:
        lab: the lab's folder name, e.g. ``"02_yolo"``.
        solutions: the cells to run first (the setup cell and every solution cell), in order.
        test_cells: the graded test cells the solution must pass.
        wrong: ``{test cell: {name: wrong code}}``, each a plausible wrong answer the test cell must reject.
        env: environment variables set while a test cell runs on the solution (e.g. ``COURSE_MODE``).

    Returns:
        (``solved``: a module-scoped fixture, the namespace after the solution cells;
        ``test_solution_passes``: every test cell accepts the solution;
        ``test_wrong_answer_fails``: every test cell raises on each of its wrong answers).
    """
    cells = load_cells(lab)

    @pytest.fixture(scope="module")
    def solved():
        return run_cells(cells, solutions)

    @pytest.mark.parametrize("test_cell", test_cells)
    def test_solution_passes(solved, test_cell, monkeypatch):
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        run_cells(cells, [test_cell], dict(solved))

    cases, ids = wrong_answer_cases(wrong)

    @pytest.mark.parametrize("test_cell, wrong, code", cases, ids=ids)
    def test_wrong_answer_fails(solved, test_cell, wrong, code):
        assert_rejected(cells, solved, test_cell, code)

    return solved, test_solution_passes, test_wrong_answer_fails
