"""Reference LayerNorm over the last axis, in float64 when asked (the twin the Triton kernel is tested against)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_reference(x, weight, bias, eps: float = 1e-5, out_dtype=None):
    """F.layer_norm over x's last axis in x's dtype promoted to at least float32; result in ``out_dtype``."""
    wide = torch.promote_types(x.dtype, torch.float32)
    w = weight.to(wide) if weight is not None else None
    b = bias.to(wide) if bias is not None else None
    return F.layer_norm(x.to(wide), x.shape[-1:], w, b, eps).to(out_dtype or x.dtype)
