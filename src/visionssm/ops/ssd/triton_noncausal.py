"""Triton non-causal SSD (VSSD): per head state S = sum_j w_j x_j B_j^T (headdim, N), y = C S^T + D x.

Why kernels and not just two cuBLAS matmuls: the matmul form also materialises w*x, C S^T and D x, reading or
writing (batch, L, heads, headdim) tensors about 9 times forward. Here the weighting, the skip and the group
broadcast happen in registers: the forward reads x twice and writes y once.
Forward: a reduction kernel (programs over (batch*head, L-split), float32 atomics into S) and a readout kernel
over L tiles. Backward: the same reduction gives dS = sum_i dy_i^T C_i, then one kernel over L tiles forms dx,
d(dt), dB, dC and the per-head sums dA, dD, d(dt_bias).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc, _autograd
from .._host import cdiv, next_pow2
from .._softplus import softplus as _softplus

_TARGET_PROGRAMS = 512
_BLOCK_L = 64


@triton.jit
def _weights(dt_ptr, A_ptr, bias_ptr, h, t, t_ok, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(dt after bias/softplus, w = dt * A, the raw biased dt) for tokens t of head h; zero outside t_ok."""
    raw = tl.load(dt_ptr + t, mask=t_ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw += tl.load(bias_ptr + h)
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    dt = tl.where(t_ok, dt, 0.0)
    return dt, dt * tl.load(A_ptr + h), raw


@triton.jit
def nc_state_kernel(
    v_ptr, dt_ptr, A_ptr, bias_ptr, k_ptr, S_ptr,
    L, heads, groups, rep, headdim, nstate, split_len,
    s_vb, s_vl, s_vh, s_vp, s_tb, s_tl, s_th, s_kb, s_kl, s_kg, s_kn,
    WEIGHTED: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, INTERLEAVED: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):
    """S[b, h] += sum_t (w_t if WEIGHTED else 1) v_t^T k_t over this program's tokens (float32, zero-filled S)."""
    pid_bh = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    if INTERLEAVED:
        g = h % groups
    else:
        g = h // rep
    DT = v_ptr.dtype.element_ty
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok = p < headdim
    n_ok = n < nstate
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    l0 = pid_s * split_len
    l1 = tl.minimum(l0 + split_len, L)
    for l in range(l0, l1, BLOCK_L):
        t = l + tl.arange(0, BLOCK_L)
        t_ok = t < l1
        v = tl.load(v_ptr + b * s_vb + h * s_vh + t[:, None] * s_vl + p[None, :] * s_vp,
                    mask=t_ok[:, None] & p_ok[None, :], other=0.0)
        if WEIGHTED:
            _, w, _ = _weights(dt_ptr + b * s_tb + h * s_th, A_ptr, bias_ptr, h, t * s_tl, t_ok, HAS_BIAS, SOFTPLUS)
            v = (v.to(tl.float32) * w[:, None]).to(DT)
        k = tl.load(k_ptr + b * s_kb + g * s_kg + t[:, None] * s_kl + n[None, :] * s_kn,
                    mask=t_ok[:, None] & n_ok[None, :], other=0.0)
        acc += tl.dot(tl.trans(v), k.to(DT), input_precision=PRECISION)
    tl.atomic_add(S_ptr + pid_bh * headdim * nstate + p[:, None] * nstate + n[None, :], acc,
                  mask=p_ok[:, None] & n_ok[None, :])


@triton.jit
def nc_readout_kernel(
    x_ptr, C_ptr, D_ptr, S_ptr, y_ptr,
    L, heads, groups, rep, headdim, nstate,
    s_xb, s_xl, s_xh, s_xp, s_Cb, s_Cl, s_Cg, s_Cn, s_yb, s_yl, s_yh, s_yp,
    HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, INTERLEAVED: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_l = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    if INTERLEAVED:
        g = h % groups
    else:
        g = h // rep
    DT = x_ptr.dtype.element_ty
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    t_ok = t < L
    p_ok = p < headdim
    n_ok = n < nstate
    tp_ok = t_ok[:, None] & p_ok[None, :]
    S = tl.load(S_ptr + pid_bh * headdim * nstate + p[:, None] * nstate + n[None, :],
                mask=p_ok[:, None] & n_ok[None, :], other=0.0)
    Cm = tl.load(C_ptr + b * s_Cb + g * s_Cg + t[:, None] * s_Cl + n[None, :] * s_Cn,
                 mask=t_ok[:, None] & n_ok[None, :], other=0.0)
    y = tl.dot(Cm.to(DT), tl.trans(S.to(DT)), input_precision=PRECISION)
    if HAS_D:
        x = tl.load(x_ptr + b * s_xb + h * s_xh + t[:, None] * s_xl + p[None, :] * s_xp, mask=tp_ok,
                    other=0.0).to(tl.float32)
        if D_PER_CHANNEL:
            y += tl.load(D_ptr + h * headdim + p, mask=p_ok, other=0.0)[None, :] * x
        else:
            y += tl.load(D_ptr + h) * x
    tl.store(y_ptr + b * s_yb + h * s_yh + t[:, None] * s_yl + p[None, :] * s_yp, y.to(y_ptr.dtype.element_ty),
             mask=tp_ok)


@triton.jit
def nc_bwd_kernel(
    x_ptr, dt_ptr, A_ptr, bias_ptr, B_ptr, D_ptr, S_ptr, dS_ptr, dy_ptr,
    dx_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    L, heads, groups, rep, headdim, nstate,
    s_xb, s_xl, s_xh, s_xp, s_tb, s_tl, s_th, s_Bb, s_Bl, s_Bg, s_Bn, s_ob, s_ol, s_oh, s_op,
    HAS_D: tl.constexpr, D_PER_CHANNEL: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    INTERLEAVED: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # dx (batch, L, heads, P), ddt (batch, L, heads) contiguous; dB, dC (batch, L, groups, N) float32, zero-filled
    # when rep > 1.
    pid_bh = tl.program_id(0)
    pid_l = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    if INTERLEAVED:
        g = h % groups
    else:
        g = h // rep
    DT = x_ptr.dtype.element_ty
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    t_ok = t < L
    p_ok = p < headdim
    n_ok = n < nstate
    tp_ok = t_ok[:, None] & p_ok[None, :]
    tn_ok = t_ok[:, None] & n_ok[None, :]
    pn = pid_bh * headdim * nstate + p[:, None] * nstate + n[None, :]
    pn_ok = p_ok[:, None] & n_ok[None, :]
    S = tl.load(S_ptr + pn, mask=pn_ok, other=0.0)
    dS = tl.load(dS_ptr + pn, mask=pn_ok, other=0.0)
    x = tl.load(x_ptr + b * s_xb + h * s_xh + t[:, None] * s_xl + p[None, :] * s_xp, mask=tp_ok, other=0.0)
    dy = tl.load(dy_ptr + b * s_ob + h * s_oh + t[:, None] * s_ol + p[None, :] * s_op, mask=tp_ok,
                 other=0.0).to(tl.float32)
    Bm = tl.load(B_ptr + b * s_Bb + g * s_Bg + t[:, None] * s_Bl + n[None, :] * s_Bn, mask=tn_ok, other=0.0)
    dt, w, raw = _weights(dt_ptr + b * s_tb + h * s_th, A_ptr, bias_ptr, h, t * s_tl, t_ok, HAS_BIAS, SOFTPLUS)
    xf = x.to(tl.float32)
    U = tl.dot(Bm.to(DT), tl.trans(dS.to(DT)), input_precision=PRECISION)  # (L, P): gradient of w x
    dx = w[:, None] * U
    dw = tl.sum(xf * U, 1)
    dB = w[:, None] * tl.dot(x, dS.to(DT), input_precision=PRECISION)
    dC = tl.dot(dy.to(DT), S.to(DT), input_precision=PRECISION)
    if HAS_D:
        if D_PER_CHANNEL:
            Dv = tl.load(D_ptr + h * headdim + p, mask=p_ok, other=0.0)
            dx += Dv[None, :] * dy
            tl.atomic_add(dD_ptr + h * headdim + p, tl.sum(dy * xf, 0), mask=p_ok)
        else:
            dx += tl.load(D_ptr + h) * dy
            tl.atomic_add(dD_ptr + h, tl.sum(tl.sum(dy * xf, 1), 0))
    tl.atomic_add(dA_ptr + h, tl.sum(dw * dt, 0))
    ddt = dw * tl.load(A_ptr + h)
    if SOFTPLUS:
        ddt = ddt * tl.where(raw > 20.0, 1.0, tl.sigmoid(raw))
    ddt = tl.where(t_ok, ddt, 0.0)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + h, tl.sum(ddt, 0))
    tl.store(dx_ptr + ((b * L + t[:, None]) * heads + h) * headdim + p[None, :], dx.to(dx_ptr.dtype.element_ty),
             mask=tp_ok)
    tl.store(ddt_ptr + (b * L + t) * heads + h, ddt.to(ddt_ptr.dtype.element_ty), mask=t_ok)
    bgn = ((b * L + t[:, None]) * groups + g) * nstate + n[None, :]
    if rep == 1:
        tl.store(dB_ptr + bgn, dB, mask=tn_ok)
        tl.store(dC_ptr + bgn, dC, mask=tn_ok)
    else:
        tl.atomic_add(dB_ptr + bgn, dB, mask=tn_ok)
        tl.atomic_add(dC_ptr + bgn, dC, mask=tn_ok)


def _blocks(headdim, nstate):
    return max(16, next_pow2(headdim)), max(16, next_pow2(nstate))


def _precision(dtype):
    return "ieee" if dtype == torch.float32 else "tf32"


def _reduce(v, dt, A, bias, k, S, weighted, softplus, interleaved):
    """S (zero-filled, float32) += per-head sum over tokens of (w) v^T k."""
    batch, length, heads, headdim = v.shape
    groups, nstate = k.shape[2], k.shape[3]
    n_split = max(1, min(cdiv(_TARGET_PROGRAMS, batch * heads), cdiv(length, 4 * _BLOCK_L)))
    split_len = cdiv(cdiv(length, n_split), _BLOCK_L) * _BLOCK_L
    n_split = cdiv(length, split_len)
    bp, bn = _blocks(headdim, nstate)
    nc_state_kernel[(batch * heads, n_split)](
        v, dt, A, bias if bias is not None else A, k, S,
        length, heads, groups, heads // groups, headdim, nstate, split_len,
        *v.stride(), *dt.stride(), *k.stride(),
        WEIGHTED=weighted, HAS_BIAS=bias is not None, SOFTPLUS=softplus, INTERLEAVED=interleaved,
        BLOCK_L=_BLOCK_L, BLOCK_P=bp, BLOCK_N=bn, PRECISION=_precision(v.dtype), num_warps=4,
    )


class _TritonSSDNonCausal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, softplus: bool, interleaved: bool):
        batch, length, heads, headdim = x.shape
        groups, nstate = B.shape[2], B.shape[3]
        S = torch.zeros(batch * heads, headdim, nstate, dtype=torch.float32, device=x.device)
        _reduce(x, dt, A, dt_bias, B, S, True, softplus, interleaved)
        y = _alloc.empty(batch, length, heads, headdim, dtype=x.dtype, device=x.device)
        bp, bn = _blocks(headdim, nstate)
        nc_readout_kernel[(batch * heads, cdiv(length, _BLOCK_L))](
            x, C, D if D is not None else S, S, y,
            length, heads, groups, heads // groups, headdim, nstate,
            *x.stride(), *C.stride(), *y.stride(),
            HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, INTERLEAVED=interleaved,
            BLOCK_L=_BLOCK_L, BLOCK_P=bp, BLOCK_N=bn, PRECISION=_precision(x.dtype), num_warps=4,
        )
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, S)
        ctx.flags = (softplus, interleaved)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, dt, A, B, C, D, dt_bias, S = ctx.saved_tensors
        softplus, interleaved = ctx.flags
        batch, length, heads, headdim = x.shape
        groups, nstate = B.shape[2], B.shape[3]
        f32 = dict(dtype=torch.float32, device=x.device)
        dS = torch.zeros(batch * heads, headdim, nstate, **f32)
        _reduce(dy, dt, A, None, C, dS, False, softplus, interleaved)
        dx = _alloc.empty(*x.shape, dtype=x.dtype, device=x.device)
        ddt = _alloc.empty(*dt.shape, dtype=dt.dtype, device=dt.device)
        rep = heads // groups
        bc = (lambda *s: torch.zeros(*s, **f32)) if rep > 1 else (lambda *s: _alloc.empty(*s, **f32))
        dB, dC = bc(batch, length, groups, nstate), bc(batch, length, groups, nstate)
        n_d = D.numel() if D is not None else 0
        sums = torch.zeros(2 * heads + n_d, **f32)  # one launch for the atomically reduced per-head grads
        dA, dbias = sums[:heads], sums[heads : 2 * heads] if dt_bias is not None else None
        dD = sums[2 * heads :].view(D.shape) if D is not None else None
        bp, bn = _blocks(headdim, nstate)
        nc_bwd_kernel[(batch * heads, cdiv(length, _BLOCK_L))](
            x, dt, A, dt_bias if dt_bias is not None else A, B, D if D is not None else A, S, dS, dy,
            dx, ddt, dA, dB, dC, dD if dD is not None else dA, dbias if dbias is not None else dA,
            length, heads, groups, rep, headdim, nstate,
            *x.stride(), *dt.stride(), *B.stride(), *dy.stride(),
            HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, HAS_BIAS=dt_bias is not None,
            SOFTPLUS=softplus, INTERLEAVED=interleaved, BLOCK_L=_BLOCK_L, BLOCK_P=bp, BLOCK_N=bn,
            PRECISION=_precision(x.dtype), num_warps=8,  # 4 warps spill at headdim = N = 64 (sm_90)
        )
        return (
            dx, ddt, dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype), dD.to(D.dtype) if D is not None else None,
            dbias.to(dt_bias.dtype) if dt_bias is not None else None, None, None,
        )


def ssd_noncausal_triton(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, interleaved=False):
    """Same contract as :func:`visionssm.ops.ssd.ssd_noncausal`; float32 state, outputs in x's dtype.
    B and C are cast to x's dtype (tensor-core operands share one dtype)."""
    B = B if B.dtype == x.dtype else B.to(x.dtype)
    C = C if C.dtype == x.dtype else C.to(x.dtype)
    f32 = lambda t: t.float().contiguous() if t is not None else None
    return _autograd.apply(_TritonSSDNonCausal, x, dt, f32(A), B, C, f32(D), f32(dt_bias), dt_softplus, interleaved)
