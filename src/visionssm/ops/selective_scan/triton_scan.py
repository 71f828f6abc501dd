"""Autograd wrapper and launch configuration of the Triton selective scan."""

from __future__ import annotations

import torch
import triton

from .. import _alloc
from .triton_bwd import selective_scan_bwd_kernel
from .triton_fwd import selective_scan_fwd_kernel


def _block_d(dim_per_group: int, batch: int, dim: int) -> int:
    """Channels per program: a power of two dividing the group width; fewer when the grid would be small."""
    bd = 1
    while bd < 8 and dim_per_group % (bd * 2) == 0:
        bd *= 2
    while bd > 1 and batch * (dim // bd) < 1024:  # keep the GPU's multiprocessors busy
        bd //= 2
    return bd


def _launch_cfg(batch, dim, dim_per_group, nstate, length):
    bd = _block_d(dim_per_group, batch, dim)
    bn = max(2, triton.next_power_of_2(nstate))
    bl = 64 if bn <= 16 else 32
    bl = min(bl, max(16, triton.next_power_of_2(length)))
    while bd * bn * bl > 8192 and bl > 16:
        bl //= 2
    return bd, bn, bl


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        dpg = dim // groups
        bd, bn, bl = _launch_cfg(batch, dim, dpg, nstate, length)
        n_chunks = triton.cdiv(length, bl)
        out = _alloc.empty(batch, dim, length, dtype=u.dtype, device=u.device)
        last = _alloc.empty(batch, dim, nstate, dtype=torch.float32, device=u.device)
        save = torch.is_grad_enabled() or any(ctx.needs_input_grad)
        starts = _alloc.empty(batch, dim, n_chunks, nstate, dtype=torch.float32, device=u.device)
        A = A.contiguous()
        dummy = out
        selective_scan_fwd_kernel[(batch, dim // bd)](
            u, delta, A, B, C, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, out, last, starts,
            length, dim, dpg, nstate,
            *u.stride(), *delta.stride(), *(z.stride() if z is not None else (0, 0, 0)), *out.stride(),
            *A.stride(), *B.stride(), *C.stride(), *starts.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, SAVE_STARTS=save, BLOCK_D=bd, BLOCK_N=bn, BLOCK_L=bl, num_warps=4,
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts)
        ctx.cfg = (softplus, reverse, bd, bn, bl)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        softplus, reverse, bd, bn, bl = ctx.cfg
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        Bc, Cc = B.contiguous(), C.contiguous()
        du = _alloc.empty(batch, dim, length, dtype=u.dtype, device=u.device)
        ddelta = _alloc.empty(batch, dim, length, dtype=delta.dtype, device=u.device)
        dz = _alloc.empty(batch, dim, length, dtype=z.dtype, device=u.device) if z is not None else None
        f32 = dict(dtype=torch.float32, device=u.device)
        dA = torch.zeros(dim, nstate, **f32)
        dB = torch.zeros(batch, groups, nstate, length, **f32)
        dC = torch.zeros(batch, groups, nstate, length, **f32)
        dD = torch.zeros(dim, **f32) if D is not None else None
        dbias = torch.zeros(dim, **f32) if delta_bias is not None else None
        dummy = du
        dlast = dlast.float().contiguous() if dlast is not None else None
        selective_scan_bwd_kernel[(batch, dim // bd)](
            u, delta, A, Bc, Cc, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, dout, dlast if dlast is not None else dummy, starts,
            du, ddelta, dA, dB, dC, dD if D is not None else dummy, dz if z is not None else dummy,
            dbias if delta_bias is not None else dummy,
            length, dim, dim // groups, nstate, groups,
            *u.stride(), *delta.stride(), *(z.stride() if z is not None else (0, 0, 0)), *dout.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
            REVERSE=reverse, HAS_DLAST=dlast is not None, BLOCK_D=bd, BLOCK_N=bn, BLOCK_L=bl, num_warps=4,
        )
        return (
            du, ddelta, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None, dz,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None, None, None,
        )


def selective_scan_triton(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False,
    return_last_state=False,
):
    """Same contract as :func:`visionssm.ops.selective_scan`; float32 state math, outputs in u's dtype."""
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    if C.shape[1] != B.shape[1]:
        dim = u.shape[1]
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    if delta.dtype != u.dtype:
        delta = delta.to(u.dtype)
    if z is not None and z.dtype != u.dtype:
        z = z.to(u.dtype)
    f32 = lambda t: t.float() if t is not None and t.dtype != torch.float32 else t
    out, last = _TritonScan.apply(u, delta, f32(A), B, C, f32(D), z, f32(delta_bias), delta_softplus, reverse)
    return (out, last) if return_last_state else out
