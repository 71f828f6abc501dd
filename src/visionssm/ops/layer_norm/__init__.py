"""LayerNorm over the last axis of token-major activations (vision maps in channels_last memory).

``layer_norm(x, weight, bias, eps, out_dtype)``: float32 statistics, the result in ``out_dtype`` (default
x's dtype). Backends: "reference" (torch, float64-capable), "torch" (the same), "triton" (many rows per
program; see triton_ln.py). ``backend=None`` picks triton for CUDA tensors; ``VISIONSSM_BACKEND`` overrides.
"""

from __future__ import annotations

import torch

from ..selective_scan import resolve_backend
from .reference import layer_norm_reference

__all__ = ["layer_norm", "layer_norm_reference"]


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5,
               out_dtype: torch.dtype | None = None, backend: str | None = None) -> torch.Tensor:
    C = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"layer_norm: {name} must be ({C},) for {C} channels, got {tuple(t.shape)}")
    if resolve_backend(backend, x.device) != "triton":
        return layer_norm_reference(x, weight, bias, eps, out_dtype)
    from .triton_ln import layer_norm_triton

    return layer_norm_triton(x, weight, bias, eps, out_dtype)
