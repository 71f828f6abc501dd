"""LayerNorm over the channels of an NCHW map whose output keeps the input's dtype under autocast.

timm's LayerNorm2d (same parameters, same keys) runs F.layer_norm under autocast, which autocast promotes to
float32: a bf16 map comes out float32, twice the bytes, and the next matmul casts it back -- two extra passes
over the map per norm. The consumers (1x1 convs / linears) round to bf16 anyway, so normalising with float32
statistics (torch's kernel accumulates in float32 for 16-bit inputs) and writing bf16 gives the same values
downstream, up to the affine weights' own rounding to the map's dtype. Outside autocast, or for float32/float64
maps, it is timm's LayerNorm2d unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d as _TimmLayerNorm2d

__all__ = ["LayerNorm2d"]


class LayerNorm2d(_TimmLayerNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        if x.dtype not in (torch.bfloat16, torch.float16) or not torch.is_autocast_enabled(dev):
            return super().forward(x)
        with torch.autocast(dev, enabled=False):
            # torch's CUDA kernel wants one dtype for input and affine (statistics are still float32).
            w, b = (p.to(x.dtype) if p is not None else None for p in (self.weight, self.bias))
            y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, w, b, self.eps)
        return y.permute(0, 3, 1, 2)
