"""Sum 32 per-thread values over a warp's 32 lanes, one total per lane, in 31 shuffles.

Token-stepping kernels that hold one channel per thread need per-token sums over channels (the grads of
B and C: N values each). ``tl.sum`` over the lane axis reduces every value through the full 5-level
butterfly: 5 shuffles per value, 160 for 32 values. A reduce-scatter halves the values at each level
instead (each lane keeps half and sends the other half to its partner): 16 + 8 + 4 + 2 + 1 = 31
shuffles, and lane l ends with the total of value l. PTX inline assembly, so CUDA only (not the
interpreter); the caller guarantees one warp whose 32 lanes hold 32 distinct channels.
"""

from __future__ import annotations

import triton
import triton.language as tl


def _reduce_scatter_ptx(n_vals: int = 32) -> str:
    lines = ["{", ".reg .pred p;", ".reg .b32 lane, bit, s, k, r;", f".reg .b32 v<{n_vals}>;", "mov.u32 lane, %laneid;"]
    lines += [f"mov.b32 v{j}, ${j + 1};" for j in range(n_vals)]
    half, mask = n_vals // 2, n_vals // 2
    while half >= 1:
        # lanes with this bit set keep the upper half of their values and send the lower half
        lines += [f"and.b32 bit, lane, {mask};", "setp.ne.u32 p, bit, 0;"]
        for j in range(half):
            lines += [f"selp.b32 s, v{j}, v{j + half}, p;", f"selp.b32 k, v{j + half}, v{j}, p;",
                      f"shfl.sync.bfly.b32 r, s, {mask}, 31, -1;", f"add.f32 v{j}, k, r;"]
        half, mask = half // 2, mask // 2
    lines += ["mov.b32 $0, v0;", "}"]
    return "\n".join(lines)


_PTX32 = tl.constexpr(_reduce_scatter_ptx(32))
_CONSTRAINTS32 = tl.constexpr("=r," + ",".join(["r"] * 32))


@triton.jit
def warp_reduce_scatter32(vals):
    """``vals``: 32 (32,) float32 tensors laid out one element per lane. Returns a (32,) tensor whose element
    at lane l is the sum over all lanes of ``vals[l]``."""
    return tl.inline_asm_elementwise(_PTX32, _CONSTRAINTS32, vals, dtype=tl.float32, is_pure=True, pack=1)
