"""timm-registered model families; importing this module registers them with timm."""

from . import vim
from .vim import VisionMamba

__all__ = ["VisionMamba", "vim"]
