"""Triton forward kernel of the causal SSD: the whole chunk pipeline in one launch.

mamba_ssm runs five kernels (chunk cumsum, chunk states, state passing, C B^T, chunk scan) and is launch-bound at
vision sizes. Here one program owns one (batch, head) and walks its chunks in order, keeping the (headdim, N) state
in registers. Per chunk of Q tokens: cumsum of the log-decays, C B^T (Q, Q) masked by the decays and scaled by dt,
times x; plus the entering state read through C; plus D x and the silu(z) gate; then the state moves on by
exp(total decay) and the chunk's own (x dt decay-to-end)^T B. Five tensor-core dots per chunk, nothing else
goes through memory.

Programs may also split headdim into blocks (the state's rows are independent; each block recomputes the
chunk's C B^T and decays): half the registers per program at headdim 64, so more programs fit on an SM.

Long sequences with few (batch, head) rows are cut into ``n_seg`` segments of whole chunks. Then the kernel runs
twice: MODE=1 gives each segment's end state from a zero start and its total log-decay; ops/_segment_carry.py
turns those into the state entering every segment (h0 included); MODE=0 (CARRY) starts from it, then writes
outputs (and, for the backward pass, the state entering every chunk). With few segments (FOLD) MODE=0 folds the
earlier segments' ends in itself instead: a few L2-resident loads per program against one more launch.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._softplus import softplus as _softplus


@triton.jit
def ssd_causal_fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr,
    y_ptr, last_ptr, states_ptr, seg_end_ptr, seg_sum_ptr,
    L, heads, rep, headdim, nstate, n_chunks, seg_chunks, n_seg,
    s_xb, s_xl, s_xh, s_xp,
    s_tb, s_tl, s_th,
    s_Bb, s_Bl, s_Bg, s_Bn,
    s_Cb, s_Cl, s_Cg, s_Cn,
    s_zb, s_zl, s_zh, s_zp,
    s_yb, s_yl, s_yh, s_yp,
    MODE: tl.constexpr, HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr, SAVE_STATES: tl.constexpr,
    CARRY: tl.constexpr, FOLD: tl.constexpr, CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # Float32 buffers, contiguous: h0, last (batch*heads, P, N); seg_end (batch*heads, n_seg, P, N);
    # seg_sum (batch*heads, n_seg). states (batch*heads, n_chunks, P, N) in x's dtype: the readout's dot already
    # rounds the state to it, and it halves the largest saved tensor for 16-bit inputs.
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_p = tl.program_id(2)  # headdim block: rows of the state are independent (B, C, decays are shared)
    b = pid_bh // heads
    h = pid_bh % heads
    g = h // rep
    DT = x_ptr.dtype.element_ty
    q = tl.arange(0, CHUNK)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok = p < headdim
    n_ok = n < nstate
    pn = p[:, None] * nstate + n[None, :]
    pn_ok = p_ok[:, None] & n_ok[None, :]
    PN = headdim * nstate
    A = tl.load(A_ptr + h)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + h)
    if HAS_D:
        if D_PER_CHANNEL:
            Dv = tl.load(D_ptr + h * headdim + p, mask=p_ok, other=0.0)
        else:
            Dv = tl.load(D_ptr + h)
    state = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if MODE == 0:
        if CARRY and not FOLD:  # the state entering this segment, h0 and earlier segments folded in (segment_carry)
            state = tl.load(seg_end_ptr + (pid_bh * n_seg + pid_s) * PN + pn, mask=pn_ok, other=0.0)
        elif HAS_H0:
            state = tl.load(h0_ptr + pid_bh * PN + pn, mask=pn_ok, other=0.0)
        if CARRY and FOLD:  # few segments: fold the earlier ones here, one launch fewer than segment_carry
            for s in range(0, pid_s):
                tot = tl.load(seg_sum_ptr + pid_bh * n_seg + s)
                end = tl.load(seg_end_ptr + (pid_bh * n_seg + s) * PN + pn, mask=pn_ok, other=0.0)
                state = tl.exp(tot) * state + end
    total = tl.sum(tl.zeros((CHUNK,), dtype=tl.float32), 0)
    x_base = x_ptr + b * s_xb + h * s_xh
    t_base = dt_ptr + b * s_tb + h * s_th
    B_base = B_ptr + b * s_Bb + g * s_Bg
    C_base = C_ptr + b * s_Cb + g * s_Cg
    causal = q[:, None] >= q[None, :]
    c0 = pid_s * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    for c in range(c0, c1):
        t = c * CHUNK + q
        t_ok = t < L
        dt = tl.load(t_base + t * s_tl, mask=t_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:
            dt = _softplus(dt)
        dt = tl.where(t_ok, dt, 0.0)  # padded tokens: no decay, no input
        a = dt * A
        cs = tl.cumsum(a, 0)
        cs_last = tl.sum(a, 0)
        tp_ok = t_ok[:, None] & p_ok[None, :]
        tn_ok = t_ok[:, None] & n_ok[None, :]
        x = tl.load(x_base + t[:, None] * s_xl + p[None, :] * s_xp, mask=tp_ok, other=0.0)
        Bm = tl.load(B_base + t[:, None] * s_Bl + n[None, :] * s_Bn, mask=tn_ok, other=0.0)
        if MODE == 0:
            if SAVE_STATES:
                tl.store(states_ptr + (pid_bh * n_chunks + c) * PN + pn, state.to(states_ptr.dtype.element_ty),
                         mask=pn_ok)
            Cm = tl.load(C_base + t[:, None] * s_Cl + n[None, :] * s_Cn, mask=tn_ok, other=0.0)
            CB = tl.dot(Cm, tl.trans(Bm), input_precision=PRECISION)
            decay = tl.exp(tl.where(causal, cs[:, None] - cs[None, :], float("-inf")))
            M = CB * decay * dt[None, :]
            y = tl.dot(M.to(DT), x, input_precision=PRECISION)
            y += tl.exp(cs)[:, None] * tl.dot(Cm, tl.trans(state.to(DT)), input_precision=PRECISION)
            if HAS_D:
                if D_PER_CHANNEL:
                    y += Dv[None, :] * x.to(tl.float32)
                else:
                    y += Dv * x.to(tl.float32)
            if HAS_Z:
                zt = tl.load(z_ptr + b * s_zb + h * s_zh + t[:, None] * s_zl + p[None, :] * s_zp, mask=tp_ok,
                             other=0.0).to(tl.float32)
                y = y * zt * tl.sigmoid(zt)
            tl.store(y_ptr + b * s_yb + h * s_yh + t[:, None] * s_yl + p[None, :] * s_yp,
                     y.to(y_ptr.dtype.element_ty), mask=tp_ok)
        else:
            total += cs_last
        w = tl.exp(cs_last - cs) * dt
        xw = (x.to(tl.float32) * w[:, None]).to(DT)
        state = tl.exp(cs_last) * state + tl.dot(tl.trans(xw), Bm, input_precision=PRECISION)
    if MODE == 1:
        tl.store(seg_end_ptr + (pid_bh * n_seg + pid_s) * PN + pn, state, mask=pn_ok)
        if pid_p == 0:
            tl.store(seg_sum_ptr + pid_bh * n_seg + pid_s, total)
    else:
        if pid_s == n_seg - 1:
            tl.store(last_ptr + pid_bh * PN + pn, state, mask=pn_ok)
