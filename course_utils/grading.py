"""Checks that autograder test cells call, with messages that teach.

A failing check raises :class:`GradingError` (an ``AssertionError``, so nbgrader scores the cell
0) whose message says what was checked, on which input, what was expected and what came back,
plus a hint at the usual mistake:

    check_close(box_iou(a, b), torchvision.ops.box_iou(a, b), name="box_iou(a, b)",
                inputs={"a": a, "b": b}, hint="IoU is intersection / union, not / area of a")

Nothing here imports nbgrader: test cells run in the student's kernel. :func:`check_submission`
is the students' pre-submission self-check (file name, graded cells, nbgrader metadata).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


class GradingError(AssertionError):
    """A graded check failed; the message explains how."""


def _short(x: Any, limit: int = 600) -> str:
    if isinstance(x, torch.Tensor):
        with np.printoptions(precision=4, suppress=True, threshold=40, edgeitems=3):
            text = f"tensor(shape={tuple(x.shape)}, dtype={x.dtype}):\n{x.detach().cpu().numpy()}"
    elif isinstance(x, np.ndarray):
        with np.printoptions(precision=4, suppress=True, threshold=40, edgeitems=3):
            text = f"array(shape={x.shape}, dtype={x.dtype}):\n{x}"
    else:
        text = repr(x)
    return text if len(text) <= limit else text[:limit] + " ..."


def _fail(name: str, problem: str, *, inputs: Mapping | None, expected: Any = None,
          actual: Any = None, hint: str | None = None, show_values: bool = True) -> None:
    lines = [f"{name}: {problem}"]
    if inputs:
        lines.append("inputs:")
        lines += [f"  {k} = {_short(v)}" for k, v in inputs.items()]
    if show_values:
        lines += [f"expected: {_short(expected)}", f"got:      {_short(actual)}"]
    if hint:
        lines.append(f"hint: {hint}")
    raise GradingError("\n".join(lines))


def _as_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    return None


def check_type(actual: Any, expected_type: type | tuple[type, ...], *, name: str,
               inputs: Mapping | None = None, hint: str | None = None) -> None:
    """``actual`` must be an instance of ``expected_type``."""
    if not isinstance(actual, expected_type):
        names = expected_type.__name__ if isinstance(expected_type, type) else \
            " or ".join(t.__name__ for t in expected_type)
        _fail(name, f"should return a {names}, got a {type(actual).__name__}", inputs=inputs,
              hint=hint, show_values=False)


def check_shape(actual: Any, expected_shape: tuple[int, ...], *, name: str,
                inputs: Mapping | None = None, hint: str | None = None) -> None:
    """``actual`` must be a tensor/array of exactly ``expected_shape``."""
    t = _as_tensor(actual)
    if t is None:
        _fail(name, f"should return a tensor, got a {type(actual).__name__}", inputs=inputs,
              hint=hint, show_values=False)
    if tuple(t.shape) != tuple(expected_shape):
        _fail(name, f"wrong shape: expected {tuple(expected_shape)}, got {tuple(t.shape)}",
              inputs=inputs, hint=hint, show_values=False)


def check_close(actual: Any, expected: Any, *, name: str, inputs: Mapping | None = None,
                atol: float = 1e-5, rtol: float = 1e-5, hint: str | None = None) -> None:
    """``actual`` must match ``expected`` in type (tensor/array/number), shape and values.

    NaN in ``actual`` where ``expected`` has none always fails.
    """
    exp = _as_tensor(expected)
    if exp is None:  # a python number
        try:
            value = float(actual.item() if hasattr(actual, "item") else actual)
        except (TypeError, ValueError, RuntimeError):
            _fail(name, f"should be a single number, got {type(actual).__name__}", inputs=inputs,
                  expected=expected, actual=actual, hint=hint)
        if not np.isclose(value, float(expected), atol=atol, rtol=rtol, equal_nan=False):
            _fail(name, "wrong value", inputs=inputs, expected=expected, actual=value, hint=hint)
        return
    check_shape(actual, tuple(exp.shape), name=name, inputs=inputs, hint=hint)
    act = _as_tensor(actual).to(torch.float64)
    exp = exp.to(torch.float64)
    bad = ~torch.isclose(act, exp, atol=atol, rtol=rtol, equal_nan=True)
    if bad.any():
        where = tuple(int(i) for i in torch.nonzero(bad)[0]) if bad.dim() else ()
        _fail(name, f"{int(bad.sum())} of {bad.numel()} values differ (first at index {where}: "
                    f"expected {exp[where].item():.6g}, got {act[where].item():.6g})",
              inputs=inputs, expected=expected, actual=actual, hint=hint)


def check_equal(actual: Any, expected: Any, *, name: str, inputs: Mapping | None = None,
                hint: str | None = None) -> None:
    """Exact equality (tensors: same shape and values; other values: ``==``)."""
    exp = _as_tensor(expected)
    if exp is not None:
        check_shape(actual, tuple(exp.shape), name=name, inputs=inputs, hint=hint)
        if not torch.equal(_as_tensor(actual).to(exp.dtype), exp):
            _fail(name, "wrong values", inputs=inputs, expected=expected, actual=actual, hint=hint)
    elif actual != expected:
        _fail(name, "wrong value", inputs=inputs, expected=expected, actual=actual, hint=hint)


def check_raises(fn: Callable, exception: type[BaseException], *args: Any, name: str,
                 hint: str | None = None, **kwargs: Any) -> BaseException:
    """``fn(*args, **kwargs)`` must raise ``exception``; returns it."""
    try:
        fn(*args, **kwargs)
    except exception as err:
        return err
    except Exception as err:  # noqa: BLE001 - report what came instead
        _fail(name, f"should raise {exception.__name__}, raised {type(err).__name__}: {err}",
              inputs={"args": args, "kwargs": kwargs} if args or kwargs else None, hint=hint,
              show_values=False)
    _fail(name, f"should raise {exception.__name__} but returned normally",
          inputs={"args": args, "kwargs": kwargs} if args or kwargs else None, hint=hint,
          show_values=False)
    raise AssertionError("unreachable")


def check_grad_flows(output: torch.Tensor, params: Mapping[str, torch.Tensor] | Any, *, name: str,
                     hint: str | None = None) -> None:
    """Backpropagating ``output.sum()`` must give every parameter a finite, non-None gradient."""
    if not isinstance(output, torch.Tensor) or not output.requires_grad:
        _fail(name, "the result does not depend on the parameters (no gradient can flow); "
                    "did you call .item(), .detach() or .numpy() on the way?", inputs=None,
              hint=hint, show_values=False)
    items = params.items() if isinstance(params, Mapping) else params.named_parameters()
    items = list(items)
    for _, p in items:
        p.grad = None
    output.sum().backward()
    for pname, p in items:
        if p.grad is None or not torch.isfinite(p.grad).all():
            _fail(name, f"parameter {pname!r} got no finite gradient", inputs=None, hint=hint,
                  show_values=False)


# --- pre-submission self-check ------------------------------------------------------------------

# --- answers never hold the tests' own tensors ---------------------------------------------------

def _copied(value: Any, depth: int = 2) -> Any:
    """``value`` with every tensor cloned (also inside lists, tuples and dicts, ``depth`` levels deep).

    ``clone()`` keeps the autograd graph, so a gradient through the copy still reaches the original.
    """
    if isinstance(value, torch.Tensor):
        try:
            return value.clone()
        except (RuntimeError, NotImplementedError):  # sparse, meta or otherwise uncopyable: passed as is
            return value
    if depth > 0 and type(value) in (list, tuple):
        return type(value)(_copied(v, depth - 1) for v in value)
    if depth > 0 and type(value) is dict:
        return {k: _copied(v, depth - 1) for k, v in value.items()}
    return value


def copy_tensor_arguments(fn: Callable) -> Callable:
    """``fn`` wrapped so that it gets copies of its tensor arguments, never the caller's tensors.

    The grader wraps every function an answer cell defines (:func:`course_utils.rebuild.input_guard_cell`):
    a test that calls ``answer(x)`` and then the reference on the same ``x`` compares with the
    reference on the input the test built, whatever the answer wrote into its argument, now or in a
    later call through a reference it kept. Tensors inside list, tuple and dict arguments are copied
    too; gradients still flow to the originals.

    Args:
        fn: a function (classes and other objects are returned unchanged).

    Returns:
        the wrapped function (same name, docstring and ``__wrapped__``, so ``inspect`` still reads
        the answer's source).
    """
    if not callable(fn) or isinstance(fn, type) or not hasattr(fn, "__code__"):
        return fn

    @functools.wraps(fn)
    def with_copies(*args: Any, **kwargs: Any) -> Any:
        return fn(*(_copied(a) for a in args), **{k: _copied(v) for k, v in kwargs.items()})

    return with_copies


def _read_notebook(path: Path) -> dict:
    """A notebook as plain JSON (no nbformat/nbgrader needed in the student's kernel)."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no list of cells)")
    return nb


def _grade_ids(nb: dict) -> list[str]:
    """The nbgrader ``grade_id`` of every cell that has one, in notebook order."""
    ids = []
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and meta.get("grade_id"):
            ids.append(meta["grade_id"])
    return ids


def _find_release(path: Path) -> Path | None:
    """The notebook ``path`` should match: ``labs/<lab>/<lab>.ipynb``, the release students hold.

    The lab is guessed from the file name, then from the folder name (a renamed copy usually stays
    in its lab's folder); ``labs/`` is looked for in the folders above ``path`` and next to this
    package. The instructor's ``solutions/`` is never needed. When the only candidate is ``path``
    itself (the student edits the release in place), it is compared with itself: the file name and
    duplicated cells are still checked.
    """
    lab_names = [path.stem, path.parent.name]
    package_root = Path(__file__).resolve().parents[1]
    roots = [*path.resolve().parents, package_root]
    itself = None
    for lab in lab_names:
        for root in roots:
            candidate = root / "labs" / lab / f"{lab}.ipynb"
            if candidate.is_file():
                if candidate.resolve() != path.resolve():
                    return candidate
                itself = candidate
    return itself


def check_submission(path: str | Path, release: str | Path | None = None, *, verbose: bool = True) -> list[str]:
    """Check a notebook before you submit it: right file name, every graded cell there exactly once.

    nbgrader grades a notebook by its file name and by the hidden metadata of its graded cells
    (``grade_id``). This warns when the file was renamed (``Copy of ...``, ``... (1).ipynb``), when
    a graded cell was deleted or duplicated, or when the metadata was stripped (some editors and
    "download as" paths drop it).

    Args:
        path: the notebook you will submit.
        release: the notebook handed out (default: found from ``path``'s lab name, see above).
        verbose: print the problems (or an all-clear) as well as returning them.

    Returns:
        the problems found, as sentences; ``[]`` when the notebook is fine.
    """
    path = Path(path)
    problems = _submission_problems(path, Path(release) if release is not None else _find_release(path))
    if verbose:
        if problems:
            print(f"{len(problems)} problem(s) with {path.name}:")
            for i, problem in enumerate(problems, 1):
                print(f"  {i}. {problem}")
        else:
            print(f"{path.name} looks ready to submit: file name and graded cells match the release.")
    return problems


def _submission_problems(path: Path, release: Path | None) -> list[str]:
    """The list behind :func:`check_submission`."""
    if not path.is_file():
        return [f"{path} does not exist"]
    try:
        nb = _read_notebook(path)
    except (ValueError, UnicodeDecodeError) as err:
        return [f"{path.name} cannot be read as a notebook ({err}); re-download it from Jupyter as .ipynb"]
    if release is None:
        return [f"cannot find the released notebook to compare {path.name} with; "
                f"call check_submission(path, release='labs/<lab>/<lab>.ipynb')"]
    reference = _read_notebook(release)
    problems = []
    expected_name = f"{release.parent.name}.ipynb" if release.parent.name == release.stem else release.name
    if path.name != expected_name:
        problems.append(f"the file is called {path.name!r} but nbgrader looks for {expected_name!r}: "
                        f"rename it to {expected_name!r} before submitting, or it will not be graded")
    expected, found = _grade_ids(reference), _grade_ids(nb)
    if expected and not found:
        problems.append("the notebook has no nbgrader metadata at all (it was stripped, e.g. by saving "
                        "through a tool that drops cell metadata): copy your answers into a fresh copy "
                        "of the released notebook and submit that")
        return problems
    for grade_id in expected:
        if grade_id not in found:
            problems.append(f"graded cell {grade_id!r} is missing (deleted, or its metadata was lost): "
                            f"copy it back from the released notebook")
    for grade_id in sorted(set(found)):
        count = found.count(grade_id)
        if count > 1:
            problems.append(f"graded cell {grade_id!r} appears {count} times (copied or duplicated): "
                            f"keep only one, with your answer in it")
        if grade_id not in expected:
            problems.append(f"cell {grade_id!r} is not in the released notebook: was it pasted from "
                            f"another lab? remove it")
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils.grading NOTEBOOK [--release RELEASE]``: exit 1 when there are problems."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_utils.grading",
                                     description=check_submission.__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("--release", help="the released notebook (default: found from the lab's name)")
    args = parser.parse_args(argv)
    return 1 if check_submission(args.notebook, release=args.release) else 0


if __name__ == "__main__":
    raise SystemExit(main())
