"""Triton forward kernel of the routed selective scan.

Same design as our plain scan kernel (ops/selective_scan/triton_fwd.py): each program owns BLOCK_D channels
of one batch row and one route and walks its segment of the route one step at a time. The state is an
(N, BLOCK_D) register tile with one channel per thread and its N states in that thread's registers (A is
passed transposed, (N, dim)); steps run in unrolled chunks of T whose token values are loaded a chunk ahead.

The difference: step i of route k touches map position p = index[k, i] (an int32 read per step, prefetched
with the chunk); u, delta, B and C are read at p, and the output is written at p of the route's map-order
output row (or at column i of a route-order output, OUT_AT_STEP). No permuted copy of the map is made.
Channel d of the K*C channels belongs to route d // C; BLOCK_D divides C, so a program has one route.

Map-order output writes: plain stores when every route visits each position at most once (ACCUM=False),
else atomic adds into a zeroed float32 buffer (a route that visits a position more than once, e.g.
MSVMamba's concatenated low-resolution route, whose visits may also fall in different segments = programs).

Segments (long routes, few programs): MODE=1 computes each segment's end state from a zero start plus its
summed deltas; MODE=0 folds the earlier segments in and writes outputs, saving the state at every CHUNK-th
step (float32) for the backward pass.
"""

from __future__ import annotations

import triton
import triton.language as tl

# The plain scan's helpers (softplus with torch's threshold, loads/stores masked only for odd N).
from ..selective_scan.triton_fwd import LOG2E, _ld, _softplus, _st  # noqa: F401  (LOG2E, _softplus re-exported)


@triton.jit
def _chunk_tokens(idx_base, u_base, d_base, i, i1, s_ul, s_dl, T: tl.constexpr):
    """Map positions and raw u/delta of route steps i .. i+T-1 (clamped to the segment end i1).

    Loaded a whole chunk ahead of use: the loop is latency-bound (one dependent step after another), and T
    independent loads in flight hide a memory round trip behind T steps of work.
    """
    ps = ()
    us = ()
    ds = ()
    for k in tl.static_range(T):
        p = tl.load(idx_base + tl.minimum(i + k, i1 - 1))
        ps = ps + (p,)
        us = us + (tl.load(u_base + p * s_ul),)
        ds = ds + (tl.load(d_base + p * s_dl),)
    return ps, us, ds


@triton.jit
def routed_scan_fwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, idx_ptr, out_ptr, starts_ptr, seg_end_ptr, seg_sum_ptr,
    Lr, ch, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    U_SHARED: tl.constexpr, ACCUM: tl.constexpr, OUT_AT_STEP: tl.constexpr, SAVE_STARTS: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr, T: tl.constexpr,
):
    # At: (N, K*ch) float32 = A^T * log2(e); idx: (K, Lr) int32; starts: (batch, n_chunks, N, K*ch);
    # seg_end: (batch, n_seg, N, K*ch); seg_sum: (batch, n_seg, K*ch); all contiguous.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    dim = tl.num_programs(1) * BLOCK_D
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    # No contiguity claimed along d, so the compiler keeps one channel per thread (see the plain kernel).
    nd = n[:, None] * dim + tl.max_contiguous(d, 1)[None, :]
    nd_ok = n_ok[:, None]
    k = (pid_d * BLOCK_D) // ch  # this program's route
    A2 = _ld(At_ptr + nd, nd_ok, EVEN_N)
    Dv = tl.load(D_ptr + d) if HAS_D else 0.0
    bias = tl.load(bias_ptr + d) if HAS_BIAS else 0.0
    h = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    if MODE == 0:
        for j in range(0, pid_s):  # fold in the earlier segments: h <- exp(A sum delta_j) h + end_j
            s = tl.load(seg_sum_ptr + (pid_b * n_seg + j) * dim + d)
            e = _ld(seg_end_ptr + (pid_b * n_seg + j) * n_state * dim + nd, nd_ok, EVEN_N)
            h = tl.exp2(s[None, :] * A2) * h + e
    dsum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, Lr)
    if U_SHARED:
        u_base = u_ptr + pid_b * s_ub + (d - k * ch) * s_ud
    else:
        u_base = u_ptr + pid_b * s_ub + d * s_ud
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    o_base = out_ptr + pid_b * s_ob + d * s_od
    B_base = B_ptr + pid_b * s_Bb + k * s_Bg + n * s_Bn
    C_base = C_ptr + pid_b * s_Cb + k * s_Cg + n * s_Cn
    idx_base = idx_ptr + k * Lr
    n_chunks = tl.cdiv(Lr, CHUNK)
    nxt = _chunk_tokens(idx_base, u_base, d_base, i0, i1, s_ul, s_dl, T)
    for i in range(i0, i1, T):  # i0 and CHUNK are multiples of T
        ps, us, ds = nxt
        nxt = _chunk_tokens(idx_base, u_base, d_base, i + T, i1, s_ul, s_dl, T)
        if MODE == 0 and SAVE_STARTS:
            if i % CHUNK == 0:
                _st(starts_ptr + (pid_b * n_chunks + i // CHUNK) * n_state * dim + nd, h, nd_ok, EVEN_N)
        for kk in tl.static_range(T):
            ik = i + kk
            valid = ik < i1
            p = ps[kk]  # past the end: the segment's last position (in bounds), masked below
            u = us[kk].to(tl.float32)
            dt = ds[kk].to(tl.float32)
            if HAS_BIAS:
                dt += bias
            if SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(valid, dt, 0.0)  # delta = 0 leaves the state unchanged
            Bt = _ld(B_base + p * s_Bl, n_ok, EVEN_N).to(tl.float32)
            h = tl.exp2(dt[None, :] * A2) * h + Bt[:, None] * (dt * u)[None, :]
            if MODE == 0:
                Ct = _ld(C_base + p * s_Cl, n_ok, EVEN_N).to(tl.float32)
                y = tl.sum(h * Ct[:, None], axis=0)
                if HAS_D:
                    y += Dv * u
                if OUT_AT_STEP:
                    o_ptr = o_base + ik * s_ol
                else:
                    o_ptr = o_base + p * s_ol
                ok = (d * 0 + ik) < i1
                if ACCUM:
                    tl.atomic_add(o_ptr, y, mask=ok, sem="relaxed")
                else:
                    tl.store(o_ptr, y.to(out_ptr.dtype.element_ty), mask=ok)
            else:
                dsum += dt
    if MODE == 1:
        _st(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, h, nd_ok, EVEN_N)
        tl.store(seg_sum_ptr + (pid_b * n_seg + pid_s) * dim + d, dsum)
