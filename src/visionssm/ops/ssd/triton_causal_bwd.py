"""Triton backward kernel of the causal SSD, one launch (two for long sequences), mirror of the forward.

One program owns one (batch, head) and walks its chunks right to left carrying dS, the gradient of the state
leaving the chunk. Per chunk it reloads the state entering the chunk (saved by the forward) and forms, with
tensor-core dots: dx, d(dt), dB and dC of the intra-chunk quadratic form, of the entering-state readout and of the
chunk's contribution to the leaving state; the log-decay gradients become d(dt) and dA through a reverse cumsum.
dS moves left as exp(total decay) dS + (exp(cs) dy)^T C. dB and dC are written in float32, added atomically when
several heads share a group; dA, dD and d(dt_bias) are reduced in registers and added atomically.
Segments work as in the forward: MODE=1 gives each segment's dS at its start from a zero dS at its end.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._softplus import softplus as _softplus


@triton.jit
def _dot(a, b, DT: tl.constexpr, PRECISION: tl.constexpr):
    return tl.dot(a.to(DT), b.to(DT), input_precision=PRECISION)


@triton.jit
def ssd_causal_bwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr, states_ptr,
    seg_dend_ptr, seg_sum_ptr,
    dx_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr, dh0_ptr,
    L, heads, rep, headdim, nstate, n_chunks, seg_chunks, n_seg,
    s_xb, s_xl, s_xh, s_xp,
    s_tb, s_tl, s_th,
    s_Bb, s_Bl, s_Bg, s_Bn,
    s_Cb, s_Cl, s_Cg, s_Cn,
    s_zb, s_zl, s_zh, s_zp,
    s_ob, s_ol, s_oh, s_op,
    MODE: tl.constexpr, HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr, HAS_DLAST: tl.constexpr,
    CARRY: tl.constexpr, CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
    SPLIT_P: tl.constexpr,
):
    # dx, dz (batch, L, heads, P) and ddt (batch, L, heads) contiguous; dB, dC: (batch, L, groups, N) float32,
    # zero-filled when several heads share a group;
    # dlast, dh0, seg_dend, seg_sum: float32; states as saved by the forward (x's dtype).
    # SPLIT_P: programs own headdim blocks (program axis 2); every gradient that sums over headdim (d(dt), dB,
    # dC, and through them dA and d(dt_bias)) is linear in the blocks' shares, which are added atomically:
    # ddt is then a zero-filled float32 buffer, as dB and dC are.
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_p = tl.program_id(2)
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
    dS = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if MODE == 0:
        if CARRY:  # the adjoint entering this segment from the right, dlast and later segments folded in
            dS = tl.load(seg_dend_ptr + (pid_bh * n_seg + pid_s) * PN + pn, mask=pn_ok, other=0.0)
        elif HAS_DLAST:
            dS = tl.load(dlast_ptr + pid_bh * PN + pn, mask=pn_ok, other=0.0)
    zero = tl.sum(tl.zeros((CHUNK,), dtype=tl.float32), 0)
    total = zero
    dA_acc = zero
    dbias_acc = zero
    dD_acc = tl.zeros((BLOCK_P,), dtype=tl.float32)
    x_base = x_ptr + b * s_xb + h * s_xh
    t_base = dt_ptr + b * s_tb + h * s_th
    B_base = B_ptr + b * s_Bb + g * s_Bg
    C_base = C_ptr + b * s_Cb + g * s_Cg
    z_base = z_ptr + b * s_zb + h * s_zh
    o_base = dout_ptr + b * s_ob + h * s_oh
    causal = q[:, None] >= q[None, :]
    c0 = pid_s * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    for i in range(0, c1 - c0):
        c = c1 - 1 - i
        t = c * CHUNK + q
        t_ok = t < L
        tp_ok = t_ok[:, None] & p_ok[None, :]
        tn_ok = t_ok[:, None] & n_ok[None, :]
        raw = tl.load(t_base + t * s_tl, mask=t_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            raw += bias
        dt = raw
        if SOFTPLUS:
            dt = _softplus(raw)
        dt = tl.where(t_ok, dt, 0.0)
        a = dt * A
        cs = tl.cumsum(a, 0)
        cs_last = tl.sum(a, 0)
        ecs = tl.exp(cs)
        Cm = tl.load(C_base + t[:, None] * s_Cl + n[None, :] * s_Cn, mask=tn_ok, other=0.0)
        dy = tl.load(o_base + t[:, None] * s_ol + p[None, :] * s_op, mask=tp_ok, other=0.0).to(tl.float32)
        if HAS_Z:
            zt = tl.load(z_base + t[:, None] * s_zl + p[None, :] * s_zp, mask=tp_ok, other=0.0).to(tl.float32)
            sig = tl.sigmoid(zt)
            dout = dy
            dy = dout * zt * sig
        if MODE == 1:
            total += cs_last
            dS = tl.exp(cs_last) * dS + _dot(tl.trans(dy * ecs[:, None]), Cm, DT, PRECISION)
        else:
            # Stages ordered so that each tile dies soon after it is made (register pressure).
            x = tl.load(x_base + t[:, None] * s_xl + p[None, :] * s_xp, mask=tp_ok, other=0.0)
            xf = x.to(tl.float32)
            Bm = tl.load(B_base + t[:, None] * s_Bl + n[None, :] * s_Bn, mask=tn_ok, other=0.0)
            S_in = tl.load(states_ptr + (pid_bh * n_chunks + c) * PN + pn, mask=pn_ok, other=0.0).to(tl.float32)
            # 1. Share in the leaving state S_out = exp(cs_last) S_in + sum_j exp(cs_last - cs_j) dt_j x_j B_j^T.
            wdt = tl.exp(cs_last - cs) * dt
            U = _dot(Bm, tl.trans(dS), DT, PRECISION)  # (Q, P)
            xU = tl.sum(xf * U, 1)
            dx = wdt[:, None] * U
            dB = wdt[:, None] * _dot(x, dS, DT, PRECISION)
            v = wdt * xU
            ddt = tl.exp(cs_last - cs) * xU
            dcs = -v
            dcs_last = tl.sum(v, 0) + tl.exp(cs_last) * tl.sum(tl.sum(dS * S_in, 1), 0)
            # 2. Entering state read through C; dS moves to the chunk start.
            y_off = ecs[:, None] * _dot(Cm, tl.trans(S_in), DT, PRECISION)
            dcs += tl.sum(dy * y_off, 1)
            dC = ecs[:, None] * _dot(dy, S_in, DT, PRECISION)
            dS = tl.exp(cs_last) * dS + _dot(tl.trans(dy * ecs[:, None]), Cm, DT, PRECISION)
            # 3. Intra-chunk quadratic form y = Mw x with Mw = (C B^T) o decay o dt_j.
            decay = tl.exp(tl.where(causal, cs[:, None] - cs[None, :], float("-inf")))
            dMw = tl.where(causal, _dot(dy, tl.trans(x), DT, PRECISION), 0.0)
            dCB = dMw * decay * dt[None, :]
            dC += _dot(dCB, Bm, DT, PRECISION)
            dB += _dot(tl.trans(dCB), Cm, DT, PRECISION)
            K = tl.dot(Cm, tl.trans(Bm), input_precision=PRECISION) * decay
            G = dMw * K
            ddt += tl.sum(G, 0)
            E = G * dt[None, :]  # = dMw o Mw: gradient of the decay exponents cs_i - cs_j
            dcs += tl.sum(E, 1) - tl.sum(E, 0)
            Mw = K * dt[None, :]
            dx += _dot(tl.trans(Mw), dy, DT, PRECISION)
            if HAS_Z:
                y_pre = _dot(Mw, x, DT, PRECISION) + y_off
                if HAS_D:
                    if D_PER_CHANNEL:
                        y_pre += Dv[None, :] * xf
                    else:
                        y_pre += Dv * xf
                dz = dout * sig * (1.0 + zt * (1.0 - sig)) * y_pre
                tl.store(dz_ptr + ((b * L + t[:, None]) * heads + h) * headdim + p[None, :],
                         dz.to(dz_ptr.dtype.element_ty), mask=tp_ok)
            # Log-decay a_k feeds cs_i for all i >= k (and cs_last).
            da = tl.cumsum(dcs, 0, reverse=True) + dcs_last
            da = tl.where(t_ok, da, 0.0)
            ddt += A * da
            dA_acc += tl.sum(dt * da, 0)
            if HAS_D:
                if D_PER_CHANNEL:
                    dx += Dv[None, :] * dy
                else:
                    dx += Dv * dy
                dD_acc += tl.sum(dy * xf, 0)
            if SOFTPLUS:
                ddt = ddt * tl.where(raw > 20.0, 1.0, tl.sigmoid(raw))
            ddt = tl.where(t_ok, ddt, 0.0)
            dbias_acc += tl.sum(ddt, 0)
            tl.store(dx_ptr + ((b * L + t[:, None]) * heads + h) * headdim + p[None, :],
                     dx.to(dx_ptr.dtype.element_ty), mask=tp_ok)
            if SPLIT_P:
                tl.atomic_add(ddt_ptr + (b * L + t) * heads + h, ddt, mask=t_ok, sem="relaxed")
            else:
                tl.store(ddt_ptr + (b * L + t) * heads + h, ddt.to(ddt_ptr.dtype.element_ty), mask=t_ok)
            groups = heads // rep
            bgn = ((b * L + t[:, None]) * groups + g) * nstate + n[None, :]
            if rep == 1 and not SPLIT_P:
                tl.store(dB_ptr + bgn, dB, mask=tn_ok)
                tl.store(dC_ptr + bgn, dC, mask=tn_ok)
            else:  # the heads of a group meet here; float32 atomics beat per-head partial buffers on traffic
                tl.atomic_add(dB_ptr + bgn, dB, mask=tn_ok, sem="relaxed")
                tl.atomic_add(dC_ptr + bgn, dC, mask=tn_ok, sem="relaxed")
    if MODE == 1:
        tl.store(seg_dend_ptr + (pid_bh * n_seg + pid_s) * PN + pn, dS, mask=pn_ok)
        if pid_p == 0:
            tl.store(seg_sum_ptr + pid_bh * n_seg + pid_s, total)
    else:
        tl.atomic_add(dA_ptr + h, dA_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + h, dbias_acc)
        if HAS_D:
            if D_PER_CHANNEL:
                tl.atomic_add(dD_ptr + h * headdim + p, dD_acc, mask=p_ok)
            else:
                tl.atomic_add(dD_ptr + h, tl.sum(dD_acc, 0))
        if HAS_H0:
            if pid_s == 0:
                tl.store(dh0_ptr + pid_bh * PN + pn, dS, mask=pn_ok)
