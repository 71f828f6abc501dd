"""Mixers and blocks (nn.Modules that own parameters and call ops)."""

from .bimamba import BiMamba
from .conv_norm_act import ConvNormAct
from .hsm_ssd import HSMSSD
from .nc_ssd import NCSSD
from .patch_embed import PatchEmbed, insert_mid_cls, resample_pos_embed_mid_cls, split_mid_cls
from .rms_norm import RMSNorm, add_rms_norm, rms_norm
from .vim_block import VimBlock

__all__ = [
    "BiMamba", "ConvNormAct", "HSMSSD", "NCSSD", "PatchEmbed", "RMSNorm", "VimBlock", "add_rms_norm", "insert_mid_cls",
    "resample_pos_embed_mid_cls", "rms_norm", "split_mid_cls",
]
