"""One launch that readies the selective-scan backward: zeroes its atomic accumulators and writes At.

The backward kernel adds into zeroed float32 accumulators (dA, dD, d(delta_bias), [dB | dC]) and reads the
decay coefficients At = A^T log2(e) as (N, dim) planes. As torch ops that was a fill plus a transpose, a
multiply and a copy: four ops and three launches of host time in every training step, where a slow host pays
tens of microseconds per op. Here both come from one small kernel into one buffer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc
from .._host import cdiv
from .._launch import launch

LOG2E = tl.constexpr(1.4426950408889634)
_BLOCK = 2048


@triton.jit
def at_block(A_ptr, A2_ptr, i, n_state, dim, half):
    """Elements i of At = A^T log2(e) (N, dim): element i is (i // dim, i % dim), A's (i % dim, i // dim); A's
    rows [0, half) come from A, the rest from A2 (Vim's two directions; A2 = A and half = dim for one)."""
    j, k = i % dim, i // dim
    ok = i < n_state * dim
    a = tl.load(A_ptr + j * n_state + k, mask=ok & (j < half), other=0.0)
    a += tl.load(A2_ptr + (j - half) * n_state + k, mask=ok & (j >= half), other=0.0)
    return a * LOG2E


@triton.jit
def backward_prep_kernel(buf_ptr, A_ptr, A2_ptr, n_zero, dim, half, n_state, BLOCK: tl.constexpr):
    # buf: float32 [n_zero zeros | At (n_state, dim)]; A (half, N), A2 (dim - half, N): float32, contiguous.
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(buf_ptr + i, tl.zeros((BLOCK,), dtype=tl.float32), mask=i < n_zero)
    tl.store(buf_ptr + n_zero + i, at_block(A_ptr, A2_ptr, i, n_state, dim, half), mask=i < n_state * dim)


def backward_prep(A: torch.Tensor, zero_sizes: tuple, A2: torch.Tensor | None = None) -> list:
    """Flat float32 views of one buffer filled by one launch: zeroed ones of ``zero_sizes``, then At = A^T log2(e)
    (N x dim elements, row-major (N, dim)). A: (dim, N) float32, contiguous; with A2 (Vim's second direction),
    At covers the rows of A then A2. (Flat views: the kernels take pointers, and every view op is host time in
    every training step.)"""
    half, n_state = A.shape
    dim = half + (A2.shape[0] if A2 is not None else 0)
    n_zero = sum(zero_sizes)
    buf = _alloc.empty(n_zero + n_state * dim, dtype=torch.float32, device=A.device)
    grid = (cdiv(max(n_zero, n_state * dim), _BLOCK),)
    launch(backward_prep_kernel, grid, (buf, A, A2 if A2 is not None else A), (n_zero, dim, half, n_state),
           BLOCK=_BLOCK)
    return buf.split_with_sizes((*zero_sizes, n_state * dim))
