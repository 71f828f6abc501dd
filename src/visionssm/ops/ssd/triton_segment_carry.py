"""States entering each time segment, from the segments' own summaries: one parallel scan per row.

The fused SSD kernels cut long sequences into ``n_seg`` segments. MODE=1 leaves, per segment j, its end
state from a zero start e_j and its total log-decay s_j. The state entering segment j is then the
composition of init and (exp(s_k), e_k) over the segments before it in scan order (after it with
REVERSE, for the backward's adjoint). MODE=0 used to fold those in itself, a loop over all earlier
segments in every program (quadratic in n_seg); here one ``tl.associative_scan`` over the segment axis
computes them all, in place of e: end[row, j] <- state entering segment j.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..selective_scan.triton_smalln_fwd import _compose


@triton.jit
def segment_carry_kernel(sum_ptr, end_ptr, init_ptr, n_seg, PN,
                         HAS_INIT: tl.constexpr, REVERSE: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK: tl.constexpr):
    # sum: (rows, n_seg) float32; end: (rows, n_seg, PN) float32, overwritten; init: (rows, PN) float32.
    row = tl.program_id(0)
    j = tl.arange(0, BLOCK_S)[:, None]
    off = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)[None, :]
    ok = off < PN
    real = j < n_seg
    prev = j + 1 if REVERSE else j - 1  # the segment applied just before j in scan order
    has_prev = real & (prev >= 0) & (prev < n_seg)
    # Element j of the scanned sequence is segment prev's (decay, end state); the first segment in scan order
    # gets (0, init): whatever came before, the state is init there. Padding (j >= n_seg) is the identity.
    a = tl.where(has_prev, tl.exp(tl.load(sum_ptr + row * n_seg + prev, mask=has_prev, other=0.0)),
                 tl.where(real, 0.0, 1.0))
    e = tl.load(end_ptr + (row * n_seg + prev) * PN + off, mask=has_prev & ok, other=0.0)
    if HAS_INIT:
        first = real & (prev == (n_seg if REVERSE else -1))
        e += tl.where(first, tl.load(init_ptr + row * PN + off, mask=ok, other=0.0), 0.0)
    a = a + tl.zeros(e.shape, dtype=tl.float32)
    _, carry = tl.associative_scan((a, e), 0, _compose, reverse=REVERSE)
    # In place: every thread of the program has its inputs (the scan consumed them) before any slot is written.
    tl.debug_barrier()
    tl.store(end_ptr + (row * n_seg + j) * PN + off, carry, mask=real & ok)


def segment_carry(seg_sum, seg_end, init, reverse: bool):
    """In place: seg_end (rows, n_seg, P, N) becomes the state (adjoint, with reverse) entering each segment."""
    rows, n_seg = seg_sum.shape
    pn = seg_end[0, 0].numel()
    block_s = triton.next_power_of_2(n_seg)
    block = min(triton.next_power_of_2(pn), max(16, 4096 // block_s))
    segment_carry_kernel[(rows, triton.cdiv(pn, block))](
        seg_sum, seg_end, init if init is not None else seg_sum, n_seg, pn,
        HAS_INIT=init is not None, REVERSE=reverse, BLOCK_S=block_s, BLOCK=block, num_warps=4)
