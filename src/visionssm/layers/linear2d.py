"""A Linear over the channels of an NCHW map, stored like nn.Linear.

official: MzeroMiko/VMamba classification/models/vmamba.py (Linear2d): channel-first models keep the 2-D
(out, in) weight of nn.Linear, so checkpoints load unchanged into channel-last and channel-first builds.
As an nn.Linear subclass it also receives the models' Linear init (trunc_normal std 0.02).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Linear2d"]


class Linear2d(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W). On a channels-last map (the usual case after LayerNorm2d) a plain
        GEMM over the tokens, returning a channels-last map; otherwise a 1x1 convolution."""
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)
