"""Triton forward kernel of the selective scan.

Each program owns BLOCK_D channels of one batch row and steps through its time segment one token at a
time (t = L-1 ... 0 when REVERSE). The state is a (N, BLOCK_D) register tile laid out with one channel per
thread and all N states of that channel in the thread's registers (A is passed transposed, (N, dim), so
the compiler lays the tile out along channels): the sum over N for y is a few in-thread FMAs, and the
per-channel work (softplus, D skip, gate) is done once per channel, not once per (channel, state) lane.
Steps run in chunks of T (unrolled); a chunk's token values are loaded one chunk ahead as (BLOCK_D, T)
tiles and its outputs stored as one (see _chunk_tiles and ops/_tiles.py).

Long sequences are cut into segments so that enough programs exist (``n_seg`` > 1). Then the kernel runs
twice: MODE=1 computes each segment's end state from a zero start plus the sum of its deltas (the
segment's total decay is exp(A * sum delta)); ops/_segment_carry.py turns those into the state entering
every segment; MODE=0 (CARRY) starts from it and writes outputs. With few segments (FOLD) MODE=0 folds the
earlier segments' ends in itself instead (no segment_carry launch). The state at every CHUNK-th step is
saved (float32) for the backward pass.

BIDIR (Vision Mamba's two directions in one launch): the channel axis is [forward dim | backward dim];
programs of the second half read u2/delta2/B2/C2 and scan right to left (in place, no flipped copies).
Parameters (A, D, delta_bias) and outputs are stacked over both halves; z is one gate for both.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._fastmath import sigmoid_fast, softplus_fast
from .._softplus import softplus as _softplus  # noqa: F401  (re-exported to the other scan kernels)
from .._tiles import columns, tile_of

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _ld(ptr, mask, EVEN: tl.constexpr):
    """Load, masked only when the state size is not a power of two (EVEN: no predicates in the loop)."""
    if EVEN:
        return tl.load(ptr)
    else:
        return tl.load(ptr, mask=mask, other=0.0)


@triton.jit
def _st(ptr, val, mask, EVEN: tl.constexpr):
    if EVEN:
        tl.store(ptr, val)
    else:
        tl.store(ptr, val, mask=mask)


@triton.jit
def _channel_lanes(d, zero_stride, BLOCK_D: tl.constexpr):
    """Channel offsets for (N, BLOCK_D) tiles, declared contiguous but of unknown alignment.

    The claim makes Triton put the 32 lanes on the channel axis (one channel per thread, its N states in
    registers); the unknown alignment (zero_stride is a runtime 0, not specialised) keeps the loads scalar,
    since a vectorised 4-channel layout would split N across lanes. With every axis tied at contiguity 1,
    Triton 3.6 lays these tiles 16 x 2 lanes (states x channels): each step then reduces y across lanes and
    converts per-channel values through shared memory. Triton 3.9 broke the tie the other way.
    """
    return tl.max_contiguous(d + tl.arange(0, BLOCK_D) * zero_stride, BLOCK_D)


@triton.jit
def _a_tile(A_ptr, d, n, n_state, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The (N, BLOCK_D) tile A^T * log2(e) from A (dim, N), contiguous, read once per program: state by state as
    (BLOCK_D,) vectors, so the loads take the one-channel-per-thread layout (a 2-D load with N contiguous makes
    Triton lay the whole state tile out along N). Scaled here rather than by a torch op on every call."""
    tile = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for k in tl.static_range(BLOCK_N):
        if k < n_state:
            tile = tl.where(n[:, None] == k, tl.load(A_ptr + d * n_state + k)[None, :], tile)
    return tile * LOG2E


@triton.jit
def _step_pos(ik, L, rev, REVERSE: tl.constexpr, BIDIR: tl.constexpr):
    """Memory position of scan step ik: right to left for reversed programs (rev is per program with BIDIR)."""
    if BIDIR:
        return tl.where(rev, L - 1 - ik, ik)
    elif REVERSE:
        return L - 1 - ik
    else:
        return ik


