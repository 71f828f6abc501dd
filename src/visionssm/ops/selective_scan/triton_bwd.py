"""Triton backward kernel of the selective scan.

The adjoint runs against the scan direction: adj_t = C_t dy_t + w_{t+1}, w_t = exp(delta_t A) adj_t, and
the grad of (delta_t A) is w_t * h_{t-1}. So each program walks its segment's CHUNK-step chunks from
last to first; per chunk it recomputes the states from the start the forward saved into a small
per-program scratch (CHUNK x N x BLOCK_D float32, which stays in cache: slot k holds the state before
the chunk's step k), then steps backward through the chunk. Both walks load the next step's inputs (and
scratch slot) one step ahead, so that a step's memory latency hides behind the previous step's work; the
state h_t is carried over from the step before, not reloaded. Per-token grads of B and C are reduced over
the program's channels (by a warp reduce-scatter on CUDA, ops/_warp_reduce.py) and written per channel
block as one row of [dB | dC] (summed over blocks afterwards, no atomics); those of A, D and delta_bias are
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
from .._warp_reduce import warp_reduce_scatter32
from .triton_fwd import _channel_lanes, _direction, _ld, _softplus, _st, _step_pos

LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _step_inputs(t, u_base, d_base, z_base, g_base, B_base, C_base, s_ul, s_dl, s_zl, s_gl, s_Bl, s_Cl, n_ok,
                 HAS_Z: tl.constexpr, EVEN_N: tl.constexpr):
    """One token's raw inputs of the backward walk: delta, dout, u, z (per channel) and the B, C rows."""
    x = tl.load(d_base + t * s_dl)
    dy = tl.load(g_base + t * s_gl)
    u = tl.load(u_base + t * s_ul)
    z = tl.load(z_base + t * s_zl) if HAS_Z else x
    Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N)
    Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N)
    return x, dy, u, z, Ct, Bt


