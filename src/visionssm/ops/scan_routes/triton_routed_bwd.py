"""Triton backward kernel of the routed selective scan.

The adjoint of our plain scan's backward (ops/selective_scan/triton_bwd.py), walked along the route, with
the same (N, BLOCK_D) one-channel-per-thread tiles: each program goes through its segment's CHUNK-step
chunks from last to first, recomputes the chunk's states from the start the forward saved into a small
per-program scratch, then steps backward reading h_{t-1} from it.
Step i touches map position p = index[k, i]: the output grad is read at p (from the merged (batch, C, Lmap)
grad when G_SHARED, i.e. merge=True), or at column i of a route-order grad (G_AT_STEP); du, ddelta and the
per-channel-block partial grads of B and C are written at p of map-order buffers. With u shared by the
routes, du is per route here and summed afterwards. Grads of A, D and delta_bias are summed over the batch
with atomics. ACCUM: see triton_routed_fwd.py.

With segments, MODE=1 first computes each segment's outgoing adjoint from a zero carry; MODE=0 folds the
later segments' carries in (through exp(A * sum delta) of each) before its own walk.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_routed_fwd import LOG2E, _ld, _softplus


@triton.jit
def _put(ptr, val, mask, ACCUM: tl.constexpr):
    if ACCUM:
        tl.atomic_add(ptr, val, mask=mask, sem="relaxed")
    else:
        tl.store(ptr, val.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def routed_scan_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, idx_ptr, dout_ptr, starts_ptr,
    seg_w_ptr, seg_sum_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dAt_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr,
    Lr, Lmap, ch, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_gb, s_gd, s_gl,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    U_SHARED: tl.constexpr, G_SHARED: tl.constexpr, G_AT_STEP: tl.constexpr, ACCUM: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr,
):
    # du, ddelta: contiguous (batch, K*ch, Lmap); dBp, dCp: (batch, K*ch // BLOCK_D, Lmap, N) float32;
    # seg_w: (batch, n_seg, N, K*ch); seg_sum: (batch, n_seg, K*ch) and starts (batch, n_chunks, N, K*ch)
    # from the forward; At (N, K*ch) = A^T log2(e); dAt (N, K*ch) float32 accumulator.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    n_blk = tl.num_programs(1)
    dim = n_blk * BLOCK_D
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    nd = n[:, None] * dim + tl.max_contiguous(d, 1)[None, :]
    nd_ok = n_ok[:, None]
    k = (pid_d * BLOCK_D) // ch
    A2 = _ld(At_ptr + nd, nd_ok, EVEN_N)
    A = A2 / LOG2E
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    row = pid_b * dim + d
    w = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)  # carry: decay_{t+1} * adj_{t+1}
    if MODE == 0:
        for jj in range(0, n_seg - 1 - pid_s):  # fold in the later segments, last first
            j = n_seg - 1 - jj
            s = tl.load(seg_sum_ptr + (pid_b * n_seg + j) * dim + d)
            e = _ld(seg_w_ptr + (pid_b * n_seg + j) * n_state * dim + nd, nd_ok, EVEN_N)
            w = tl.exp2(s[None, :] * A2) * w + e
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
    out_row = row * Lmap
    p_base = (pid_b * n_blk + pid_d) * Lmap * n_state + n  # dBp/dCp rows: one N-vector per map position
    all_d = tl.full((BLOCK_D,), 1, tl.int1)
    prog = (pid_b * n_blk + pid_d) * tl.num_programs(2) + pid_s
    sc_base = scratch_ptr + prog * (CHUNK * BLOCK_D * BLOCK_N) + n[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
    n_chunks_total = tl.cdiv(Lr, CHUNK)
    dA_acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    c_first = i0 // CHUNK
    c_last = tl.cdiv(i1, CHUNK) - 1
    for cc in range(0, c_last - c_first + 1):
        c = c_last - cc
        k0 = c * CHUNK
        k1 = tl.minimum(k0 + CHUNK, i1)
        if MODE == 0:
            h0 = _ld(starts_ptr + (pid_b * n_chunks_total + c) * n_state * dim + nd, nd_ok, EVEN_N)
            h = h0
            for i in range(k0, k1):  # recompute the chunk's states into scratch
                p = tl.load(idx_base + i)
                u = tl.load(u_base + p * s_ul).to(tl.float32)
                dt = tl.load(d_base + p * s_dl).to(tl.float32)
                if HAS_BIAS:
                    dt += bias
                if SOFTPLUS:
                    dt = _softplus(dt)
                Bt = _ld(B_base + p * s_Bl, n_ok, EVEN_N).to(tl.float32)
                h = tl.exp2(dt[None, :] * A2) * h + Bt[:, None] * (dt * u)[None, :]
                tl.store(sc_base + (i - k0) * (BLOCK_D * BLOCK_N), h)
        for ii in range(0, k1 - k0):
            i = k1 - 1 - ii
            p = tl.load(idx_base + i)
            x = tl.load(d_base + p * s_dl).to(tl.float32)
            if HAS_BIAS:
                x += bias
            if SOFTPLUS:
                dt = _softplus(x)
            else:
                dt = x
            if G_AT_STEP:
                dy = tl.load(g_base + i * s_gl).to(tl.float32)
            else:
                dy = tl.load(g_base + p * s_gl).to(tl.float32)
            Ct = _ld(C_base + p * s_Cl, n_ok, EVEN_N).to(tl.float32)
            adj = Ct[:, None] * dy[None, :] + w
            w = tl.exp2(dt[None, :] * A2) * adj
            if MODE == 0:
                u = tl.load(u_base + p * s_ul).to(tl.float32)
                h_t = tl.load(sc_base + (i - k0) * (BLOCK_D * BLOCK_N))
                _put(dCp_ptr + p_base + p * n_state, tl.sum(h_t * dy[None, :], axis=1), n_ok, ACCUM)
                if i > k0:
                    h_prev = tl.load(sc_base + (i - 1 - k0) * (BLOCK_D * BLOCK_N))
                else:
                    h_prev = h0
                q = w * h_prev  # grad of (delta_t A)
                Bt = _ld(B_base + p * s_Bl, n_ok, EVEN_N).to(tl.float32)
                gB = tl.sum(adj * Bt[:, None], axis=0)
                ddt = tl.sum(q * A, axis=0) + gB * u
                du = gB * dt
                if HAS_D:
                    du += Dv * dy
                    dD_acc += dy * u
                dA_acc += q * dt[None, :]
                _put(dBp_ptr + p_base + p * n_state, tl.sum(adj * (dt * u)[None, :], axis=1), n_ok, ACCUM)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(x)
                dbias_acc += ddt
                _put(du_ptr + out_row + p, du, all_d, ACCUM)
                _put(ddelta_ptr + out_row + p, ddt, all_d, ACCUM)
    if MODE == 1:
        tl.store(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, w, mask=nd_ok)
    else:
        tl.atomic_add(dAt_ptr + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.atomic_add(dD_ptr + d, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, dbias_acc)
