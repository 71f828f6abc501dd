"""Autograd wrapper and launch configuration of the Triton selective scan."""

from __future__ import annotations

import os

import torch
import triton

from .. import _alloc
from .reference import grouped_bc
from .triton_bwd import selective_scan_bwd_kernel
from .triton_fwd import selective_scan_fwd_kernel
from .triton_smalln import SmallNScan, use_smalln

LOG2E = 1.4426950408889634

_T = 8  # forward steps per unrolled chunk (CHUNK is a multiple)
_TARGET_PROGRAMS = 1024  # enough independent programs to hide each step's latency on a large GPU


def launch_config(batch: int, dim: int, dim_per_group: int, nstate: int, length: int):
    """(BLOCK_D, BLOCK_N, CHUNK, num_warps, seg_len, n_seg). ``VISIONSSM_SCAN_CFG=bd,chunk,warps`` overrides."""
    bd, chunk, warps = 32, 16, 1  # one channel per thread (see triton_fwd.py); VISIONSSM_SCAN_CFG sweeps it
    if os.environ.get("VISIONSSM_SCAN_CFG"):
        bd, chunk, warps = (int(v) for v in os.environ["VISIONSSM_SCAN_CFG"].split(","))
    if chunk % _T:
        raise ValueError(f"VISIONSSM_SCAN_CFG: chunk={chunk} must be a multiple of {_T}")
    while dim_per_group % bd:
        bd //= 2
    bn = triton.next_power_of_2(nstate)
    programs = batch * (dim // bd)
    target = int(os.environ.get("VISIONSSM_SCAN_PROGRAMS", _TARGET_PROGRAMS))
    n_seg = max(1, min(triton.cdiv(target, programs), triton.cdiv(length, 4 * chunk)))
    seg_len = triton.cdiv(triton.cdiv(length, n_seg), chunk) * chunk
    n_seg = triton.cdiv(length, seg_len)
    return bd, bn, chunk, warps, seg_len, n_seg


def _strides(t, n=3):
    return t.stride() if t is not None else (0,) * n


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        dpg = dim // groups
        bd, bn, chunk, warps, seg_len, n_seg = launch_config(batch, dim, dpg, nstate, length)
        dev = u.device
        f32 = dict(dtype=torch.float32, device=dev)
        out = _alloc.empty_like(u)  # u's layout: (batch, L, dim) storage stays token-major
        last = _alloc.empty(batch, dim, nstate, **f32)
        save = any(ctx.needs_input_grad)
        starts = _alloc.empty(batch, triton.cdiv(length, chunk), nstate, dim, **f32) if save else last
        seg_end = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else last
        seg_sum = _alloc.empty(batch, n_seg, dim, **f32) if n_seg > 1 else last
        At = (A * LOG2E).t().contiguous()  # (N, dim): lays the state tile out one channel per thread
        opt = lambda t: t if t is not None else out
        args = (
            u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), out, last, starts, seg_end, seg_sum,
            length, dim, dpg, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *_strides(z), *out.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, SAVE_STARTS=save, CHUNK=chunk, BLOCK_D=bd, BLOCK_N=bn, EVEN_N=bn == nstate, T=_T,
            num_warps=warps,
        )
        grid = (batch, dim // bd, n_seg)
        if n_seg > 1:
            selective_scan_fwd_kernel[grid](*args, MODE=1, **flags)
        selective_scan_fwd_kernel[grid](*args, MODE=0, **flags)
        ctx.save_for_backward(u, delta, At, B, C, D, z, delta_bias, starts, seg_sum)
        ctx.cfg = (softplus, reverse, bd, bn, chunk, warps, seg_len, n_seg)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, At, B, C, D, z, delta_bias, starts, seg_sum = ctx.saved_tensors
        softplus, reverse, bd, bn, chunk, warps, seg_len, n_seg = ctx.cfg
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
        dAt = torch.zeros(nstate, dim, **f32)
        dD = torch.zeros(dim, **f32) if D is not None else None
        dbias = torch.zeros(dim, **f32) if delta_bias is not None else None
        seg_w = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else dAt
        scratch = torch.empty(batch * n_blk * n_seg * chunk * bd * bn, **f32)
        dlast = dlast.float().contiguous() if dlast is not None else None
        opt = lambda t: t if t is not None else du
        args = (
            u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), dout, opt(dlast), starts, seg_w, seg_sum, scratch,
            du, ddelta, dAt, dBp, dCp, opt(dD), opt(dz), opt(dbias),
            length, dim, dim // groups, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *_strides(z), *dout.stride(), *B.stride(), *C.stride(),
        )
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, HAS_DLAST=dlast is not None, CHUNK=chunk, BLOCK_D=bd, BLOCK_N=bn, EVEN_N=bn == nstate,
            num_warps=warps,
        )
        grid = (batch, n_blk, n_seg)
        if n_seg > 1:
            selective_scan_bwd_kernel[grid](*args, MODE=1, **flags)
        selective_scan_bwd_kernel[grid](*args, MODE=0, **flags)
        # Per-block partial grads of B and C -> sum over the blocks of each group.
        dB = dBp.view(batch, groups, n_blk // groups, length, nstate).sum(2).transpose(-1, -2)
        dC = dCp.view(batch, groups, n_blk // groups, length, nstate).sum(2).transpose(-1, -2)
        return (
            du, ddelta, dAt.t(), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None, dz,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None, None, None,
        )


def _n_contiguous(t):
    """(batch, G, N, L) float32 view stored (batch, G, L, N): one broadcast vector load per token and no
    per-element conversions in the loop. B and C are ~N/dim of the traffic, so the copy is cheap."""
    if t.dtype == torch.float32 and t.stride(-2) == 1:
        return t
    return t.transpose(-1, -2).to(torch.float32, memory_format=torch.contiguous_format).transpose(-1, -2)


def selective_scan_triton(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False,
    return_last_state=False,
):
    """Same contract as :func:`visionssm.ops.selective_scan`; float32 state math, outputs in u's dtype."""
    smalln = use_smalln(A.shape[1])  # time-parallel kernel for N <= 4 (triton_smalln.py)
    B, C = (t if smalln else _n_contiguous(t) for t in grouped_bc(B, C, u.shape[1]))
    if delta.dtype != u.dtype:
        delta = delta.to(u.dtype)
    if z is not None and z.dtype != u.dtype:
        z = z.to(u.dtype)
    f32 = lambda t: t.float().contiguous() if t is not None else None
    scan = SmallNScan if smalln else _TritonScan
    out, last = scan.apply(u, delta, f32(A), B, C, f32(D), z, f32(delta_bias), delta_softplus, reverse)
    return (out, last) if return_last_state else out
