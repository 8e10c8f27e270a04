"""Checks that autograder test cells call, with messages that teach.

A failing check raises :class:`GradingError` (an ``AssertionError``, so nbgrader scores the cell
0) whose message says what was checked, on which input, what was expected and what came back,
plus a hint at the usual mistake:

    check_close(box_iou(a, b), torchvision.ops.box_iou(a, b), name="box_iou(a, b)",
                inputs={"a": a, "b": b}, hint="IoU is intersection / union, not / area of a")

The checks are strict by default, because a test that converts the answer before comparing
passes wrong answers (a float mask where a bool one is asked, float32 where float64 is, numpy where
a tensor is):

- :func:`check_close` / :func:`check_equal` check the kind of value (tensor, numpy array, Python
  number), the dtype, the device, the shape, then the values. ``dtype=None`` accepts any dtype
  where the text allows it; a Python number as ``expected`` accepts a number or a 0-d tensor.
- :func:`check_grad_flows` demands a finite, non-zero gradient for each named parameter or input,
  and checks each term of a dict of outputs on its own (a detached loss term fails).
- :func:`check_vectorised` fails a function (or a helper it calls) that contains a Python loop or
  comprehension, where the text asks for a vectorised answer.
- :func:`check_type`, :func:`check_shape` and :func:`check_raises` check one property each.

Nothing here imports nbgrader: test cells run in the student's kernel. :func:`check_submission`
is the students' pre-submission self-check (file name, graded cells, nbgrader metadata).
"""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import json
import textwrap
import types
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


_DEFAULT_HINT = "re-read what the exercise text asks for this case, and run your function on the inputs shown"


def _fail(name: str, problem: str, *, inputs: Mapping | None, expected: Any = None,
          actual: Any = None, hint: str | None = None, show_values: bool = True) -> None:
    lines = [f"{name}: {problem}"]
    if inputs:
        lines.append("inputs:")
        lines += [f"  {k} = {_short(v)}" for k, v in inputs.items()]
    if show_values:
        lines += [f"expected: {_short(expected)}", f"got:      {_short(actual)}"]
    lines.append(f"hint: {hint or _DEFAULT_HINT}")
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


def _kind(x: Any) -> str:
    """What a value is, in the words of the messages: tensor, numpy array, Python number, ..."""
    if isinstance(x, torch.Tensor):
        return f"a torch.Tensor (dtype {x.dtype}, device {x.device})"
    if isinstance(x, np.ndarray):
        return f"a numpy array (dtype {x.dtype})"
    if isinstance(x, bool):
        return "a Python bool"
    if isinstance(x, (int, float)):
        return f"a Python {type(x).__name__}"
    return f"a {type(x).__name__}"


_SAME = "same"


