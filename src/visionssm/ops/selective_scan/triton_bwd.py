"""Triton backward kernel of the selective scan.

The adjoint runs against the scan direction: adj_t = C_t dy_t + w_{t+1}, w_t = exp(delta_t A) adj_t, and
the grad of (delta_t A) is w_t * h_{t-1}. So each program walks its segment's CHUNK-step chunks from last to
first. A chunk is unrolled: its u, delta, dout (, z) are read as coalesced (BLOCK_D, CHUNK) tiles a chunk
ahead (ops/_tiles.py, as the forward), its CHUNK + 1 states are recomputed from the start the forward saved
and held in registers, and its du, ddelta (, dz) leave as tiles. Nothing goes through memory in between:
an earlier version kept the recomputed states and the per-step values in a per-program global scratch, and
on the H100 at (128, 384, 197, 16) that scratch made the kernel memory-bound (ncu: 1.1 GB written to L2,
1.3 TB/s of DRAM traffic, 62% of stalls on L1TEX scoreboards).

Per-token grads of B and C are reduced over the program's channels (by a warp reduce-scatter on CUDA,
ops/_warp_reduce.py) and added into one zeroed [dB | dC] row per (batch, group, token) with atomics (no
partial buffer, no reduction launch); those of A, D and delta_bias are summed over the batch with atomics too.

With segments (long sequences), MODE=1 first computes each segment's outgoing adjoint from a zero carry;
ops/_segment_carry.py composes them (through exp(A * sum delta) of each) into the carry entering every
segment, which MODE=0 (CARRY) starts its walk from.
BIDIR: both directions in one launch, as in triton_fwd.py; grads come out stacked over [forward | backward].
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._fastmath import LN2, LOG2E, sigmoid_fast, softplus_fast
from .._tiles import columns
from .._warp_reduce import warp_reduce_scatter32
from .triton_fwd import _channel_lanes, _chunk_pos, _direction, _ld, _memory_tile, _params, _st, _step_col, _step_pos


@triton.jit
def _load_tiles(u_row, cu, d_row, cd, z_row, cz, g_row, cg, p, ok, s_ul, s_dl, s_zl, s_gl,
                HAS_Z: tl.constexpr, FULL: tl.constexpr):
    """Raw (BLOCK_D, CHUNK) delta, u, dout, z tiles at positions p (0 outside the segment). Addresses are a
    scalar row pointer plus int32 (channel, token) offsets: 64-bit pointer tiles would hold more registers.
    Without FULL (MODE=1: no grads, no states) u is not read."""
    m = ok[None, :]
    xt = tl.load(d_row + (cd[:, None] + p[None, :] * s_dl), mask=m, other=0.0)
    gt = tl.load(g_row + (cg[:, None] + p[None, :] * s_gl), mask=m, other=0.0)
    ut = tl.load(u_row + (cu[:, None] + p[None, :] * s_ul), mask=m, other=0.0) if FULL else xt
    zt = tl.load(z_row + (cz[:, None] + p[None, :] * s_zl), mask=m, other=0.0) if HAS_Z else gt
    return xt, ut, gt, zt


@triton.jit(do_not_specialize=["zero_stride"])
def selective_scan_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr, starts_ptr,
    seg_w_ptr, seg_sum_ptr,
    du_ptr, ddelta_ptr, dAt_ptr, dBC_ptr, dD_ptr, dz_ptr, dbias_ptr,
    u2_ptr, delta2_ptr, B2_ptr, C2_ptr, D2_ptr, bias2_ptr,
    L, dim, dim_per_group, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_gb, s_gd, s_gl,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl, zero_stride,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, HAS_DLAST: tl.constexpr, CHUNK: tl.constexpr,
    LOG_C: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr, BIDIR: tl.constexpr,
    CARRY: tl.constexpr, WARP_REDUCE: tl.constexpr, ASM: tl.constexpr, M1_AHEAD: tl.constexpr = False,
):
    # Tiles are (N, BLOCK_D): one channel per thread, its N states in registers (see triton_fwd.py).
    # du, ddelta, dz: contiguous (batch, dim, L); dBC: (batch, dim // dim_per_group, L, 2 N) float32, [dB | dC],
    # zeroed, summed into by every channel block of the group (atomics);
    # seg_w: (batch, n_seg, N, dim); seg_sum: (batch, n_seg, dim) and starts (batch, n_chunks, dim // BLOCK_D,
    # BLOCK_N, BLOCK_D)
    # from the forward (a start every CHUNK steps); At (N, dim) = A^T log2(e); dAt (N, dim) float32 accumulator.
    # WARP_REDUCE (CUDA, BLOCK_D = 32 on one warp, N = 16): dB and dC by warp_reduce_scatter32.
    FULL: tl.constexpr = MODE == 0
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    lanes = _channel_lanes(tl.arange(0, BLOCK_D), zero_stride, BLOCK_D)
    nd = n[:, None] * dim + pid_d * BLOCK_D + lanes[None, :]
    nd_ok = n_ok[:, None]
    SLOT: tl.constexpr = BLOCK_N * BLOCK_D
    sn = n[:, None] * BLOCK_D + lanes[None, :]  # in a program's block of the saved starts (see triton_fwd.py)
    rev, c_loc, g, u_src, d_src, B_src, C_src = _direction(pid_d, d, dim, dim_per_group, u_ptr, u2_ptr, delta_ptr,
                                                       delta2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, BLOCK_D, BIDIR)
    # A log2(e), A itself folded into LN2 below (fewer registers), from the (N, dim) At that the host's prep
    # launch writes. Reading A (dim, N) here cost more: the forward's state-by-state _a_tile moved ptxas' spills
    # into this loop (22% slower, H100), and a strided 2-D load re-laid the loop's tiles (SASS: 2x the code).
    A2 = _ld(At_ptr + nd, nd_ok, EVEN_N)
    _, D_src, bias_src = _params(rev, At_ptr, At_ptr, D_ptr, D2_ptr, bias_ptr, bias2_ptr, BIDIR)
    Dv = tl.load(D_src + c_loc) if HAS_D else 0.0
    bias = tl.load(bias_src + c_loc) if HAS_BIAS else 0.0
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
    u_row, cu = u_src + pid_b * s_ub, c_loc * s_ud
    d_row, cd = d_src + pid_b * s_db, c_loc * s_dd
    z_row, cz = z_ptr + pid_b * s_zb, c_loc * s_zd
    g_row, cg = dout_ptr + pid_b * s_gb, d * s_gd
    out_row = (pid_b * dim + d) * L  # du, ddelta, dz are contiguous
    p_base = (pid_b * (dim // dim_per_group) + (pid_d * BLOCK_D) // dim_per_group) * L * (2 * n_state)  # [dB | dC]
    n_chunks_total = tl.cdiv(L, CHUNK)
    dA_acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    c_first = i0 // CHUNK
    c_last = tl.cdiv(i1, CHUNK) - 1
    p, ok = _chunk_pos(c_last * CHUNK, i1, L, rev, CHUNK, REVERSE, BIDIR)
    nxt = _load_tiles(u_row, cu, d_row, cd, z_row, cz, g_row, cg, p, ok, s_ul, s_dl, s_zl, s_gl, HAS_Z, FULL)
    # AHEAD (MODE=1 with M1_AHEAD): each step's C row is loaded one step ahead (that pass has registers to spare)
    AHEAD: tl.constexpr = M1_AHEAD and MODE == 1
    C_nxt = _c_row(C_base, c_last * CHUNK + CHUNK - 1, i0, i1, L, rev, s_Cl, n_ok, EVEN_N, REVERSE,
                   BIDIR) if AHEAD else n_ok
    for cc in range(0, c_last - c_first + 1):
        c = c_last - cc
        k0 = c * CHUNK
        tiles = nxt
        p_out, ok_out = p, ok
        # the chunk before, in flight during this one (at the first chunk: itself again, harmless)
        p, ok = _chunk_pos(tl.maximum(c - 1, c_first) * CHUNK, i1, L, rev, CHUNK, REVERSE, BIDIR)
        nxt = _load_tiles(u_row, cu, d_row, cd, z_row, cz, g_row, cg, p, ok, s_ul, s_dl, s_zl, s_gl, HAS_Z, FULL)
        # per-step float32 values, in step order: delta (after softplus; 0 past the segment's end, so those steps
        # change nothing), u, the gated dout and dz's factor (dz = y * it)
        xt, ut, gt, zt = tiles
        xs = columns(xt, BLOCK_D, CHUNK, LOG_C)
        gs = columns(gt, BLOCK_D, CHUNK, LOG_C)
        us = columns(ut, BLOCK_D, CHUNK, LOG_C) if FULL else xs
        zs = columns(zt, BLOCK_D, CHUNK, LOG_C) if HAS_Z else gs
        dts, uvs, dys, gzs = (), (), (), ()
        for k in tl.static_range(CHUNK):
            x = _step_col(xs, k, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
            dy = _step_col(gs, k, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
            if HAS_BIAS:
                x += bias
            dt = softplus_fast(x, ASM) if SOFTPLUS else x
            dts = dts + (tl.where(k0 + k < i1, dt, 0.0),)
            if FULL:
                uvs = uvs + (_step_col(us, k, rev, CHUNK, REVERSE, BIDIR).to(tl.float32),)
            if HAS_Z:
                z = _step_col(zs, k, rev, CHUNK, REVERSE, BIDIR).to(tl.float32)
                sz = sigmoid_fast(z)
                if FULL:
                    gzs = gzs + (dy * sz * (1.0 + z * (1.0 - sz)),)
                dy = dy * z * sz
            dys = dys + (dy,)
        dus, ddts, dzs = (), (), ()
        if MODE == 0:  # the chunk's states: hs[k] before step k, hs[CHUNK] after the last
            h = _ld(starts_ptr + ((pid_b * n_chunks_total + c) * tl.num_programs(1) + pid_d) * SLOT + sn, nd_ok, EVEN_N)
            hs = (h,)
            for k in tl.static_range(CHUNK):
                t = tl.where(k0 + k < i1, _step_pos(k0 + k, L, rev, REVERSE, BIDIR), 0)
                Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
                h = tl.exp2(dts[k][None, :] * A2) * h + Bt[:, None] * (dts[k] * uvs[k])[None, :]
                hs = hs + (h,)
        for kk in tl.static_range(CHUNK):  # step CHUNK - 1 - kk (a constexpr index: no local name for it)
            valid = k0 + CHUNK - 1 - kk < i1
            t = tl.where(valid, _step_pos(k0 + CHUNK - 1 - kk, L, rev, REVERSE, BIDIR), 0)
            dt, dy = dts[CHUNK - 1 - kk], dys[CHUNK - 1 - kk]
            if AHEAD:  # the walk's next step: k0 + CHUNK - 2 - kk (the previous chunk's last after this one's first)
                Ct = C_nxt
                C_nxt = _c_row(C_base, k0 + CHUNK - 2 - kk, i0, i1, L, rev, s_Cl, n_ok, EVEN_N, REVERSE, BIDIR)
            else:
                Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)
            adj = Ct[:, None] * dy[None, :] + w
            w = tl.exp2(dt[None, :] * A2) * adj
            if MODE == 0:
                u = uvs[CHUNK - 1 - kk]
                Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
                if HAS_Z:
                    y = tl.sum(hs[CHUNK - kk] * Ct[:, None], axis=0)
                    if HAS_D:
                        y += Dv * u
                    dzs = dzs + (y * gzs[CHUNK - 1 - kk],)
                q = w * hs[CHUNK - 1 - kk]  # grad of (delta_t A)
                gB = tl.sum(adj * Bt[:, None], axis=0)
                ddt = tl.sum(q * A2, axis=0) * LN2 + gB * u
                du = gB * dt
                if HAS_D:
                    du += Dv * dy
                    dD_acc += dy * u
                dA_acc += q * dt[None, :]
                # past the segment's end (t clamped to 0) both rows are zero: dt = 0 and dout = 0 there
                _add_rows(dBC_ptr + p_base + t * (2 * n_state), adj * (dt * u)[None, :], hs[CHUNK - kk] * dy[None, :],
                          n, n_ok, n_state, BLOCK_D, WARP_REDUCE)
                if SOFTPLUS:
                    ddt = ddt * _softplus_grad(dt)
                ddt = tl.where(valid, ddt, 0.0)  # past the end: q is not zero, but nothing may be summed
                dbias_acc += ddt
                dus = dus + (du,)
                ddts = ddts + (ddt,)
        if MODE == 0:  # the chunk's grads as tiles, in memory order (collected last step first)
            _store_tile(du_ptr, dus, out_row, p_out, ok_out, rev, REVERSE, BIDIR, BLOCK_D, CHUNK, LOG_C, True)
            _store_tile(ddelta_ptr, ddts, out_row, p_out, ok_out, rev, REVERSE, BIDIR, BLOCK_D, CHUNK, LOG_C, True)
            if HAS_Z:
                _store_tile(dz_ptr, dzs, out_row, p_out, ok_out, rev, REVERSE, BIDIR, BLOCK_D, CHUNK, LOG_C, True)
    if MODE == 1:
        _st(seg_w_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, w, nd_ok, EVEN_N)
    else:
        # (N, dim) like the state tiles: coalesced atomics. A (dim, N) layout for the grad (no AccumulateGrad copy)
        # cost more: with N contiguous, Triton re-laid this store and changed the loop's code (4-5% slower, H100);
        # with that hidden (runtime strides), 32 lines per atomic instruction made the backward 25% slower.
        tl.atomic_add(dAt_ptr + nd, dA_acc, mask=nd_ok)
        if HAS_D:
            tl.atomic_add(dD_ptr + d, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d, dbias_acc)


@triton.jit
def _c_row(C_base, j, i0, i1, L, rev, s_Cl, n_ok, EVEN_N: tl.constexpr, REVERSE: tl.constexpr, BIDIR: tl.constexpr):
    """C's row (float32) of scan step j; outside the segment [i0, i1) a harmless in-bounds row (position 0)."""
    t = tl.where((j >= i0) & (j < i1), _step_pos(j, L, rev, REVERSE, BIDIR), 0)
    return _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)