@triton.jit
def _direction(pid_d, d, dim, dim_per_group, u_ptr, u2_ptr, delta_ptr, delta2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr,
               BLOCK_D: tl.constexpr, BIDIR: tl.constexpr):
    """(rev, channel within its direction, B/C group, u, delta, B, C base pointers) of a program."""
    if BIDIR:
        half = dim // 2
        rev = pid_d * BLOCK_D >= half
        shift = tl.where(rev, half, 0)
        return (rev, d - shift, (pid_d * BLOCK_D - shift) // dim_per_group, tl.where(rev, u2_ptr, u_ptr),
                tl.where(rev, delta2_ptr, delta_ptr), tl.where(rev, B2_ptr, B_ptr), tl.where(rev, C2_ptr, C_ptr))
    else:
        return False, d, (pid_d * BLOCK_D) // dim_per_group, u_ptr, delta_ptr, B_ptr, C_ptr


@triton.jit
def _params(rev, A_ptr, A2_ptr, D_ptr, D2_ptr, bias_ptr, bias2_ptr, BIDIR: tl.constexpr):
    """A, D, delta_bias of a program's direction (BIDIR: each direction's own tensors, no stacked copies)."""
    if BIDIR:
        return tl.where(rev, A2_ptr, A_ptr), tl.where(rev, D2_ptr, D_ptr), tl.where(rev, bias2_ptr, bias_ptr)
    else:
        return A_ptr, D_ptr, bias_ptr


@triton.jit
def _chunk_pos(i, i1, L, rev, T: tl.constexpr, REVERSE: tl.constexpr, BIDIR: tl.constexpr):
    """Memory positions (ascending, (T,)) of the tile that holds scan steps i .. i+T-1, and which of them
    lie in the segment (steps < i1). Reversed programs read their tile right to left (_step_col)."""
    j = tl.arange(0, T)
    if BIDIR:
        p = tl.where(rev, L - i - T, i) + j
        return p, tl.where(rev, p >= L - i1, p < i1)
    elif REVERSE:
        p = (L - i - T) + j
        return p, p >= L - i1
    else:
        p = i + j
        return p, p < i1


@triton.jit
def _chunk_tiles(u_base, d_base, z_base, p, ok, s_ul, s_dl, s_zl, HAS_Z: tl.constexpr):
    """Raw (BLOCK_D, T) u/delta/z tiles at positions p, 0 outside the segment.

    Loaded a whole chunk ahead of use: the loop is latency-bound (one dependent step after another), and
    the next chunk's loads in flight hide a memory round trip behind T steps of work. Loaded as tiles so that
    the access is coalesced along whichever axis is contiguous (ops/_tiles.py).
    """
    m = ok[None, :]
    ut = tl.load(u_base[:, None] + p[None, :] * s_ul, mask=m, other=0.0)
    dt = tl.load(d_base[:, None] + p[None, :] * s_dl, mask=m, other=0.0)
    zt = tl.load(z_base[:, None] + p[None, :] * s_zl, mask=m, other=0.0) if HAS_Z else ut
    return ut, dt, zt


@triton.jit
def _step_col(cols, k: tl.constexpr, rev, T: tl.constexpr, REVERSE: tl.constexpr, BIDIR: tl.constexpr):
    """Column of a chunk tile (or tuple slot) that holds scan step k of the chunk."""
    if BIDIR:
        return tl.where(rev, cols[T - 1 - k], cols[k])
    elif REVERSE:
        return cols[T - 1 - k]
    else:
        return cols[k]


@triton.jit
def _memory_tile(step_cols, rev, BLOCK_D: tl.constexpr, T: tl.constexpr, LOG_T: tl.constexpr, REVERSE: tl.constexpr,
                 BIDIR: tl.constexpr):
    """(BLOCK_D, T) tile, in memory order, of a chunk's per-step columns (step order)."""
    cols = ()
    for j in tl.static_range(T):
        cols = cols + (_step_col(step_cols, j, rev, T, REVERSE, BIDIR),)
    return tile_of(cols, BLOCK_D, T, LOG_T)


