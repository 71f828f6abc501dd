"""Triton backward kernel of the selective scan.

The adjoint runs against the scan direction: adj_t = C_t dy_t + w_{t+1}, w_t = exp(delta_t A) adj_t, and
the grad of (delta_t A) is w_t * h_{t-1}. So each program walks its segment's CHUNK-step chunks from
last to first; per chunk it recomputes the states from the start the forward saved into a small
per-program scratch (CHUNK x N x BLOCK_D float32: slot k holds the state before the chunk's step k), then
steps backward through the chunk (h_t carried over from the step before).

Staged I/O: the (batch, dim, L) tensors have tokens contiguous, so a one-token access of a warp's 32
channels touches 32 lines (Nsight at (128, 384, 197, 16): loads issued a step ahead, ~430 instructions
before use, still stalled their first use; 2-byte partial stores to L2). So a chunk's u, delta, dout, z are
read once as coalesced (channels, CHUNK) tiles, turned into the per-token float32 values the steps need
(delta after softplus, the gated dout, the gate's own factor, sigmoid for softplus' grad) and written to the
program's scratch token-major, where a step reads 32 channels as one line; du, ddelta, dz go the other way
(per step into scratch, per chunk out as tiles). A CTA barrier separates writers from readers (one warp:
cheap). Both walks load the next step's values one step ahead. Per-token grads of B and C are reduced over
the program's channels (by a warp reduce-scatter on CUDA, ops/_warp_reduce.py) and added into one
zeroed [dB | dC] row per (batch, group, token) with atomics (no partial buffer, no reduction launch);
those of A, D and delta_bias are summed over the batch with atomics too.

With segments (long sequences), MODE=1 first computes each segment's outgoing adjoint from a zero carry;
ops/_segment_carry.py composes them (through exp(A * sum delta) of each) into the carry entering every
segment, which MODE=0 (CARRY) starts its walk from.
BIDIR: both directions in one launch, as in triton_fwd.py; grads come out stacked over [forward | backward].
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._fastmath import sigmoid_fast, softplus_fast
from .._tiles import columns
from .._warp_reduce import warp_reduce_scatter32
from .triton_fwd import _channel_lanes, _chunk_pos, _direction, _ld, _memory_tile, _st, _step_col, _step_pos

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _stage_inputs(sc_in, u_row, cu, d_row, cd, z_row, cz, g_row, cg, k0, k1, L, rev, bias, lanes,
                  s_ul, s_dl, s_zl, s_gl, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                  REVERSE: tl.constexpr,
                  BIDIR: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                  LOG_T: tl.constexpr, FULL: tl.constexpr, ASM: tl.constexpr):
    """The chunk's inputs, read as coalesced (BLOCK_D, T) tiles and split into per-step columns (as the
    forward does, ops/_tiles.py), -> float32 step values in scratch, token-major: planes [delta, u, gated
    dout, dz factor, sigmoid(pre-softplus delta)], each (CHUNK, BLOCK_D), row k = the chunk's step k.
    Without FULL (the segment pass, MODE=1, which needs no grads) only delta and the gated dout.
    Addresses are a scalar row pointer plus int32 (channel, token) offsets: 64-bit pointer tiles, hoisted
    out of the chunk loop, would hold ~100 registers."""
    PLANE: tl.constexpr = CHUNK * BLOCK_D
    for sub in tl.static_range(CHUNK // T):
        p, ok = _chunk_pos(k0 + sub * T, k1, L, rev, T, REVERSE, BIDIR)
        m = ok[None, :]
        xs = columns(tl.load(d_row + (cd[:, None] + p[None, :] * s_dl), mask=m, other=0.0), BLOCK_D, T, LOG_T)
        if FULL:
            us = columns(tl.load(u_row + (cu[:, None] + p[None, :] * s_ul), mask=m, other=0.0), BLOCK_D, T, LOG_T)
        gs = columns(tl.load(g_row + (cg[:, None] + p[None, :] * s_gl), mask=m, other=0.0), BLOCK_D, T, LOG_T)
        if HAS_Z:
            zs = columns(tl.load(z_row + (cz[:, None] + p[None, :] * s_zl), mask=m, other=0.0), BLOCK_D, T, LOG_T)
        else:
            zs = gs
        for k in tl.static_range(T):  # columns in memory order -> step order
            at = sc_in + (sub * T + k) * BLOCK_D + lanes
            x = _step_col(xs, k, rev, T, REVERSE, BIDIR).to(tl.float32)
            dy = _step_col(gs, k, rev, T, REVERSE, BIDIR).to(tl.float32)
            if HAS_BIAS:
                x += bias
            if SOFTPLUS:
                tl.store(at, softplus_fast(x, ASM))
                if FULL:
                    tl.store(at + 4 * PLANE, sigmoid_fast(x))
            else:
                tl.store(at, x)
            if FULL:
                tl.store(at + PLANE, _step_col(us, k, rev, T, REVERSE, BIDIR).to(tl.float32))
            if HAS_Z:
                z = _step_col(zs, k, rev, T, REVERSE, BIDIR).to(tl.float32)
                sz = sigmoid_fast(z)
                if FULL:
                    tl.store(at + 3 * PLANE, dy * sz * (1.0 + z * (1.0 - sz)))  # dz = y * this
                dy = dy * z * sz
            tl.store(at + 2 * PLANE, dy)


@triton.jit
def _flush_plane(sc_plane, dst, rows, p, ok, rev, lanes, REVERSE: tl.constexpr, BIDIR: tl.constexpr,
                 BLOCK_D: tl.constexpr, T: tl.constexpr, LOG_T: tl.constexpr, sub: tl.constexpr):
    cols = ()
    for k in tl.static_range(T):
        cols = cols + (tl.load(sc_plane + (sub * T + k) * BLOCK_D + lanes),)
    tile = _memory_tile(cols, rev, BLOCK_D, T, LOG_T, REVERSE, BIDIR)
    tl.store(dst + (rows[:, None] + p[None, :]), tile.to(dst.dtype.element_ty), mask=ok[None, :])


@triton.jit
def _flush_outputs(sc_out, du_ptr, ddelta_ptr, dz_ptr, rows, k0, k1, L, rev, lanes, HAS_Z: tl.constexpr,
                   REVERSE: tl.constexpr, BIDIR: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr,
                   T: tl.constexpr, LOG_T: tl.constexpr):
    """The chunk's du, ddelta (, dz) planes from scratch -> coalesced (BLOCK_D, T) tiles in memory."""
    PLANE: tl.constexpr = CHUNK * BLOCK_D
    for sub in tl.static_range(CHUNK // T):
        p, ok = _chunk_pos(k0 + sub * T, k1, L, rev, T, REVERSE, BIDIR)
        _flush_plane(sc_out, du_ptr, rows, p, ok, rev, lanes, REVERSE, BIDIR, BLOCK_D, T, LOG_T, sub)
        _flush_plane(sc_out + PLANE, ddelta_ptr, rows, p, ok, rev, lanes, REVERSE, BIDIR, BLOCK_D, T, LOG_T, sub)
        if HAS_Z:
            _flush_plane(sc_out + 2 * PLANE, dz_ptr, rows, p, ok, rev, lanes, REVERSE, BIDIR, BLOCK_D, T, LOG_T, sub)


@triton.jit
def _step_values(sc_in, C_base, B_base, k, t, s_Cl, s_Bl, n_ok, lanes, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
                 EVEN_N: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr):
    """Step slot k's staged values (delta, u, gated dout, dz factor, softplus grad factor) and C, B rows."""
    PLANE: tl.constexpr = CHUNK * BLOCK_D
    at = sc_in + k * BLOCK_D + lanes
    dt = tl.load(at)
    u = tl.load(at + PLANE)
    dy = tl.load(at + 2 * PLANE)
    gz = tl.load(at + 3 * PLANE) if HAS_Z else dy
    sx = tl.load(at + 4 * PLANE) if SOFTPLUS else dy
    Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)
    Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
    return dt, u, dy, gz, sx, Ct, Bt


