"""Time-parallel Triton backward of the selective scan, one state at a time (pairs with triton_tiled_fwd.py).

A program recomputes one segment tile (same (K, BLOCK_D, 32) layout as the forward) from its start state,
state by state: the forward scan gives h, a reverse scan of (a, a x) with x = C dy gives r_t = a_t lam_t,
where lam is the adjoint of h (lam_t = x_t + a_{t+1} lam_{t+1}), and lam = r exp2(-delta At). Scanning a_t
rather than a_{t+1} avoids shifting a tile by one token; the exponent is clamped at -CLAMP so that
exp2(-arg) stays finite (a decay below 2^-64 is zero to float32 next to the input it is added to).

a_t h_{t-1} is taken as h_t - b_t, as mamba_ssm's backward does (csrc/selective_scan/
selective_scan_bwd_kernel.cuh: ``thread_data[i].y - delta * u * B``): d loss / d log a_t = lam_t (h_t - b_t).

Partial sums: dB and dC are summed over the tile's channels and written per (channel block, state, token),
then summed over the blocks of each group on the host; dA, dD and delta_bias per (segment, channel).

Segments: MODE=1 writes each later segment's adjoint at its start from a zero right end (the reverse
scan's total); ops/_segment_carry.py turns them into the adjoint entering each segment from the right.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_tiled_fwd import (
    LANES,
    TOKEN_STRIDES,
    _bc_rows,
    _delta_tile,
    _lane_major,
    _last_lane,
    _tile_coords,
    _tile_load,
    _tile_scan,
    _tile_sum,
)

LN2 = tl.constexpr(0.6931471805599453)
CLAMP = tl.constexpr(64.0)


@triton.jit(do_not_specialize=TOKEN_STRIDES)
def tiled_bwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, start_ptr, adj_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dAp_ptr, dDp_ptr, dbp_ptr, dBp_ptr, dCp_ptr,
    L, dim, dim_per_group, n_seg, seg0,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_yb, s_yd, s_yl,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl, zero_stride,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, CARRY: tl.constexpr, HAS_ADJ: tl.constexpr,
    N: tl.constexpr, BLOCK_D: tl.constexpr, K: tl.constexpr,
):
    # start, adj, dAp: (batch, n_seg, N, dim); dDp, dbp: (batch, n_seg, dim); dBp, dCp: (batch, n_blk, N, L);
    # du, ddelta, dz: (batch, dim, L) contiguous. All partials float32.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    seg = tl.program_id(2) + seg0  # MODE=1 runs segments 1 .. n_seg-1 (segment 0's start adjoint is unused)
    c = tl.arange(0, BLOCK_D)[None, :, None]
    d = pid_d * BLOCK_D + c
    g = (pid_d * BLOCK_D) // dim_per_group
    k, l, t, m = _tile_coords(seg, L, K, BLOCK_D, REVERSE)
    lz = l * zero_stride
    x, dt = _delta_tile(delta_ptr + pid_b * s_db, _lane_major(d * s_dd + t * s_dl, lz), m, bias_ptr,
                        _lane_major(d, lz), HAS_BIAS, SOFTPLUS)
    dy = _tile_load(dout_ptr + pid_b * s_yb, s_yd, s_yl, d, t, lz, m)
    if HAS_Z:
        z = _tile_load(z_ptr + pid_b * s_zb, s_zd, s_zl, d, t, lz, m)
        sz = tl.sigmoid(z)
        dyg = dy * z * sz  # adjoint of y before the gate
    else:
        dyg = dy
    u = _tile_load(u_ptr + pid_b * s_ub, s_ud, s_ul, d, t, lz, m)
    dtu = dt * u
    B_base = _bc_rows(B_ptr + pid_b * s_Bb + g * s_Bg, s_Bl, d, t, lz, zero_stride)
    C_base = _bc_rows(C_ptr + pid_b * s_Cb + g * s_Cg, s_Cl, d, t, lz, zero_stride)
    sd = _lane_major((pid_b * n_seg + seg) * N * dim + d, lz)
    A_off = _lane_major(d, lz)
    zero = tl.zeros((1, BLOCK_D, LANES), dtype=tl.float32)
    first = (l == 0) & (c >= 0)
    if MODE == 1:
        start_lane = _last_lane(l, not REVERSE) & (c >= 0)  # the adjoint scan ends at the segment's start
        for n in range(N):
            An = tl.load(At_ptr + n * dim + A_off)
            Cn = tl.load(C_base + n * s_Cn, mask=m, other=0.0).to(tl.float32)
            a = tl.exp2(tl.maximum(dt * An, -CLAMP))
            _, end = _tile_scan(a, a * (Cn * dyg), zero, k, l, c, K, not REVERSE)
            tl.store(adj_ptr + sd + n * dim, end, mask=start_lane)
    else:
        row_ok = (t >= 0) & (t < L) & (c == 0)  # one warp writes the channel sums of a token row
        bn_row = (pid_b * tl.num_programs(1) + pid_d) * N  # row of state 0 of this block in dBp / dCp
        row_off = _lane_major(bn_row * L + t + d * zero_stride, lz)
        dlog = tl.zeros((K, BLOCK_D, LANES), dtype=tl.float32)  # sum_n At_n * d loss / d log a_n
        ddtu = tl.zeros((K, BLOCK_D, LANES), dtype=tl.float32)
        ypre = tl.zeros((K, BLOCK_D, LANES), dtype=tl.float32)
        for n in range(N):
            An = tl.load(At_ptr + n * dim + A_off)
            Bn = tl.load(B_base + n * s_Bn, mask=m, other=0.0).to(tl.float32)
            Cn = tl.load(C_base + n * s_Cn, mask=m, other=0.0).to(tl.float32)
            arg = tl.maximum(dt * An, -CLAMP)
            a = tl.exp2(arg)
            b = Bn * dtu
            h, _ = _tile_scan(a, b, tl.load(start_ptr + sd + n * dim) if CARRY else zero, k, l, c, K, REVERSE)
            G = tl.load(adj_ptr + sd + n * dim) if HAS_ADJ else zero
            r, _ = _tile_scan(a, a * (Cn * dyg), G, k, l, c, K, not REVERSE)
            lam = r * tl.exp2(-arg)
            q = lam * (h - b)
            dlog += An * q
            tl.store(dAp_ptr + sd + n * dim, _tile_sum(q * dt), mask=first)
            ddtu += lam * Bn
            tl.store(dBp_ptr + row_off + n * L, tl.sum(lam * dtu, axis=1, keep_dims=True), mask=row_ok)
            tl.store(dCp_ptr + row_off + n * L, tl.sum(dyg * h, axis=1, keep_dims=True), mask=row_ok)
            if HAS_Z:
                ypre += Cn * h
        du = ddtu * dt
        ddt = ddtu * u + dlog * LN2  # At = A log2(e), so A = At ln 2
        sdv = _lane_major((pid_b * n_seg + seg) * dim + d, lz)
        if HAS_D:
            Dv = tl.load(D_ptr + A_off)
            du += Dv * dyg
            tl.store(dDp_ptr + sdv, _tile_sum(dyg * u), mask=first)
            ypre += Dv * u
        offs = _lane_major((pid_b * dim + d) * L + t, lz)
        if HAS_Z:
            dz = dy * ypre * sz * (1.0 + z * (1.0 - sz))  # d/dz z sigmoid(z)
            tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=m)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(x)
        ddt = tl.where(m, ddt, 0.0)
        if HAS_BIAS:
            tl.store(dbp_ptr + sdv, _tile_sum(ddt), mask=first)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m)
        tl.store(ddelta_ptr + offs, ddt.to(ddelta_ptr.dtype.element_ty), mask=m)
