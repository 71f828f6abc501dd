"""Autograd wrapper, launch configuration and index-map preparation of the Triton routed scan."""

from __future__ import annotations

import os
import weakref

import torch

from .. import _alloc, _autograd
from .._host import cached_on_env, cdiv, next_pow2
from .triton_routed_bwd import routed_scan_bwd_kernel
from .triton_routed_fwd import routed_scan_fwd_kernel

LOG2E = 1.4426950408889634
_T = int(os.environ.get("VISIONSSM_ROUTES_T", 8))  # forward steps per unrolled chunk (CHUNK is a multiple)
_TARGET_PROGRAMS = 1024  # enough independent programs to hide each step's latency on a large GPU


@cached_on_env("VISIONSSM_ROUTES_CFG")
def launch_config(batch: int, dim: int, ch: int, nstate: int, length: int):
    """(BLOCK_D, BLOCK_N, CHUNK, num_warps, seg_len, n_seg). ``VISIONSSM_ROUTES_CFG=bd,chunk,warps`` overrides."""
    bd, chunk, warps = 32, 16, 1  # one channel per thread, as the plain scan (ops/selective_scan/triton_scan.py)
    if os.environ.get("VISIONSSM_ROUTES_CFG"):
        bd, chunk, warps = (int(v) for v in os.environ["VISIONSSM_ROUTES_CFG"].split(","))
    if chunk % _T:
        raise ValueError(f"VISIONSSM_ROUTES_CFG: chunk={chunk} must be a multiple of {_T}")
    while ch % bd:
        bd //= 2
    bn = next_pow2(nstate)
    programs = batch * (dim // bd)
    n_seg = max(1, min(cdiv(_TARGET_PROGRAMS, programs), cdiv(length, 4 * chunk)))
    seg_len = cdiv(cdiv(length, n_seg), chunk) * chunk
    n_seg = cdiv(length, seg_len)
    return bd, bn, chunk, warps, seg_len, n_seg


# Per index tensor: its int32 copy on the device and whether each route visits every position exactly once
# (plain stores, no zero fill) or at most once (stores into a zeroed buffer) -- else atomics. Computed once
# per index tensor (one host sync), so a model keeps its route maps as buffers and pays nothing per call.
_index_cache: dict[int, tuple] = {}


def _route_kind(index: torch.Tensor, lmap: int, device: torch.device) -> tuple[torch.Tensor, bool, bool]:
    """(int32 index on ``device``, each route visits a position at most once, ... exactly once)."""
    key = id(index)
    # Inference tensors have no version counter (and cannot be edited in place outside inference mode).
    version = -1 if index.is_inference() else index._version
    state = (version, index.device, device, lmap)
    hit = _index_cache.get(key)
    if hit is not None and hit[0]() is index and hit[1] == state:
        return hit[2]
    srt = index.sort(dim=1).values
    lo, hi = (srt[:, 0].min(), srt[:, -1].max()) if index.numel() else (index.new_zeros(()), index.new_zeros(()))
    repeats = (srt[:, 1:] == srt[:, :-1]).any().to(lo.device) if index.shape[1] > 1 else lo.new_zeros((), dtype=bool)
    lo, hi, repeats = torch.stack([lo.long(), hi.long(), repeats.long()]).tolist()
    if lo < 0 or hi >= lmap:
        raise ValueError(f"routed_selective_scan: index values must lie in [0, Lmap={lmap}), got [{lo}, {hi}]")
    injective = not repeats
    value = (index.to(device=device, dtype=torch.int32).contiguous(), injective, injective and index.shape[1] == lmap)
    ref = weakref.ref(index, lambda _, key=key: _index_cache.pop(key, None))
    _index_cache[key] = (ref, state, value)
    return value


def _fill(dtype, zero, *shape, device):
    return torch.zeros(*shape, dtype=dtype, device=device) if zero else _alloc.empty(*shape, dtype=dtype, device=device)


class _RoutedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, idx, softplus, merge, out_dtype, route_order, injective,
                covers):
        batch, dim, lmap = delta.shape
        K, lr = idx.shape
        ch, nstate = dim // K, A.shape[1]
        u_shared = u.shape[1] == ch
        bd, bn, chunk, warps, seg_len, n_seg = launch_config(batch, dim, ch, nstate, lr)
        dev = u.device
        f32 = dict(dtype=torch.float32, device=dev)
        accum, zero = not injective, not covers
        # One output row per route channel, map order (the route sum happens afterwards, in float32) or route order.
        out_accum = accum and not route_order
        y_dtype = out_dtype if not (merge or out_accum) else torch.float32
        out = _fill(y_dtype, zero and not route_order, batch, dim, lr if route_order else lmap, device=dev)
        save = any(ctx.needs_input_grad)
        starts = _alloc.empty(batch, cdiv(lr, chunk), nstate, dim, **f32) if save else out
        seg_end = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else out
        seg_sum = _alloc.empty(batch, n_seg, dim, **f32) if n_seg > 1 else out
        # (N, K*C) in one launch; transposed so the state tile is laid out one channel per thread.
        At = torch.mul(A.t(), LOG2E, out=A.new_empty(A.shape[::-1]))
        opt = lambda t: t if t is not None else out
        args = (
            u, delta, At, B, C, opt(D), opt(delta_bias), idx, out, starts, seg_end, seg_sum,
            lr, ch, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *out.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus, U_SHARED=u_shared,
            ACCUM=out_accum, OUT_AT_STEP=route_order, SAVE_STARTS=save, CHUNK=chunk, BLOCK_D=bd, BLOCK_N=bn,
            EVEN_N=bn == nstate, T=_T, num_warps=warps,
        )
        grid = (batch, dim // bd, n_seg)
        if n_seg > 1:
            routed_scan_fwd_kernel[grid](*args, MODE=1, **flags)
        routed_scan_fwd_kernel[grid](*args, MODE=0, **flags)
        ctx.save_for_backward(u, delta, At, B, C, D, delta_bias, idx, starts, seg_sum)
        ctx.cfg = (softplus, merge, route_order, accum, zero, bd, bn, chunk, warps, seg_len, n_seg)
        y = out.view(batch, K, ch, lmap).sum(1) if merge else out
        return y.to(out_dtype)

    @staticmethod
    def backward(ctx, dy):
        u, delta, At, B, C, D, delta_bias, idx, starts, seg_sum = ctx.saved_tensors
        softplus, merge, route_order, accum, zero, bd, bn, chunk, warps, seg_len, n_seg = ctx.cfg
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
        dAt = torch.zeros(nstate, dim, **f32)
        dD = torch.zeros(dim, **f32) if D is not None else None
        dbias = torch.zeros(dim, **f32) if delta_bias is not None else None
        seg_w = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else dAt
        scratch = torch.empty(batch * n_blk * n_seg * chunk * bd * bn, **f32)
        opt = lambda t: t if t is not None else du
        args = (
            u, delta, At, B, C, opt(D), opt(delta_bias), idx, dy, starts, seg_w, seg_sum, scratch,
            du, ddelta, dAt, dBp, dCp, opt(dD), opt(dbias),
            lr, lmap, ch, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *dy.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus, U_SHARED=u_shared,
            G_SHARED=merge, G_AT_STEP=route_order, ACCUM=accum, CHUNK=chunk, BLOCK_D=bd, BLOCK_N=bn,
            EVEN_N=bn == nstate, num_warps=warps,
        )
        grid = (batch, n_blk, n_seg)
        if n_seg > 1:
            routed_scan_bwd_kernel[grid](*args, MODE=1, **flags)
        routed_scan_bwd_kernel[grid](*args, MODE=0, **flags)
        if u_shared:
            du = du.view(batch, K, ch, lmap).sum(1)
        # Per-block partial grads of B and C -> sum over the blocks of each route.
        dB = dBp.view(batch, K, n_blk // K, lmap, nstate).sum(2).transpose(-1, -2)
        dC = dCp.view(batch, K, n_blk // K, lmap, nstate).sum(2).transpose(-1, -2)
        return (
            du.to(u.dtype), ddelta.to(delta.dtype), dAt.t(), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None,
            None, None, None, None, None, None, None,
        )


def _n_contiguous(t):
    """(batch, K, N, Lmap) float32 view stored (batch, K, Lmap, N): one vector load per visited position.
    A layout change of B and C in map order (no permutation); they are ~N/C of the traffic."""
    if t.dtype == torch.float32 and t.stride(-2) == 1:
        return t
    return t.transpose(-1, -2).to(torch.float32, memory_format=torch.contiguous_format).transpose(-1, -2)


def routed_selective_scan_triton(
    u, delta, A, B, C, index, D=None, delta_bias=None, delta_softplus=True, merge=True, out_dtype=None,
    output_order="map",
):
    """Same contract as :func:`visionssm.ops.scan_routes.routed_selective_scan`; float32 state math."""
    idx, injective, covers = _route_kind(index, delta.shape[2], u.device)
    f32 = lambda t: t.float().contiguous() if t is not None else None
    from .triton_routed_smalln import RoutedSmallNScan, use_routed_smalln  # N <= 4: time-parallel tiles

    smalln = use_routed_smalln(A.shape[1])
    scan = RoutedSmallNScan if smalln else _RoutedScan
    B, C = (B, C) if smalln else (_n_contiguous(B), _n_contiguous(C))
    return _autograd.apply(
        scan, u, delta, f32(A), B, C, f32(D), f32(delta_bias), idx, delta_softplus, merge,
        out_dtype or u.dtype, output_order == "route", injective, covers,
    )