@triton.jit(do_not_specialize=["zero_stride"])
def selective_scan_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr, starts_ptr,
    seg_w_ptr, seg_sum_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dAt_ptr, dBC_ptr, dD_ptr, dz_ptr, dbias_ptr,
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
    WARP_REDUCE: tl.constexpr, T: tl.constexpr, LOG_T: tl.constexpr, ASM: tl.constexpr,
):
    # Tiles are (N, BLOCK_D): one channel per thread, its N states in registers (see triton_fwd.py).
    # du, ddelta, dz: contiguous (batch, dim, L); dBC: (batch, dim // dim_per_group, L, 2 N) float32, [dB | dC],
    # zeroed, summed into by every channel block of the group (atomics);
    # seg_w: (batch, n_seg, N, dim); seg_sum: (batch, n_seg, dim) and starts (batch, n_chunks, N, dim)
    # from the forward; At (N, dim) = A^T log2(e); dAt (N, dim) float32 accumulator.
    # scratch per program (float32): CHUNK state slots (N, BLOCK_D), then 5 input and 3 output planes
    # (CHUNK, BLOCK_D): CHUNK * BLOCK_D * (BLOCK_N + 8) floats, allocated in triton_scan.py.
    # WARP_REDUCE (CUDA, BLOCK_D = 32 on one warp, N = 16): dB and dC by warp_reduce_scatter32.
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
    B_base = B_src + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_src + pid_b * s_Cb + g * s_Cg + n * s_Cn
    out_row = row * L
    p_base = (pid_b * (dim // dim_per_group) + (pid_d * BLOCK_D) // dim_per_group) * L * (2 * n_state)  # [dB | dC]
    prog = (pid_b * n_blk + pid_d) * tl.num_programs(2) + pid_s
    SLOT: tl.constexpr = BLOCK_D * BLOCK_N
    PLANE: tl.constexpr = CHUNK * BLOCK_D
    sc_state = scratch_ptr + prog * (CHUNK * SLOT + 8 * PLANE)
    sc_in = sc_state + CHUNK * SLOT
    sc_out = sc_in + 5 * PLANE
    sc_base = sc_state + n[:, None] * BLOCK_D + lanes[None, :]
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
        _stage_inputs(sc_in, u_src + pid_b * s_ub, c_loc * s_ud, d_src + pid_b * s_db, c_loc * s_dd,
                      z_ptr + pid_b * s_zb, c_loc * s_zd, dout_ptr + pid_b * s_gb, d * s_gd, k0, k1, L, rev, bias,
                      lanes, s_ul, s_dl, s_zl, s_gl, HAS_Z, HAS_BIAS, SOFTPLUS, REVERSE, BIDIR, CHUNK, BLOCK_D, T,
                      LOG_T, MODE == 0, ASM)
        tl.debug_barrier()  # staged planes visible to every lane
        h_t = w  # (MODE=1 keeps no states)
        if MODE == 0:  # recompute the chunk's states into scratch slots 0 .. k1-k0-1; h_t: the last one
            h_t = _ld(starts_ptr + (pid_b * n_chunks_total + c) * n_state * dim + nd, nd_ok, EVEN_N)
            tp = _step_pos(k0, L, rev, REVERSE, BIDIR)
            ndt, nu, nB = tl.load(sc_in + lanes), tl.load(sc_in + PLANE + lanes), _ld(B_base + tp * s_Bl, n_ok, EVEN_N)
            for i in range(k0, k1):
                dt, u, Bt = ndt, nu, nB
                j = tl.minimum(i + 1, k1 - 1)  # next step's values, in flight during this one
                tp = _step_pos(j, L, rev, REVERSE, BIDIR)
                ndt = tl.load(sc_in + (j - k0) * BLOCK_D + lanes)
                nu = tl.load(sc_in + PLANE + (j - k0) * BLOCK_D + lanes)
                nB = _ld(B_base + tp * s_Bl, n_ok, EVEN_N)
                tl.store(sc_base + (i - k0) * SLOT, h_t)
                h_t = tl.exp2(dt[None, :] * A2) * h_t + Bt.to(tl.float32)[:, None] * (dt * u)[None, :]
        t = _step_pos(k1 - 1, L, rev, REVERSE, BIDIR)
        nxt = _step_values(sc_in, C_base, B_base, k1 - 1 - k0, t, s_Cl, s_Bl, n_ok, lanes, HAS_Z, SOFTPLUS, EVEN_N,
                           CHUNK, BLOCK_D)
        h_nxt = tl.load(sc_base + (k1 - 1 - k0) * SLOT) if MODE == 0 else w
        for ii in range(0, k1 - k0):
            i = k1 - 1 - ii
            t = _step_pos(i, L, rev, REVERSE, BIDIR)
            dt, u, dy, gz, sx, Ct, Bt = nxt
            h_prev = h_nxt
            j = tl.maximum(i - 1, k0)  # the next (earlier) step's values, in flight during this one
            tj = _step_pos(j, L, rev, REVERSE, BIDIR)
            nxt = _step_values(sc_in, C_base, B_base, j - k0, tj, s_Cl, s_Bl, n_ok, lanes, HAS_Z, SOFTPLUS, EVEN_N,
                               CHUNK, BLOCK_D)
            adj = Ct[:, None] * dy[None, :] + w
            w = tl.exp2(dt[None, :] * A2) * adj
            if MODE == 0:
                h_nxt = tl.load(sc_base + (j - k0) * SLOT)
                at = sc_out + (i - k0) * BLOCK_D + lanes
                if HAS_Z:
                    y = tl.sum(h_t * Ct[:, None], axis=0)
                    if HAS_D:
                        y += Dv * u
                    tl.store(at + 2 * PLANE, y * gz)
                q = w * h_prev  # grad of (delta_t A)
                gB = tl.sum(adj * Bt[:, None], axis=0)
                ddt = tl.sum(q * A2, axis=0) * LN2 + gB * u
                du = gB * dt
                if HAS_D:
                    du += Dv * dy
                    dD_acc += dy * u
                dA_acc += q * dt[None, :]
                gBrow = adj * (dt * u)[None, :]
                gCrow = h_t * dy[None, :]
                if WARP_REDUCE:  # lane l: total of [dB | dC][l]
                    sums = warp_reduce_scatter32(columns(tl.trans(gBrow), BLOCK_D, BLOCK_N, 4)
                                                 + columns(tl.trans(gCrow), BLOCK_D, BLOCK_N, 4))
                    tl.atomic_add(dBC_ptr + p_base + t * (2 * n_state) + tl.arange(0, BLOCK_D), sums, sem="relaxed")
                else:
                    row_t = dBC_ptr + p_base + t * (2 * n_state) + n
                    tl.atomic_add(row_t, tl.sum(gBrow, axis=1), mask=n_ok, sem="relaxed")
                    tl.atomic_add(row_t + n_state, tl.sum(gCrow, axis=1), mask=n_ok, sem="relaxed")
                if SOFTPLUS:
                    ddt = ddt * sx
                dbias_acc += ddt
                tl.store(at, du)
                tl.store(at + PLANE, ddt)
                h_t = h_prev
        tl.debug_barrier()  # every lane done with this chunk's planes
        if MODE == 0:
            _flush_outputs(sc_out, du_ptr, ddelta_ptr, dz_ptr, out_row, k0, k1, L, rev, lanes, HAS_Z, REVERSE, BIDIR,
                           CHUNK, BLOCK_D, T, LOG_T)
    if MODE == 1:
        _st(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, w, nd_ok, EVEN_N)
    else:
        # (N, dim) like the state tiles. A (dim, N) layout for the grad (no AccumulateGrad copy) re-laid this store
        # and changed the loop's code: 168 registers instead of 207, but the kernel ran 4-5% slower (H100).
        tl.atomic_add(dAt_ptr + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.atomic_add(dD_ptr + d, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, dbias_acc)