@triton.jit(do_not_specialize=["zero_stride"])
def selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, starts_ptr,
    seg_end_ptr, seg_sum_ptr, u2_ptr, delta2_ptr, B2_ptr, C2_ptr, A2_ptr, D2_ptr, bias2_ptr,
    L, dim, dim_per_group, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl, zero_stride,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, SAVE_STARTS: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr, T: tl.constexpr, LOG_T: tl.constexpr,
    BIDIR: tl.constexpr, CARRY: tl.constexpr, FOLD: tl.constexpr, STAGES: tl.constexpr, ASM: tl.constexpr,
    M1_AHEAD: tl.constexpr = False, WRITE_AT: tl.constexpr = False,
):
    # A: (dim, N) float32, contiguous (BIDIR: A, D, delta_bias of the first direction, A2, D2, bias2 of the
    # second, each (dim / 2, ...)). WRITE_AT (MODE=1): the programs of batch 0, segment 0 also write At =
    # A^T log2(e) (N, dim) float32, segment_carry's decay coefficients (no torch op for them on the host).
    # starts: (batch, n_chunks, dim // BLOCK_D, BLOCK_N, BLOCK_D);
    # seg_end: (batch, n_seg, N, dim); seg_sum: (batch, n_seg, dim); last: (batch, N, dim); all contiguous float32.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # BLOCK_D divides dim_per_group: one B/C group
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    nd = n[:, None] * dim + _channel_lanes(d, zero_stride, BLOCK_D)[None, :]  # a (N, BLOCK_D) tile of an (N, dim) plane
    nd_ok = n_ok[:, None]
    # saved starts: one (BLOCK_N, BLOCK_D) block per program, so that the N rows are constant offsets from one
    # pointer (an (N, dim) plane's runtime row stride costs a 64-bit pointer per row: 2 N registers)
    SLOT: tl.constexpr = BLOCK_N * BLOCK_D
    sn = n[:, None] * BLOCK_D + _channel_lanes(tl.arange(0, BLOCK_D), zero_stride, BLOCK_D)[None, :]
    rev, c_loc, g, u_src, d_src, B_src, C_src = _direction(pid_d, d, dim, dim_per_group, u_ptr, u2_ptr, delta_ptr,
                                                       delta2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, BLOCK_D, BIDIR)
    A_src, D_src, bias_src = _params(rev, A_ptr, A2_ptr, D_ptr, D2_ptr, bias_ptr, bias2_ptr, BIDIR)
    A2 = _a_tile(A_src, c_loc, n, n_state, BLOCK_N, BLOCK_D)
    Dv = tl.load(D_src + c_loc) if HAS_D else 0.0
    bias = tl.load(bias_src + c_loc) if HAS_BIAS else 0.0
    h = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    if MODE == 0 and CARRY:
        if FOLD:  # few segments: fold the earlier segments' ends in here (one launch fewer than segment_carry)
            for s in range(0, pid_s):
                ds = tl.load(seg_sum_ptr + (pid_b * n_seg + s) * dim + d)
                e = _ld(seg_end_ptr + (pid_b * n_seg + s) * n_state * dim + nd, nd_ok, EVEN_N)
                h = tl.exp2(ds[None, :] * A2) * h + e
        else:  # the state entering this segment, earlier segments folded in (ops/_segment_carry.py)
            h = _ld(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, nd_ok, EVEN_N)
    dsum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_src + pid_b * s_ub + c_loc * s_ud
    d_base = d_src + pid_b * s_db + c_loc * s_dd
    z_base = z_ptr + pid_b * s_zb + c_loc * s_zd
    o_base = out_ptr + pid_b * s_ob + d * s_od
    B_base = B_src + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_src + pid_b * s_Cb + g * s_Cg + n * s_Cn
    n_chunks = tl.cdiv(L, CHUNK)
    p, ok = _chunk_pos(i0, i1, L, rev, T, REVERSE, BIDIR)
    nxt = _chunk_tiles(u_base, d_base, z_base, p, ok, s_ul, s_dl, s_zl, HAS_Z)
    # STAGES > 1: Triton copies the next chunk's B/C rows to shared memory (cp.async) while this one runs.
    # AHEAD (MODE=1 with M1_AHEAD): B rows are loaded one step ahead into registers instead (no shared memory,
    # none of cp.async's per-copy branches; that pass has registers to spare).
    AHEAD: tl.constexpr = M1_AHEAD and MODE == 1
    B_nxt = _ld(B_base + _step_pos(i0, L, rev, REVERSE, BIDIR) * s_Bl, n_ok, EVEN_N).to(tl.float32) if AHEAD else n_ok
    for i in tl.range(i0, i1, T, num_stages=1 if AHEAD else STAGES):  # i0 is a multiple of T and of CHUNK
        ut, dtt, zt = nxt
        p_out, ok_out = p, ok
        p, ok = _chunk_pos(i + T, i1, L, rev, T, REVERSE, BIDIR)
        nxt = _chunk_tiles(u_base, d_base, z_base, p, ok, s_ul, s_dl, s_zl, HAS_Z)
        us = columns(ut, BLOCK_D, T, LOG_T)
        ds = columns(dtt, BLOCK_D, T, LOG_T)
        zs = columns(zt, BLOCK_D, T, LOG_T) if HAS_Z else us
        ys = ()
        for k in tl.static_range(T):
            ik = i + k
            if MODE == 0 and SAVE_STARTS and k % CHUNK == 0:  # a start every CHUNK steps (CHUNK < T: several)
                if ik % CHUNK == 0 and ik < i1:
                    _st(starts_ptr + ((pid_b * n_chunks + ik // CHUNK) * tl.num_programs(1) + pid_d) * SLOT + sn, h,
                        nd_ok, EVEN_N)
            valid = ik < i1
            t = _step_pos(ik, L, rev, REVERSE, BIDIR)
            t = tl.where(valid, t, 0)  # past the end: a harmless in-bounds position, masked below
            u = _step_col(us, k, rev, T, REVERSE, BIDIR).to(tl.float32)
            dt = _step_col(ds, k, rev, T, REVERSE, BIDIR).to(tl.float32)
            if HAS_BIAS:
                dt += bias
            if SOFTPLUS:
                dt = softplus_fast(dt, ASM)
            dt = tl.where(valid, dt, 0.0)  # delta = 0 leaves the state unchanged
            if AHEAD:
                Bt = B_nxt
                B_nxt = _ld(B_base + tl.where(ik + 1 < i1, _step_pos(ik + 1, L, rev, REVERSE, BIDIR), 0) * s_Bl,
                            n_ok, EVEN_N).to(tl.float32)
            else:
                Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
            h = tl.exp2(dt[None, :] * A2) * h + Bt[:, None] * (dt * u)[None, :]
            if MODE == 0:
                Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)
                y = tl.sum(h * Ct[:, None], axis=0)
                if HAS_D:
                    y += Dv * u
                if HAS_Z:
                    z = _step_col(zs, k, rev, T, REVERSE, BIDIR).to(tl.float32)
                    y = y * z * sigmoid_fast(z)
                ys = ys + (y.to(out_ptr.dtype.element_ty),)
            else:
                dsum += dt
        if MODE == 0:  # the chunk's outputs as one tile, in memory order
            y_tile = _memory_tile(ys, rev, BLOCK_D, T, LOG_T, REVERSE, BIDIR)
            tl.store(o_base[:, None] + p_out[None, :] * s_ol, y_tile, mask=ok_out[None, :])
    if WRITE_AT:  # (in MODE=0 at 255 registers, this store changed the loop's code: 4% more instructions)
        if (pid_b == 0) & (pid_s == 0):
            _st(At_ptr + nd, A2, nd_ok, EVEN_N)
    if MODE == 1:
        _st(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, h, nd_ok, EVEN_N)
        tl.store(seg_sum_ptr + (pid_b * n_seg + pid_s) * dim + d, dsum)
    else:
        if pid_s == n_seg - 1:
            _st(last_ptr + pid_b * n_state * dim + nd, h, nd_ok, EVEN_N)
