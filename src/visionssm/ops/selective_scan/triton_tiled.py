"""Autograd wrapper and launch configuration of the time-parallel, state-by-state Triton selective scan.

Opt-in: triton_scan.py dispatches here for N > 4 when ``VISIONSSM_SCAN_TILED=1``; by default the
token-by-token kernel of triton_fwd.py runs, which measured faster on an H100 (benchmarks/results/
scan_tiled_sweep_h100.txt: forward 0.344 vs 0.256 ms, forward+backward 3.7 vs 2.0 ms at (128, 384, 197, 16),
bf16). What limits these kernels there: B_n and C_n are read per (token, state) with scalar loads whose
lanes sit K tokens apart (4 L1 wavefronts per load: ~150 us of L1 time at that shape by estimate, not
profiled), on top of ~25 instructions per (token, state) for the scans (counted in the PTX).
Kernels: triton_tiled_fwd.py, triton_tiled_bwd.py.
"""

from __future__ import annotations

import os

import torch

from .. import _alloc
from .._host import cached_on_env, cdiv, env_get, next_pow2, strides
from .._segment_carry import segment_carry
from .triton_tiled_bwd import tiled_bwd_kernel
from .triton_tiled_fwd import tiled_fwd_kernel

LOG2E = 1.4426950408889634
_LANES = 32


def use_tiled(dim_per_group: int) -> bool:
    """Opted in, and channels come in pairs per B/C group (the kernels' layout hint needs BLOCK_D >= 2)."""
    return env_get("VISIONSSM_SCAN_TILED", "0") == "1" and dim_per_group % 2 == 0


@cached_on_env("VISIONSSM_SCAN_TILED_CFG")
def tiled_config(dim_per_group: int, length: int):
    """(BLOCK_D, K, fwd warps, bwd warps): a segment is 32 K tokens of BLOCK_D >= 2 channels, one warp per
    channel (the best of the H100 sweep). ``VISIONSSM_SCAN_TILED_CFG=bd,k,wf,wb`` overrides (sweeps)."""
    bd, k, wf, wb = 2, 8, 2, 2
    if os.environ.get("VISIONSSM_SCAN_TILED_CFG"):
        bd, k, wf, wb = (int(v) for v in os.environ["VISIONSSM_SCAN_TILED_CFG"].split(","))
    k = min(k, next_pow2(cdiv(length, _LANES)))  # a short sequence is one segment
    while dim_per_group % bd:
        bd //= 2
    return bd, k, min(wf, bd), min(wb, bd)


class TiledScan(torch.autograd.Function):
    """Inputs as in triton_scan._TritonScan: u, delta, z (batch, dim, L); A (dim, N) float32; B, C (batch, G,
    N, L) in any float dtype and layout. ``want_last``: also return the last state (else None)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, reverse, want_last):
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        bd, k, wf, wb = tiled_config(dim // groups, length)
        n_seg = cdiv(length, _LANES * k)
        f32 = dict(dtype=torch.float32, device=u.device)
        out = _alloc.empty_like(u)
        last = _alloc.empty(batch, dim, nstate, **f32) if want_last else None
        start = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else out
        seg_sum = _alloc.empty(batch, n_seg, dim, **f32) if n_seg > 1 else out
        At = torch.mul(A.t(), LOG2E, out=A.new_empty(A.shape[::-1]))  # (N, dim) in one launch
        opt = lambda t: t if t is not None else out
        args = (
            u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), out, opt(last), start, seg_sum,
            length, dim, dim // groups, n_seg,
            *u.stride(), *delta.stride(), *strides(z), *out.stride(), *B.stride(), *C.stride(), 0,
        )
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, CARRY=n_seg > 1, N=nstate, BLOCK_D=bd, K=k, num_warps=wf,
        )
        if n_seg > 1:
            tiled_fwd_kernel[(batch, dim // bd, n_seg - 1)](*args, MODE=1, WRITE_LAST=False, **flags)
            segment_carry(seg_sum, start, None, reverse=False, coef=At)
        tiled_fwd_kernel[(batch, dim // bd, n_seg)](*args, MODE=0, WRITE_LAST=want_last, **flags)
        ctx.save_for_backward(u, delta, At, B, C, D, z, delta_bias, start, seg_sum)
        ctx.cfg = (softplus, reverse, bd, k, wb, n_seg)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, At, B, C, D, z, delta_bias, start, seg_sum = ctx.saved_tensors
        softplus, reverse, bd, k, wb, n_seg = ctx.cfg
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], At.shape[0]
        f32 = dict(dtype=torch.float32, device=u.device)
        n_blk = dim // bd
        du = _alloc.empty(batch, dim, length, dtype=u.dtype, device=u.device)
        ddelta = _alloc.empty(batch, dim, length, dtype=delta.dtype, device=u.device)
        dz = _alloc.empty(batch, dim, length, dtype=z.dtype, device=u.device) if z is not None else None
        dBp = _alloc.empty(batch, n_blk, nstate, length, **f32)
        dCp = _alloc.empty(batch, n_blk, nstate, length, **f32)
        dAp = _alloc.empty(batch, n_seg, nstate, dim, **f32)
        dDp = _alloc.empty(batch, n_seg, dim, **f32) if D is not None else None
        dbp = _alloc.empty(batch, n_seg, dim, **f32) if delta_bias is not None else None
        dlast = dlast.float() if dlast is not None else None
        if n_seg > 1:
            adj = _alloc.empty(batch, n_seg, nstate, dim, **f32)
        elif dlast is not None:  # one segment: the adjoint entering it from the right is dlast itself
            adj = dlast.transpose(1, 2).contiguous()
        else:
            adj = None
        opt = lambda t: t if t is not None else du
        args = (
            u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), dout, start, opt(adj),
            du, ddelta, opt(dz), dAp, opt(dDp), opt(dbp), dBp, dCp,
            length, dim, dim // groups, n_seg,
        )
        stride_args = (*u.stride(), *delta.stride(), *strides(z), *dout.stride(), *B.stride(), *C.stride(), 0)
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, CARRY=n_seg > 1, HAS_ADJ=adj is not None, N=nstate, BLOCK_D=bd, K=k,
            num_warps=wb,
        )
        if n_seg > 1:
            tiled_bwd_kernel[(batch, n_blk, n_seg - 1)](*args, 1, *stride_args, MODE=1, **flags)
            segment_carry(seg_sum, adj, dlast.contiguous() if dlast is not None else None, reverse=True,
                          coef=At, init_transposed=True)
        tiled_bwd_kernel[(batch, n_blk, n_seg)](*args, 0, *stride_args, MODE=0, **flags)
        dB = dBp.view(batch, groups, n_blk // groups, nstate, length).sum(2)
        dC = dCp.view(batch, groups, n_blk // groups, nstate, length).sum(2)
        return (
            du, ddelta, dAp.sum((0, 1)).t(), dB.to(B.dtype), dC.to(C.dtype),
            dDp.sum((0, 1)).to(D.dtype) if D is not None else None, dz,
            dbp.sum((0, 1)).to(delta_bias.dtype) if delta_bias is not None else None, None, None, None,
        )
