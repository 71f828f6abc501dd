"""Launch configuration of the fused four-route cross scan (kernels: triton_cross_fused_kernels.py)."""

from __future__ import annotations

import os

import torch
import triton

from .. import _alloc
from .triton_cross_fused_kernels import cross_carry_kernel, cross_output_kernel, cross_summary_kernel

LOG2E = 1.4426950408889634


def _pow2_divisor(n: int) -> int:
    return n & -n


def cross_fused_config(H: int, W: int, ch: int):
    """(BLOCK_R, BLOCK_W, BLOCK_D, num_warps). ``VISIONSSM_CROSS_CFG=tile,bd,warps`` overrides the defaults
    (tile elements 4096, 16 channels = a 32-byte sector of bf16 per position, 8 warps)."""
    tile, bd, warps = 4096, 16, 8
    if os.environ.get("VISIONSSM_CROSS_CFG"):
        tile, bd, warps = (int(v) for v in os.environ["VISIONSSM_CROSS_CFG"].split(","))
    bw, hp = triton.next_power_of_2(W), triton.next_power_of_2(H)
    bd = min(bd, _pow2_divisor(ch))
    br = min(hp, max(1, tile // (bw * bd)))
    if br == hp:  # the whole map height fits: spend the rest of the tile on channels
        bd = max(bd, min(_pow2_divisor(ch), tile // (bw * br)))
    return br, bw, bd, warps


def cross_scan_fused_triton(u, x_dbl, dt_weight, A, D, delta_bias, H, W, softplus):
    """u (batch, ch, H*W); x_dbl (batch, H*W, 4, R + 2) -> (batch, ch, H*W) float32, token-major in memory."""
    batch, ch, L = u.shape
    R = dt_weight.shape[2]
    if x_dbl.stride(-1) != 1:
        x_dbl = x_dbl.contiguous()
    dev, f32 = u.device, torch.float32
    br, bw, bd, warps = cross_fused_config(H, W, ch)
    n_band = triton.cdiv(H, br)
    A2 = (A.to(f32) * LOG2E).reshape(-1).contiguous()
    w = dt_weight.to(f32).contiguous()
    bias = delta_bias.to(f32).contiguous() if delta_bias is not None else A2
    Dv = D.to(f32).contiguous() if D is not None else A2
    # Segment summaries (decay, end state from 0) and true end states: rows (batch, 2, bands, ch), columns
    # (batch, 2, bands, W, ch). Every element is written by the kernels.
    rows = _alloc.empty(3, batch, 2, n_band, ch, dtype=f32, device=dev)
    cols = _alloc.empty(3, batch, 2, n_band, W, ch, dtype=f32, device=dev)
    out = _alloc.empty(batch, L, ch, dtype=f32, device=dev).transpose(1, 2)
    grid = (batch, ch // bd, n_band)
    strides = (u.stride(0), u.stride(2), u.stride(1), x_dbl.stride(0), x_dbl.stride(1), x_dbl.stride(2))
    flags = dict(SOFTPLUS=softplus, HAS_BIAS=delta_bias is not None, BLOCK_R=br, BLOCK_W=bw, BLOCK_D=bd,
                 num_warps=warps)
    cross_summary_kernel[grid](u, x_dbl, w, A2, bias, rows[0], rows[1], cols[0], cols[1], H, W, ch, R, n_band,
                               *strides, **flags)
    bj = triton.next_power_of_2(n_band)
    bdc = min(_pow2_divisor(ch), max(1, 4096 // (bw * bj)))
    cross_carry_kernel[(batch, ch // bdc)](rows[0], rows[1], cols[0], cols[1], rows[2], cols[2], W, ch, n_band,
                                           BLOCK_J=bj, BLOCK_W=bw, BLOCK_D=bdc, num_warps=4)
    cross_output_kernel[grid](u, x_dbl, w, A2, bias, Dv, rows[2], cols[2], out, H, W, ch, R, n_band,
                              *strides, *(out.stride(0), out.stride(2), out.stride(1)),
                              HAS_D=D is not None, **flags)
    return out
