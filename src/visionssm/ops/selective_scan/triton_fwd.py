"""Triton forward kernel of the selective scan.

One program owns BLOCK_D channels of one batch row and walks the sequence in chunks of BLOCK_L tokens
(right to left when REVERSE). Per chunk it loads u/delta/z as (BLOCK_D, BLOCK_L) tiles and B/C as
(N, BLOCK_L) tiles, forms the (BLOCK_D, N, BLOCK_L) decays exp(delta A) and inputs delta u B in registers,
and runs Triton's associative scan along time with the carried state. The state at each chunk start is
written (float32) so the backward kernel can recompute chunk by chunk; no (batch, dim, L, N) tensor ever
reaches memory.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _linear_combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # Same threshold as torch.nn.functional.softplus (identity above 20).
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr, starts_ptr,
    L, dim, dim_per_group, n_state,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_ob, s_od, s_ol,
    s_Ad, s_An,
    s_Bb, s_Bg, s_Bn, s_Bl,
    s_Cb, s_Cg, s_Cn, s_Cl,
    s_sb, s_sd, s_sc, s_sn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    REVERSE: tl.constexpr, SAVE_STARTS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # channels; BLOCK_D divides dim_per_group
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    g = (pid_d * BLOCK_D) // dim_per_group
    A = tl.load(A_ptr + d[:, None] * s_Ad + n[None, :] * s_An, mask=n_ok[None, :], other=0.0).to(tl.float32)
    A2 = A * LOG2E  # exp(x) = exp2(x * log2 e)
    if HAS_D:
        Dv = tl.load(D_ptr + d).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d).to(tl.float32)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    n_chunks = tl.cdiv(L, BLOCK_L)
    lane = tl.arange(0, BLOCK_L)
    for c in range(n_chunks):
        if SAVE_STARTS:
            tl.store(starts_ptr + pid_b * s_sb + d[:, None] * s_sd + c * s_sc + n[None, :] * s_sn, h,
                     mask=n_ok[None, :])
        if REVERSE:
            t = L - (c + 1) * BLOCK_L + lane
        else:
            t = c * BLOCK_L + lane
        t_ok = (t >= 0) & (t < L)
        m2 = t_ok[None, :]
        u = tl.load(u_ptr + pid_b * s_ub + d[:, None] * s_ud + t[None, :] * s_ul, mask=m2, other=0.0).to(tl.float32)
        dt = tl.load(delta_ptr + pid_b * s_db + d[:, None] * s_dd + t[None, :] * s_dl, mask=m2, other=0.0)
        dt = dt.to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt)
        mn = n_ok[:, None] & t_ok[None, :]
        Bv = tl.load(B_ptr + pid_b * s_Bb + g * s_Bg + n[:, None] * s_Bn + t[None, :] * s_Bl, mask=mn, other=0.0)
        Cv = tl.load(C_ptr + pid_b * s_Cb + g * s_Cg + n[:, None] * s_Cn + t[None, :] * s_Cl, mask=mn, other=0.0)
        Bv = Bv.to(tl.float32)
        Cv = Cv.to(tl.float32)
        decay = tl.exp2(dt[:, None, :] * A2[:, :, None])
        decay = tl.where(t_ok[None, None, :], decay, 1.0)  # padding steps are the identity
        inp = (dt * u)[:, None, :] * Bv[None, :, :]
        acc_a, acc_b = tl.associative_scan((decay, inp), axis=2, combine_fn=_linear_combine, reverse=REVERSE)
        states = acc_b + acc_a * h[:, :, None]
        y = tl.sum(states * Cv[None, :, :], axis=1)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + pid_b * s_zb + d[:, None] * s_zd + t[None, :] * s_zl, mask=m2, other=0.0)
            z = z.to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + pid_b * s_ob + d[:, None] * s_od + t[None, :] * s_ol,
                 y.to(out_ptr.dtype.element_ty), mask=m2)
        if REVERSE:
            h = tl.sum(tl.where((lane == 0)[None, None, :], states, 0.0), axis=2)
        else:
            h = tl.sum(tl.where((lane == BLOCK_L - 1)[None, None, :], states, 0.0), axis=2)
    tl.store(last_ptr + (pid_b * dim + d[:, None]) * n_state + n[None, :], h, mask=n_ok[None, :])
