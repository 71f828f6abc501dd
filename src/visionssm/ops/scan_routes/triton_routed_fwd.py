"""Triton forward kernel of the routed selective scan.

Same design as our plain scan kernel (ops/selective_scan/triton_fwd.py): each program owns BLOCK_D channels
x N states of one batch row and one route, keeps the state in registers and walks its segment of the route
one step at a time. The difference: step i of route k touches map position p = index[k, i] (an int32 read
per step); u, delta, B and C are read at p and the output is written at p of the route's map-order output
row. No permuted copy of the map is ever made. Channel d of the K*C channels belongs to route d // C;
BLOCK_D divides C, so a program never straddles two routes.

Outputs go to map position p, or to column i of a route-order output when OUT_AT_STEP.
Map-order output writes: plain stores when every route visits each position at most once (ACCUM=False), else
atomic adds into a zeroed float32 buffer (a route that visits a position more than once, e.g. MSVMamba's
concatenated low-resolution route, whose visits may also fall in different segments = programs).

Segments (long routes, few programs): MODE=1 computes each segment's end state from a zero start plus its
summed deltas; MODE=0 folds the earlier segments in and writes outputs, saving the state at every CHUNK-th
step (float32) for the backward pass.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _softplus(x):
    # Same threshold as torch.nn.functional.softplus (identity above 20).
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def routed_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, idx_ptr, out_ptr, starts_ptr, seg_end_ptr, seg_sum_ptr,
    Lr, ch, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    U_SHARED: tl.constexpr, ACCUM: tl.constexpr, OUT_AT_STEP: tl.constexpr, SAVE_STARTS: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # idx: (K, Lr) int32 contiguous; starts: (batch, K*ch, n_chunks, N); seg_end: (batch, K*ch, n_seg, N);
    # seg_sum: (batch, K*ch, n_seg); all contiguous float32.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    dim = tl.num_programs(1) * BLOCK_D
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    k = (pid_d * BLOCK_D) // ch  # this program's route
    A2 = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=n_ok[None, :], other=0.0) * LOG2E
    if HAS_D:
        Dv = tl.load(D_ptr + d)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d)
    row = pid_b * dim + d
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    if MODE == 0:
        for j in range(0, pid_s):  # fold in the earlier segments: h <- exp(A sum delta_j) h + end_j
            s = tl.load(seg_sum_ptr + row * n_seg + j)
            e = tl.load(seg_end_ptr + (row[:, None] * n_seg + j) * n_state + n[None, :], mask=n_ok[None, :])
            h = tl.exp2(s[:, None] * A2) * h + e
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
    for i in range(i0, i1):
        if MODE == 0 and SAVE_STARTS:
            if i % CHUNK == 0:
                tl.store(starts_ptr + (row[:, None] * tl.cdiv(Lr, CHUNK) + i // CHUNK) * n_state + n[None, :], h,
                         mask=n_ok[None, :])
        p = tl.load(idx_base + i)
        u = tl.load(u_base + p * s_ul).to(tl.float32)
        dt = tl.load(d_base + p * s_dl).to(tl.float32)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:
            dt = _softplus(dt)
        Bt = tl.load(B_base + p * s_Bl, mask=n_ok, other=0.0).to(tl.float32)
        h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt[None, :]
        if MODE == 0:
            Ct = tl.load(C_base + p * s_Cl, mask=n_ok, other=0.0).to(tl.float32)
            y = tl.sum(h * Ct[None, :], axis=1)
            if HAS_D:
                y += Dv * u
            if OUT_AT_STEP:
                o_ptr = o_base + i * s_ol
            else:
                o_ptr = o_base + p * s_ol
            if ACCUM:
                tl.atomic_add(o_ptr, y, sem="relaxed")
            else:
                tl.store(o_ptr, y.to(out_ptr.dtype.element_ty))
        else:
            dsum += dt
    if MODE == 1:
        tl.store(seg_end_ptr + (row[:, None] * n_seg + pid_s) * n_state + n[None, :], h, mask=n_ok[None, :])
        tl.store(seg_sum_ptr + row * n_seg + pid_s, dsum)
