"""Triton forward kernel of the selective scan.

Each program owns BLOCK_D channels x N states of one batch row, keeps the state in registers and steps
through its time segment one token at a time (t = L-1 ... 0 when REVERSE). A token's u/delta/z/B/C are a
few scalars per channel; the cache lines they sit in are reused by the next 31-63 steps, so the loop runs
from L1 while thousands of independent programs hide each step's latency. No scan tree, no shared memory.

Long sequences are cut into segments so that enough programs exist (``n_seg`` > 1). Then the kernel runs
twice: MODE=1 computes each segment's end state from a zero start plus the sum of its deltas (the
segment's total decay is exp(A * sum delta)); MODE=0 folds the earlier segments' results into its start
state and writes outputs. The state at every CHUNK-th step is saved (float32) for the backward pass.
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
def selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, starts_ptr,
    seg_end_ptr, seg_sum_ptr,
    L, dim, dim_per_group, n_state, seg_len, n_seg,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    MODE: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, SAVE_STARTS: tl.constexpr, CHUNK: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # starts: (batch, dim, n_chunks, N); seg_end: (batch, dim, n_seg, N); seg_sum: (batch, dim, n_seg);
    # last: (batch, dim, N); all contiguous float32.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # BLOCK_D divides dim_per_group: one B/C group
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    g = (pid_d * BLOCK_D) // dim_per_group
    A2 = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=n_ok[None, :], other=0.0) * LOG2E
    if HAS_D:
        Dv = tl.load(D_ptr + d)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d)
    row = pid_b * dim + d  # (BLOCK_D,) row index into (batch, dim, ...) buffers
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    if MODE == 0:
        for j in range(0, pid_s):  # fold in the earlier segments: h <- exp(A sum delta_j) h + end_j
            s = tl.load(seg_sum_ptr + row * n_seg + j)
            e = tl.load(seg_end_ptr + (row[:, None] * n_seg + j) * n_state + n[None, :], mask=n_ok[None, :])
            h = tl.exp2(s[:, None] * A2) * h + e
    dsum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    i0 = pid_s * seg_len
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_ptr + pid_b * s_ub + d * s_ud
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    z_base = z_ptr + pid_b * s_zb + d * s_zd
    o_base = out_ptr + pid_b * s_ob + d * s_od
    B_base = B_ptr + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_ptr + pid_b * s_Cb + g * s_Cg + n * s_Cn
    for i in range(i0, i1):
        if REVERSE:
            t = L - 1 - i
        else:
            t = i
        if MODE == 0 and SAVE_STARTS:
            if i % CHUNK == 0:
                tl.store(starts_ptr + (row[:, None] * tl.cdiv(L, CHUNK) + i // CHUNK) * n_state + n[None, :], h,
                         mask=n_ok[None, :])
        u = tl.load(u_base + t * s_ul).to(tl.float32)
        dt = tl.load(d_base + t * s_dl).to(tl.float32)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:
            dt = _softplus(dt)
        Bt = tl.load(B_base + t * s_Bl, mask=n_ok, other=0.0).to(tl.float32)
        h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt[None, :]
        if MODE == 0:
            Ct = tl.load(C_base + t * s_Cl, mask=n_ok, other=0.0).to(tl.float32)
            y = tl.sum(h * Ct[None, :], axis=1)
            if HAS_D:
                y += Dv * u
            if HAS_Z:
                z = tl.load(z_base + t * s_zl).to(tl.float32)
                y = y * z * tl.sigmoid(z)
            tl.store(o_base + t * s_ol, y.to(out_ptr.dtype.element_ty))
        else:
            dsum += dt
    if MODE == 1:
        tl.store(seg_end_ptr + (row[:, None] * n_seg + pid_s) * n_state + n[None, :], h, mask=n_ok[None, :])
        tl.store(seg_sum_ptr + row * n_seg + pid_s, dsum)
    else:
        if pid_s == n_seg - 1:
            tl.store(last_ptr + row[:, None] * n_state + n[None, :], h, mask=n_ok[None, :])