@triton.jit
def _softplus_grad(dt):
    """sigmoid(x) from dt = softplus(x): 1 - exp(-dt); below 1/32 by its series (no cancellation; truncation
    < 1e-8 relative). Recomputed rather than held per step: the chunk's 4 values cost registers, and ptxas spills
    (H100, (128, 384, 197, 16): backward kernel 0.727 vs 0.805 ms)."""
    series = dt * (1.0 - dt * (0.5 - dt * (0.16666666666666666 - dt * 0.041666666666666664)))
    return tl.where(dt < 0.03125, series, 1.0 - tl.exp2(-dt * LOG2E))


@triton.jit
def _store_tile(dst, steps, rows, p, ok, rev, REVERSE: tl.constexpr, BIDIR: tl.constexpr, BLOCK_D: tl.constexpr,
                CHUNK: tl.constexpr, LOG_C: tl.constexpr, LAST_FIRST: tl.constexpr):
    """Per-step columns (collected last step first with LAST_FIRST) -> one coalesced (BLOCK_D, CHUNK) store in
    memory order."""
    cols = ()
    for k in tl.static_range(CHUNK):
        cols = cols + (steps[CHUNK - 1 - k] if LAST_FIRST else steps[k],)
    tile = _memory_tile(cols, rev, BLOCK_D, CHUNK, LOG_C, REVERSE, BIDIR)
    tl.store(dst + (rows[:, None] + p[None, :]), tile.to(dst.dtype.element_ty), mask=ok[None, :])


@triton.jit
def _add_rows(row_ptr, gB, gC, n, n_ok, n_state, BLOCK_D: tl.constexpr, WARP_REDUCE: tl.constexpr):
    """row[:N] += sum over the program's channels of gB[n, :], row[N:2N] likewise of gC (atomics; (N, BLOCK_D))."""
    if WARP_REDUCE:  # lane l: total of [dB | dC][l]
        sums = warp_reduce_scatter32(columns(tl.trans(gB), BLOCK_D, 16, 4) + columns(tl.trans(gC), BLOCK_D, 16, 4))
        tl.atomic_add(row_ptr + tl.arange(0, BLOCK_D), sums, sem="relaxed")
    else:
        tl.atomic_add(row_ptr + n, tl.sum(gB, axis=1), mask=n_ok, sem="relaxed")
        tl.atomic_add(row_ptr + n_state + n, tl.sum(gC, axis=1), mask=n_ok, sem="relaxed")
