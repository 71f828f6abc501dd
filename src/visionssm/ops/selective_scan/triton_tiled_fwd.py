"""Time-parallel Triton forward of the selective scan, one state at a time (any N; opt-in, triton_tiled.py).

A program owns one time segment of BLOCK_D channels: a (K, BLOCK_D, 32) tile whose element (k, c, l) is
token l*K + k of the segment (BT = 32 K tokens). Lane l of the warp for channel c holds K consecutive tokens,
so a scan along time is K sequential steps in registers plus one five-step shuffle scan of the lanes' totals
(``_tile_scan``); nothing goes through shared memory. The layout follows from the shape: the token strides
are not specialised (``do_not_specialize``), so no axis looks contiguous and Triton lays the last axis over
lanes and the channel axis over warps. Loads are scalar but every byte of a fetched line is used by the
tile (L1 keeps it).

Per element, softplus / D skip / gate run once; the N states are visited one after another
(``tl.static_range``): decays a = exp2(delta At_n) and inputs b = delta u B_n are composed by the scan and
y accumulates C_n h in registers. Only one state's tile is live, so registers do not grow with N.

A segment is one tile. Longer sequences have several: MODE=1 writes each segment's end state from a zero
start (the scan's total) and its delta sum; ops/_segment_carry.py turns them into the state entering every
segment; MODE=0 starts from it. Those start states are all the backward needs to recompute a segment.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._softplus import softplus as _softplus
from .triton_smalln_fwd import _compose

LANES = tl.constexpr(32)
TOKEN_STRIDES = ["s_ul", "s_dl", "s_zl", "s_ol", "s_yl", "s_Bl", "s_Cl", "zero_stride"]


@triton.jit
def _tile_coords(seg, L, K: tl.constexpr, BLOCK_D: tl.constexpr, REVERSE: tl.constexpr):
    """(k, l, memory positions t, inside [0, L)) of segment seg, all (K, 1, 32) but inside (K, BLOCK_D, 32).
    Positions run in memory order; with REVERSE the segment is scan steps seg*BT.. of the right-to-left scan."""
    k = tl.arange(0, K)[:, None, None]
    l = tl.arange(0, LANES)[None, None, :]
    c = tl.arange(0, BLOCK_D)[None, :, None]
    if REVERSE:
        t = L - (seg + 1) * (K * LANES) + l * K + k
    else:
        t = seg * (K * LANES) + l * K + k
    return k, l, t, (t >= 0) & (t < L) & (c >= 0)


@triton.jit
def _tile_scan(a, b, h0, k, l, c, K: tl.constexpr, REVERSE: tl.constexpr):
    """States h of the recurrence h <- a h + b over the tile's time order from h0 ((1, BD, 1) per channel),
    and the state after the tile's last step (meaningful in its last lane in scan order, ``_last_lane``).

    Each lane scans its K tokens in registers, the lanes' (decay, input) totals are scanned across the warp,
    and each lane's entering state is the previous lane's end state (one shuffle, ``tl.gather``).
    """
    pa, pb = tl.associative_scan((a, b), 0, _compose, reverse=REVERSE)
    kl = 0 if REVERSE else K - 1  # the lane's last token in scan order
    ta = tl.sum(tl.where(k == kl, pa, 0.0), axis=0, keep_dims=True)  # register select: k is static per thread
    tb = tl.sum(tl.where(k == kl, pb, 0.0), axis=0, keep_dims=True)
    sa, sb = tl.associative_scan((ta, tb), 2, _compose, reverse=REVERSE)
    end = sb + sa * h0  # state after each lane's chunk, (1, BD, 32)
    if REVERSE:
        src = tl.minimum(l + 1, LANES - 1)
        first = l == LANES - 1
    else:
        src = tl.maximum(l - 1, 0)
        first = l == 0
    enter = tl.where(first, h0, tl.gather(end, src + c * 0, 2))
    return pb + pa * enter, end


@triton.jit
def _lane_major(offs, lz):
    """Offsets broadcast to (.., BLOCK_D, 32), declared contiguous along the lanes and (weaker) the channels.

    Only the layout follows from this (loads stay scalar: the strides are unspecialised, so no alignment is
    known). Without it every axis ties at contiguity 1 and Triton breaks the tie by version: 3.9 puts the
    lanes on the last axis, 3.6 on the first (the K axis), which turns every scan into shuffles and
    shared-memory conversions. lz = lane index * a runtime 0 gives per-channel values the lane axis.
    """
    return tl.max_contiguous(offs + lz, [1, 2, LANES])


@triton.jit
def _tile_load(ptr, s_d, s_l, d, t, lz, m):
    """A (batch row's) (channel, token) tensor over the tile, float32; 0 outside the sequence."""
    return tl.load(ptr + _lane_major(d * s_d + t * s_l, lz), mask=m, other=0.0).to(tl.float32)


@triton.jit
def _bc_rows(ptr, s_l, d, t, lz, zero_stride):
    """Pointers to state 0 of a B/C group over the tile: rows repeat per channel (L1 serves them) so that they
    share u's layout; the channel stride is a runtime 0 for the same reason as lz (``_lane_major``)."""
    return ptr + _lane_major(t * s_l + d * zero_stride, lz)


@triton.jit
def _last_lane(l, REVERSE: tl.constexpr):
    return l == (0 if REVERSE else LANES - 1)


@triton.jit
def _tile_sum(x):
    """Sum over a tile's tokens, (1, BD, 1)."""
    return tl.sum(tl.sum(x, axis=2, keep_dims=True), axis=0, keep_dims=True)


@triton.jit
def _delta_tile(delta_ptr, offs, mask, bias_ptr, c_idx, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(delta + bias, delta after softplus with 0 outside the sequence) of a tile, float32."""
    x = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += tl.load(bias_ptr + c_idx)
    dt = _softplus(x) if SOFTPLUS else x
    return x, tl.where(mask, dt, 0.0)  # delta = 0: decay 1 and input 0, the state passes unchanged


@triton.jit(do_not_specialize=TOKEN_STRIDES)
def tiled_fwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, start_ptr, seg_sum_ptr,
    L, dim, dim_per_group, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl, zero_stride,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, CARRY: tl.constexpr, WRITE_LAST: tl.constexpr,
    N: tl.constexpr, BLOCK_D: tl.constexpr, K: tl.constexpr,
):
    # At: (N, dim) float32 = A^T log2(e).  start: (batch, n_seg, N, dim) float32 -- MODE=1 writes segment end
    # states there, MODE=0 reads start states; seg_sum: (batch, n_seg, dim); last: (batch, dim, N).
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    seg = tl.program_id(2)  # MODE=1 runs segments 0 .. n_seg-2 (the last one's end state is never used)
    c = tl.arange(0, BLOCK_D)[None, :, None]
    d = pid_d * BLOCK_D + c  # (1, BD, 1); BLOCK_D divides dim_per_group: one B/C group
    g = (pid_d * BLOCK_D) // dim_per_group
    k, l, t, m = _tile_coords(seg, L, K, BLOCK_D, REVERSE)
    lz = l * zero_stride
    x, dt = _delta_tile(delta_ptr + pid_b * s_db, _lane_major(d * s_dd + t * s_dl, lz), m, bias_ptr,
                        _lane_major(d, lz), HAS_BIAS, SOFTPLUS)
    u = _tile_load(u_ptr + pid_b * s_ub, s_ud, s_ul, d, t, lz, m)
    dtu = dt * u
    B_base = _bc_rows(B_ptr + pid_b * s_Bb + g * s_Bg, s_Bl, d, t, lz, zero_stride)
    C_base = _bc_rows(C_ptr + pid_b * s_Cb + g * s_Cg, s_Cl, d, t, lz, zero_stride)
    sd = _lane_major((pid_b * n_seg + seg) * N * dim + d, lz)  # (1, BD, 32): state 0 of this segment in start
    zero = tl.zeros((1, BLOCK_D, LANES), dtype=tl.float32)
    y = tl.zeros((K, BLOCK_D, LANES), dtype=tl.float32)
    lane_end = _last_lane(l, REVERSE) & (c >= 0)
    for n in range(N):
        An = tl.load(At_ptr + n * dim + _lane_major(d, lz))
        Bn = tl.load(B_base + n * s_Bn, mask=m, other=0.0).to(tl.float32)
        h0 = tl.load(start_ptr + sd + n * dim) if MODE == 0 and CARRY else zero
        h, end = _tile_scan(tl.exp2(dt * An), Bn * dtu, h0, k, l, c, K, REVERSE)
        if MODE == 1:
            tl.store(start_ptr + sd + n * dim, end, mask=lane_end)
        else:
            Cn = tl.load(C_base + n * s_Cn, mask=m, other=0.0).to(tl.float32)
            y += Cn * h
            if WRITE_LAST:
                if seg == n_seg - 1:  # masked steps past the end keep the state: the last lane holds it
                    tl.store(last_ptr + _lane_major((pid_b * dim + d) * N + n, lz), end, mask=lane_end)
    dsum_ptr = seg_sum_ptr + _lane_major((pid_b * n_seg + seg) * dim + d, lz)
    first = (l == 0) & (c >= 0)
    if MODE == 1:
        tl.store(dsum_ptr, _tile_sum(dt), mask=first)
    else:
        if CARRY:
            if seg == n_seg - 1:  # MODE=1 skipped it; the backward's adjoint carry needs every segment's sum
                tl.store(dsum_ptr, _tile_sum(dt), mask=first)
        if HAS_D:
            y += tl.load(D_ptr + _lane_major(d, lz)) * u
        if HAS_Z:
            z = _tile_load(z_ptr + pid_b * s_zb, s_zd, s_zl, d, t, lz, m)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + pid_b * s_ob + _lane_major(d * s_od + t * s_ol, lz), y.to(out_ptr.dtype.element_ty),
                 mask=m)