def _check_kind(actual: Any, expected: Any, *, name: str, inputs: Mapping | None, hint: str | None,
                dtype: Any) -> None:
    """``actual`` is the same kind of value as ``expected`` (tensor/array), with the dtype and device asked.

    ``dtype``: ``"same"`` (expected's dtype), ``None`` (any dtype) or a ``torch.dtype``/numpy dtype.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            _fail(name, f"should return a torch.Tensor, got {_kind(actual)}", inputs=inputs,
                  hint=_join(hint, "stay in torch: no .numpy(), .tolist() or .item() on the result"),
                  show_values=False)
        if actual.device != expected.device:
            _fail(name, f"wrong device: expected a tensor on {expected.device}, got one on {actual.device}",
                  inputs=inputs, hint=_join(hint, "create new tensors on the input's device (device=x.device)"),
                  show_values=False)
    elif isinstance(expected, np.ndarray):
        if not isinstance(actual, np.ndarray):
            _fail(name, f"should return a numpy array, got {_kind(actual)}", inputs=inputs, hint=hint,
                  show_values=False)
    want = expected.dtype if dtype == _SAME else dtype
    if want is None:
        return
    if isinstance(actual, np.ndarray):
        want = np.dtype(want) if not isinstance(want, torch.dtype) else want
        ok = actual.dtype == want
    else:
        ok = actual.dtype == want
    if not ok:
        _fail(name, f"wrong dtype: expected {want}, got {actual.dtype}", inputs=inputs,
              hint=_join(hint, _dtype_hint(want, actual.dtype)), show_values=False)


def _dtype_hint(want: Any, got: Any) -> str:
    want = str(want).replace("torch.", "")
    if want == "bool":
        return "a mask is a bool tensor: compare (x > t), do not convert it with .float()"
    if want == "int64":
        return "indices and labels are int64 (torch.long): no .float(), no int32"
    if want == "float64":
        return "keep the input's dtype: do not call .float() or create float32 tensors for a float64 input"
    return "keep the dtype of the inputs (no .double()/.float(); new tensors with dtype=x.dtype)"


def _join(hint: str | None, extra: str) -> str:
    return f"{hint}; {extra}" if hint else extra


def _number(actual: Any, expected: Any, *, name: str, inputs: Mapping | None, hint: str | None) -> float:
    """``actual`` as a float, when it is one number: a Python number or a 0-d tensor/array."""
    if isinstance(actual, (torch.Tensor, np.ndarray)):
        if actual.ndim != 0:
            _fail(name, f"should be a single number (a Python number or a 0-d tensor), got a tensor of shape "
                        f"{tuple(actual.shape)}", inputs=inputs, expected=expected, actual=actual,
                  hint=_join(hint, "index the result down to a scalar, e.g. [0, 0], or reduce it"))
        return float(actual.item())
    if isinstance(actual, bool) != isinstance(expected, bool) or not isinstance(actual, (int, float)):
        _fail(name, f"should be a single number like {expected!r}, got {_kind(actual)}", inputs=inputs,
              expected=expected, actual=actual, hint=hint)
    return float(actual)


def check_close(actual: Any, expected: Any, *, name: str, inputs: Mapping | None = None,
                atol: float = 1e-5, rtol: float = 1e-5, hint: str | None = None, dtype: Any = _SAME) -> None:
    """``actual`` must match ``expected`` in kind, dtype, device, shape and values (within atol/rtol).

    - ``expected`` a tensor: ``actual`` must be a ``torch.Tensor`` on the same device, with the same
      dtype (a float32 answer where float64 is expected fails), and the same shape.
    - ``expected`` a numpy array: ``actual`` must be a numpy array of the same dtype and shape.
    - ``expected`` a Python number: ``actual`` must be one number, a Python int/float or a 0-d
      tensor/array (a Python literal carries no dtype; pass a tensor to ask for one).
    - ``dtype``: ``"same"`` (the default: expected's dtype), ``None`` to accept any dtype (the values
      are then compared in float64), or a dtype the answer must have.

    NaN in ``actual`` where ``expected`` has none always fails.
    """
    if not isinstance(expected, (torch.Tensor, np.ndarray)):  # a python number
        value = _number(actual, expected, name=name, inputs=inputs, hint=hint)
        if not np.isclose(value, float(expected), atol=atol, rtol=rtol, equal_nan=False):
            _fail(name, "wrong value", inputs=inputs, expected=expected, actual=value, hint=hint)
        return
    _check_kind(actual, expected, name=name, inputs=inputs, hint=hint, dtype=dtype)
    exp = _as_tensor(expected)
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
                hint: str | None = None, dtype: Any = _SAME) -> None:
    """Exact equality.

    Tensors and arrays: same kind, dtype (``dtype`` as in :func:`check_close`), device, shape and
    values. Other values: the same type (an ``int`` where a ``bool`` is expected fails) and ``==``.
    """
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        _check_kind(actual, expected, name=name, inputs=inputs, hint=hint, dtype=dtype)
        exp = _as_tensor(expected)
        check_shape(actual, tuple(exp.shape), name=name, inputs=inputs, hint=hint)
        act = _as_tensor(actual)
        same = torch.equal(act, exp) if act.dtype == exp.dtype else \
            torch.equal(act.to(torch.float64), exp.to(torch.float64))
        if not same:
            _fail(name, "wrong values", inputs=inputs, expected=expected, actual=actual, hint=hint)
        return
    numbers = (int, float)
    if isinstance(actual, (torch.Tensor, np.ndarray)) or (
            type(actual) is not type(expected) and not (type(actual) in numbers and type(expected) in numbers)):
        _fail(name, f"should be {_kind(expected)}, got {_kind(actual)}", inputs=inputs, expected=expected,
              actual=actual, hint=hint)
    if actual != expected:
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


def check_grad_flows(output: torch.Tensor | Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor] | Any,
                     *, name: str, hint: str | None = None) -> None:
    """Each output must give every parameter (or input) a finite, **non-zero** gradient.

    ``output`` is one tensor, or a dict ``{term name: tensor}`` whose terms are checked one at a
    time (``check_grad_flows({"coord": terms["coord"], "cls": terms["cls"]}, {"pred": pred}, ...)``):
    a term computed on detached predictions fails even when another term carries a gradient. Each
    term is reduced with ``.sum()``; gradients are taken with ``torch.autograd.grad`` (nothing is
    accumulated into ``.grad``). ``params``: ``{name: tensor}`` (inputs with ``requires_grad`` or
    parameters) or an ``nn.Module`` (its named parameters). A parameter tensor passes when its gradient
    is finite everywhere and non-zero somewhere.
    """
    terms = dict(output) if isinstance(output, Mapping) else {"the output": output}
    items = list(params.items() if isinstance(params, Mapping) else params.named_parameters())
    for pname, p in items:
        if not isinstance(p, torch.Tensor) or not p.requires_grad:
            _fail(name, f"{pname!r} does not require a gradient (the test cannot check it)", inputs=None,
                  hint=_join(hint, "do not turn requires_grad off on parameters or inputs"), show_values=False)
    for term, value in terms.items():
        if not isinstance(value, torch.Tensor) or not value.requires_grad:
            _fail(name, f"{term} does not depend on the parameters (no gradient can flow): expected a tensor "
                        f"in the autograd graph, got {_kind(value)}"
                        + ("" if not isinstance(value, torch.Tensor) else " with requires_grad=False"),
                  inputs=None, hint=_join(hint, "did you call .item(), .detach(), .numpy() or torch.tensor(...) on "
                                                "the way, or compute it under torch.no_grad()?"), show_values=False)
        grads = torch.autograd.grad(value.sum(), [p for _, p in items], retain_graph=True, allow_unused=True)
        for (pname, _), grad in zip(items, grads):
            if grad is None:
                problem = "got no gradient (it is not in the graph of this output)"
            elif not torch.isfinite(grad).all():
                problem = "got a gradient that is not finite (nan or inf)"
            elif not grad.count_nonzero():
                problem = "got a gradient that is exactly zero everywhere"
            else:
                continue
            _fail(name, f"{term}: expected a finite, non-zero gradient for {pname!r}; it {problem}", inputs=None,
                  hint=_join(hint, "every term must be computed from the predictions it trains: no .detach(), "
                                   "no clamp or rounding that cuts the gradient, no constant in its place"),
                  show_values=False)


_LOOPS = {ast.For: "a for loop", ast.AsyncFor: "a for loop", ast.While: "a while loop",
          ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
          ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression"}


def _loops_in_code(code: types.CodeType) -> list[str]:
    """Loops found in the bytecode of ``code`` and the code it nests (when no source is available)."""
    ops = {instr.opname: instr for instr in reversed(list(dis.get_instructions(code)))}
    found = []
    if "FOR_ITER" in ops:
        line = getattr(ops["FOR_ITER"].positions, "lineno", None)
        found.append(f"a for loop or comprehension (line {line})")
    elif {"JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP_ABSOLUTE"} & set(ops):
        found.append("a while loop")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found += _loops_in_code(const)
    return found


def _loops_of(fn: Callable) -> tuple[list[str], set[str]]:
    """(the loops in ``fn``, the global names it uses), from its source when it can be read."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        code = fn.__code__
        return _loops_in_code(code), set(code.co_names)
    first = fn.__code__.co_firstlineno
    loops = [f"{what} (line {first + node.lineno - 1})" for node in ast.walk(tree)
             for kind, what in _LOOPS.items() if isinstance(node, kind)]
    return loops, {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def check_vectorised(fn: Callable, *, name: str, hint: str | None = None) -> None:
    """``fn`` (and every function of the same notebook it calls) has no Python loop over the data.

    The exercise text asks for tensor operations (broadcasting, indexing, reductions): no ``for``
    or ``while`` loop and no comprehension or generator expression. The check reads the function's
    source (``inspect.getsource`` after ``inspect.unwrap``, as the grader wraps answers with
    ``functools.wraps``), or its bytecode when there is no source; the functions it calls by name
    that were defined in the same namespace (helpers of the answer cell) are checked too.
    """
    seen: set[int] = set()
    todo = [inspect.unwrap(fn)]
    problems = []
    while todo:
        f = todo.pop()
        if id(f) in seen or not hasattr(f, "__code__"):
            continue
        seen.add(id(f))
        loops, names = _loops_of(f)
        problems += [f"{f.__name__}: {loop}" for loop in loops]
        namespace = getattr(f, "__globals__", {})
        for n in names:
            g = namespace.get(n)
            g = inspect.unwrap(g) if callable(g) else g
            if isinstance(g, types.FunctionType) and g.__globals__ is namespace:
                todo.append(g)
    if problems:
        _fail(name, "should be vectorised (no Python loop over boxes or elements), found "
                    + "; ".join(problems), inputs=None,
              hint=_join(hint, "use broadcasting (x[:, None] against y[None, :]), torch.where and reductions "
                               "instead of loops and comprehensions"), show_values=False)


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
