"""Plain tensors out of torchvision's ``tv_tensors``: the one place the course strips the subclass.

The shapes datasets return ``tv_tensors.Image``, ``BoundingBoxes`` and ``Mask`` so that
torchvision's transforms v2 know what each tensor is. Arithmetic on them keeps the subclass and
its metadata, which most code neither needs nor expects (``torch.stack`` of images, a model's
input, a target grid). :func:`plain` turns any of them, or a list, an array or a number, into an
ordinary ``torch.Tensor`` sharing the same memory.
"""

from __future__ import annotations

from typing import Any

import torch


def plain(x: Any) -> torch.Tensor:
    """``x`` as an ordinary ``torch.Tensor`` (no ``tv_tensors`` subclass), without copying a tensor.

    Args:
        x: a tensor (``tv_tensors`` or plain), or anything ``torch.as_tensor`` accepts.

    Returns:
        a ``torch.Tensor`` of the same shape, dtype and device, viewing the same memory when ``x``
        is a tensor.
    """
    return torch.as_tensor(x).as_subclass(torch.Tensor)


__all__ = ["plain"]
