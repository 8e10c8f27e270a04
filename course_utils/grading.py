"""Checks that autograder test cells call, with messages that teach.

A failing check raises :class:`GradingError` (an ``AssertionError``, so nbgrader scores the cell
0) whose message says what was checked, on which input, what was expected and what came back,
plus a hint at the usual mistake:

    check_close(box_iou(a, b), torchvision.ops.box_iou(a, b), name="box_iou(a, b)",
                inputs={"a": a, "b": b}, hint="IoU is intersection / union, not / area of a")

Nothing here imports nbgrader: test cells run in the student's kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
