"""VSS block (VMamba): x + DropPath(SS2D(LN(x))), then x + DropPath(MLP(LN(x))) when mlp_ratio > 0.

official: MzeroMiko/VMamba classification/models/vmamba.py (VSSBlock, Mlp; pre-norm, channel-first with
LayerNorm2d and Linear2d). Keys: norm, op, norm2, mlp.fc1, mlp.fc2.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from timm.layers import DropPath

from ..ops.linear_gelu import linear_gelu
from ..ops.selective_scan import resolve_backend
from .layer_norm2d import LayerNorm2d
from .linear2d import Linear2d
from .ss2d import SS2D

__all__ = ["Mlp2d", "VSSBlock"]


class Mlp2d(nn.Module):
    """fc1 -> GELU -> fc2 over the channels of an NCHW map (Linear2d keeps nn.Linear's weight shapes).

    Opt-in (``VISIONSSM_MLP=triton``): on channels_last maps on the Triton path, fc1 + GELU run as one kernel
    (ops/linear_gelu), so the 4x-wide hidden tensor is written once and not re-read by a separate GELU; off
    until an H100 run shows it faster than cuBLAS + GELU."""

    def __init__(self, dim: int, hidden: int, backend: str | None = None):
        super().__init__()
        self.backend = backend
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (os.environ.get("VISIONSSM_MLP") == "triton" and resolve_backend(self.backend, x.device) == "triton"
                and x.is_contiguous(memory_format=torch.channels_last)):
            t = x.permute(0, 2, 3, 1)  # (B, H, W, C), contiguous
            if torch.is_autocast_enabled(x.device.type):  # as autocast would run fc1
                t = t.to(torch.get_autocast_dtype(x.device.type))
            return self.fc2(linear_gelu(t, self.fc1.weight, self.fc1.bias, backend="triton").permute(0, 3, 1, 2))
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    def __init__(self, dim: int, drop_path: float = 0.0, mlp_ratio: float = 4.0, norm_eps: float = 1e-5,
                 **ss2d_kwargs):
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=norm_eps)
        self.op = SS2D(dim, norm_eps=norm_eps, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = LayerNorm2d(dim, eps=norm_eps)
            self.mlp = Mlp2d(dim, int(dim * mlp_ratio), backend=ss2d_kwargs.get("backend"))
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x
