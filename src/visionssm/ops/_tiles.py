"""(channels, T tokens) register tiles <-> their T token columns, for token-stepping Triton kernels.

A kernel that walks tokens one at a time with one channel per thread reads and writes (channel, token)
tensors. Done per token, a warp's access touches 32 rows (32 sectors for 64 bytes) when tokens are the
contiguous axis; done per tile of T tokens, Triton coalesces the access along the tokens and moves the tile
between that layout and one-row-per-thread in one shared-memory round trip (swizzled stores, ldmatrix).
The split and join trees below are then register renames: each halving needs its axis inside one thread,
which is the layout Triton converts to once per tile.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def columns(tile, BLOCK_D: tl.constexpr, T: tl.constexpr, LOG_T: tl.constexpr):
    """(BLOCK_D, T) -> tuple of its T columns (BLOCK_D,), in token order. T = 2 ** LOG_T >= 2."""
    parts = (tile,)
    for lvl in tl.static_range(LOG_T - 1):  # (BLOCK_D, 2w) -> two (BLOCK_D, w): first and second half
        halves = ()
        for j in tl.static_range(len(parts)):
            lo, hi = tl.split(tl.permute(tl.reshape(parts[j], (BLOCK_D, 2, T >> (lvl + 1))), (0, 2, 1)))
            halves = halves + (lo, hi)
        parts = halves
    cols = ()
    for j in tl.static_range(len(parts)):
        a, b = tl.split(parts[j])
        cols = cols + (a, b)
    return cols


@triton.jit
def tile_of(cols, BLOCK_D: tl.constexpr, T: tl.constexpr, LOG_T: tl.constexpr):
    """Inverse of :func:`columns`: T columns (BLOCK_D,) in token order -> (BLOCK_D, T)."""
    parts = ()
    for j in tl.static_range(T // 2):
        parts = parts + (tl.join(cols[2 * j], cols[2 * j + 1]),)
    for lvl in tl.static_range(1, LOG_T):  # two (BLOCK_D, w) -> (BLOCK_D, 2w), w = 2 ** lvl
        merged = ()
        for j in tl.static_range(len(parts) // 2):
            x = tl.permute(tl.join(parts[2 * j], parts[2 * j + 1]), (0, 2, 1))
            merged = merged + (tl.reshape(x, (BLOCK_D, 2 << lvl)),)
        parts = merged
    return parts[0]
