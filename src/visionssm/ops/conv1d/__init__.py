"""Depthwise causal conv1d (the short convolution of Mamba blocks), pure PyTorch.

Same layout as the ``causal_conv1d`` package: x ``(batch, dim, L)``, weight ``(dim, width)``,
bias ``(dim,)``. ``reverse=True`` gives the anti-causal conv (output t reads x[t .. t+width-1]),
equal to flip -> causal conv -> flip but without flipped copies of x: the (tiny) weight is flipped
and the window is padded on the right instead of the left.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import causal_conv1d_reference

__all__ = ["causal_conv1d", "causal_conv1d_reference"]

_ACTIVATIONS = (None, "silu", "swish")


def _token_major_conv(x, weight, bias, activation, reverse):
    """The same conv on token-major memory (x a (batch, dim, L) view of (batch, L, dim) storage, as vision
    mixers produce it), as a depthwise conv2d on the NHWC view (batch, dim, 1, L): oneDNN runs it in place of
    a transposing copy + NCW conv (5x faster on 1 EPYC core at Vim-Ti shapes). Returns a (batch, dim, L)
    view of token-major memory, which the next projection reads without a copy either."""
    length, width = x.shape[2], weight.shape[1]
    w = weight.flip(-1) if reverse else weight
    y = F.conv2d(x.unsqueeze(2), w[:, None, None, :].to(x.dtype), None if bias is None else bias.to(x.dtype),
                 padding=(0, width - 1), groups=x.shape[1]).squeeze(2)
    y = y[..., width - 1 :] if reverse else y[..., :length]
    return F.silu(y) if activation is not None else y


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
    # Inference only: oneDNN's weight gradient of this conv sums over the batch in another order than the
    # NCW conv's, so a batch split across data-parallel ranks would no longer round like one process.
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if x.device.type == "cpu" and x.stride(1) == 1 and dim > 1 and not grads:
        return _token_major_conv(x, weight, bias, activation, reverse)
    w = weight.flip(-1) if reverse else weight
    # Symmetric zero padding of width-1 yields L+width-1 outputs; the causal ones are the first L,
    # the anti-causal ones (with the flipped kernel) the last L.
    y = F.conv1d(x, w.unsqueeze(1), bias, padding=width - 1, groups=dim)
    y = y[..., width - 1 :] if reverse else y[..., :length]
    if activation is not None:
        y = F.silu(y)
    return y
