"""Triton LayerNorm over the channels of token-major rows: many short rows per program.

Vision maps normalise 48-1536 channels at each of B*H*W positions. torch's kernel spends a thread block per
row, which leaves most lanes idle at these widths (2 ms for VMamba-T's 48-channel stem norm at batch 128 on an
H100). Here a program owns BLOCK_R rows x all channels: one coalesced tile load, float32 statistics, the
affine, and one store in the output dtype -- so a float32 input can be written straight to bf16 (SS2D's
out_norm) without a separate cast pass. Backward recomputes through torch (float32) from the saved input.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc, _autograd
from .._host import cdiv, next_pow2
from .reference import layer_norm_reference


@triton.jit
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, rows, C, eps, s_xr, s_yr,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    c = tl.arange(0, BLOCK_C)[None, :]
    ok = (r < rows) & (c < C)
    x = tl.load(x_ptr + r.to(tl.int64) * s_xr + c, mask=ok, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1, keep_dims=True) / C
    xc = tl.where(ok, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1, keep_dims=True) / C + eps)
    y = xc * rstd
    if HAS_W:
        y = y * tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    if HAS_B:
        y = y + tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    tl.store(y_ptr + r.to(tl.int64) * s_yr + c, y.to(y_ptr.dtype.element_ty), mask=ok)


def _launch(x2, weight, bias, eps, out_dtype):
    rows, C = x2.shape
    y = _alloc.empty(rows, C, dtype=out_dtype, device=x2.device)
    block_c = next_pow2(C)
    block_r = max(1, min(4096 // block_c, next_pow2(rows)))  # ~4K elements per program
    warps = 4 if block_r * block_c <= 4096 else 8
    dummy = y
    _ln_fwd_kernel[(cdiv(rows, block_r),)](
        x2, weight if weight is not None else dummy, bias if bias is not None else dummy, y, rows, C, eps,
        x2.stride(0), y.stride(0), HAS_W=weight is not None, HAS_B=bias is not None, BLOCK_R=block_r,
        BLOCK_C=block_c, num_warps=warps,
    )
    return y


class _TritonLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, weight, bias, eps, out_dtype):
        ctx.save_for_backward(x2, weight, bias)
        ctx.eps = eps
        return _launch(x2, weight, bias, eps, out_dtype)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, bias = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.requires_grad) if t is not None else None
                      for t in (x2, weight, bias)]
            y = layer_norm_reference(*leaves, eps=ctx.eps, out_dtype=torch.float32)
            wanted = [t for t in leaves if t is not None and t.requires_grad]
            grads = iter(torch.autograd.grad(y, wanted, dy.float()))
        out = [next(grads).to(t.dtype) if t is not None and t.requires_grad else None for t in leaves]
        return (*out, None, None)


def layer_norm_triton(x, weight, bias, eps: float = 1e-5, out_dtype=None):
    """LayerNorm over x's last axis (rows = the other axes, which must merge into one strided axis)."""
    C = x.shape[-1]
    x2 = x.reshape(-1, C)  # a view for token-major maps
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = _autograd.apply(_TritonLayerNorm, x2, weight, bias, eps, out_dtype or x.dtype)
    return y.view(x.shape)
