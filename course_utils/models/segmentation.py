"""Segmentation networks of lab 05: a U-Net (with or without its skip connections) and a stacked hourglass.

Both map (B, 3, H, W) images to per-pixel class logits (B, num_classes, H, W); H and W must be
divisible by ``2 ** (len(widths) - 1)``. They are small on purpose (CPU training in a minute);
the ideas are those of the papers:

* O. Ronneberger, P. Fischer, T. Brox, *U-Net: Convolutional Networks for Biomedical Image
  Segmentation*, MICCAI 2015 - an encoder, a decoder, and skip connections that concatenate each
  encoder level to the decoder level of the same resolution.
* A. Newell, K. Yang, J. Deng, *Stacked Hourglass Networks for Human Pose Estimation*, ECCV 2016 -
  U-Net-like blocks in sequence, each predicting the output (intermediate supervision) and passing
  its features and prediction on to the next one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU: (B, c_in, H, W) -> (B, c_out, H, W)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


def _check_widths(widths: tuple[int, ...]) -> None:
    if len(widths) < 2 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be at least 2 positive channel counts, got {widths!r}")


def _check_input(x: torch.Tensor, levels: int) -> None:
    factor = 2 ** (levels - 1)
    if x.dim() != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"input must be (B, C, H, W) with H and W divisible by {factor}, got {tuple(x.shape)}")


class UNet(nn.Module):
    """A small U-Net: (B, in_channels, H, W) -> logits (B, num_classes, H, W).

    Args:
        num_classes: output channels (background included).
        widths: channels per level, from the finest to the coarsest; each level halves H and W.
        skips: concatenate each encoder level to the decoder level of the same resolution (U-Net).
            Without them the decoder only sees the coarsest features (an encoder-decoder).
        in_channels: input channels.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128), *, skips: bool = True,
                 in_channels: int = 3):
        super().__init__()
        _check_widths(widths)
        self.skips, self.levels = skips, len(widths)
        self.down = nn.ModuleList([conv_block(c_in, c_out) for c_in, c_out in zip((in_channels, *widths[:-1]), widths)])
        coarse_to_fine = list(zip(widths[:0:-1], widths[-2::-1]))  # (channels below, channels of the level)
        self.up = nn.ModuleList([nn.ConvTranspose2d(c_low, c, kernel_size=2, stride=2) for c_low, c in coarse_to_fine])
        self.merge = nn.ModuleList([conv_block(2 * c if skips else c, c) for _, c in coarse_to_fine])
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.levels)
        features = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))  # (B, widths[k], H / 2^k, W / 2^k)
            features.append(x)
        for up, merge, skip in zip(self.up, self.merge, features[-2::-1]):
            x = up(x)  # (B, c, 2h, 2w): transposed conv, stride 2, to the channels c of the level
            x = merge(torch.cat([x, skip], dim=1) if self.skips else x)
        return self.head(x)  # (B, num_classes, H, W)


class Hourglass(nn.Module):
    """One hourglass: (B, C, H, W) -> (B, C, H, W), down to H / 2^depth and back up.

    At every resolution a branch keeps the features before pooling and *adds* them back after
    upsampling (Newell et al.'s skip connections; a U-Net concatenates instead).

    Args:
        channels: C, the same at every resolution.
        depth: number of poolings (H and W must be divisible by 2^depth).
    """

    def __init__(self, channels: int, depth: int):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self.depth = depth
        self.skip = conv_block(channels, channels)
        self.down = conv_block(channels, channels)
        self.inner = Hourglass(channels, depth - 1) if depth > 1 else conv_block(channels, channels)
        self.up = conv_block(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)  # (B, C, H, W)
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))  # (B, C, H/2, W/2)
        return skip + F.interpolate(low, scale_factor=2, mode="nearest")  # (B, C, H, W)


class StackedHourglass(nn.Module):
    """Hourglasses in sequence, each predicting logits: (B, 3, H, W) -> num_stacks tensors (B, num_classes, H, W).

    A strided stem divides the resolution by ``stride`` first (2 for lab 05's segmentation; Newell
    et al. use 4, as lab 08's keypoints); each stack's logits are upsampled bilinearly to the input
    size, unless ``upsample=False`` (then they stay at H / stride: a keypoint heatmap per cell). After
    stack k, its features and its prediction (mapped back by 1x1 convs) are added to its input and
    passed to stack k + 1, which can refine the prediction. Train with a loss on *every* output
    (intermediate supervision); use the last one at test time.

    Args:
        num_classes: output channels (background included).
        num_stacks: number of hourglasses.
        channels: feature channels throughout.
        depth: poolings per hourglass.
        in_channels: input channels.
        stride: 2 or 4, the resolution the hourglasses work at (H / stride).
        upsample: return logits at the input size (True) or at H / stride (False).
    """

    def __init__(self, num_classes: int, num_stacks: int = 2, channels: int = 32, depth: int = 3,
                 in_channels: int = 3, *, stride: int = 2, upsample: bool = True):
        super().__init__()
        if num_stacks < 1:
            raise ValueError(f"num_stacks must be >= 1, got {num_stacks!r}")
        if stride not in (2, 4):
            raise ValueError(f"stride must be 2 or 4, got {stride!r}")
        self.depth, self.stride, self.upsample = depth, stride, upsample
        stem = [nn.Conv2d(in_channels, channels, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True), conv_block(channels, channels)]
        if stride == 4:  # Newell et al.: a second halving before the first hourglass
            stem += [nn.MaxPool2d(2), conv_block(channels, channels)]
        self.stem = nn.Sequential(*stem)  # (B, 3, H, W) -> (B, C, H/stride, W/stride)
        self.hourglasses = nn.ModuleList([Hourglass(channels, depth) for _ in range(num_stacks)])
        self.features = nn.ModuleList([conv_block(channels, channels) for _ in range(num_stacks)])
        self.heads = nn.ModuleList([nn.Conv2d(channels, num_classes, 1) for _ in range(num_stacks)])
        self.remap_features = nn.ModuleList([nn.Conv2d(channels, channels, 1) for _ in range(num_stacks - 1)])
        self.remap_logits = nn.ModuleList([nn.Conv2d(num_classes, channels, 1) for _ in range(num_stacks - 1)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _check_input(x, self.depth + self.stride.bit_length())
        size = x.shape[-2:]
        x = self.stem(x)  # (B, C, H/s, W/s), s = stride
        outputs = []
        for k, (hourglass, features, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            f = features(hourglass(x))  # (B, C, H/s, W/s)
            logits = head(f)  # (B, num_classes, H/s, W/s)
            outputs.append(F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                           if self.upsample else logits)  # (B, K, H, W), or (B, K, H/s, W/s)
            if k < len(self.remap_features):
                x = x + self.remap_features[k](f) + self.remap_logits[k](logits)  # the next stack's input
        return tuple(outputs)
