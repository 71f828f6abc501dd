"""Autograd wrapper and launch configuration of the time-parallel small-N Triton selective scan (N <= 4).

triton_scan.py dispatches here when N <= MAX_NSTATE unless ``VISIONSSM_SCAN_SMALLN=0``.
"""

from __future__ import annotations

import os

import torch

from .. import _alloc
from .._host import cached_on_env, cdiv, env_get, next_pow2, strides
from .triton_smalln_bwd import smalln_bwd_kernel
from .triton_smalln_fwd import smalln_fwd_kernel

LOG2E = 1.4426950408889634
MAX_NSTATE = 4
_TARGET_PROGRAMS = 1024  # below this many (batch, channel block) programs, L is cut into segments


def use_smalln(nstate: int) -> bool:
    limit = int(env_get("VISIONSSM_SCAN_SMALLN_MAXN", MAX_NSTATE))  # tuning: try it at larger N
    return nstate <= limit and env_get("VISIONSSM_SCAN_SMALLN", "1") != "0"


@cached_on_env("VISIONSSM_SCAN_SMALLN_CFG", "VISIONSSM_SCAN_PROGRAMS")
def smalln_config(batch: int, dim: int, dim_per_group: int, nstate: int, length: int):
    """(BLOCK_D, BLOCK_T, num_warps, seg_len, n_seg). ``VISIONSSM_SCAN_SMALLN_CFG=bd,bt,warps`` overrides."""
    bd, bt, warps = 4, 128, 4  # H100 sweep at (64, 384, 3136, 1): fwd+bwd 1.62 ms vs 2.28 ms with 256 tokens
    if os.environ.get("VISIONSSM_SCAN_SMALLN_CFG"):
        bd, bt, warps = (int(v) for v in os.environ["VISIONSSM_SCAN_SMALLN_CFG"].split(","))
    while dim_per_group % bd:
        bd //= 2
    # bt is the N = 1 tile; larger N shrink it to keep ~8 state values per thread (no spills, see ptxas -v).
    bt = max(16, min(bt // next_pow2(nstate), next_pow2(length)))
    programs = batch * (dim // bd)
    target = int(os.environ.get("VISIONSSM_SCAN_PROGRAMS", _TARGET_PROGRAMS))
    n_seg = max(1, min(cdiv(target, programs), cdiv(length, 2 * bt)))
    seg_len = cdiv(cdiv(length, n_seg), bt) * bt
    return bd, bt, warps, seg_len, cdiv(length, seg_len)


class SmallNScan(torch.autograd.Function):
    """Inputs as in triton_scan._TritonScan: u, delta, z (batch, dim, L); A (dim, N), B, C (batch, G, N, L)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        bd, bt, warps, seg_len, n_seg = smalln_config(batch, dim, dim // groups, nstate, length)
        f32 = dict(dtype=torch.float32, device=u.device)
        out = _alloc.empty_like(u)
        last = _alloc.empty(batch, dim, nstate, **f32)
        save = any(ctx.needs_input_grad)
        starts = _alloc.empty(batch, cdiv(length, bt), nstate, dim, **f32) if save else last
        seg_end = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else last
        seg_sum = _alloc.empty(batch, n_seg, dim, **f32) if n_seg > 1 else last
        At = torch.mul(A.t(), LOG2E, out=A.new_empty(A.shape[::-1]))  # one launch
        opt = lambda t: t if t is not None else out
        args = (
            u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), out, last, starts, seg_end, seg_sum,
            length, dim, dim // groups, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *strides(z), *out.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, SAVE_STARTS=save, BLOCK_D=bd, BLOCK_T=bt, BLOCK_N=next_pow2(nstate),
            num_warps=warps,
        )
        grid = (batch, dim // bd, n_seg)
        if n_seg > 1:
            smalln_fwd_kernel[grid](*args, MODE=1, **flags)
        smalln_fwd_kernel[grid](*args, MODE=0, **flags)
        ctx.save_for_backward(u, delta, At, B, C, D, z, delta_bias, starts, seg_sum)
        ctx.cfg = (softplus, reverse, bd, bt, warps, seg_len, n_seg)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, At, B, C, D, z, delta_bias, starts, seg_sum = ctx.saved_tensors
        softplus, reverse, bd, bt, warps, seg_len, n_seg = ctx.cfg
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], At.shape[0]
        dev = u.device
        f32 = dict(dtype=torch.float32, device=dev)
        n_blk = dim // bd
        du = _alloc.empty(batch, dim, length, dtype=u.dtype, device=dev)
        ddelta = _alloc.empty(batch, dim, length, dtype=delta.dtype, device=dev)
        dz = _alloc.empty(batch, dim, length, dtype=z.dtype, device=dev) if z is not None else None
        dBp = _alloc.empty(batch, n_blk, length, nstate, **f32)
        dCp = _alloc.empty(batch, n_blk, length, nstate, **f32)
        dAp = _alloc.empty(batch, n_seg, nstate, dim, **f32)
        dDp = _alloc.empty(batch, n_seg, dim, **f32) if D is not None else None
        dbp = _alloc.empty(batch, n_seg, dim, **f32) if delta_bias is not None else None
        seg_w = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else dAp
        dlast = dlast.float().contiguous() if dlast is not None else None
        opt = lambda t: t if t is not None else du
        args = (
            u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), dout, opt(dlast), starts, seg_w, seg_sum,
            du, ddelta, dAp, dBp, dCp, opt(dDp), opt(dz), opt(dbp),
            length, dim, dim // groups, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *strides(z), *dout.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, HAS_DLAST=dlast is not None, BLOCK_D=bd, BLOCK_T=bt,
            BLOCK_N=next_pow2(nstate), num_warps=warps,
        )
        grid = (batch, n_blk, n_seg)
        if n_seg > 1:
            smalln_bwd_kernel[grid](*args, MODE=1, **flags)
        smalln_bwd_kernel[grid](*args, MODE=0, **flags)
        # Per-block partial grads of B and C -> sum over the blocks of each group; per-program A, D, bias.
        dB = dBp.view(batch, groups, n_blk // groups, length, nstate).sum(2).transpose(-1, -2)
        dC = dCp.view(batch, groups, n_blk // groups, length, nstate).sum(2).transpose(-1, -2)
        return (
            du, ddelta, dAp.sum((0, 1)).t(), dB.to(B.dtype), dC.to(C.dtype),
            dDp.sum((0, 1)).to(D.dtype) if D is not None else None, dz,
            dbp.sum((0, 1)).to(delta_bias.dtype) if delta_bias is not None else None, None, None,
        )
