"""Depthwise causal conv1d (the short convolution of Mamba blocks), pure PyTorch.

Same layout as the ``causal_conv1d`` package: x ``(batch, dim, L)``, weight ``(dim, width)``,
bias ``(dim,)``. ``reverse=True`` gives the anti-causal conv (output t reads x[t .. t+width-1]),
equal to flip -> causal conv -> flip but without flipped copies of x: the (tiny) weight is flipped
and the window is padded on the right instead of the left.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _flops
from .reference import causal_conv1d_reference

__all__ = ["causal_conv1d", "causal_conv1d_reference"]

_ACTIVATIONS = (None, "silu", "swish")


def _token_major_conv(x, weight, bias, activation, reverse):
    """The same conv on token-major memory (x a (batch, dim, L) view of (batch, L, dim) storage, as vision
    mixers produce it): one multiply-add per tap over (batch, L, dim), no transposing copy. Returns a
    (batch, dim, L) view of token-major memory, which the next projection reads without a copy either."""
    xt = x.transpose(1, 2)  # (batch, L, dim), channels contiguous
    batch, length, dim = xt.shape
    width = weight.shape[1]
    # aten FLOP counters see only elementwise ops here; report the conv's 2 FLOPs per tap and output.
    _flops.add("conv1d", 2 * batch * dim * length * width)
    w = weight.to(x.dtype)
    # Tap width-1 reads the current token in both directions.
    y = torch.addcmul(bias.to(x.dtype), xt, w[:, -1]) if bias is not None else xt * w[:, -1]
    for k in range(width - 1):
        shift = width - 1 - k  # how far back (causal) or ahead (reverse) tap k reads
        if shift >= length:
            continue
        if reverse:
            y[:, : length - shift].addcmul_(xt[:, shift:], w[:, k])
        else:
            y[:, shift:].addcmul_(xt[:, : length - shift], w[:, k])
    if activation is not None:
        y = F.silu(y)
    return y.transpose(1, 2)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    reverse: bool = False,
) -> torch.Tensor:
    """Depthwise conv over L, causal (left-padded by width-1) or, with ``reverse``, anti-causal."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: x must be (batch, dim, L), got shape {tuple(x.shape)}")
    dim, length = x.shape[1], x.shape[2]
    if weight.dim() != 2 or weight.shape[0] != dim:
        raise ValueError(f"causal_conv1d: weight must be (dim={dim}, width), got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (dim,):
        raise ValueError(f"causal_conv1d: bias must be (dim={dim},), got {tuple(bias.shape)}")
    width = weight.shape[1]
    if x.device.type == "cpu" and x.stride(1) == 1 and dim > 1:
        return _token_major_conv(x, weight, bias, activation, reverse)
    w = weight.flip(-1) if reverse else weight
    # Symmetric zero padding of width-1 yields L+width-1 outputs; the causal ones are the first L,
    # the anti-causal ones (with the flipped kernel) the last L.
    y = F.conv1d(x, w.unsqueeze(1), bias, padding=width - 1, groups=dim)
    y = y[..., width - 1 :] if reverse else y[..., :length]
    if activation is not None:
        y = F.silu(y)
    return y
