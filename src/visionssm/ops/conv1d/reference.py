"""Reference depthwise (anti-)causal conv1d: an explicit loop over the kernel taps.

Slow on purpose of clarity and dtype-generic (float64 works); the ground truth of the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    reverse: bool = False,
) -> torch.Tensor:
    """y[:, c, t] = bias[c] + sum_k weight[c, k] * x[:, c, t - (W-1) + k]   (causal)
    y[:, c, t] = bias[c] + sum_k weight[c, k] * x[:, c, t + (W-1) - k]   (reverse: anti-causal)

    Out-of-range samples read as zero. ``activation`` is None or "silu"/"swish".
    """
    _, _, length = x.shape
    width = weight.shape[-1]
    y = torch.zeros_like(x)
    for k in range(width):
        shift = width - 1 - k  # how far back (causal) or ahead (reverse) tap k reads
        if shift >= length:
            continue
        w = weight[:, k, None]
        if reverse:
            y[..., : length - shift] += w * x[..., shift:]
        else:
            y[..., shift:] += w * x[..., : length - shift]
    if bias is not None:
        y = y + bias[:, None]
    if activation in ("silu", "swish"):
        y = F.silu(y)
    return y
