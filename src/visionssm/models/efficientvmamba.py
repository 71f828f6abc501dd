"""EfficientVMamba: atrous (skip-sampled) SS2D blocks in stages 1-2, MobileNetV2 inverted residuals in 3-4.

Pei et al., "EfficientVMamba: Atrous Selective Scan for Light Weight Visual Mamba"
(arXiv 2403.09977). Spec: /work/shared/specs/hierarchical_family.md §3.
official: TerryPei/EfficientVMamba classification/lib/models/mamba/efficient_mamba.py (EfficientVSSM) with
the trained configurations of classification/logs/log_efficient_vmamba_*.txt (d_state 16, ssm_ratio 2, no MLP,
patch-merging downsample). The EVSS stages keep the official keys; the inverted-residual stages are timm's
InvertedResidual, and checkpoint_filter_fn maps the official names (layers.{i}.{j}.conv_pw.0 ...) onto it.
"""

from __future__ import annotations

import re
from functools import partial

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._efficientnet_blocks import InvertedResidual, SqueezeExcite

from ..layers.evss_block import EVSSBlock
from .vmamba import HierarchicalSSM, unwrap_checkpoint
from .vmamba import checkpoint_filter_fn as _vmamba_filter

__all__ = ["EfficientVMamba", "checkpoint_filter_fn"]


class EfficientVMamba(HierarchicalSSM):
    def __init__(
        self,
        img_size=None,  # accepted for timm API compatibility: the model works at any resolution
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths=(2, 2, 4, 2),
        dims=(48, 96, 192, 384),
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank="auto",
        ssm_stages: int = 2,
        ir_expansion: float = 4.0,
        ir_se_ratio: float = 0.125,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-5,
        backend: str | None = None,
    ):
        se = partial(SqueezeExcite, rd_ratio=ir_se_ratio)

        def block(stage: int, dim: int, drop_path: float) -> nn.Module:
            if stage < ssm_stages:
                return EVSSBlock(dim, drop_path, norm_eps=norm_eps, d_state=d_state, ssm_ratio=ssm_ratio,
                                 dt_rank=dt_rank, d_conv=3, conv_bias=True, gate=True, force_fp32=True,
                                 backend=backend)
            # official: lib/models/operations.py InvertedResidual(expand_ratio=4, se_ratio=0.125), ReLU
            return InvertedResidual(dim, dim, dw_kernel_size=3, exp_ratio=ir_expansion, act_layer=nn.ReLU,
                                    se_layer=se, drop_path_rate=drop_path)

        super().__init__(block, depths=depths, dims=dims, in_chans=in_chans, num_classes=num_classes,
                         global_pool=global_pool, drop_rate=drop_rate, drop_path_rate=drop_path_rate, stem="v1",
                         downsample="v1", norm_eps=norm_eps)


# official inverted-residual names (lib/models/operations.py) -> timm InvertedResidual names
_IR_RENAMES = {"conv_pw.0": "conv_pw", "conv_pw.1": "bn1", "conv_dw.0": "conv_dw", "conv_dw.1": "bn2",
               "conv_pw2.0": "conv_pwl", "conv_pw2.1": "bn3"}


def checkpoint_filter_fn(state_dict: dict, model: EfficientVMamba) -> dict:
    """Official EfficientVMamba checkpoints ({'state_dict': ...} with 'module.module.' prefixes) or ours.

    The official conv stages are Sequential(Permute, IR x depth, Permute, downsample): ``layers.{i}.{j}`` is
    block j-1 for 1 <= j <= depth and the downsample for j = depth + 2.
    """
    state_dict = unwrap_checkpoint(state_dict)
    out = {}
    for k, v in state_dict.items():
        m = re.match(r"^layers\.(\d+)\.(\d+)\.(.*)$", k)
        if m:
            i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            depth = len(model.layers[i].blocks) if i < len(model.layers) else -1
            if j == depth + 2:
                k = f"layers.{i}.downsample.{rest}"
            else:
                for old, new in _IR_RENAMES.items():
                    if rest.startswith(old + "."):
                        rest = new + rest[len(old):]
                        break
                k = f"layers.{i}.blocks.{j - 1}.{rest}"
        out[k] = v
    return _vmamba_filter(out, model)


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.0", "classifier": "classifier.head",  # the repository states no license
        "paper_ids": "arXiv:2403.09977",
        "paper_name": "EfficientVMamba: Atrous Selective Scan for Light Weight Visual Mamba",
        "origin_url": "https://github.com/TerryPei/EfficientVMamba", **kwargs,
    }


_NOTE = "official weights: huggingface.co/TerryPei/EfficientVMamba-"
default_cfgs = generate_default_cfgs({
    "efficientvmamba_tiny": _cfg(notes=(_NOTE + "Tiny (use checkpoint_filter_fn)",)),
    "efficientvmamba_small": _cfg(notes=(_NOTE + "Small (use checkpoint_filter_fn)",)),
    "efficientvmamba_base": _cfg(notes=(_NOTE + "Base (use checkpoint_filter_fn)",)),
})


def _create_efficientvmamba(variant: str, pretrained: bool = False, **kwargs) -> EfficientVMamba:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        EfficientVMamba, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


# trained configurations: classification/logs/log_efficient_vmamba_{tiny,small,base}.txt (drop path 0.1)
@register_model
def efficientvmamba_tiny(pretrained=False, **kwargs) -> EfficientVMamba:
    """EfficientVMamba-T: 6.49M params, 0.8G FLOPs, 76.5% ImageNet top-1 (official)."""
    args = dict(depths=(2, 2, 4, 2), dims=(48, 96, 192, 384), drop_path_rate=0.1)
    return _create_efficientvmamba("efficientvmamba_tiny", pretrained, **dict(args, **kwargs))


@register_model
def efficientvmamba_small(pretrained=False, **kwargs) -> EfficientVMamba:
    """EfficientVMamba-S: 11.27M params, 1.34G FLOPs, 78.7%."""
    args = dict(depths=(2, 2, 4, 2), dims=(64, 128, 256, 512), drop_path_rate=0.1)
    return _create_efficientvmamba("efficientvmamba_small", pretrained, **dict(args, **kwargs))


@register_model
def efficientvmamba_base(pretrained=False, **kwargs) -> EfficientVMamba:
    """EfficientVMamba-B: 33.72M params, 4.0G FLOPs, 81.8%."""
    args = dict(depths=(2, 2, 9, 2), dims=(96, 192, 384, 768), drop_path_rate=0.1)
    return _create_efficientvmamba("efficientvmamba_base", pretrained, **dict(args, **kwargs))
