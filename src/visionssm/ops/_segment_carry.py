"""States entering each time segment, from the segments' own summaries: one parallel scan per row.

Long sequences with few rows are cut into ``n_seg`` time segments so that enough programs exist. A first
pass (MODE=1 of the scan kernels) leaves, per segment j, its end state from a zero start e_j and the sum of
its log-decays s_j. The state entering segment j is the composition of init and (decay_k, e_k) over the
segments before it in scan order (after it with ``reverse``, for a backward pass's adjoint). The scan
kernels used to fold those in themselves, a loop over all earlier segments in every program (quadratic in
n_seg); here one ``tl.associative_scan`` over the segment axis computes them all, in place of e.

Decays: element i of a segment's state decays by exp2(s_j[col(i)] * coef[i]), col(i) = i % n_cols --
the causal SSD has one log-decay per row (n_cols = 1, coef = log2 e); the selective scan one per channel
with coef = A log2 e per (state, channel) (n_cols = dim, elements (N, dim) flattened).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._host import cdiv, next_pow2
from ._launch import launch
from .selective_scan.triton_smalln_fwd import _compose

LOG2E = tl.constexpr(1.4426950408889634)
_FLAGS = dict(num_warps=4)


@triton.jit
def segment_carry_kernel(sum_ptr, coef_ptr, end_ptr, init_ptr, n_seg, n_el, n_cols,
                         HAS_COEF: tl.constexpr, HAS_INIT: tl.constexpr, INIT_T: tl.constexpr,
                         REVERSE: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK: tl.constexpr):
    # sum: (rows, n_seg, n_cols); coef: (n_el,); end: (rows, n_seg, n_el), overwritten; all float32, contiguous.
    # init: (rows, n_el), or with INIT_T (rows, n_cols, n_el // n_cols) (element i = (i // n_cols, i % n_cols)).
    row = tl.program_id(0)
    j = tl.arange(0, BLOCK_S)[:, None]
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)[None, :]
    ok = i < n_el
    col = i % n_cols
    real = j < n_seg
    prev = j + 1 if REVERSE else j - 1  # the segment applied just before j in scan order
    has_prev = real & (prev >= 0) & (prev < n_seg)
    s = tl.load(sum_ptr + (row * n_seg + prev) * n_cols + col, mask=has_prev & ok, other=0.0)
    coef = tl.load(coef_ptr + i, mask=ok, other=0.0) if HAS_COEF else LOG2E
    # Element j of the scanned sequence is segment prev's (decay, end state); the first segment in scan order
    # gets (0, init): whatever came before, the state is init there. Padding (j >= n_seg) is the identity.
    a = tl.where(has_prev, tl.exp2(s * coef), tl.where(real, 0.0, 1.0))
    e = tl.load(end_ptr + (row * n_seg + prev) * n_el + i, mask=has_prev & ok, other=0.0)
    if HAS_INIT:
        first = real & (prev == (n_seg if REVERSE else -1))
        if INIT_T:
            i_off = col * (n_el // n_cols) + i // n_cols
        else:
            i_off = i
        e += tl.where(first, tl.load(init_ptr + row * n_el + i_off, mask=ok, other=0.0), 0.0)
    _, carry = tl.associative_scan((a, e), 0, _compose, reverse=REVERSE)
    # In place: every thread of the program has its inputs (the scan consumed them) before any slot is written.
    tl.debug_barrier()
    tl.store(end_ptr + (row * n_seg + j) * n_el + i, carry, mask=real & ok)


def segment_carry(seg_sum, seg_end, init, reverse: bool, coef=None, init_transposed: bool = False):
    """In place: seg_end (rows, n_seg, ...) becomes the state (the adjoint, with reverse) entering each segment.

    seg_sum (rows, n_seg) or (rows, n_seg, n_cols); coef (n_el,) or None for log2(e); init (rows, ...) or None."""
    rows, n_seg = seg_sum.shape[:2]
    n_cols = seg_sum.shape[2] if seg_sum.dim() == 3 else 1
    n_el = seg_end.numel() // (rows * n_seg)  # (not seg_end[0, 0]: indexing costs host time per call)
    block_s = next_pow2(n_seg)
    block = min(next_pow2(n_el), max(16, 4096 // block_s))
    launch(segment_carry_kernel, (rows, cdiv(n_el, block)),
           (seg_sum, coef if coef is not None else seg_sum, seg_end, init if init is not None else seg_sum),
           (n_seg, n_el, n_cols), _FLAGS, HAS_COEF=coef is not None, HAS_INIT=init is not None,
           INIT_T=init_transposed, REVERSE=reverse, BLOCK_S=block_s, BLOCK=block)
