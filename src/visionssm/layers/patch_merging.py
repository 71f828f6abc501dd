"""Swin-style 2x2 patch merging on NCHW maps: pad to even, stack the 4 pixels, LayerNorm(4C), Linear(4C->out).

official: MzeroMiko/VMamba classification/models/vmamba.py (PatchMerging2D): channel order of the stack is
pixel (0,0), (1,0), (0,1), (1,1) as (row, col) offsets; keys norm, reduction (no bias).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layer_norm2d import LayerNorm2d
from .linear2d import Linear2d

__all__ = ["PatchMerging2d"]


class PatchMerging2d(nn.Module):
    def __init__(self, dim: int, out_dim: int | None = None, norm_eps: float = 1e-5):
        super().__init__()
        self.norm = LayerNorm2d(4 * dim, eps=norm_eps)
        self.reduction = Linear2d(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H % 2 or W % 2:
            x = F.pad(x, (0, W % 2, 0, H % 2))
        x = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]], dim=1)
        return self.reduction(self.norm(x))
