"""MSVMamba: VMamba with multi-scale 2D scanning (MS2D) and a ConvFFN.

Shi et al., "Multi-Scale VMamba: Hierarchy in Hierarchy Visual State Space Model", NeurIPS 2024
(arXiv 2405.14174). Spec: /work/shared/specs/hierarchical_family.md §2.1-2.2 (master-branch models).
official: YuHengsss/MSVMamba classification/models/vmamba.py and configs/ms_vssm/*.yaml: stem v1 (4x4 conv),
patch-merging downsample, LayerNorm, d_state 1, ssm_ratio 2, conv bias, SE, ConvFFN, no MLP, MS2D in every
stage; keys are the official ones.
"""

from __future__ import annotations

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..layers.ms2d import MSBlock
from .vmamba import HierarchicalSSM, checkpoint_filter_fn

__all__ = ["MSVMamba"]


class MSVMamba(HierarchicalSSM):
    def __init__(
        self,
        img_size=None,  # accepted for timm API compatibility: the model works at any resolution
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths=(1, 2, 9, 2),
        dims=96,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        dt_rank="auto",
        conv_bias: bool = True,
        ffn_expansion: int = 2,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-5,
        backend: str | None = None,
    ):
        def block(stage: int, dim: int, drop_path: float) -> nn.Module:
            return MSBlock(dim, drop_path, ffn_expansion=ffn_expansion, norm_eps=norm_eps, d_state=d_state,
                           ssm_ratio=ssm_ratio, dt_rank=dt_rank, conv_bias=conv_bias, backend=backend)

        super().__init__(block, depths=depths, dims=dims, in_chans=in_chans, num_classes=num_classes,
                         global_pool=global_pool, drop_rate=drop_rate, drop_path_rate=drop_path_rate, stem="v1",
                         downsample="v1", norm_eps=norm_eps)


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.0", "classifier": "classifier.head",
        "paper_ids": "arXiv:2405.14174",
        "paper_name": "Multi-Scale VMamba: Hierarchy in Hierarchy Visual State Space Model",
        "origin_url": "https://github.com/YuHengsss/MSVMamba", **kwargs,
    }


_NOTE = "official weights: Google Drive links in github.com/YuHengsss/MSVMamba README (use checkpoint_filter_fn)"
default_cfgs = generate_default_cfgs({
    "msvmamba_nano": _cfg(notes=(_NOTE,)),
    "msvmamba_micro": _cfg(notes=(_NOTE,)),
    "msvmamba_tiny": _cfg(notes=(_NOTE,)),
})


def _create_msvmamba(variant: str, pretrained: bool = False, **kwargs) -> MSVMamba:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        MSVMamba, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


@register_model
def msvmamba_nano(pretrained=False, **kwargs) -> MSVMamba:
    """MSVMamba-Nano: 6.86M params, 0.88G FLOPs, 77.3% ImageNet top-1 (official)."""
    args = dict(depths=(1, 2, 5, 2), dims=48, drop_path_rate=0.2)
    return _create_msvmamba("msvmamba_nano", pretrained, **dict(args, **kwargs))


@register_model
def msvmamba_micro(pretrained=False, **kwargs) -> MSVMamba:
    """MSVMamba-Micro: 11.88M params, 1.53G FLOPs, 79.8%."""
    args = dict(depths=(1, 2, 5, 2), dims=64, drop_path_rate=0.2)
    return _create_msvmamba("msvmamba_micro", pretrained, **dict(args, **kwargs))


@register_model
def msvmamba_tiny(pretrained=False, **kwargs) -> MSVMamba:
    """MSVMamba-Tiny: 33.1M params, 4.61G FLOPs, 82.8%."""
    args = dict(depths=(1, 2, 9, 2), dims=96, drop_path_rate=0.2)
    return _create_msvmamba("msvmamba_tiny", pretrained, **dict(args, **kwargs))
