"""Triton depthwise k x k convolution (stride 1, zero 'same' padding) with fused bias and SiLU.

A program owns one map row, BLOCK_W columns and BLOCK_C channels: k*k shifted (BLOCK_W, BLOCK_C) loads
(channel-contiguous on channels_last maps; neighbouring rows come from cache), float32 accumulation, bias,
SiLU, one store in x's dtype. Padding is the load mask. The backward reruns the reference in torch and
differentiates it (the kernel is for the forward pass, inference above all).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc, _autograd
from .._host import cdiv, next_pow2
from .._recompute import recompute_grads
from .reference import depthwise_conv2d_reference


@triton.jit
def dwconv2d_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, H, W, C,
    s_xb, s_xc, s_xh, s_xw, s_yb, s_yc, s_yh, s_yw,
    K: tl.constexpr, HAS_B: tl.constexpr, SILU: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # w: (C, K*K) float32 contiguous; b: (C,) float32.
    pid_bh = tl.program_id(0)
    b = pid_bh // H
    h = pid_bh % H
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[:, None]
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    c_ok = c < C
    acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)
    x_base = x_ptr + b * s_xb + c * s_xc
    for kh in tl.static_range(K):
        hh = h + kh - K // 2
        row_ok = (w * 0 + hh >= 0) & (w * 0 + hh < H)  # tensors, not scalars: the interpreter wants tensor masks
        for kw in tl.static_range(K):
            ws = w + kw - K // 2
            m = row_ok & (ws >= 0) & (ws < W) & c_ok
            xv = tl.load(x_base + hh * s_xh + ws * s_xw, mask=m, other=0.0).to(tl.float32)
            acc += xv * tl.load(w_ptr + c * (K * K) + kh * K + kw, mask=c_ok, other=0.0)
    if HAS_B:
        acc += tl.load(b_ptr + c, mask=c_ok, other=0.0)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(y_ptr + b * s_yb + c * s_yc + h * s_yh + w * s_yw, acc.to(y_ptr.dtype.element_ty),
             mask=(w < W) & c_ok)


def _launch(x, weight, bias, silu):
    B, C, H, W = x.shape
    k = weight.shape[-1]
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and C > 1 else None
    y = _alloc.empty(B, H, W, C, dtype=x.dtype, device=x.device).permute(0, 3, 1, 2) if fmt else \
        _alloc.empty(B, C, H, W, dtype=x.dtype, device=x.device)
    w = weight.reshape(C, k * k).float().contiguous()
    b = bias.float().contiguous() if bias is not None else w
    block_c = min(64, next_pow2(C))
    block_w = max(1, min(next_pow2(W), 2048 // block_c))
    grid = (B * H, cdiv(W, block_w), cdiv(C, block_c))
    dwconv2d_fwd_kernel[grid](x, w, b, y, H, W, C, *x.stride(), *y.stride(), K=k, HAS_B=bias is not None,
                              SILU=silu, BLOCK_W=block_w, BLOCK_C=block_c, num_warps=4)
    return y


class _DepthwiseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, silu):
        ctx.save_for_backward(x, weight, bias)
        ctx.silu = silu
        return _launch(x, weight, bias, silu)

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias = ctx.saved_tensors
        act = "silu" if ctx.silu else None
        grads = recompute_grads(lambda *t: depthwise_conv2d_reference(*t, act), (x, weight, bias),
                                ctx.needs_input_grad[:3], dy)
        return (*grads, None)


def depthwise_conv2d_triton(x, weight, bias=None, activation=None):
    """Same contract as :func:`visionssm.ops.dwconv2d.depthwise_conv2d`."""
    return _autograd.apply(_DepthwiseConv2d, x, weight, bias, activation == "silu")
