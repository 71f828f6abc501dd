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

from .._tiles import columns
from .triton_fwd import (
    _channel_lanes,
    _chunk_pos,
    _direction,
    _ld,
    _memory_tile,
    _softplus,
    _st,
    _step_col,
    _step_pos,
)

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _tile(row_ptrs, s_l, p, ok):
    """(BLOCK_D, T) tile of rows ``row_ptrs`` at positions p, 0 where not ok."""
    return tl.load(row_ptrs[:, None] + p[None, :] * s_l, mask=ok[None, :], other=0.0)


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
    LOG_CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr, BIDIR: tl.constexpr,
    CARRY: tl.constexpr,
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
        # The chunk's token values as coalesced (BLOCK_D, CHUNK) tiles, split into per-step columns (_tiles.py).
        p, ok = _chunk_pos(k0, k1, L, rev, CHUNK, REVERSE, BIDIR)
        xs = columns(_tile(d_base, s_dl, p, ok), BLOCK_D, CHUNK, LOG_CHUNK)
        gs = columns(_tile(g_base, s_gl, p, ok), BLOCK_D, CHUNK, LOG_CHUNK)  # 0 past the end
        zs = columns(_tile(z_base, s_zl, p, ok), BLOCK_D, CHUNK, LOG_CHUNK) if HAS_Z else xs
        if MODE == 0:
            us = columns(_tile(u_base, s_ul, p, ok), BLOCK_D, CHUNK, LOG_CHUNK)
            h0 = _ld(starts_ptr + (pid_b * n_chunks_total + c) * n_state * dim + nd, nd_ok, EVEN_N)
            h = h0
            for k in tl.static_range(CHUNK):  # recompute the chunk's states into scratch
                valid = k0 + k < k1
                t = tl.where(valid, _step_pos(k0 + k, L, rev, REVERSE, BIDIR), 0)
                u = _step_col(us, k, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
                dt = _step_col(xs, k, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
                if HAS_BIAS:
                    dt += bias
                if SOFTPLUS:
                    dt = _softplus(dt)
                dt = tl.where(valid, dt, 0.0)  # past the segment end: the state stays
                Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
                h = tl.exp2(dt[None, :] * A2) * h + Bt[:, None] * (dt * u)[None, :]
                tl.store(sc_base + k * (BLOCK_D * BLOCK_N), h)
        du_cols = ()
        ddt_cols = ()
        dz_cols = ()
        for j in tl.static_range(CHUNK - 1, -1, -1):  # steps of the chunk, last to first
            valid = k0 + j < k1
            t = tl.where(valid, _step_pos(k0 + j, L, rev, REVERSE, BIDIR), 0)
            n_valid = n_ok & (n * 0 + k0 + j < k1)  # per element: a scalar mask is not a valid store mask
            x = _step_col(xs, j, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
            if HAS_BIAS:
                x += bias
            if SOFTPLUS:
                dt = _softplus(x)
            else:
                dt = x
            dt = tl.where(valid, dt, 0.0)  # past the segment end: the carry passes through unchanged
            dy = _step_col(gs, j, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)  # 0 past the end
            Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)
            if HAS_Z:
                z = _step_col(zs, j, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
            if MODE == 0:
                u = _step_col(us, j, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
                h_t = tl.load(sc_base + j * (BLOCK_D * BLOCK_N))
                if HAS_Z:
                    y = tl.sum(h_t * Ct[:, None], axis=0)
                    if HAS_D:
                        y += Dv * u
                    sz = tl.sigmoid(z)
                    dz_cols = ((dy * y * sz * (1.0 + z * (1.0 - sz))).to(dz_ptr.dtype.element_ty),) + dz_cols
                    dy = dy * z * sz
                tl.store(dCp_ptr + p_base + t * n_state, tl.sum(h_t * dy[None, :], axis=1), mask=n_valid)
            else:
                if HAS_Z:
                    dy = dy * z * tl.sigmoid(z)
            adj = Ct[:, None] * dy[None, :] + w
            w = tl.exp2(dt[None, :] * A2) * adj
            if MODE == 0:
                if j > 0:
                    h_prev = tl.load(sc_base + (j - 1) * (BLOCK_D * BLOCK_N))
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
                tl.store(dBp_ptr + p_base + t * n_state, tl.sum(adj * (dt * u)[None, :], axis=1), mask=n_valid)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(x)
                dbias_acc += tl.where(valid, ddt, 0.0)
                du_cols = (du.to(du_ptr.dtype.element_ty),) + du_cols
                ddt_cols = (ddt.to(ddelta_ptr.dtype.element_ty),) + ddt_cols
        if MODE == 0:  # the chunk's grads as tiles, in memory order
            o = out_row[:, None] + p[None, :]
            m = ok[None, :]
            tl.store(du_ptr + o, _memory_tile(du_cols, rev, BLOCK_D, CHUNK, LOG_CHUNK, REVERSE, BIDIR), mask=m)
            tl.store(ddelta_ptr + o, _memory_tile(ddt_cols, rev, BLOCK_D, CHUNK, LOG_CHUNK, REVERSE, BIDIR), mask=m)
            if HAS_Z:
                tl.store(dz_ptr + o, _memory_tile(dz_cols, rev, BLOCK_D, CHUNK, LOG_CHUNK, REVERSE, BIDIR), mask=m)
    if MODE == 1:
        _st(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, w, nd_ok, EVEN_N)
    else:
        tl.atomic_add(dAt_ptr + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.atomic_add(dD_ptr + d, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, dbias_acc)
