"""Triton forward kernel of the selective scan.

Each program owns BLOCK_D channels of one batch row and steps through its time segment one token at a
time (t = L-1 ... 0 when REVERSE). The state is a (N, BLOCK_D) register tile laid out with one channel per
thread and all N states of that channel in the thread's registers (A is passed transposed, (N, dim), so
the compiler lays the tile out along channels): the sum over N for y is a few in-thread FMAs, and the
per-channel work (softplus, D skip, gate) is done once per channel, not once per (channel, state) lane.
Each step's token values are loaded one step ahead so the load latency hides behind the current step.

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
def _token(u_base, d_base, z_base, B_base, C_base, t, s_ul, s_dl, s_zl, s_Bl, s_Cl, n_ok, bias,
           EVEN_N: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
           LOAD_C: tl.constexpr):
    """One token's inputs, as float32: u, delta (biased, softplus'd), z, B_t, C_t."""
    u = tl.load(u_base + t * s_ul).to(tl.float32)
    dt = tl.load(d_base + t * s_dl).to(tl.float32)
    if HAS_BIAS:
        dt += bias
    if SOFTPLUS:
        dt = _softplus(dt)
    if HAS_Z:
        z = tl.load(z_base + t * s_zl).to(tl.float32)
    else:
        z = u
    Bt = _ld(B_base + t * s_Bl, n_ok, EVEN_N).to(tl.float32)
    if LOAD_C:
        Ct = _ld(C_base + t * s_Cl, n_ok, EVEN_N).to(tl.float32)
    else:
        Ct = Bt
    return u, dt, z, Bt, Ct


@triton.jit
def selective_scan_fwd_kernel(
    u_ptr, delta_ptr, At_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, starts_ptr,
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
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_N: tl.constexpr,
):
    # At: (N, dim) float32 = A^T * log2(e).  starts: (batch, n_chunks, N, dim); seg_end: (batch, n_seg, N, dim);
    # seg_sum: (batch, n_seg, dim); last: (batch, dim, N); all contiguous float32.
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_s = tl.program_id(2)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # BLOCK_D divides dim_per_group: one B/C group
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    # Claim no contiguity along d so the compiler keeps one channel per thread (a vectorised (N, 4-channel)
    # layout would split N across lanes and shuffle every step).
    nd = n[:, None] * dim + tl.max_contiguous(d, 1)[None, :]  # offsets of a (N, BLOCK_D) tile in an (N, dim) plane
    nd_ok = n_ok[:, None]
    g = (pid_d * BLOCK_D) // dim_per_group
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
    i1 = tl.minimum(i0 + seg_len, L)
    u_base = u_ptr + pid_b * s_ub + d * s_ud
    d_base = delta_ptr + pid_b * s_db + d * s_dd
    z_base = z_ptr + pid_b * s_zb + d * s_zd
    o_base = out_ptr + pid_b * s_ob + d * s_od
    B_base = B_ptr + pid_b * s_Bb + g * s_Bg + n * s_Bn
    C_base = C_ptr + pid_b * s_Cb + g * s_Cg + n * s_Cn
    n_chunks = tl.cdiv(L, CHUNK)
    t = L - 1 - i0 if REVERSE else i0
    nxt = _token(u_base, d_base, z_base, B_base, C_base, t, s_ul, s_dl, s_zl, s_Bl, s_Cl, n_ok, bias,
                 EVEN_N, HAS_Z, HAS_BIAS, SOFTPLUS, MODE == 0)
    for i in range(i0, i1):
        u, dt, z, Bt, Ct = nxt
        t = L - 1 - i if REVERSE else i
        # Prefetch the next token (clamped to the segment; the last step reloads its own token).
        i_n = tl.minimum(i + 1, i1 - 1)
        t_n = L - 1 - i_n if REVERSE else i_n
        nxt = _token(u_base, d_base, z_base, B_base, C_base, t_n, s_ul, s_dl, s_zl, s_Bl, s_Cl, n_ok, bias,
                     EVEN_N, HAS_Z, HAS_BIAS, SOFTPLUS, MODE == 0)
        if MODE == 0 and SAVE_STARTS:
            if i % CHUNK == 0:
                _st(starts_ptr + (pid_b * n_chunks + i // CHUNK) * n_state * dim + nd, h, nd_ok, EVEN_N)
        h = tl.exp2(dt[None, :] * A2) * h + Bt[:, None] * (dt * u)[None, :]
        if MODE == 0:
            y = tl.sum(h * Ct[:, None], axis=0)
            if HAS_D:
                y += Dv * u
            if HAS_Z:
                y = y * z * tl.sigmoid(z)
            tl.store(o_base + t * s_ol, y.to(out_ptr.dtype.element_ty))
        else:
            dsum += dt
    if MODE == 1:
        _st(seg_end_ptr + (pid_b * n_seg + pid_s) * n_state * dim + nd, h, nd_ok, EVEN_N)
        tl.store(seg_sum_ptr + (pid_b * n_seg + pid_s) * dim + d, dsum)
    else:
        if pid_s == n_seg - 1:
            _st(last_ptr + (pid_b * dim + d[None, :]) * n_state + n[:, None], h, nd_ok, EVEN_N)
