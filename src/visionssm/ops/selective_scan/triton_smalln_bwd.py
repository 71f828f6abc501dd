"""Time-parallel Triton backward of the small-N selective scan (see triton_smalln_fwd.py).

The adjoint of h_t is v_t = C_t dy_t + a_{t+1} v_{t+1}: a reverse scan over the tile with the next token's
decay (loaded shifted by one token), the carry w = a_t v_t of the tile's first token handed to the tile on
its left. Tiles are walked last to first; each recomputes its forward states from the tile-start state the
forward saved (no (batch, dim, L, N) tensor). The grad of (delta_t A) is a_t h_{t-1} v_t = (h_t - b_t) v_t.
Per-token grads of B and C are reduced over the program's channels and written per channel block; those of
A, D and delta_bias per program: all summed afterwards in torch (deterministic, no atomics).

With segments, MODE=1 first computes each segment's outgoing carry from a zero carry; MODE=0 folds the
later segments' carries in through exp(A * sum delta) of each.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_smalln_fwd import _column, _compose, _delta_tile, _tile_pos

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def smalln_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr, starts_ptr,
    seg_w_ptr, seg_sum_ptr,
    du_ptr, ddelta_ptr, dAp_ptr, dBp_ptr, dCp_ptr, dDp_ptr, dz_ptr, dbp_ptr,
    L, dim, dim_per_group, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_gb, s_gd, s_gl,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # du, ddelta, dz: contiguous (batch, dim, L); dBp, dCp: (batch, dim // BLOCK_D, L, N) float32;
    # dAp: (batch, n_seg, N, dim), dDp, dbp: (batch, n_seg, dim) float32 partials; seg_w: (batch, n_seg, N, dim);
    # seg_sum (batch, n_seg, dim) and starts (batch, n_tiles, N, dim) from the forward; At (N, dim) = A^T log2(e).
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    n_blk = tl.num_programs(1)
    d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D))[None, :, None]
    n = tl.arange(0, BLOCK_N)[:, None, None]
    j = tl.arange(0, BLOCK_T)[None, None, :]
    n_ok = n < n_state
    g = (pid_d * BLOCK_D) // dim_per_group
    nd = n * dim + d
    nd_ok = n_ok & (d >= 0)
    A2 = tl.load(At_ptr + nd, mask=nd_ok, other=0.0)  # A log2(e), (N, BD, 1)
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    w = tl.zeros((BLOCK_N, BLOCK_D, 1), dtype=tl.float32)  # carry: a v of the scan step after the tile
    if HAS_DLAST and MODE == 0:  # MODE=1 carries start from zero; the last state's grad enters here
        w = tl.load(dlast_ptr + (pid_b * dim + d) * n_state + n, mask=nd_ok, other=0.0)
    if MODE == 0:
        for ss in range(0, n_seg - 1 - pid_s):  # fold in the later segments, last first
            s = n_seg - 1 - ss
            ds = tl.load(seg_sum_ptr + (pid_b * n_seg + s) * dim + d)
            e = tl.load(seg_w_ptr + (pid_b * n_seg + s) * n_state * dim + nd, mask=nd_ok, other=0.0)
            w = tl.exp2(ds * A2) * w + e
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_ptr + pid_b * s_ub + d * s_ud
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    z_base = z_ptr + pid_b * s_zb + d * s_zd
    g_base = dout_ptr + pid_b * s_gb + d * s_gd
    # B and C are read as full (N, BD, BT) tiles (repeats hit L1) so they share u's layout: a (N, 1, BT)
    # tile gets its own layout and every scan would pay for a layout conversion.
    B_base = B_ptr + pid_b * s_Bb + g * s_Bg + n * s_Bn + d * 0
    C_base = C_ptr + pid_b * s_Cb + g * s_Cg + n * s_Cn + d * 0
    out_base = (pid_b * dim + d) * L
    p_base = (pid_b * n_blk + pid_d) * L * n_state + n  # dBp/dCp rows: one N-vector per token
    n_tiles = tl.cdiv(L, BLOCK_T)
    dA_acc = tl.zeros((BLOCK_N, BLOCK_D, 1), dtype=tl.float32)
    dD_acc = tl.zeros((1, BLOCK_D, 1), dtype=tl.float32)
    db_acc = tl.zeros((1, BLOCK_D, 1), dtype=tl.float32)
    LAST = 0 if REVERSE else BLOCK_T - 1  # columns of the tile's last / first scan steps
    FIRST = BLOCK_T - 1 if REVERSE else 0
    NEXT = -1 if REVERSE else 1  # memory step to the next scan step
    c_first = i0 // BLOCK_T
    c_last = tl.cdiv(i1, BLOCK_T) - 1
    for cc in range(0, c_last - c_first + 1):
        c = c_last - cc
        t, i, ok = _tile_pos(c, i1, L, j, BLOCK_T, REVERSE)
        m2 = ok & (d >= 0)
        mn = ok & n_ok & (d >= 0)
        # The next scan step's decay; past the segment end it is 1 (the carry w comes in instead).
        _, dt_nx = _delta_tile(d_base, t + NEXT, ((i + 1) < i1) & (d >= 0), bias, s_dl, HAS_BIAS, SOFTPLUS)
        x, dt = _delta_tile(d_base, t, m2, bias, s_dl, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_base + t * s_ul, mask=m2, other=0.0).to(tl.float32)
        dy = tl.load(g_base + t * s_gl, mask=m2, other=0.0).to(tl.float32)
        Ct = tl.load(C_base + t * s_Cl, mask=mn, other=0.0).to(tl.float32)
        Bt = tl.load(B_base + t * s_Bl, mask=mn, other=0.0).to(tl.float32)
        a = tl.exp2(dt * A2)
        b = Bt * (dt * u)
        if MODE == 0:
            h0 = tl.load(starts_ptr + (pid_b * n_tiles + c) * n_state * dim + nd, mask=nd_ok, other=0.0)
            pa, pb = tl.associative_scan((a, b), 2, _compose, reverse=REVERSE)
            hs = pa * h0 + pb
        if HAS_Z:
            z = tl.load(z_base + t * s_zl, mask=m2, other=0.0).to(tl.float32)
            sz = tl.sigmoid(z)
            if MODE == 0:
                y = tl.sum(hs * Ct, axis=0, keep_dims=True)
                if HAS_D:
                    y += Dv * u
                dz = dy * y * sz * (1.0 + z * (1.0 - sz))
                tl.store(dz_ptr + out_base + t, dz.to(dz_ptr.dtype.element_ty), mask=m2)
            dy = dy * z * sz
        src = Ct * dy
        src = tl.where(j == LAST, src + w, src)
        alpha = tl.exp2(dt_nx * A2)
        _, v = tl.associative_scan((alpha, src), 2, _compose, reverse=not REVERSE)
        w = _column(a * v, j, FIRST)
        if MODE == 0:
            q = v * (hs - b)  # grad of (delta_t A), = a_t h_{t-1} v_t
            gB = tl.sum(v * Bt, axis=0, keep_dims=True)
            ddt = tl.sum(q * A2, axis=0, keep_dims=True) * LN2 + gB * u
            du = gB * dt
            if HAS_D:
                du += Dv * dy
                dD_acc += tl.sum(dy * u, axis=2, keep_dims=True)
            dA_acc += tl.sum(q * dt, axis=2, keep_dims=True)
            p_off = p_base + t * n_state
            tl.store(dBp_ptr + p_off, tl.sum(v * (dt * u), axis=1, keep_dims=True), mask=ok & n_ok)
            tl.store(dCp_ptr + p_off, tl.sum(hs * dy, axis=1, keep_dims=True), mask=ok & n_ok)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(x)
            db_acc += tl.sum(tl.where(m2, ddt, 0.0), axis=2, keep_dims=True)
            tl.store(du_ptr + out_base + t, du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddelta_ptr + out_base + t, ddt.to(ddelta_ptr.dtype.element_ty), mask=m2)
    part = pid_b * n_seg + pid_s
    if MODE == 1:
        tl.store(seg_w_ptr + part * n_state * dim + nd, w, mask=nd_ok)
    else:
        tl.store(dAp_ptr + part * n_state * dim + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.store(dDp_ptr + part * dim + d, dD_acc)
        if HAS_BIAS:
            tl.store(dbp_ptr + part * dim + d, db_acc)
