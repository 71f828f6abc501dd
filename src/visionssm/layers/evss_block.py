"""Efficient VSS block (EfficientVMamba): atrous SS2D branch + depthwise-conv branch, each re-weighted by one
shared channel attention, summed into the residual.

Pei et al., "EfficientVMamba: Atrous Selective Scan for Light Weight Visual Mamba"
(arXiv 2403.09977). Spec: /work/shared/specs/hierarchical_family.md §3.2.
official: TerryPei/EfficientVMamba classification/lib/models/mamba/efficient_mamba.py (VSSBlock, BiAttn);
keys norm, op, conv_branch.{0,1,3}, se.{norm,global_reduce,channel_select}.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath

from .layer_norm2d import LayerNorm2d
from .ss2d import SS2D

__all__ = ["BiAttn", "EVSSBlock"]


class BiAttn(nn.Module):
    """x * sigmoid(Linear(GELU(Linear(mean_hw(LN(x)))))): channel attention from the normed global mean."""

    def __init__(self, channels: int, act_ratio: float = 0.125, norm_eps: float = 1e-5):
        super().__init__()
        reduced = int(channels * act_ratio)
        self.norm = LayerNorm2d(channels, eps=norm_eps)
        self.global_reduce = nn.Linear(channels, reduced)
        self.act = nn.GELU()
        self.channel_select = nn.Linear(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.norm(x).mean(dim=(2, 3))
        return x * torch.sigmoid(self.channel_select(self.act(self.global_reduce(g))))[:, :, None, None]


class EVSSBlock(nn.Module):
    """x + DropPath(se(SS2D_atrous(LN(x))) + se(ConvBranch(LN(x)))), with ONE se module for both branches
    (official: the same BiAttn instance)."""

    def __init__(self, dim: int, drop_path: float = 0.0, norm_eps: float = 1e-5, **ss2d_kwargs):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=norm_eps)
        self.op = SS2D(dim, routes="atrous", norm_eps=norm_eps, **ss2d_kwargs)
        self.conv_branch = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim), nn.GELU(), nn.Conv2d(dim, dim, 1),
        )
        self.se = BiAttn(dim, norm_eps=norm_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.drop_path(self.se(self.op(h)) + self.se(self.conv_branch(h)))
