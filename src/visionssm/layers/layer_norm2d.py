"""LayerNorm over the channels of an NCHW map, with the output in the input's dtype (or one asked for).

Same parameters and keys as timm's LayerNorm2d. Two differences, both for speed, neither changing what the
next layer computes:
- under autocast timm's norm (F.layer_norm) comes out float32, twice the bytes, and the next 1x1 conv casts it
  back to bf16; here a bf16 map gives bf16, normalised with float32 statistics and float32 weights;
- on CUDA the op is ops.layer_norm's Triton kernel (many short rows per program; torch's kernel idles most
  lanes at 48-768 channels), and ``out_dtype`` writes e.g. a float32 scan output straight to bf16.
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm2d as _TimmLayerNorm2d

from ..ops.layer_norm import layer_norm

__all__ = ["LayerNorm2d"]


class LayerNorm2d(_TimmLayerNorm2d):
    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        # (B, H, W, C) is a view of channels_last memory: rows of C contiguous channels, no copy.
        y = layer_norm(x.permute(0, 2, 3, 1), self.weight, self.bias, self.eps, out_dtype or x.dtype)
        return y.permute(0, 3, 1, 2)
