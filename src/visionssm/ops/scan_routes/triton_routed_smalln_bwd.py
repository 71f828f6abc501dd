"""Time-parallel Triton backward of the routed small-N selective scan (see triton_routed_smalln_fwd.py).

The plain small-N backward (ops/selective_scan/triton_smalln_bwd.py) walked along a route: tiles of route
steps last to first, forward states recomputed from the saved tile-start state, the adjoint by a reverse
scan with the next step's decay (delta gathered at index[k, i + 1]). The output grad is read at p (from
the merged (batch, C, Lmap) grad when G_SHARED) or at column i (G_AT_STEP); du, ddelta and the per-block
partial grads of B and C are written at p (atomics when ACCUM); those of A, D and delta_bias per program.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..selective_scan.triton_smalln_fwd import _column, _compose, _delta_tile
from .triton_routed_smalln_fwd import _route_tile

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _put(ptr, val, mask, ACCUM: tl.constexpr):
    if ACCUM:
        tl.atomic_add(ptr, val, mask=mask, sem="relaxed")
    else:
        tl.store(ptr, val.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def routed_smalln_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, idx_ptr, dout_ptr, starts_ptr, seg_w_ptr, seg_sum_ptr,
    du_ptr, ddelta_ptr, dAp_ptr, dBp_ptr, dCp_ptr, dDp_ptr, dbp_ptr,
    Lr, Lmap, ch, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_gb, s_gd, s_gl,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    U_SHARED: tl.constexpr, G_SHARED: tl.constexpr, G_AT_STEP: tl.constexpr, ACCUM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # du, ddelta: contiguous (batch, K*ch, Lmap); dBp, dCp: (batch, K*ch // BLOCK_D, Lmap, N) float32;
    # dAp: (batch, n_seg, N, K*ch), dDp, dbp: (batch, n_seg, K*ch) float32 partials; seg_w (batch, n_seg, N, K*ch);
    # seg_sum (batch, n_seg, K*ch) and starts (batch, n_tiles, N, K*ch) from the forward.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    n_blk = tl.num_programs(1)
    dim = n_blk * BLOCK_D
    d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D))[None, :, None]
    n = tl.arange(0, BLOCK_N)[:, None, None]
    j = tl.arange(0, BLOCK_T)[None, None, :]
    n_ok = n < n_state
    k = (pid_d * BLOCK_D) // ch
    nd = n * dim + d
    nd_ok = n_ok & (d >= 0)
    A2 = tl.load(At_ptr + nd, mask=nd_ok, other=0.0)
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    w = tl.zeros((BLOCK_N, BLOCK_D, 1), dtype=tl.float32)  # carry: a v of the step after the tile
    if MODE == 0:
        for ss in range(0, n_seg - 1 - pid_s):  # fold in the later segments, last first
            s = n_seg - 1 - ss
            ds = tl.load(seg_sum_ptr + (pid_b * n_seg + s) * dim + d)
            e = tl.load(seg_w_ptr + (pid_b * n_seg + s) * n_state * dim + nd, mask=nd_ok, other=0.0)
            w = tl.exp2(ds * A2) * w + e
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, Lr)
    if U_SHARED:
        u_base = u_ptr + pid_b * s_ub + (d - k * ch) * s_ud
    else:
        u_base = u_ptr + pid_b * s_ub + d * s_ud
    if G_SHARED:
        g_base = dout_ptr + pid_b * s_gb + (d - k * ch) * s_gd
    else:
        g_base = dout_ptr + pid_b * s_gb + d * s_gd
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    B_base = B_ptr + pid_b * s_Bb + k * s_Bg + n * s_Bn
    C_base = C_ptr + pid_b * s_Cb + k * s_Cg + n * s_Cn
    idx_base = idx_ptr + k * Lr
    out_row = (pid_b * dim + d) * Lmap
    p_base = (pid_b * n_blk + pid_d) * Lmap * n_state + n  # dBp/dCp rows: one N-vector per map position
    n_tiles = tl.cdiv(Lr, BLOCK_T)
    dA_acc = tl.zeros((BLOCK_N, BLOCK_D, 1), dtype=tl.float32)
    dD_acc = tl.zeros((1, BLOCK_D, 1), dtype=tl.float32)
    db_acc = tl.zeros((1, BLOCK_D, 1), dtype=tl.float32)
    c_first = i0 // BLOCK_T
    c_last = tl.cdiv(i1, BLOCK_T) - 1
    for cc in range(0, c_last - c_first + 1):
        c = c_last - cc
        i, ok, p = _route_tile(idx_base, c, i1, j, d, BLOCK_T)
        m2 = ok & (d >= 0)
        mn = m2 & n_ok
        # The next step's decay; past the segment end it is 1 (the carry w comes in instead).
        ok_nx = ((i + 1) < i1) & (d >= 0)
        p_nx = tl.load(idx_base + i + 1 + d * 0, mask=ok_nx, other=0)
        _, dt_nx = _delta_tile(d_base, p_nx, ok_nx, bias, s_dl, HAS_BIAS, SOFTPLUS)
        x, dt = _delta_tile(d_base, p, m2, bias, s_dl, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_base + p * s_ul, mask=m2, other=0.0).to(tl.float32)
        if G_AT_STEP:
            dy = tl.load(g_base + i * s_gl, mask=m2, other=0.0).to(tl.float32)
        else:
            dy = tl.load(g_base + p * s_gl, mask=m2, other=0.0).to(tl.float32)
        Ct = tl.load(C_base + p * s_Cl, mask=mn, other=0.0).to(tl.float32)
        Bt = tl.load(B_base + p * s_Bl, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp2(dt * A2)
        src = Ct * dy
        src = tl.where(j == BLOCK_T - 1, src + w, src)
        alpha = tl.exp2(dt_nx * A2)
        _, v = tl.associative_scan((alpha, src), 2, _compose, reverse=True)
        w = _column(a * v, j, 0)
        if MODE == 0:
            b = Bt * (dt * u)
            h0 = tl.load(starts_ptr + (pid_b * n_tiles + c) * n_state * dim + nd, mask=nd_ok, other=0.0)
            pa, pb = tl.associative_scan((a, b), 2, _compose)
            hs = pa * h0 + pb
            q = v * (hs - b)  # grad of (delta_t A), = a_t h_{t-1} v_t
            gB = tl.sum(v * Bt, axis=0, keep_dims=True)
            ddt = tl.sum(q * A2, axis=0, keep_dims=True) * LN2 + gB * u
            du = gB * dt
            if HAS_D:
                du += Dv * dy
                dD_acc += tl.sum(dy * u, axis=2, keep_dims=True)
            dA_acc += tl.sum(q * dt, axis=2, keep_dims=True)
            # One N-vector per step, at its map position (a (1, 1, BT) copy of the positions for the store).
            p1 = tl.load(idx_base + i, mask=ok, other=0)
            p_off = p_base + p1 * n_state
            _put(dBp_ptr + p_off, tl.sum(v * (dt * u), axis=1, keep_dims=True), ok & n_ok, ACCUM)
            _put(dCp_ptr + p_off, tl.sum(hs * dy, axis=1, keep_dims=True), ok & n_ok, ACCUM)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(x)
            db_acc += tl.sum(tl.where(m2, ddt, 0.0), axis=2, keep_dims=True)
            _put(du_ptr + out_row + p, du, m2, ACCUM)
            _put(ddelta_ptr + out_row + p, ddt, m2, ACCUM)
    part = pid_b * n_seg + pid_s
    if MODE == 1:
        tl.store(seg_w_ptr + part * n_state * dim + nd, w, mask=nd_ok)
    else:
        tl.store(dAp_ptr + part * n_state * dim + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.store(dDp_ptr + part * dim + d, dD_acc)
        if HAS_BIAS:
            tl.store(dbp_ptr + part * dim + d, db_acc)
