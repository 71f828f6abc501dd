"""timm-registered model families; importing this module registers them with timm."""

from . import efficientvim, vim, vssd
from .efficientvim import EfficientViM
from .vim import VisionMamba
from .vssd import VSSD

__all__ = ["VSSD", "EfficientViM", "VisionMamba", "efficientvim", "vim", "vssd"]
