"""Float32 exp, log and sigmoid for the scan kernels' per-token work, in few instructions.

In a scan step the per-channel functions (softplus of delta, the SiLU gate) cost more instructions than the
16 state updates (sm_90 SASS of the forward, Triton 3.6): ``tl.exp`` becomes ex2.approx with denormal range
fix-ups (three more instructions each), ``tl.log`` a ~20-instruction software logf, ``tl.sigmoid`` an IEEE
division with a slow-path branch. Here: ``tl.exp2`` (one ex2.approx.ftz), the hardware lg2.approx.ftz
(absolute error ~2^-22, CUDA only: ``ASM``; the interpreter takes ``tl.log2``) and a full-range approximate
division (2 ulp). Results below 2^-126 flush to zero.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def log2_fast(x, ASM: tl.constexpr):
    if ASM:
        return tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.log2(x)


@triton.jit
def sigmoid_fast(x):
    return tl.fdiv(1.0, 1.0 + tl.exp2(-x * LOG2E), ieee_rounding=False)


@triton.jit
def softplus_fast(x, ASM: tl.constexpr):
    """log(1 + exp(x)), identity above 20 (as torch's). Below e = exp(x) = 1/32 a four-term series of log1p(e)
    (truncation < 2e-7 relative), above it lg2 of the rounded 1 + e (< 5e-6 relative; 4.2e-6 seen on the H100)."""
    e = tl.exp2(tl.minimum(x, 20.0) * LOG2E)
    series = e * (1.0 - e * (0.5 - e * (0.3333333333333333 - e * 0.25)))
    small = tl.where(e < 0.03125, series, log2_fast(1.0 + e, ASM) * LN2)
    return tl.where(x > 20.0, x, small)
