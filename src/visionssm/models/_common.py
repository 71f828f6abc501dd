"""Pieces every hierarchical model file shares (timm conventions), so each family states only what differs."""

from __future__ import annotations

import torch.nn as nn
from timm.layers import trunc_normal_


def init_linear_and_norms(m: nn.Module, norms: tuple[type, ...] = (nn.LayerNorm,)) -> None:
    """The official init of VMamba/VSSD/EfficientViM: Linear trunc_normal(0.02) with zero bias; norms 1 / 0."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, norms):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def marked_no_weight_decay(model: nn.Module) -> set[str]:
    """Names of the parameters a layer marked ``_no_weight_decay`` (A_log, D, dt biases, ...)."""
    return {n for n, p in model.named_parameters() if getattr(p, "_no_weight_decay", False)}
