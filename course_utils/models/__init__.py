"""Models: backbones (pretrained torchvision weights in full mode, a small from-scratch net otherwise)."""

from .backbones import SmallBackbone, WeightsUnavailable, load_backbone, load_pretrained

__all__ = ["SmallBackbone", "WeightsUnavailable", "load_backbone", "load_pretrained"]
