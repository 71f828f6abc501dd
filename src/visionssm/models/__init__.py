"""timm-registered model families; importing this module registers them with timm."""

from . import efficientvmamba, msvmamba, vim, vmamba
from .efficientvmamba import EfficientVMamba
from .msvmamba import MSVMamba
from .vim import VisionMamba
from .vmamba import VMamba

__all__ = ["EfficientVMamba", "MSVMamba", "VMamba", "VisionMamba", "efficientvmamba", "msvmamba", "vim", "vmamba"]
