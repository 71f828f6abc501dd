"""RMSNorm (weight only) and the add-then-norm step of Mamba-style pre-norm stacks.

``AddRMSNorm`` reproduces what ``rms_norm_fn(..., prenorm=True, residual_in_fp32=True)`` of the
mamba_ssm Triton layer-norm computes (official: hustvl/Vim : mamba-1p1p1/mamba_ssm/ops/triton/layernorm.py):
the residual stream is summed and kept in float32, the normalized output is returned in the
input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["RMSNorm", "rms_norm", "add_rms_norm"]


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight over the last dim, computed in float32 (or wider)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(dtype)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(dtype)
    return y


def add_rms_norm(
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor | None,
    eps: float = 1e-5,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """residual <- (residual + hidden) in float32 (hidden alone when residual is None);
    returns (rms_norm(residual) in ``out_dtype`` (default: hidden's dtype), residual)."""
    acc = torch.promote_types(hidden.dtype, torch.float32)
    residual = hidden.to(acc) if residual is None else residual.to(acc) + hidden.to(acc)
    normed = rms_norm(residual, weight, eps).to(out_dtype or hidden.dtype)
    return normed, residual


class RMSNorm(nn.Module):
    """Weight-only RMSNorm (no bias), weight initialised to ones.

    ``forward(x)`` normalizes; ``forward(x, residual)`` (or ``add_norm``) runs the fused
    add-then-norm and returns ``(normed, residual)`` with the residual in float32.
    """

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, prenorm: bool = False):
        if prenorm or residual is not None:
            return self.add_norm(x, residual)
        return rms_norm(x, self.weight, self.eps).to(x.dtype)

    def add_norm(self, hidden: torch.Tensor, residual: torch.Tensor | None):
        return add_rms_norm(hidden, residual, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
