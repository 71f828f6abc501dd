"""HSM-SSD: the EfficientViM mixer, an SSD whose channel mixing and gating run on the hidden state.

Lee et al., "EfficientViM: Efficient Vision Mamba with Hidden State Mixer based State Space Duality",
CVPR 2025 (arXiv 2411.15241). Spec: /work/shared/specs/ssd_efficient_family.md §2.2.
official: mlvlab/EfficientViM : classification/models/EfficientViM.py (class HSMSSD; keys kept identical)

For x (B, D, L) (already LayerNorm-ed over channels), N = ``state_dim``:
  [B; C; dt] = DWConv3x3(W_bcdt x)                    (1x1 then depthwise 3x3, no bias/norm/act)
  h  = x (softmax_L(dt + A) * B)^T                    (B, D, N)
  h1, z = W_hz h ;  h2 = W_out (h1 * SiLU(z) + D h1)  (1x1 convs on N columns, the point of the design)
  y  = h2 C                                           (B, D, L)
Everything after the depthwise conv is the ``hsm_ssd`` op (it takes W_hz and W_out as plain matrices).
Quirks kept for checkpoint compatibility: ``A`` is a parameter but adding a per-state constant before a
softmax over tokens changes nothing, so it is inert (zero gradient); ``D`` is one scalar applied in state
space (the token skip ``x * D`` is commented out in the official code).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..ops.ssd import hsm_ssd
from .conv_norm_act import ConvNormAct

__all__ = ["HSMSSD"]


class HSMSSD(nn.Module):
    def __init__(
        self,
        d_model: int,
        state_dim: int = 64,
        ssd_expand: float = 1.0,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.d_inner = int(ssd_expand * d_model)
        self.state_dim = state_dim
        self.backend = backend
        conv_dim = 3 * state_dim
        self.BCdt_proj = ConvNormAct(d_model, conv_dim, 1, norm=False, ndim=1, **dd)
        self.dw = ConvNormAct(conv_dim, conv_dim, 3, padding=1, groups=conv_dim, norm=False, **dd)
        self.hz_proj = ConvNormAct(d_model, 2 * self.d_inner, 1, norm=False, ndim=1, **dd)
        self.out_proj = ConvNormAct(self.d_inner, d_model, 1, norm=False, ndim=1, **dd)
        self.A = nn.Parameter(torch.empty(state_dim, **dd).uniform_(*A_init_range))  # inert, see module doc
        self.D = nn.Parameter(torch.ones(1, **dd))
        self.D._no_weight_decay = True

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D, H*W), size (H, W) -> (y (B, D, H, W), mixed hidden state h2 (B, D, N))."""
        height, width = size
        if x.shape[-1] != height * width:
            raise ValueError(f"HSMSSD: {x.shape[-1]} tokens do not form a {height}x{width} grid")
        bcdt = self.dw(self.BCdt_proj(x).unflatten(2, (height, width))).flatten(2)
        b, c, dt = bcdt.split(self.state_dim, dim=1)
        w_hz, w_out = self.hz_proj.conv.weight[..., 0], self.out_proj.conv.weight[..., 0]
        y, h = hsm_ssd(x, dt, b, c, w_hz, w_out, self.D, A=self.A, backend=self.backend)
        return y.unflatten(2, (height, width)), h
