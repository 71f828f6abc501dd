"""Linear + exact GELU in one pass: gelu(x @ W^T + b), for the MLPs of the hierarchical models.

An MLP's hidden layer is 4x wider than its input, so the unfused GELU reads and writes the largest tensor of
the block once more (at VMamba-T stage 1, batch 128: 308 MB in bf16 each way). Here the GELU (erf form, as
nn.GELU()) is the epilogue of a Triton GEMM and the hidden tensor is written once.

``linear_gelu(x, weight, bias)``: x ``(..., K)``, weight ``(N, K)`` (nn.Linear's), bias ``(N,)`` or None;
returns ``(..., N)`` in x's dtype (float32 accumulation; 16-bit x multiplies weights rounded to its dtype,
as autocast does). Backends: "reference"/"torch" (F.linear + F.gelu, float64-capable), "triton".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..selective_scan import resolve_backend

__all__ = ["linear_gelu", "linear_gelu_reference"]


def linear_gelu_reference(x, weight, bias=None):
    return F.gelu(F.linear(x, weight.to(x.dtype), bias.to(x.dtype) if bias is not None else None))


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                backend: str | None = None) -> torch.Tensor:
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear_gelu: weight must be (N, K={x.shape[-1]}), got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear_gelu: bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")
    if resolve_backend(backend, x.device) != "triton":
        return linear_gelu_reference(x, weight, bias)
    from .triton_linear_gelu import linear_gelu_triton

    return linear_gelu_triton(x, weight, bias)
