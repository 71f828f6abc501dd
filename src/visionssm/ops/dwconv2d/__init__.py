"""Depthwise 2D convolution (odd k x k, stride 1, 'same' zero padding) with optional bias and SiLU, on maps
in any memory format; fast on channels_last maps (VMamba's SS2D conv: 3x3 depthwise then SiLU).

``depthwise_conv2d(x, weight, bias, activation)``: x ``(B, C, H, W)``, weight ``(C, 1, k, k)`` (nn.Conv2d's
with groups=C), bias ``(C,)`` or None, activation None or "silu". The result has x's dtype and memory format.
Backends: "reference" / "torch" (F.conv2d, float64-capable), "triton" (one pass over a channels_last map,
taps and SiLU fused, float32 accumulation; see triton_dwconv.py). ``backend=None`` picks triton for CUDA
tensors; ``VISIONSSM_BACKEND`` overrides.
"""

from __future__ import annotations

import torch

from ..selective_scan import resolve_backend
from .reference import depthwise_conv2d_reference

__all__ = ["depthwise_conv2d", "depthwise_conv2d_reference"]

ACTIVATIONS = (None, "silu")


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     activation: str | None = None, backend: str | None = None) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f"depthwise_conv2d: x must be (B, C, H, W), got {tuple(x.shape)}")
    C = x.shape[1]
    k = weight.shape[-1] if weight.dim() == 4 else 0
    if weight.dim() != 4 or tuple(weight.shape) != (C, 1, k, k) or k % 2 == 0:
        raise ValueError(f"depthwise_conv2d: weight must be ({C}, 1, k, k) with odd k, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (C,):
        raise ValueError(f"depthwise_conv2d: bias must be ({C},), got {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"depthwise_conv2d: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if resolve_backend(backend, x.device) != "triton":
        return depthwise_conv2d_reference(x, weight, bias, activation)
    from .triton_dwconv import depthwise_conv2d_triton

    return depthwise_conv2d_triton(x, weight, bias, activation)
