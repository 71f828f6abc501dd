"""Time-parallel Triton forward of the routed selective scan for small state sizes (N <= 4, VMamba v2).

The plain small-N kernel (ops/selective_scan/triton_smalln_fwd.py) walked along a route: a program owns
BLOCK_D channels of one route and walks its segment in tiles of BLOCK_T route steps. A tile reads its
BLOCK_T map positions p = index[k, i] once, gathers u, delta, B and C at them (coalesced where the route is
contiguous in the map, e.g. row-major routes), composes the tile with one ``tl.associative_scan`` over the
steps and carries only the tile's end state to the next tile. Outputs go to p of the route's map-order row
(or to column i of a route-order output, OUT_AT_STEP); ACCUM (a route visits a position more than once):
atomic adds into a zeroed float32 buffer, as in triton_routed_fwd.py. Segments: MODE=1 / MODE=0 as there.

DT_RANK > 0 (inference, SS2D's low-rank dt): delta_ptr is x_dbl (batch, Lmap, K, DT_RANK + 2N) and delta
of channel d of route k is x_dbl[b, p, k, :DT_RANK] . w[d, :] formed in registers, so SS2D never writes the
(batch, K*C, Lmap) delta tensor. DT_RANK is a compile-time constant: the rank-1 updates unroll and their
loads issue together instead of one latency after another.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..selective_scan.triton_fwd import _softplus
from ..selective_scan.triton_smalln_fwd import _column, _compose, _delta_tile


@triton.jit
def _route_tile(idx_base, c, i1, j, d, BLOCK_T: tl.constexpr):
    """Tile c of the route: (steps i (1, 1, BT), in-range mask (1, 1, BT), positions p (1, BD, BT)).

    p is read as a full (1, BD, BT) tile (repeats hit L1) so that the gathers take the tile's layout.
    """
    i = c * BLOCK_T + j
    ok = i < i1
    p = tl.load(idx_base + i + d * 0, mask=ok & (d >= 0), other=0)
    return i, ok, p


@triton.jit
def _lowrank_delta_tile(x_base, p, mask, w_ptr, d, bias, s_xl, DT_RANK: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr):
    """As _delta_tile, with delta = x_dbl[p, :DT_RANK] . w[d, :] (float32) instead of a load."""
    x = tl.zeros(mask.shape, dtype=tl.float32)  # (1, BD, BT)
    for r in tl.static_range(DT_RANK):
        x += tl.load(x_base + p * s_xl + r, mask=mask, other=0.0).to(tl.float32) * tl.load(w_ptr + d * DT_RANK + r)
    if HAS_BIAS:
        x += bias
    dt = _softplus(x) if SOFTPLUS else x
    return x, tl.where(mask, dt, 0.0)


@triton.jit
def routed_smalln_fwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, idx_ptr, out_ptr, starts_ptr, seg_end_ptr, seg_sum_ptr,
    w_ptr, s_xk,
    Lr, ch, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    U_SHARED: tl.constexpr, ACCUM: tl.constexpr, OUT_AT_STEP: tl.constexpr, SAVE_STARTS: tl.constexpr,
    MERGE_OUT: tl.constexpr, DT_RANK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # At: (N, K*ch) float32 = A^T log2(e); idx: (K, Lr) int32; starts: (batch, n_tiles, N, K*ch);
    # seg_end: (batch, n_seg, N, K*ch); seg_sum: (batch, n_seg, K*ch); all contiguous.
    # Tensors are 3-D (state, channel, step), as in the plain small-N kernel.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    dim = tl.num_programs(1) * BLOCK_D
    d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D))[None, :, None]
    n = tl.arange(0, BLOCK_N)[:, None, None]
    j = tl.arange(0, BLOCK_T)[None, None, :]
    n_ok = n < n_state
    k = (pid_d * BLOCK_D) // ch  # this program's route (BLOCK_D divides ch)
    nd = n * dim + d
    nd_ok = n_ok & (d >= 0)
    A2 = tl.load(At_ptr + nd, mask=nd_ok, other=0.0)
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
    i1 = tl.minimum(i0 + seg_len, Lr)
    if U_SHARED:
        u_base = u_ptr + pid_b * s_ub + (d - k * ch) * s_ud
    else:
        u_base = u_ptr + pid_b * s_ub + d * s_ud
    if DT_RANK > 0:  # x_dbl (batch, Lmap, K, R + 2N): s_db, s_dl are its batch and token strides
        d_base = delta_ptr + pid_b * s_db + k * s_xk
    else:
        d_base = delta_ptr + pid_b * s_db + d * s_dd
    if MERGE_OUT:  # all routes add into one (batch, ch, Lmap) map (with ACCUM): the route sum happens here
        o_base = out_ptr + pid_b * s_ob + (d - k * ch) * s_od
    else:
        o_base = out_ptr + pid_b * s_ob + d * s_od
    B_base = B_ptr + pid_b * s_Bb + k * s_Bg + n * s_Bn
    C_base = C_ptr + pid_b * s_Cb + k * s_Cg + n * s_Cn
    idx_base = idx_ptr + k * Lr
    n_tiles = tl.cdiv(Lr, BLOCK_T)
    for c in range(i0 // BLOCK_T, tl.cdiv(i1, BLOCK_T)):  # i0 is a multiple of BLOCK_T
        i, ok, p = _route_tile(idx_base, c, i1, j, d, BLOCK_T)
        m2 = ok & (d >= 0)
        mn = m2 & n_ok
        u = tl.load(u_base + p * s_ul, mask=m2, other=0.0).to(tl.float32)
        if DT_RANK > 0:
            x, dt = _lowrank_delta_tile(d_base, p, m2, w_ptr, d, bias, s_dl, DT_RANK, HAS_BIAS, SOFTPLUS)
        else:
            x, dt = _delta_tile(d_base, p, m2, bias, s_dl, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_base + p * s_Bl, mask=mn, other=0.0).to(tl.float32)
        if MODE == 0 and SAVE_STARTS:
            tl.store(starts_ptr + (pid_b * n_tiles + c) * n_state * dim + nd, h, mask=nd_ok)
        a = tl.exp2(dt * A2)
        b = Bt * (dt * u)
        pa, pb = tl.associative_scan((a, b), 2, _compose)
        hs = pa * h + pb
        h = _column(hs, j, BLOCK_T - 1)
        if MODE == 0:
            Ct = tl.load(C_base + p * s_Cl, mask=mn, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct, axis=0, keep_dims=True)
            if HAS_D:
                y += Dv * u
            if OUT_AT_STEP:
                o_ptr = o_base + i * s_ol
            else:
                o_ptr = o_base + p * s_ol
            if ACCUM:
                tl.atomic_add(o_ptr, y, mask=m2, sem="relaxed")
            else:
                tl.store(o_ptr, y.to(out_ptr.dtype.element_ty), mask=m2)
        else:
            dsum += tl.sum(dt, axis=2, keep_dims=True)
    if MODE == 1:
        tl.store(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, h, mask=nd_ok)
        tl.store(seg_sum_ptr + (pid_b * n_seg + pid_s) * dim + d, dsum)
