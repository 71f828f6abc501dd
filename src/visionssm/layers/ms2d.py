"""MS2D: MSVMamba's multi-scale 2D scan mixer, and its block (MS2D + ConvFFN), on NCHW maps.

Shi et al., "Multi-Scale VMamba: Hierarchy in Hierarchy Visual State Space Model", NeurIPS 2024
(arXiv 2405.14174). Spec: /work/shared/specs/hierarchical_family.md §2.1.
official: YuHengsss/MSVMamba classification/models/vmamba.py (SS2D with sscore_type multiscale_4scan_12,
VSSBlock with convFFN) and classification/models/utils.py (ConvFFN, SEModule); keys are the official ones.

in_proj C -> 2D (x, z). Full resolution: dwconv 3x3 -> SiLU -> one row-major route (parameter set 1).
Half resolution: dwconv 7x7 stride 2 on the same x -> SiLU -> ONE route that walks the map three times
(row-major reversed, column-major, column-major reversed; the state flows across the three) with parameter
set 0. Each visit's output goes through out_norm before the three are un-permuted and summed (the scan returns
its outputs in route order for that), then it is bilinearly upsampled and added to the normed full branch;
then channel SE, the SiLU(z) gate and out_proj.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from .layer_norm2d import LayerNorm2d
from .linear2d import Linear2d
from .ss2d import RoutedSSM, route_index, row_major_index

__all__ = ["ChannelSE", "ConvFFN", "MS2D", "MSBlock"]


class ChannelSE(nn.Module):
    """Squeeze-excite with bias-free Linears (keys fc.0, fc.2). official: MSVMamba utils.py SEModule."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class ConvFFN(nn.Module):
    """1x1 conv C -> eC -> (x + dwconv3x3(x)) -> GELU -> 1x1 conv back. official: MSVMamba utils.py ConvFFN."""

    def __init__(self, channels: int, expansion: int = 2, drop: float = 0.0):
        super().__init__()
        hidden = channels * expansion
        self.linear1 = nn.Conv2d(channels, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.linear2 = nn.Conv2d(hidden, channels, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.linear1(x))
        x = self.act(x + self.dwc(x))
        return self.drop(self.linear2(x))


class MS2D(RoutedSSM):
    def __init__(self, d_model: int, d_state: int = 1, ssm_ratio: float = 2.0, dt_rank: int | str = "auto",
                 conv_bias: bool = True, se_reduction: int = 8, norm_eps: float = 1e-5, backend: str | None = None):
        super().__init__()
        d_inner = int(ssm_ratio * d_model)
        dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.d_model, self.backend = d_model, backend
        self.in_proj = Linear2d(d_model, 2 * d_inner, bias=False)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=conv_bias)
        self.conv2d_b1 = nn.Conv2d(d_inner, d_inner, 7, stride=2, padding=3, groups=d_inner, bias=conv_bias)
        self._init_ssm(2, d_inner, d_state, dt_rank)  # set 0: half-resolution route, set 1: full resolution
        self.out_norm = LayerNorm2d(d_inner, eps=norm_eps)
        self.se = ChannelSE(d_inner, se_reduction)
        self.out_proj = Linear2d(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(x).chunk(2, dim=1)
        dtype = x.dtype
        full, low = self.act(self.conv2d(x)), self.act(self.conv2d_b1(x))
        batch, dim, H, W = full.shape
        h, w = low.shape[-2:]
        y_low = self.scan(low.flatten(2), route_index("multiscale", h, w, x.device), sets=slice(0, 1),
                          by_visit=True, force_fp32=True)  # (B, D, 3hw): row reversed, column, column reversed
        y_low = self.out_norm(y_low[..., None])[..., 0].to(dtype)  # LayerNorm per visit
        rows, cols, cols_rev = y_low.chunk(3, dim=-1)
        y_low = rows.flip(-1).view(batch, dim, h, w) + (cols + cols_rev.flip(-1)).view(batch, dim, w, h).mT
        y_full = self.scan(full.flatten(2), row_major_index(H, W, x.device), sets=slice(1, 2),
                           force_fp32=True)
        y = self.out_norm(y_full.view(batch, dim, H, W), out_dtype=dtype)
        y = y + F.interpolate(y_low, size=(H, W), mode="bilinear", align_corners=False)
        return self.out_proj(self.se(y) * self.act(z))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, rank={self.dt_rank}"


class MSBlock(nn.Module):
    """x + DropPath(MS2D(LN(x))), then x + DropPath(ConvFFN(LN(x))). Keys norm, op, norm2, convFFN."""

    def __init__(self, dim: int, drop_path: float = 0.0, ffn_expansion: int = 2, norm_eps: float = 1e-5,
                 **ms2d_kwargs):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=norm_eps)
        self.op = MS2D(dim, norm_eps=norm_eps, **ms2d_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = LayerNorm2d(dim, eps=norm_eps)
        self.convFFN = ConvFFN(dim, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.convFFN(self.norm2(x)))
