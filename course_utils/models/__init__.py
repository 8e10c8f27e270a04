"""Models: backbones (pretrained torchvision weights in full mode, a small from-scratch net otherwise),
segmentation networks (U-Net, stacked hourglass)."""

from .backbones import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained
from .segmentation import Hourglass, StackedHourglass, UNet

__all__ = ["Hourglass", "SmallBackbone", "StackedHourglass", "UNet", "WeightsUnavailable", "load_backbone",
           "load_pretrained"]
