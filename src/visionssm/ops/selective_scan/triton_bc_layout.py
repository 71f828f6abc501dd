"""B/C into the scan kernels' layout, and their grads back out: one launch for all of them each way.

The scan kernels read B and C as N-vectors per token ((batch, G, L, N), N contiguous; float32, or 16-bit
as they came) and leave their
grads as float32 [dB | dC] rows (batch, n_dir G, L, 2N). Callers hand in and want back (batch, [G,] N, L) in
their own dtype. As torch ops that is a transpose, a cast and a copy per tensor (~10 ops and 2-4 launches of host
time per training step); here it is one launch in the forward and one in the backward. The forward's
launch also readies the backward's accumulators when it saves for one (triton_prep.py's work).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc
from .._host import cdiv, next_pow2
from .._launch import launch
from .triton_prep import at_block

_BLOCK_L = 64
_PREP_BLOCK = tl.constexpr(1024)


@triton.jit
def pack_bc_kernel(out_ptr, x0_ptr, x1_ptr, x2_ptr, x3_ptr, prep_ptr, A_ptr, A2_ptr, L, n_state, groups, n_zero, dim,
                   half,
                   s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33,
                   BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr, PREP: tl.constexpr):
    # x_t: (batch, G, N, L) at strides s_t0..s_t3 (any dtype) -> out[t]: (batch, G, L, N) in out's dtype, contiguous.
    # PREP: also the backward's prep (triton_prep.py) into prep: [n_zero zeros | At = A^T log2(e) (N, dim)], A's
    # rows [0, half) from A, the rest from A2 (Vim's two directions), both (rows, N) float32 contiguous.
    if PREP:
        pid = (tl.program_id(2) * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(0) + tl.program_id(0)
        step = tl.num_programs(0) * tl.num_programs(1) * tl.num_programs(2) * _PREP_BLOCK
        for i0 in range(pid * _PREP_BLOCK, n_zero, step):
            i = i0 + tl.arange(0, _PREP_BLOCK)
            tl.store(prep_ptr + i, tl.zeros((_PREP_BLOCK,), dtype=tl.float32), mask=i < n_zero)
        for i0 in range(pid * _PREP_BLOCK, n_state * dim, step):
            i = i0 + tl.arange(0, _PREP_BLOCK)
            tl.store(prep_ptr + n_zero + i, at_block(A_ptr, A2_ptr, i, n_state, dim, half), mask=i < n_state * dim)
    t = tl.program_id(2)
    if t == 0:
        src = x0_ptr
        s0, s1, s2, s3 = s00, s01, s02, s03
    elif t == 1:
        src = x1_ptr
        s0, s1, s2, s3 = s10, s11, s12, s13
    elif t == 2:
        src = x2_ptr
        s0, s1, s2, s3 = s20, s21, s22, s23
    else:
        src = x3_ptr
        s0, s1, s2, s3 = s30, s31, s32, s33
    bg = tl.program_id(1)
    b, g = bg // groups, bg % groups
    l = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    n = tl.arange(0, BLOCK_N)
    ok = (l[:, None] < L) & (n[None, :] < n_state)
    x = tl.load(src + b.to(tl.int64) * s0 + g * s1 + n[None, :] * s2 + l[:, None].to(tl.int64) * s3, mask=ok)
    dst = out_ptr + ((t * tl.num_programs(1) + bg).to(tl.int64) * L + l[:, None]) * n_state + n[None, :]
    tl.store(dst, x.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def unpack_bc_grads_kernel(out_ptr, rows_ptr, L, n_state, groups, BLOCK_L: tl.constexpr, BLOCK_N: tl.constexpr):
    # rows: (batch, n_dir G, L, 2N) float32 [dB | dC]; out: (2 n_dir, batch, G, N, L) in its dtype, contiguous,
    # t = 2 direction + (0: dB, 1: dC).
    t = tl.program_id(2)
    bg = tl.program_id(1)
    b, g = bg // groups, bg % groups
    n_dir = tl.num_programs(2) // 2
    l = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    n = tl.arange(0, BLOCK_N)
    ok = (l[:, None] < L) & (n[None, :] < n_state)
    row = (b * n_dir + t // 2) * groups + g
    x = tl.load(rows_ptr + (row.to(tl.int64) * L + l[:, None]) * (2 * n_state) + (t % 2) * n_state + n[None, :],
                mask=ok)
    dst = out_ptr + ((t * tl.num_programs(1) + bg).to(tl.int64) * n_state + n[None, :]) * L + l[:, None]
    tl.store(dst, x.to(out_ptr.dtype.element_ty), mask=ok)


def _bgnl_strides(t: torch.Tensor) -> tuple:
    """Strides of t as (batch, G, N, L); a (batch, N, L) tensor has one group."""
    s = t.stride()
    return s if t.dim() == 4 else (s[0], 0, s[1], s[2])


def pack_bc(tensors: tuple, dtype: torch.dtype = torch.float32, prep: tuple | None = None) -> tuple:
    """(batch, [G,] N, L) tensors of one shape, any dtype/strides -> (batch, G, L, N) contiguous views in ``dtype``
    of one buffer, written by one launch (up to 4 tensors). ``prep = (A, A2, zero_sizes)``: the same launch also does
    :func:`backward_prep`'s work, whose flat views come back after the packed tensors (a forward that saves for
    the backward spares it that launch)."""
    x0 = tensors[0]
    batch, length, nstate = x0.shape[0], x0.shape[-1], x0.shape[-2]
    groups = x0.shape[1] if x0.dim() == 4 else 1
    k = len(tensors)
    out = _alloc.empty(k, batch, groups, length, nstate, dtype=dtype, device=x0.device)
    padded = (*tensors, *(x0,) * (4 - k))
    s0, s1, s2, s3 = (_bgnl_strides(t) for t in padded)
    if prep is not None:
        A, A2, zero_sizes = prep
        half = A.shape[0]
        dim, n_zero = half + (A2.shape[0] if A2 is not None else 0), sum(zero_sizes)
        buf = _alloc.empty(n_zero + nstate * dim, dtype=torch.float32, device=x0.device)
    else:
        A, A2, dim, half, n_zero, buf = x0, None, 0, 0, 0, out
    tensors = (out, *padded, buf, A, A2 if A2 is not None else A)
    launch(pack_bc_kernel, (cdiv(length, _BLOCK_L), batch * groups, k), tensors,
           (length, nstate, groups, n_zero, dim, half, *s0, *s1, *s2, *s3), BLOCK_L=_BLOCK_L,
           BLOCK_N=next_pow2(nstate), PREP=prep is not None)
    packed = out.unbind(0)
    return packed if prep is None else (*packed, *buf.split_with_sizes((*zero_sizes, nstate * dim)))


def unpack_bc_grads(rows: torch.Tensor, shape: torch.Size, dtype: torch.dtype, n_dir: int, groups: int) -> tuple:
    """[dB | dC] float32 rows (batch, n_dir G, L, 2N) -> dB, dC (, dB2, dC2), each of ``shape`` (batch, [G,] N, L)
    and ``dtype``, contiguous views of one buffer written by one launch."""
    batch, length, nstate = shape[0], shape[-1], shape[-2]
    out = _alloc.empty(2 * n_dir, *shape, dtype=dtype, device=rows.device)
    launch(unpack_bc_grads_kernel, (cdiv(length, _BLOCK_L), batch * groups, 2 * n_dir), (out, rows),
           (length, nstate, groups), BLOCK_L=_BLOCK_L, BLOCK_N=next_pow2(nstate))
    return out.unbind(0)
