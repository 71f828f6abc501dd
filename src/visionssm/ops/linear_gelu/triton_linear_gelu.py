"""Triton GEMM with bias and exact-GELU epilogue; backward by recompute in torch.

Tiles of BLOCK_M tokens x BLOCK_N outputs, the K loop in BLOCK_K steps on the tensor cores (float32
accumulation), then bias and 0.5 v (1 + erf(v / sqrt 2)) in float32 and one store in x's dtype.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .. import _alloc, _autograd
from .._host import cdiv, next_pow2
from .._recompute import recompute_grads
from . import linear_gelu_reference


@triton.jit
def linear_gelu_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, s_xm, s_wn, s_ym,
                       HAS_B: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    DT = x_ptr.dtype.element_ty
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_ptr + rm[:, None] * s_xm + rk[None, :], mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        w = tl.load(w_ptr + rn[None, :] * s_wn + rk[:, None], mask=(rn[None, :] < N) & (rk[:, None] < K), other=0.0)
        if UPCAST:  # interpreter only: its 16-bit tl.dot returns garbage (Triton 3.9), float32 operands do not
            acc += tl.dot(a.to(tl.float32), w.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(a, w.to(DT), input_precision=PRECISION)
    if HAS_B:
        acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0)[None, :]
    acc = 0.5 * acc * (1.0 + tl.erf(acc * 0.7071067811865476))
    tl.store(y_ptr + rm[:, None] * s_ym + rn[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


def _config():
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); ``VISIONSSM_LINEAR_CFG=bm,bn,bk,warps,stages``."""
    if os.environ.get("VISIONSSM_LINEAR_CFG"):
        return tuple(int(v) for v in os.environ["VISIONSSM_LINEAR_CFG"].split(","))
    return 128, 128, 32, 8, 3


def _forward(x2, weight, bias):
    M, K = x2.shape
    N = weight.shape[0]
    y = _alloc.empty(M, N, dtype=x2.dtype, device=x2.device)
    bm, bn, bk, warps, stages = _config()
    bk = max(16, min(bk, next_pow2(K)))
    w = weight.float().contiguous() if x2.dtype == torch.float32 else weight.to(x2.dtype).contiguous()
    b = bias.float().contiguous() if bias is not None else w
    grid = (cdiv(M, bm), cdiv(N, bn))
    linear_gelu_kernel[grid](x2, w, b, y, M, N, K, x2.stride(0), w.stride(0), y.stride(0), HAS_B=bias is not None,
                             PRECISION="ieee" if x2.dtype == torch.float32 else "tf32",
                             UPCAST=os.environ.get("TRITON_INTERPRET") == "1", BLOCK_M=bm, BLOCK_N=bn,
                             BLOCK_K=bk, num_warps=warps, num_stages=stages)
    return y


class _LinearGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, weight, bias):
        ctx.save_for_backward(x2, weight, bias)
        return _forward(x2, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, bias = ctx.saved_tensors
        return recompute_grads(linear_gelu_reference, (x2, weight, bias), ctx.needs_input_grad, dy)


def linear_gelu_triton(x, weight, bias=None):
    """Same contract as :func:`visionssm.ops.linear_gelu.linear_gelu`."""
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    return _autograd.apply(_LinearGelu, x2, weight, bias).view(*x.shape[:-1], weight.shape[0])
