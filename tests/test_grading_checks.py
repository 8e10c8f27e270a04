"""The checks test cells call: they pass right answers, fail wrong ones, and explain why."""

import functools

import numpy as np
import pytest
import torch

from course_utils.grading import (
    GradingError,
    check_close,
    check_equal,
    check_grad_flows,
    check_raises,
    check_shape,
    check_type,
    check_vectorised,
    copy_tensor_arguments,
)


def test_check_close_passes_and_fails_with_a_teaching_message():
    check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7]), name="f")
    with pytest.raises(GradingError) as err:
        check_close(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]), name="box_iou(a, b)",
                    inputs={"a": torch.zeros(1, 4)}, hint="clamp at 0")
    msg = str(err.value)
    assert "box_iou(a, b)" in msg and "1 of 2 values differ" in msg and "index (1,)" in msg
    assert "inputs:" in msg and "a = tensor(shape=(1, 4)" in msg
    assert "expected:" in msg and "got:" in msg and "hint: clamp at 0" in msg
    assert isinstance(err.value, AssertionError)  # nbgrader scores the cell 0


def test_check_close_shape_type_and_nan():
    with pytest.raises(GradingError, match=r"wrong shape: expected \(2, 2\), got \(4,\)"):
        check_close(torch.zeros(4), torch.zeros(2, 2), name="f")
    with pytest.raises(GradingError, match="should return a torch.Tensor, got a list"):
        check_close([0.0, 0.0], torch.zeros(2), name="f")
    with pytest.raises(GradingError, match="differ"):
        check_close(torch.tensor([float("nan")]), torch.tensor([0.0]), name="f")
    with pytest.raises(GradingError, match="should return a torch.Tensor, got a numpy array"):
        check_close(np.array([0.5], dtype=np.float32), torch.tensor([0.5]), name="f")
    check_close(np.array([0.5]), np.array([0.5]), name="numpy where numpy is expected")


def test_check_close_scalars():
    check_close(torch.tensor(0.25), 0.25, name="s")
    check_close(0.25, 0.25, name="s")
    with pytest.raises(GradingError, match="wrong value"):
        check_close(torch.tensor(0.3), 0.25, name="s")
    with pytest.raises(GradingError, match="single number"):
        check_close(torch.zeros(3), 0.25, name="s")
    with pytest.raises(GradingError, match="wrong value"):
        check_close(float("nan"), 0.0, name="s")


def test_check_equal_shape_type_raises():
    check_equal(torch.tensor([1, 2]), torch.tensor([1, 2]), name="e")
    with pytest.raises(GradingError, match="wrong values"):
        check_equal(torch.tensor([1, 3]), torch.tensor([1, 2]), name="e")
    with pytest.raises(GradingError, match="wrong value"):
        check_equal("a", "b", name="e")
    check_shape(torch.zeros(2, 3), (2, 3), name="s")
    with pytest.raises(GradingError, match=r"expected \(3, 2\)"):
        check_shape(torch.zeros(2, 3), (3, 2), name="s")
    check_type(1.0, float, name="t")
    with pytest.raises(GradingError, match="should return a float or int, got a str"):
        check_type("1", (float, int), name="t")


def test_check_raises():
    err = check_raises(int, ValueError, "x", name="int('x')")
    assert isinstance(err, ValueError)
    with pytest.raises(GradingError, match="returned normally"):
        check_raises(int, ValueError, "3", name="int('3')")
    with pytest.raises(GradingError, match="raised TypeError"):
        check_raises(int, ValueError, None, name="int(None)")


def test_check_grad_flows():
    w = torch.ones(3, requires_grad=True)
    v = torch.ones(2, requires_grad=True)
    check_grad_flows((w * 2).sum() + v.sum(), {"w": w, "v": v}, name="g")
    with pytest.raises(GradingError, match="expected a finite, non-zero gradient for 'v'; it got no gradient"):
        check_grad_flows((w * 2).sum(), {"w": w, "v": v}, name="g")
    with pytest.raises(GradingError, match="does not depend"):
        check_grad_flows((w * 2).sum().detach(), {"w": w}, name="g")


