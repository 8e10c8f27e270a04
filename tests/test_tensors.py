"""course_utils.tensors.plain: tv_tensors in, ordinary tensors out, same memory."""

import numpy as np
import torch
from torchvision import tv_tensors

from course_utils.tensors import plain


def test_plain_strips_tv_tensors_without_copying():
    image = tv_tensors.Image(torch.rand(3, 4, 4))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[0.0, 0, 2, 2]]), format="XYXY", canvas_size=(4, 4))
    for x in (image, boxes, tv_tensors.Mask(torch.zeros(4, 4, dtype=torch.uint8))):
        out = plain(x)
        assert type(out) is torch.Tensor and out.shape == x.shape and out.dtype == x.dtype
        assert out.data_ptr() == x.data_ptr()
    assert type(torch.as_tensor(image)) is tv_tensors.Image, "what plain() exists for: as_tensor keeps the subclass"


def test_plain_accepts_what_as_tensor_accepts():
    assert torch.equal(plain(np.array([1, 2])), torch.tensor([1, 2]))
    assert plain([[1.0, 2.0]]).shape == (1, 2)
    t = torch.ones(2)
    assert plain(t).data_ptr() == t.data_ptr()
