"""Time-parallel Triton forward of the selective scan for small state sizes (N <= 4, VMamba v2's N = 1).

With one token per loop step (triton_fwd.py) an N = 1 step is a handful of FMAs behind a chain of
dependent latencies. Here a program owns BLOCK_D channels and walks its time segment in tiles of BLOCK_T
tokens: the tile's decays a_t = exp(delta_t A) and inputs b_t = delta_t B_t u_t come from coalesced
(BLOCK_D, BLOCK_T) loads along L, one ``tl.associative_scan`` over the time axis composes them, and only
the state at the tile's end is carried (sequentially) to the next tile. Tensors are (N_pad, BLOCK_D,
BLOCK_T), the state axis padded to a power of two; padded states have A = B = C = 0 and stay zero.
Tokens past the segment end get delta = 0 (a = 1, b = 0), so the last column holds the last real state.

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
def _column(x, cols, j):
    """Column j of a (N, BD, BT) tile as (N, BD)."""
    return tl.sum(tl.where(cols[None, None, :] == j, x, 0.0), axis=2)


@triton.jit
def _delta_tile(d_base, t, mask, bias, s_dl, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(raw delta + bias, delta after softplus) of a (BD, BT) tile; delta = 0 where masked."""
    x = tl.load(d_base[:, None] + t[None, :] * s_dl, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += bias[:, None]
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
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # BLOCK_D divides dim_per_group: one B/C group
    n = tl.arange(0, BLOCK_N)
    j = tl.arange(0, BLOCK_T)
    n_ok = n < n_state
    g = (pid_d * BLOCK_D) // dim_per_group
    nd = n[:, None] * dim + d[None, :]
    nd_ok = n_ok[:, None] & (d >= 0)[None, :]
    A2 = tl.load(At_ptr + nd, mask=nd_ok, other=0.0)
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    h = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    if MODE == 0:
        for s in range(0, pid_s):  # fold in the earlier segments: h <- exp(A sum delta_s) h + end_s
            ds = tl.load(seg_sum_ptr + (pid_b * n_seg + s) * dim + d)
            e = tl.load(seg_end_ptr + (pid_b * n_seg + s) * n_state * dim + nd, mask=nd_ok, other=0.0)
            h = tl.exp2(ds[None, :] * A2) * h + e
    dsum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_ptr + pid_b * s_ub + d * s_ud
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    z_base = z_ptr + pid_b * s_zb + d * s_zd
    o_base = out_ptr + pid_b * s_ob + d * s_od
    B_base = B_ptr + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_ptr + pid_b * s_Cb + g * s_Cg + n * s_Cn
    n_tiles = tl.cdiv(L, BLOCK_T)
    for k0 in range(i0, i1, BLOCK_T):  # i0 is a multiple of BLOCK_T
        i = k0 + j
        ok = i < i1
        t = tl.where(ok, L - 1 - i if REVERSE else i, 0)  # reverse: read right to left in place
        m2 = (d >= 0)[:, None] & ok[None, :]
        mn = n_ok[:, None] & ok[None, :]
        u = tl.load(u_base[:, None] + t[None, :] * s_ul, mask=m2, other=0.0).to(tl.float32)
        x, dt = _delta_tile(d_base, t, m2, bias, s_dl, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_base[:, None] + t[None, :] * s_Bl, mask=mn, other=0.0).to(tl.float32)
        if MODE == 0 and SAVE_STARTS:
            tl.store(starts_ptr + (pid_b * n_tiles + k0 // BLOCK_T) * n_state * dim + nd, h, mask=nd_ok)
        a = tl.exp2(dt[None, :, :] * A2[:, :, None])
        b = Bt[:, None, :] * (dt * u)[None, :, :]
        pa, pb = tl.associative_scan((a, b), 2, _compose)
        hs = pa * h[:, :, None] + pb
        h = _column(hs, j, BLOCK_T - 1)
        if MODE == 0:
            Ct = tl.load(C_base[:, None] + t[None, :] * s_Cl, mask=mn, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct[:, None, :], axis=0)
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                z = tl.load(z_base[:, None] + t[None, :] * s_zl, mask=m2, other=0.0).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(o_base[:, None] + t[None, :] * s_ol, y.to(out_ptr.dtype.element_ty), mask=m2)
        else:
            dsum += tl.sum(dt, axis=1)
    if MODE == 1:
        tl.store(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, h, mask=nd_ok)
        tl.store(seg_sum_ptr + (pid_b * n_seg + pid_s) * dim + d, dsum)
    else:
        if pid_s == n_seg - 1:
            tl.store(last_ptr + (pid_b * dim + d[None, :]) * n_state + n[:, None], h, mask=nd_ok)
