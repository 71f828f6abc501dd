"""Triton state build of EfficientViM's HSM-SSD: h = x (softmax_L(dt + A) * B)^T in one kernel.

The rest of HSM-SSD (the two mixing matmuls on N columns, the gate, the readout h2 C) are plain GEMMs and stay
with cuBLAS. What is fused here is everything on the (batch, N, L) side: the softmax over tokens (two passes over
L tiles: running max and sum, then weights), the product with B and the contraction with x, so neither the
weights nor a*B go through memory. Backward: one kernel per (batch, L tile) loops over channel blocks to form dx
and d(a*B) = dh^T x, turns the latter into dB and a*da, and adds the softmax's per-row sums atomically; the final
softmax correction d(dt) = a*da - a * sum_L(a*da) is one elementwise step.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc, _autograd
from .._host import cdiv, next_pow2
from .chunked import hsm_mix_readout

_BLOCK_D = 64
_BLOCK_L = 64
_WARPS = 8  # 4 warps spill (~1.2 KB per thread in the forward, sm_90, N = 64)


@triton.jit
def _logits(dt_ptr, A_ptr, b, n, t, n_ok, t_ok, N, L, HAS_A: tl.constexpr):
    lg = tl.load(dt_ptr + (b * N + n[:, None]) * L + t[None, :], mask=n_ok[:, None] & t_ok[None, :],
                 other=float("-inf")).to(tl.float32)
    if HAS_A:
        lg += tl.load(A_ptr + n, mask=n_ok, other=0.0)[:, None]
    return lg


@triton.jit
def hsm_state_fwd_kernel(
    x_ptr, dt_ptr, B_ptr, A_ptr, h_ptr, lse_ptr, dim, N, L,
    HAS_A: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # x (batch, dim, L); dt, B (batch, N, L); h (batch, dim, N); lse (batch, N) float32; all contiguous.
    b = tl.program_id(0)
    pid_d = tl.program_id(1)
    DT = x_ptr.dtype.element_ty
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < dim
    n_ok = n < N
    m = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    s = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_L):
        t = l0 + tl.arange(0, BLOCK_L)
        lg = _logits(dt_ptr, A_ptr, b, n, t, n_ok, t < L, N, L, HAS_A)
        m_new = tl.maximum(m, tl.max(lg, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows past N stay empty
        s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(lg - m_safe[:, None]), 1)
        m = m_new
    m = tl.where(n_ok, m, 0.0)
    s = tl.where(n_ok, s, 1.0)  # rows past N: keep 1/s and log(s) finite
    inv = tl.where(n_ok, 1.0 / s, 0.0)
    acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_L):
        t = l0 + tl.arange(0, BLOCK_L)
        t_ok = t < L
        a = tl.exp(_logits(dt_ptr, A_ptr, b, n, t, n_ok, t_ok, N, L, HAS_A) - m[:, None]) * inv[:, None]
        Bm = tl.load(B_ptr + (b * N + n[:, None]) * L + t[None, :], mask=n_ok[:, None] & t_ok[None, :], other=0.0)
        aB = (a * Bm.to(tl.float32)).to(DT)
        x = tl.load(x_ptr + (b * dim + d[:, None]) * L + t[None, :], mask=d_ok[:, None] & t_ok[None, :], other=0.0)
        acc += tl.dot(x, tl.trans(aB), input_precision=PRECISION)
    tl.store(h_ptr + (b * dim + d[:, None]) * N + n[None, :], acc.to(h_ptr.dtype.element_ty),
             mask=d_ok[:, None] & n_ok[None, :])
    if pid_d == 0:
        tl.store(lse_ptr + b * N + n, m + tl.log(s), mask=n_ok)


@triton.jit
def hsm_state_bwd_kernel(
    x_ptr, dt_ptr, B_ptr, A_ptr, lse_ptr, dh_ptr, dx_ptr, dB_ptr, a_ptr, ga_ptr, rowsum_ptr, dim, N, L,
    HAS_A: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # dh (batch, dim, N), dx like x; dB like B; a, ga (= a * da) (batch, N, L) float32; rowsum (batch, N) float32.
    b = tl.program_id(0)
    pid_l = tl.program_id(1)
    DT = x_ptr.dtype.element_ty
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    n = tl.arange(0, BLOCK_N)
    t_ok = t < L
    n_ok = n < N
    nt_ok = n_ok[:, None] & t_ok[None, :]
    lse = tl.load(lse_ptr + b * N + n, mask=n_ok, other=0.0)
    a = tl.exp(_logits(dt_ptr, A_ptr, b, n, t, n_ok, t_ok, N, L, HAS_A) - lse[:, None])
    a = tl.where(nt_ok, a, 0.0)
    Bm = tl.load(B_ptr + (b * N + n[:, None]) * L + t[None, :], mask=nt_ok, other=0.0).to(tl.float32)
    aB = (a * Bm).to(DT)
    daB = tl.zeros((BLOCK_N, BLOCK_L), dtype=tl.float32)
    for d0 in range(0, dim, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        d_ok = d < dim
        dt_ok = d_ok[:, None] & t_ok[None, :]
        dh = tl.load(dh_ptr + (b * dim + d[:, None]) * N + n[None, :], mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        x = tl.load(x_ptr + (b * dim + d[:, None]) * L + t[None, :], mask=dt_ok, other=0.0)
        dx = tl.dot(dh.to(DT), aB, input_precision=PRECISION)
        tl.store(dx_ptr + (b * dim + d[:, None]) * L + t[None, :], dx.to(dx_ptr.dtype.element_ty), mask=dt_ok)
        daB += tl.dot(tl.trans(dh.to(DT)), x, input_precision=PRECISION)
    tl.store(dB_ptr + (b * N + n[:, None]) * L + t[None, :], (daB * a).to(dB_ptr.dtype.element_ty), mask=nt_ok)
    ga = a * daB * Bm
    tl.store(a_ptr + (b * N + n[:, None]) * L + t[None, :], a, mask=nt_ok)
    tl.store(ga_ptr + (b * N + n[:, None]) * L + t[None, :], ga, mask=nt_ok)
    tl.atomic_add(rowsum_ptr + b * N + n, tl.sum(ga, 1), mask=n_ok)


def _config(dim, nstate, dtype):
    return max(16, next_pow2(nstate)), "ieee" if dtype == torch.float32 else "tf32"


class _TritonHSMState(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, B, A):
        batch, dim, length = x.shape
        nstate = dt.shape[1]
        bn, prec = _config(dim, nstate, x.dtype)
        h = _alloc.empty(batch, dim, nstate, dtype=x.dtype, device=x.device)
        lse = _alloc.empty(batch, nstate, dtype=torch.float32, device=x.device)
        hsm_state_fwd_kernel[(batch, cdiv(dim, _BLOCK_D))](
            x, dt, B, A if A is not None else lse, h, lse, dim, nstate, length,
            HAS_A=A is not None, BLOCK_D=_BLOCK_D, BLOCK_N=bn, BLOCK_L=_BLOCK_L, PRECISION=prec, num_warps=_WARPS,
        )
        ctx.save_for_backward(x, dt, B, A, lse)
        return h

    @staticmethod
    def backward(ctx, dh):
        x, dt, B, A, lse = ctx.saved_tensors
        batch, dim, length = x.shape
        nstate = dt.shape[1]
        bn, prec = _config(dim, nstate, x.dtype)
        f32 = dict(dtype=torch.float32, device=x.device)
        dx = _alloc.empty_like(x)
        dB = _alloc.empty_like(B)
        a = _alloc.empty(batch, nstate, length, **f32)
        ga = _alloc.empty(batch, nstate, length, **f32)
        rowsum = torch.zeros(batch, nstate, **f32)
        hsm_state_bwd_kernel[(batch, cdiv(length, _BLOCK_L))](
            x, dt, B, A if A is not None else lse, lse, dh.contiguous(), dx, dB, a, ga, rowsum, dim, nstate, length,
            HAS_A=A is not None, BLOCK_D=_BLOCK_D, BLOCK_N=bn, BLOCK_L=_BLOCK_L, PRECISION=prec, num_warps=_WARPS,
        )
        dlogits = ga - a * rowsum[:, :, None]  # softmax backward
        dA = dlogits.sum((0, 2)).to(A.dtype) if A is not None else None
        return dx, dlogits.to(dt.dtype), dB, dA


def hsm_state_triton(x, dt, B, A=None):
    """h = x (softmax_L(dt + A) * B)^T: x (batch, dim, L), dt and B (batch, N, L), A (N,) or None -> (batch, dim, N)
    in x's dtype. B is cast to x's dtype (tensor-core operands share one dtype)."""
    B = B if B.dtype == x.dtype else B.to(x.dtype)
    c = lambda t: t if t.is_contiguous() else t.contiguous()
    return _autograd.apply(_TritonHSMState, c(x), c(dt), c(B), A.float().contiguous() if A is not None else None)


def hsm_ssd_triton(x, dt, B, C, W_hz, W_out, D, A=None):
    """Same contract as :func:`visionssm.ops.ssd.hsm_ssd`: the fused state build, then cuBLAS in x's dtype."""
    return hsm_mix_readout(hsm_state_triton(x, dt, B, A), C, W_hz, W_out, D, x.dtype)
