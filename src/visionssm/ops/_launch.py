"""Triton launches that skip the per-call argument binding once a kernel variant has been compiled.

``kernel[grid](...)`` binds and specialises every argument in Python before it looks the compiled kernel
up: ~100 us of host time for our ~40-argument scan kernels on the H100 machine's host (benchmarks/
host_breakdown.py), more than the kernel itself at ViT sizes. ``launch`` keys a cache on exactly what
Triton specialises on (tensor dtype and 16-byte alignment; integers equal to 1, divisible by 16, or too big
for int32; the constexprs and launch options), so a hit is the kernel Triton itself would pick, and calls
the compiled launcher directly. The first call of each variant, and every call under TRITON_INTERPRET or on
CPU tensors, goes through ``kernel[grid]`` unchanged; ``VISIONSSM_LAUNCH=triton`` sends every call there.
"""

from __future__ import annotations

import os

import torch

_CACHE: dict = {}
_INT32 = 1 << 31


def _spec(a):
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if isinstance(a, bool) or a is None:
        return a
    if isinstance(a, int):
        return int, a == 1, a % 16 == 0, -_INT32 <= a < _INT32
    return type(a)


def launch(kernel, grid, *args, **consts):
    """``kernel[grid](*args, **consts)``: runtime arguments positional (a prefix of the kernel's parameters),
    constexprs and launch options (num_warps, maxnreg, ...) by keyword."""
    dev = args[0]
    if os.environ.get("TRITON_INTERPRET") == "1" or not dev.is_cuda or os.environ.get("VISIONSSM_LAUNCH") == "triton":
        return kernel[grid](*args, **consts)
    key = (kernel, dev.device.index, tuple(_spec(a) for a in args), tuple(consts.items()))
    hit = _CACHE.get(key)
    if hit is None:
        compiled = kernel[grid](*args, **consts)
        names = kernel.arg_names[len(args):]  # the constexprs, in parameter order
        _CACHE[key] = (compiled, tuple(consts[n] for n in names))
        return compiled
    compiled, tail = hit
    from triton import knobs

    stream = torch.cuda.current_stream(dev.device).cuda_stream
    grid = tuple(grid) + (1,) * (3 - len(grid))
    meta = compiled.launch_metadata(grid, stream, *args, *tail)
    compiled.run(grid[0], grid[1], grid[2], stream, compiled.function, compiled.packed_metadata, meta,
                 knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook, *args, *tail)
    return compiled
