"""Triton backward kernel of the selective scan.

The adjoint runs against the scan direction: adj_t = C_t dy_t + w_{t+1}, w_t = exp(delta_t A) adj_t, and
the grad of (delta_t A) is w_t * h_{t-1}. So each program walks its segment's CHUNK-step chunks from
last to first; per chunk it recomputes the states from the start the forward saved into a small
per-program scratch (CHUNK x BLOCK_D x N float32, which stays in cache), then steps backward through the
chunk reading h_{t-1} from it. Per-token grads of B and C are reduced over the program's channels and
written per channel block (summed over blocks afterwards, no atomics); those of A, D and delta_bias are
summed over the batch with atomics.

With segments (long sequences), MODE=1 first computes each segment's outgoing adjoint from a zero carry;
ops/_segment_carry.py composes them (through exp(A * sum delta) of each) into the carry entering every
segment, which MODE=0 (CARRY) starts its walk from.
BIDIR: both directions in one launch, as in triton_fwd.py; grads come out stacked over [forward | backward].
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import _channel_lanes, _direction, _ld, _softplus, _st, _step_pos

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit(do_not_specialize=["zero_stride"])
def selective_scan_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr, starts_ptr,
    seg_w_ptr, seg_sum_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dAt_ptr, dBp_ptr, dCp_ptr, dD_ptr, dz_ptr, dbias_ptr,
    u2_ptr, delta2_ptr, B2_ptr, C2_ptr,
    L, dim, dim_per_group, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_gb, s_gd, s_gl,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl, zero_stride,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, HAS_DLAST: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr, BIDIR: tl.constexpr, CARRY: tl.constexpr,
):
    # Tiles are (N, BLOCK_D): one channel per thread, its N states in registers (see triton_fwd.py).
    # du, ddelta, dz: contiguous (batch, dim, L); dBp, dCp: (batch, dim // BLOCK_D, L, N) float32;
    # seg_w: (batch, n_seg, N, dim); seg_sum: (batch, n_seg, dim) and starts (batch, n_chunks, N, dim)
    # from the forward; At (N, dim) = A^T log2(e); dAt (N, dim) float32 accumulator.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    n_blk = tl.num_programs(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    lanes = _channel_lanes(tl.arange(0, BLOCK_D), zero_stride, BLOCK_D)
    nd = n[:, None] * dim + pid_d * BLOCK_D + lanes[None, :]
    nd_ok = n_ok[:, None]
    rev, c_loc, g, u_src, d_src, B_src, C_src = _direction(pid_d, d, dim, dim_per_group, u_ptr, u2_ptr, delta_ptr,
                                                       delta2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, BLOCK_D, BIDIR)
    A2 = _ld(At_ptr + nd, nd_ok, EVEN_N)  # A log2(e); A itself is folded into LN2 below (fewer registers)
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    row = pid_b * dim + d
    w = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)  # carry: decay_{t+1} * adj_{t+1}
    if MODE == 0:
        if CARRY:  # the carry entering from the right: dlast and the later segments folded in (_segment_carry)
            w = _ld(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, nd_ok, EVEN_N)
        elif HAS_DLAST:  # MODE=1 carries start from zero; the last state's grad comes in here
            w = _ld(dlast_ptr + pid_b * n_state * dim + nd, nd_ok, EVEN_N)  # dlast: (batch, N, dim)
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_src + pid_b * s_ub + c_loc * s_ud
    d_base = d_src + pid_b * s_db + c_loc * s_dd
    z_base = z_ptr + pid_b * s_zb + c_loc * s_zd
    g_base = dout_ptr + pid_b * s_gb + d * s_gd
    B_base = B_src + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_src + pid_b * s_Cb + g * s_Cg + n * s_Cn
    out_row = row * L
    p_base = (pid_b * n_blk + pid_d) * L * n_state + n  # dBp/dCp rows: one N-vector per token
    prog = (pid_b * n_blk + pid_d) * tl.num_programs(2) + pid_s
    sc_base = scratch_ptr + prog * (CHUNK * BLOCK_D * BLOCK_N) + n[:, None] * BLOCK_D + lanes[None, :]
    n_chunks_total = tl.cdiv(L, CHUNK)
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
                t = _step_pos(i, L, rev, REVERSE, BIDIR)
                u = tl.load(u_base + t * s_ul).to(tl.float32)
                dt = tl.load(d_base + t * s_dl).to(tl.float32)
                if HAS_BIAS:
                    dt += bias
                if SOFTPLUS:
                    dt = _softplus(dt)
                Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
                h = tl.exp2(dt[None, :] * A2) * h + Bt[:, None] * (dt * u)[None, :]
                tl.store(sc_base + (i - k0) * (BLOCK_D * BLOCK_N), h)
        for ii in range(0, k1 - k0):
            i = k1 - 1 - ii
            t = _step_pos(i, L, rev, REVERSE, BIDIR)
            x = tl.load(d_base + t * s_dl).to(tl.float32)
            if HAS_BIAS:
                x += bias
            if SOFTPLUS:
                dt = _softplus(x)
            else:
                dt = x
            dy = tl.load(g_base + t * s_gl).to(tl.float32)
            Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)
            if MODE == 0:
                u = tl.load(u_base + t * s_ul).to(tl.float32)
                h_t = tl.load(sc_base + (i - k0) * (BLOCK_D * BLOCK_N))
                if HAS_Z:
                    z = tl.load(z_base + t * s_zl).to(tl.float32)
                    y = tl.sum(h_t * Ct[:, None], axis=0)
                    if HAS_D:
                        y += Dv * u
                    sz = tl.sigmoid(z)
                    tl.store(dz_ptr + out_row + t, (dy * y * sz * (1.0 + z * (1.0 - sz))).to(dz_ptr.dtype.element_ty))
                    dy = dy * z * sz
                _st(dCp_ptr + p_base + t * n_state, tl.sum(h_t * dy[None, :], axis=1), n_ok, EVEN_N)
            else:
                if HAS_Z:
                    z = tl.load(z_base + t * s_zl).to(tl.float32)
                    dy = dy * z * tl.sigmoid(z)
            adj = Ct[:, None] * dy[None, :] + w
            w = tl.exp2(dt[None, :] * A2) * adj
            if MODE == 0:
                if i > k0:
                    h_prev = tl.load(sc_base + (i - 1 - k0) * (BLOCK_D * BLOCK_N))
                else:
                    h_prev = h0
                q = w * h_prev  # grad of (delta_t A)
                Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
                gB = tl.sum(adj * Bt[:, None], axis=0)
                ddt = tl.sum(q * A2, axis=0) * LN2 + gB * u
                du = gB * dt
                if HAS_D:
                    du += Dv * dy
                    dD_acc += dy * u
                dA_acc += q * dt[None, :]
                _st(dBp_ptr + p_base + t * n_state, tl.sum(adj * (dt * u)[None, :], axis=1), n_ok, EVEN_N)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(x)
                dbias_acc += ddt
                tl.store(du_ptr + out_row + t, du.to(du_ptr.dtype.element_ty))
                tl.store(ddelta_ptr + out_row + t, ddt.to(ddelta_ptr.dtype.element_ty))
    if MODE == 1:
        _st(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, w, nd_ok, EVEN_N)
    else:
        tl.atomic_add(dAt_ptr + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.atomic_add(dD_ptr + d, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, dbias_acc)
