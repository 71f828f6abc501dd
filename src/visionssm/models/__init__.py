"""timm-registered model families; importing this module registers them with timm."""

from . import efficientvim, vim
from .efficientvim import EfficientViM
from .vim import VisionMamba

__all__ = ["EfficientViM", "VisionMamba", "efficientvim", "vim"]
