"""NC-SSD: VSSD's non-causal state-space-duality mixer (a Mamba-2 layer whose SSD reads one global state).

Shi et al., "VSSD: Vision Mamba with Non-Causal State Space Duality" (arXiv 2407.18559).
Spec: /work/shared/specs/ssd_efficient_family.md §1.2-1.3.
official: YuHengsss/VSSD : classification/models/mamba2.py (class Mamba2 with linear_attn_duality=True;
parameter names kept: in_proj, conv2d, dt_bias, A_log, D, norm, out_proj)

For tokens u (B, H, W, D_model), d_inner = expand * D_model, heads of size P = d_inner / heads:
  [z, xBC, dt] = in_proj(u);  x, B, C = SiLU(DWConv3x3(xBC))          (the conv sees x, B and C)
  y = ssd_noncausal(x, dt, exp(A_log), B, C, D, dt_bias, softplus)      (w = softplus(dt + dt_bias) exp(A_log))
  out = out_proj(LayerNorm(y) * z)                                       (linear gate: no SiLU on z)
Quirk kept: with ``positive_dA=True`` (every released config, ``ssd_positve_dA``) the per-token weight is
dt * exp(A_log) > 0, not a decay; ``positive_dA=False`` gives dt * (-exp(A_log)).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..ops.ssd import ssd_noncausal

__all__ = ["NCSSD"]


class NCSSD(nn.Module):
    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_state: int = 64,
        expand: int = 2,
        ngroups: int = 1,
        d_conv: int = 3,
        conv_bias: bool = True,
        positive_dA: bool = True,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        norm_eps: float = 1e-5,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.d_inner = expand * d_model
        if self.d_inner % num_heads:
            raise ValueError(f"NCSSD: d_inner={self.d_inner} is not divisible by num_heads={num_heads}")
        if num_heads % ngroups:
            raise ValueError(f"NCSSD: num_heads={num_heads} is not divisible by ngroups={ngroups}")
        self.nheads, self.headdim = num_heads, self.d_inner // num_heads
        self.d_state, self.ngroups = d_state, ngroups
        self.positive_dA, self.backend = positive_dA, backend
        conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + conv_dim + num_heads, bias=False, **dd)  # [z, xBC, dt]
        self.conv2d = nn.Conv2d(conv_dim, conv_dim, d_conv, padding=(d_conv - 1) // 2, groups=conv_dim,
                                bias=conv_bias, **dd)
        # Mamba-2 init: dt log-uniform in [dt_min, dt_max] (floored) stored as inverse softplus; A = U(A_init_range)
        dt = torch.exp(torch.rand(num_heads, **dd) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.empty(num_heads, **dd).uniform_(*A_init_range).log())
        self.D = nn.Parameter(torch.ones(num_heads, **dd))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = nn.LayerNorm(self.d_inner, eps=norm_eps, **dd)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False, **dd)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, H, W, d_model) -> (B, H, W, d_model)."""
        batch, height, width, _ = u.shape
        gn = self.ngroups * self.d_state
        z, xbc, dt = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * gn, self.nheads], dim=-1)
        xbc = F.silu(self.conv2d(xbc.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        x, b, c = xbc.split([self.d_inner, gn, gn], dim=-1)
        A = torch.exp(self.A_log) if self.positive_dA else -torch.exp(self.A_log)
        y = ssd_noncausal(
            rearrange(x, "b h w (nh p) -> b (h w) nh p", p=self.headdim),
            rearrange(dt, "b h w nh -> b (h w) nh"),
            A,
            rearrange(b, "b h w (g n) -> b (h w) g n", g=self.ngroups),
            rearrange(c, "b h w (g n) -> b (h w) g n", g=self.ngroups),
            D=self.D, dt_bias=self.dt_bias, dt_softplus=True,
            interleaved=True,  # official: with ngroups > 1 head h reads group h % ngroups
            backend=self.backend,
        )
        y = rearrange(y, "b (h w) nh p -> b h w (nh p)", h=height)
        return self.out_proj(self.norm(y) * z)
