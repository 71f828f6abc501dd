"""Reference depthwise conv: F.conv2d with groups=C, then the activation (float64-capable)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def depthwise_conv2d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                               activation: str | None = None) -> torch.Tensor:
    k = weight.shape[-1]
    y = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype) if bias is not None else None, padding=k // 2,
                 groups=x.shape[1])
    return F.silu(y) if activation == "silu" else y
