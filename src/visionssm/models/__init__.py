"""timm-registered model families; importing this module registers them with timm."""

from . import efficientvim, efficientvmamba, msvmamba, vim, vmamba, vssd
from .efficientvim import EfficientViM
from .efficientvmamba import EfficientVMamba
from .msvmamba import MSVMamba
from .vim import VisionMamba
from .vmamba import VMamba
from .vssd import VSSD

__all__ = [
    "VSSD", "EfficientViM", "VisionMamba", "efficientvim", "vim", "vssd",
    "EfficientVMamba", "MSVMamba", "VMamba", "efficientvmamba", "msvmamba", "vmamba",
]