def test_an_answer_gets_copies_so_the_reference_sees_the_tests_inputs():
    kept = []

    def answer(boxes, extra, *, targets):
        """Writes into everything it gets, and keeps a reference for later."""
        boxes[:] = 0
        extra[0].fill_(7)
        targets["boxes"] += 1
        kept.append(boxes)
        return boxes.sum()

    wrapped = copy_tensor_arguments(answer)
    boxes, extra, target = torch.ones(2, 4), [torch.ones(3)], {"boxes": torch.ones(1, 4)}
    wrapped(boxes, extra, targets=target)
    kept[0].fill_(5)  # a later write through the kept reference
    assert torch.equal(boxes, torch.ones(2, 4)) and torch.equal(extra[0], torch.ones(3))
    assert torch.equal(target["boxes"], torch.ones(1, 4))
    assert wrapped.__name__ == "answer" and wrapped.__wrapped__ is answer and "Writes" in wrapped.__doc__


def test_copies_keep_gradients_and_leave_classes_alone():
    x = torch.ones(3, requires_grad=True)
    copy_tensor_arguments(lambda t: (t * 2).sum())(x).backward()
    assert torch.equal(x.grad, torch.full((3,), 2.0))
    assert copy_tensor_arguments(torch.nn.Linear) is torch.nn.Linear
    assert copy_tensor_arguments(3) == 3


# --- strict by default: kind, dtype, device, shape --------------------------------------------------

def _message(check, *args, **kwargs) -> str:
    with pytest.raises(GradingError) as err:
        check(*args, **kwargs)
    msg = str(err.value)
    assert "hint:" in msg, msg  # every failure gives a hint
    return msg


def test_a_float_mask_fails_where_a_bool_mask_is_asked():
    mask = torch.tensor([True, False, True])
    check_equal(torch.tensor([True, False, True]), mask, name="m")
    msg = _message(check_equal, mask.float(), mask, name="m")
    assert "wrong dtype: expected torch.bool, got torch.float32" in msg and "bool tensor" in msg
    msg = _message(check_close, mask.float(), mask, name="m")
    assert "expected torch.bool" in msg
    check_close(mask.float(), mask, name="m", dtype=None)  # the explicit opt-out


def test_float32_fails_where_float64_is_asked():
    want = torch.tensor([0.25, 0.5], dtype=torch.float64)
    check_close(want.clone(), want, name="iou")
    msg = _message(check_close, want.float(), want, name="iou", hint="keep float64")
    assert "expected torch.float64, got torch.float32" in msg and "hint: keep float64" in msg
    check_close(want.float(), want, name="iou", dtype=None)
    check_close(want.float(), want, name="iou", dtype=torch.float32)  # a dtype asked for explicitly
    with pytest.raises(GradingError, match="expected torch.float32, got torch.float64"):
        check_close(want, want, name="iou", dtype=torch.float32)


def test_numpy_or_lists_fail_where_a_tensor_is_asked():
    want = torch.tensor([1, 2])
    msg = _message(check_equal, np.array([1, 2]), want, name="idx")
    assert "should return a torch.Tensor, got a numpy array (dtype int64)" in msg and "stay in torch" in msg
    assert "got a list" in _message(check_equal, [1, 2], want, name="idx")
    assert "expected torch.int64, got torch.int32" in _message(check_equal, want.int(), want, name="idx")
    assert "int64" in _message(check_equal, want.float(), want, name="idx")
    with pytest.raises(GradingError, match="should return a numpy array, got a torch.Tensor"):
        check_close(torch.zeros(2, dtype=torch.float64), np.zeros(2), name="n")


def test_the_device_must_match():
    meta = torch.zeros(2, device="meta")
    with pytest.raises(GradingError, match="wrong device: expected a tensor on cpu, got one on meta"):
        check_close(meta, torch.zeros(2), name="d")


def test_a_python_number_accepts_a_number_or_a_0d_tensor_only():
    check_close(0.5, 0.5, name="s")
    check_close(torch.tensor(0.5, dtype=torch.float64), 0.5, name="s")
    check_close(np.float64(0.5), 0.5, name="s")
    assert "shape (1, 1)" in _message(check_close, torch.tensor([[0.5]]), 0.5, name="s")
    assert "got a str" in _message(check_close, "0.5", 0.5, name="s")
    assert "got a Python bool" in _message(check_close, True, 1.0, name="s")


def test_check_equal_on_python_values_checks_the_type():
    check_equal(3, 3, name="e")
    check_equal(3, 3.0, name="e")
    assert "should be a Python bool, got a Python int" in _message(check_equal, 1, True, name="e")
    assert "got a torch.Tensor" in _message(check_equal, torch.tensor(3), 3, name="e")


