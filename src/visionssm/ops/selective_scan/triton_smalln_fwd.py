"""Time-parallel Triton forward of the selective scan for small state sizes (N <= 4, VMamba v2's N = 1).

With one token per loop step (triton_fwd.py) an N = 1 step is a handful of FMAs behind a chain of
dependent latencies. Here a program owns BLOCK_D channels and walks its time segment in tiles of BLOCK_T
tokens: the tile's decays a_t = exp(delta_t A) and inputs b_t = delta_t B_t u_t come from coalesced
(BLOCK_D, BLOCK_T) loads along L, one ``tl.associative_scan`` over the time axis composes them, and only
the state at the tile's end is carried (sequentially) to the next tile. Tensors are (N_pad, BLOCK_D,
BLOCK_T), the state axis padded to a power of two; padded states have A = B = C = 0 and stay zero.
Tokens past the segment end get delta = 0 (a = 1, b = 0), so the scan's end holds the last real state.

Segments across programs work as in triton_fwd.py: MODE=1 computes each segment's end state from zero
and its delta sum, MODE=0 folds the earlier segments in. MODE=0 saves the state at every tile start.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import _softplus


@triton.jit
def _compose(a1, b1, a2, b2):
    """h -> a1 h + b1, then h -> a2 h + b2 (time order). With ``reverse=True`` the scan feeds the later
    aggregate first, so the same function composes the adjoint recurrence x -> b + a x right to left."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _column(x, j, col):
    """Column col of a (N, BD, BT) tile as (N, BD, 1)."""
    return tl.sum(tl.where(j == col, x, 0.0), axis=2, keep_dims=True)


@triton.jit
def _tile_pos(c, i1, L, j, BLOCK_T: tl.constexpr, REVERSE: tl.constexpr):
    """Tile c of the scan order: (memory positions t, scan positions i, in-range mask), all (1, 1, BT).

    Columns are always in memory order (contiguous, vectorisable loads); with REVERSE the scan position
    runs right to left and the time scans use ``reverse=True``.
    """
    if REVERSE:
        t = L - (c + 1) * BLOCK_T + j
        i = L - 1 - t
    else:
        t = c * BLOCK_T + j
        i = t
    return t, i, i < i1


@triton.jit
def _delta_tile(d_base, t, mask, bias, s_dl, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(raw delta + bias, delta after softplus) of a (1, BD, BT) tile; delta = 0 where masked."""
    x = tl.load(d_base + t * s_dl, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += bias
    dt = _softplus(x) if SOFTPLUS else x
    return x, tl.where(mask, dt, 0.0)


@triton.jit
def smalln_fwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, starts_ptr,
    seg_end_ptr, seg_sum_ptr,
    L, dim, dim_per_group, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, SAVE_STARTS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # At: (N, dim) float32 = A^T log2(e).  starts: (batch, n_tiles, N, dim); seg_end: (batch, n_seg, N, dim);
    # seg_sum: (batch, n_seg, dim); last: (batch, dim, N); all contiguous float32.
    # Every tensor is 3-D (state, channel, token) so that one layout serves loads, scans and reductions.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D))[None, :, None]  # BLOCK_D divides dim_per_group: one group
    n = tl.arange(0, BLOCK_N)[:, None, None]
    j = tl.arange(0, BLOCK_T)[None, None, :]
    n_ok = n < n_state
    g = (pid_d * BLOCK_D) // dim_per_group
    nd = n * dim + d
    nd_ok = n_ok & (d >= 0)
    A2 = tl.load(At_ptr + nd, mask=nd_ok, other=0.0)  # (N, BD, 1)
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    h = tl.zeros((BLOCK_N, BLOCK_D, 1), dtype=tl.float32)
    if MODE == 0:
        for s in range(0, pid_s):  # fold in the earlier segments: h <- exp(A sum delta_s) h + end_s
            ds = tl.load(seg_sum_ptr + (pid_b * n_seg + s) * dim + d)
            e = tl.load(seg_end_ptr + (pid_b * n_seg + s) * n_state * dim + nd, mask=nd_ok, other=0.0)
            h = tl.exp2(ds * A2) * h + e
    dsum = tl.zeros((1, BLOCK_D, 1), dtype=tl.float32)
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_ptr + pid_b * s_ub + d * s_ud
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    z_base = z_ptr + pid_b * s_zb + d * s_zd
    o_base = out_ptr + pid_b * s_ob + d * s_od
    # B and C are read as full (N, BD, BT) tiles (repeats hit L1) so they share u's layout: a (N, 1, BT)
    # tile gets its own layout and every scan would pay for a layout conversion.
    B_base = B_ptr + pid_b * s_Bb + g * s_Bg + n * s_Bn + d * 0
    C_base = C_ptr + pid_b * s_Cb + g * s_Cg + n * s_Cn + d * 0
    n_tiles = tl.cdiv(L, BLOCK_T)
    LAST = 0 if REVERSE else BLOCK_T - 1  # column of the tile's last scan step
    for c in range(i0 // BLOCK_T, tl.cdiv(i1, BLOCK_T)):  # i0 is a multiple of BLOCK_T
        t, i, ok = _tile_pos(c, i1, L, j, BLOCK_T, REVERSE)
        m2 = ok & (d >= 0)
        mn = ok & n_ok & (d >= 0)
        u = tl.load(u_base + t * s_ul, mask=m2, other=0.0).to(tl.float32)
        x, dt = _delta_tile(d_base, t, m2, bias, s_dl, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_base + t * s_Bl, mask=mn, other=0.0).to(tl.float32)
        if MODE == 0 and SAVE_STARTS:
            tl.store(starts_ptr + (pid_b * n_tiles + c) * n_state * dim + nd, h, mask=nd_ok)
        a = tl.exp2(dt * A2)
        b = Bt * (dt * u)
        pa, pb = tl.associative_scan((a, b), 2, _compose, reverse=REVERSE)
        hs = pa * h + pb
        h = _column(hs, j, LAST)
        if MODE == 0:
            Ct = tl.load(C_base + t * s_Cl, mask=mn, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct, axis=0, keep_dims=True)
            if HAS_D:
                y += Dv * u
            if HAS_Z:
                z = tl.load(z_base + t * s_zl, mask=m2, other=0.0).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(o_base + t * s_ol, y.to(out_ptr.dtype.element_ty), mask=m2)
        else:
            dsum += tl.sum(dt, axis=2, keep_dims=True)
    if MODE == 1:
        tl.store(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, h, mask=nd_ok)
        tl.store(seg_sum_ptr + (pid_b * n_seg + pid_s) * dim + d, dsum)
    else:
        if pid_s == n_seg - 1:
            tl.store(last_ptr + (pid_b * dim + d) * n_state + n, h, mask=nd_ok)
