"""Autograd wrapper of the time-parallel routed small-N Triton scan (N <= 4; VMamba v2's N = 1).

triton_routed.py dispatches here when N <= 4 unless ``VISIONSSM_ROUTES_SMALLN=0``. Buffers, dtypes and the
index-map handling follow triton_routed._RoutedScan; tiles follow ops/selective_scan/triton_smalln.py.
"""

from __future__ import annotations

import os

import torch

from .. import _alloc
from .._host import cached_on_env, cdiv, next_pow2
from ..selective_scan.triton_smalln import MAX_NSTATE
from .triton_routed_smalln_bwd import routed_smalln_bwd_kernel
from .triton_routed_smalln_fwd import routed_smalln_fwd_kernel

LOG2E = 1.4426950408889634
_TARGET_PROGRAMS = 1024  # below this many (batch, channel block) programs, routes are cut into segments


def use_routed_smalln(nstate: int) -> bool:
    return nstate <= MAX_NSTATE and os.environ.get("VISIONSSM_ROUTES_SMALLN", "1") != "0"


@cached_on_env("VISIONSSM_ROUTES_SMALLN_CFG")
def routed_smalln_config(batch: int, dim: int, ch: int, nstate: int, length: int, token_major: bool = False,
                         inference: bool = False):
    """(BLOCK_D, BLOCK_T, num_warps, seg_len, n_seg). ``VISIONSSM_ROUTES_SMALLN_CFG=bd,bt,warps`` overrides.

    token_major: channels are contiguous in memory (channels_last maps), so a visited position's BLOCK_D
    channels are one contiguous run: 16 bf16 channels fill a 32-byte sector (with 4, three quarters of every
    sector fetched for a column-route gather were wasted: ncu, VMamba-T stage 1 on an H100). Short tiles win
    there (H100 sweep, batch 128, sum over VMamba-T's four stages, forward: 16x32x2 warps 2.92 ms, 16x128x8
    4.04 ms, 16x256x8 5.21 ms; benchmarks/sweep_routes.py)."""
    bd, bt, warps = (16, 32, 2) if token_major else (4, 256, 4)
    if token_major and inference:
        # Nothing saved for a backward: one-warp programs (~half the registers per program, 25% -> more
        # occupancy). H100, batch 128, forward ms at VMamba-T's stages (56², 28², 14², 7²; sweep_routes.py):
        # 32x16x1 0.959 / 0.452 / 0.297 / 0.164, 16x32x1 1.085 / 0.543 / 0.274 / 0.142, 16x32x2 1.355 / 0.689 /
        # 0.398 / 0.246. The backward keeps the forward's tiles (its saved states), and 2 warps.
        bd, bt, warps = (32, 16, 1) if length >= 784 else (16, 32, 1)
    if os.environ.get("VISIONSSM_ROUTES_SMALLN_CFG"):
        bd, bt, warps = (int(v) for v in os.environ["VISIONSSM_ROUTES_SMALLN_CFG"].split(","))
    while ch % bd:
        bd //= 2
    bt = max(16, min(bt // next_pow2(nstate), next_pow2(length)))
    programs = batch * (dim // bd)
    n_seg = max(1, min(cdiv(_TARGET_PROGRAMS, programs), cdiv(length, 2 * bt)))
    seg_len = cdiv(cdiv(length, n_seg), bt) * bt
    return bd, bt, warps, seg_len, cdiv(length, seg_len)


def _fill(dtype, zero, *shape, device):
    return torch.zeros(*shape, dtype=dtype, device=device) if zero else _alloc.empty(*shape, dtype=dtype, device=device)


def routed_smalln_forward(u, delta, A, B, C, D, delta_bias, idx, softplus, merge, out_dtype, route_order, injective,
                          covers, save, lowrank=None):
    """The forward launches: (output, At, tile-start states, segment delta sums, backward config).

    lowrank=(x_dbl, w): delta is None and is formed in the kernel from x_dbl (batch, Lmap, K, R + 2N) and
    w (K*C, R) float32 (forward-only: nothing is saved for a backward)."""
    if lowrank is not None:
        x_dbl, w = lowrank
        batch, lmap, dim, rank = x_dbl.shape[0], x_dbl.shape[1], w.shape[0], w.shape[1]
        token_major = u.stride(1) == 1 and u.shape[1] > 1
        if x_dbl.stride(-1) != 1:
            x_dbl = x_dbl.contiguous()
        d_src, d_strides, s_xk = x_dbl, (x_dbl.stride(0), 0, x_dbl.stride(1)), x_dbl.stride(2)
    else:
        batch, dim, lmap = delta.shape
        rank, w, s_xk = 0, None, 0
        token_major = u.stride(1) == 1 and delta.stride(1) == 1 and u.shape[1] > 1
        d_src, d_strides = delta, delta.stride()
    K, lr = idx.shape
    ch, nstate = dim // K, A.shape[1]
    u_shared = u.shape[1] == ch
    bd, bt, warps, seg_len, n_seg = routed_smalln_config(batch, dim, ch, nstate, lr, token_major, not save)
    f32 = dict(dtype=torch.float32, device=u.device)
    accum, zero = not injective, not covers
    out_accum = accum and not route_order
    y_dtype = out_dtype if not (merge or out_accum) else torch.float32
    n_out = lr if route_order else lmap
    # Token-major merged outputs are summed in the kernel by float32 atomics into one zeroed map, not
    # written as K route maps and summed after (VISIONSSM_ROUTES_MERGE=sum): H100, batch 128, VMamba-T's
    # four stages, forward 2.52 vs 2.93 ms (benchmarks/sweep_routes.py). The summation order of the K
    # routes then varies from run to run (float32 rounding only).
    merge_out = merge and token_major and os.environ.get("VISIONSSM_ROUTES_MERGE", "atomic") == "atomic"
    if merge_out:
        out = torch.zeros(batch, lmap, ch, **f32).transpose(1, 2)
    elif token_major:  # outputs in the inputs' layout: coalesced stores, and the route sum stays token-major
        out = _fill(y_dtype, zero and not route_order, batch, n_out, dim, device=u.device).transpose(1, 2)
    else:
        out = _fill(y_dtype, zero and not route_order, batch, dim, n_out, device=u.device)
    starts = _alloc.empty(batch, cdiv(lr, bt), nstate, dim, **f32) if save else out
    seg_end = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else out
    seg_sum = _alloc.empty(batch, n_seg, dim, **f32) if n_seg > 1 else out
    At = torch.mul(A.t(), LOG2E, out=A.new_empty(A.shape[::-1]))  # one launch
    opt = lambda t: t if t is not None else out
    args = (
        u, d_src, At, B, C, opt(D), opt(delta_bias), idx, out, starts, seg_end, seg_sum, opt(w), s_xk,
        lr, ch, nstate, seg_len, n_seg,
        *u.stride(), *d_strides, *out.stride(), *B.stride(), *C.stride(),
    )
    flags = dict(
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus, U_SHARED=u_shared,
        ACCUM=out_accum or merge_out, MERGE_OUT=merge_out, OUT_AT_STEP=route_order, SAVE_STARTS=save,
        DT_RANK=rank, BLOCK_D=bd, BLOCK_T=bt,
        BLOCK_N=next_pow2(nstate), num_warps=warps,
    )
    grid = (batch, dim // bd, n_seg)
    if n_seg > 1:
        routed_smalln_fwd_kernel[grid](*args, MODE=1, **flags)
    routed_smalln_fwd_kernel[grid](*args, MODE=0, **flags)
    cfg = (softplus, merge, route_order, accum, zero, bd, bt, warps, seg_len, n_seg)
    if not merge or merge_out:
        return out.to(out_dtype), At, starts, seg_sum, cfg
    y = out.new_empty(batch, lmap, ch).transpose(1, 2) if token_major else out.new_empty(batch, ch, lmap)
    return torch.sum(out.unflatten(1, (K, ch)), 1, out=y).to(out_dtype), At, starts, seg_sum, cfg


class RoutedSmallNScan(torch.autograd.Function):
    """Same arguments as triton_routed._RoutedScan (B, C: (batch, K, N, Lmap) in any float dtype)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, idx, softplus, merge, out_dtype, route_order, injective,
                covers):
        save = any(ctx.needs_input_grad)
        out, At, starts, seg_sum, cfg = routed_smalln_forward(
            u, delta, A, B, C, D, delta_bias, idx, softplus, merge, out_dtype, route_order, injective, covers, save)
        ctx.save_for_backward(u, delta, At, B, C, D, delta_bias, idx, starts, seg_sum)
        ctx.cfg = cfg
        return out

    @staticmethod
    def backward(ctx, dy):
        u, delta, At, B, C, D, delta_bias, idx, starts, seg_sum = ctx.saved_tensors
        softplus, merge, route_order, accum, zero, bd, bt, warps, seg_len, n_seg = ctx.cfg
        batch, dim, lmap = delta.shape
        K, lr = idx.shape
        ch, nstate = dim // K, At.shape[0]
        u_shared = u.shape[1] == ch
        dev = u.device
        f32 = dict(dtype=torch.float32, device=dev)
        n_blk = dim // bd
        du = _fill(u.dtype if not (u_shared or accum) else torch.float32, zero, batch, dim, lmap, device=dev)
        ddelta = _fill(delta.dtype if not accum else torch.float32, zero, batch, dim, lmap, device=dev)
        dBp = _fill(torch.float32, zero, batch, n_blk, lmap, nstate, device=dev)
        dCp = _fill(torch.float32, zero, batch, n_blk, lmap, nstate, device=dev)
        dAp = _alloc.empty(batch, n_seg, nstate, dim, **f32)
        dDp = _alloc.empty(batch, n_seg, dim, **f32) if D is not None else None
        dbp = _alloc.empty(batch, n_seg, dim, **f32) if delta_bias is not None else None
        seg_w = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else dAp
        opt = lambda t: t if t is not None else du
        args = (
            u, delta, At, B, C, opt(D), opt(delta_bias), idx, dy, starts, seg_w, seg_sum,
            du, ddelta, dAp, dBp, dCp, opt(dDp), opt(dbp),
            lr, lmap, ch, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *dy.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus, U_SHARED=u_shared,
            G_SHARED=merge, G_AT_STEP=route_order, ACCUM=accum, BLOCK_D=bd, BLOCK_T=bt,
            BLOCK_N=next_pow2(nstate), num_warps=warps,
        )
        grid = (batch, n_blk, n_seg)
        if n_seg > 1:
            routed_smalln_bwd_kernel[grid](*args, MODE=1, **flags)
        routed_smalln_bwd_kernel[grid](*args, MODE=0, **flags)
        if u_shared:
            du = du.view(batch, K, ch, lmap).sum(1)
        # Per-block partial grads of B and C -> sum over the blocks of each route; per-program A, D, bias.
        dB = dBp.view(batch, K, n_blk // K, lmap, nstate).sum(2).transpose(-1, -2)
        dC = dCp.view(batch, K, n_blk // K, lmap, nstate).sum(2).transpose(-1, -2)
        return (
            du.to(u.dtype), ddelta.to(delta.dtype), dAp.sum((0, 1)).t(), dB.to(B.dtype), dC.to(C.dtype),
            dDp.sum((0, 1)).to(D.dtype) if D is not None else None,
            dbp.sum((0, 1)).to(delta_bias.dtype) if delta_bias is not None else None,
            None, None, None, None, None, None, None,
        )