# --- gradients: non-zero, per term ---------------------------------------------------------------

def test_a_zero_gradient_fails():
    w = torch.ones(3, requires_grad=True)
    check_grad_flows(w * 2, {"w": w}, name="g")
    msg = _message(check_grad_flows, w * 0, {"w": w}, name="g")
    assert "expected a finite, non-zero gradient for 'w'; it got a gradient that is exactly zero" in msg
    clamped = (w + 5).clamp(0, 1)  # a clamp that cuts the gradient outside [0, 1]
    assert "exactly zero" in _message(check_grad_flows, clamped, {"w": w}, name="g")
    assert "not finite" in _message(check_grad_flows, (w - 1).sqrt(), {"w": w}, name="g")
    assert w.grad is None  # nothing accumulated into .grad


def test_a_detached_term_fails_even_when_another_term_carries_a_gradient():
    pred = torch.rand(4, requires_grad=True)
    good = {"coord": (pred ** 2).sum(), "cls": (pred - 1).abs().sum()}
    check_grad_flows(good, {"pred": pred}, name="loss")
    bad = {"coord": (pred ** 2).sum(), "cls": (pred.detach() - 1).abs().sum() + 0 * pred.sum()}
    msg = _message(check_grad_flows, bad, {"pred": pred}, name="loss")
    assert "cls: expected a finite, non-zero gradient for 'pred'" in msg and "no .detach()" in msg
    # the old way, a sum of the terms, cannot see it
    check_grad_flows(bad["coord"] + bad["cls"], {"pred": pred}, name="loss")
    fully = {"coord": (pred ** 2).sum(), "obj": (pred.detach() ** 2).sum()}
    assert "obj does not depend on the parameters" in _message(check_grad_flows, fully, {"pred": pred}, name="loss")
    assert "got a Python float" in _message(check_grad_flows, {"t": 0.5}, {"pred": pred}, name="loss")


def test_grad_flows_takes_a_module_and_names_the_parameter_without_a_gradient():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.rand(5, 3)
    check_grad_flows(net(x), net, name="net")
    msg = _message(check_grad_flows, net[2](net[1](net[0](x).detach())), net, name="net")
    assert "'0.weight'" in msg and "no gradient" in msg
    frozen = torch.ones(2)
    assert "does not require a gradient" in _message(check_grad_flows, frozen * 2, {"frozen": frozen}, name="g")


# --- vectorised --------------------------------------------------------------------------------

def _pairwise_vectorised(a, b):
    return (a[:, None, :] - b[None, :, :]).abs().sum(-1)


def _pairwise_loop(a, b):
    out = torch.zeros(len(a), len(b))
    for i in range(len(a)):
        out[i] = (a[i] - b).abs().sum(-1)
    return out


def _pairwise_comprehension(a, b):
    return torch.stack([(row - b).abs().sum(-1) for row in a])


def _pairwise_while(a, b):
    rows, i = [], 0
    while i < len(a):
        rows.append((a[i] - b).abs().sum(-1))
        i += 1
    return torch.stack(rows)


def _calls_a_looping_helper(a, b):
    return _pairwise_loop(a, b)


def test_check_vectorised_passes_broadcasting_and_fails_loops():
    check_vectorised(_pairwise_vectorised, name="pairwise")
    for fn, what in [(_pairwise_loop, "a for loop"), (_pairwise_comprehension, "a list comprehension"),
                     (_pairwise_while, "a while loop"), (_calls_a_looping_helper, "_pairwise_loop: a for loop")]:
        msg = _message(check_vectorised, fn, name="pairwise")
        assert "should be vectorised" in msg and what in msg and "broadcasting" in msg, (fn, msg)


def test_check_vectorised_sees_through_the_graders_wrapper_and_without_source():
    wrapped = copy_tensor_arguments(_pairwise_loop)
    assert "for loop" in _message(check_vectorised, wrapped, name="pairwise")
    check_vectorised(functools.wraps(_pairwise_vectorised)(lambda *a: _pairwise_vectorised(*a)), name="p")
    namespace = {"torch": torch}  # exec'd code has no source file: the bytecode is read instead
    exec("def f(a):\n    return sum(x for x in a)\ndef g(a):\n    return a * 2\n", namespace)
    assert "for loop or comprehension" in _message(check_vectorised, namespace["f"], name="f")
    check_vectorised(namespace["g"], name="g")
