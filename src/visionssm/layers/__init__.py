"""Mixers and blocks (nn.Modules that own parameters and call ops)."""

from .bimamba import BiMamba
from .conv_norm_act import ConvNormAct
from .evss_block import EVSSBlock
from .hsm_ssd import HSMSSD
from .linear2d import Linear2d
from .ms2d import MS2D, MSBlock
from .nc_ssd import NCSSD
from .patch_embed import PatchEmbed, insert_mid_cls, resample_pos_embed_mid_cls, split_mid_cls
from .patch_merging import PatchMerging2d
from .rms_norm import RMSNorm, add_rms_norm, rms_norm
from .ss2d import SS2D
from .vim_block import VimBlock
from .vss_block import VSSBlock

__all__ = [
    "BiMamba", "ConvNormAct", "HSMSSD", "NCSSD", "PatchEmbed", "RMSNorm", "VimBlock", "add_rms_norm", "insert_mid_cls",
    "resample_pos_embed_mid_cls", "rms_norm", "split_mid_cls",
    "EVSSBlock", "Linear2d", "MS2D", "MSBlock", "PatchMerging2d", "SS2D", "VSSBlock",
]