@triton.jit
def _step_size(x, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(pre-softplus delta, delta) in float32."""
    x = x.to(tl.float32)
    if HAS_BIAS:
        x += bias
    if SOFTPLUS:
        return x, _softplus(x)
    else:
        return x, x


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
    WARP_REDUCE: tl.constexpr,
):
    # Tiles are (N, BLOCK_D): one channel per thread, its N states in registers (see triton_fwd.py).
    # du, ddelta, dz: contiguous (batch, dim, L); dBC: (batch, dim // BLOCK_D, L, 2 N) float32, [dB | dC];
    # seg_w: (batch, n_seg, N, dim); seg_sum: (batch, n_seg, dim) and starts (batch, n_chunks, N, dim)
    # from the forward; At (N, dim) = A^T log2(e); dAt (N, dim) float32 accumulator.
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
    u_base = u_src + pid_b * s_ub + c_loc * s_ud
    d_base = d_src + pid_b * s_db + c_loc * s_dd
    z_base = z_ptr + pid_b * s_zb + c_loc * s_zd
    g_base = dout_ptr + pid_b * s_gb + d * s_gd
    B_base = B_src + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_src + pid_b * s_Cb + g * s_Cg + n * s_Cn
    out_row = row * L
    p_base = (pid_b * n_blk + pid_d) * L * (2 * n_state)  # dBC rows: [dB | dC] per token
    prog = (pid_b * n_blk + pid_d) * tl.num_programs(2) + pid_s
    SLOT: tl.constexpr = BLOCK_D * BLOCK_N
    sc_base = scratch_ptr + prog * (CHUNK * SLOT) + n[:, None] * BLOCK_D + lanes[None, :]
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
        h_t = w  # (MODE=1 keeps no states)
        if MODE == 0:  # recompute the chunk's states into scratch slots 0 .. k1-k0-1; h_t: the last one
            h_t = _ld(starts_ptr + (pid_b * n_chunks_total + c) * n_state * dim + nd, nd_ok, EVEN_N)
            tp = _step_pos(k0, L, rev, REVERSE, BIDIR)
            nu, nx, nB = tl.load(u_base + tp * s_ul), tl.load(d_base + tp * s_dl), _ld(B_base + tp * s_Bl, n_ok, EVEN_N)
            for i in range(k0, k1):
                u, x, Bt = nu, nx, nB
                tp = _step_pos(tl.minimum(i + 1, k1 - 1), L, rev, REVERSE, BIDIR)  # next step's inputs, in flight
                nu, nx, nB = tl.load(u_base + tp * s_ul), tl.load(d_base + tp * s_dl), _ld(B_base + tp * s_Bl, n_ok, EVEN_N)
                tl.store(sc_base + (i - k0) * SLOT, h_t)
                _, dt = _step_size(x, bias, HAS_BIAS, SOFTPLUS)
                h_t = tl.exp2(dt[None, :] * A2) * h_t + Bt.to(tl.float32)[:, None] * (dt * u.to(tl.float32))[None, :]
        t = _step_pos(k1 - 1, L, rev, REVERSE, BIDIR)
        nxt = _step_inputs(t, u_base, d_base, z_base, g_base, B_base, C_base, s_ul, s_dl, s_zl, s_gl, s_Bl, s_Cl,
                           n_ok, HAS_Z, EVEN_N)
        h_nxt = tl.load(sc_base + (k1 - 1 - k0) * SLOT) if MODE == 0 else w
        for ii in range(0, k1 - k0):
            i = k1 - 1 - ii
            t = _step_pos(i, L, rev, REVERSE, BIDIR)
            xr, dy, u, z, Ct, Bt = nxt
            h_prev = h_nxt
            j = tl.maximum(i - 1, k0)  # the next (earlier) step's inputs, in flight during this one
            tj = _step_pos(j, L, rev, REVERSE, BIDIR)
            nxt = _step_inputs(tj, u_base, d_base, z_base, g_base, B_base, C_base, s_ul, s_dl, s_zl, s_gl, s_Bl,
                               s_Cl, n_ok, HAS_Z, EVEN_N)
            if MODE == 0:
                h_nxt = tl.load(sc_base + (j - k0) * SLOT)
            x, dt = _step_size(xr, bias, HAS_BIAS, SOFTPLUS)
            dy = dy.to(tl.float32)
            u = u.to(tl.float32)
            Ct = Ct.to(tl.float32)
            if HAS_Z:
                z = z.to(tl.float32)
                sz = tl.sigmoid(z)
                if MODE == 0:
                    y = tl.sum(h_t * Ct[:, None], axis=0)
                    if HAS_D:
                        y += Dv * u
                    tl.store(dz_ptr + out_row + t, (dy * y * sz * (1.0 + z * (1.0 - sz))).to(dz_ptr.dtype.element_ty))
                dy = dy * z * sz
            adj = Ct[:, None] * dy[None, :] + w
            w = tl.exp2(dt[None, :] * A2) * adj
            if MODE == 0:
                q = w * h_prev  # grad of (delta_t A)
                Bt = Bt.to(tl.float32)
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
                    tl.store(dBC_ptr + p_base + t * (2 * n_state) + tl.arange(0, BLOCK_D), sums)
                else:
                    _st(dBC_ptr + p_base + t * (2 * n_state) + n, tl.sum(gBrow, axis=1), n_ok, EVEN_N)
                    _st(dBC_ptr + p_base + t * (2 * n_state) + n_state + n, tl.sum(gCrow, axis=1), n_ok, EVEN_N)
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(x)
                dbias_acc += ddt
                tl.store(du_ptr + out_row + t, du.to(du_ptr.dtype.element_ty))
                tl.store(ddelta_ptr + out_row + t, ddt.to(ddelta_ptr.dtype.element_ty))
                h_t = h_prev
    if MODE == 1:
        _st(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, w, nd_ok, EVEN_N)
    else:
        tl.atomic_add(dAt_ptr + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.atomic_add(dD_ptr + d, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, dbias_acc)
