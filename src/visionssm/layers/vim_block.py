"""Vision Mamba block: add -> RMSNorm -> mixer, carrying a float32 residual stream.

official: hustvl/Vim : vim/models_mamba.py (Block with fused_add_norm=True, residual_in_fp32=True).
The residual lags one block: block i receives (hidden_{i-1}, residual_{i-1}), forms
residual_i = residual_{i-1} + DropPath(hidden_{i-1}) (the first block: residual = hidden, no drop path),
and returns (mixer(RMSNorm(residual_i)), residual_i).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath

from .bimamba import BiMamba
from .rms_norm import RMSNorm

__all__ = ["VimBlock"]


class VimBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        divide_out: bool = True,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.mixer = BiMamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, divide_out=divide_out,
                             backend=backend, **dd)
        self.norm = RMSNorm(dim, eps=norm_eps, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is not None:
            hidden = self.drop_path(hidden)
        hidden, residual = self.norm.add_norm(hidden, residual)
        return self.mixer(hidden), residual
