"""The checks test cells call: they pass right answers, fail wrong ones, and explain why."""

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
    with pytest.raises(GradingError, match="should return a tensor, got a list"):
        check_close([0.0, 0.0], torch.zeros(2), name="f")
    with pytest.raises(GradingError, match="differ"):
        check_close(torch.tensor([float("nan")]), torch.tensor([0.0]), name="f")
    check_close(np.array([0.5]), torch.tensor([0.5]), name="numpy accepted")


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
    with pytest.raises(GradingError, match="parameter 'v' got no finite gradient"):
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
