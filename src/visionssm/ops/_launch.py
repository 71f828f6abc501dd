"""Launching a Triton kernel with less host time than ``kernel[grid](...)``.

``JITFunction.run`` binds and specialises every argument on every call (about 60 here), builds a cache key
from the result and then launches. Our wrappers call the same kernel with the same flags over and over; this
keeps each compiled kernel under a key of exactly what Triton specialises on (per tensor: dtype and 16-byte
alignment; per integer: == 1, divisible by 16, 32- or 64-bit) and calls its launcher directly. The first call
of a key, any call while a launch hook is installed (profilers), and the interpreter go through Triton.
``VISIONSSM_DIRECT_LAUNCH=0`` turns it off.
"""

from __future__ import annotations

import os

import torch

_INT32 = 1 << 31


def _arg_key(a):
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if isinstance(a, bool) or a is None:
        return a
    if isinstance(a, int):  # Triton: 1 is a constant, 16 | a an attribute, width by range (i32, i64, u64)
        return a == 1, a % 16 == 0, -_INT32 <= a < _INT32, a >= 1 << 63
    return type(a)


def _enabled() -> bool:
    return os.environ.get("VISIONSSM_DIRECT_LAUNCH", "1") != "0" and os.environ.get("TRITON_INTERPRET", "0") != "1"


class DirectLauncher:
    """``DirectLauncher(kernel)[grid](*args, **flags)`` behaves like ``kernel[grid](*args, **flags)``.

    ``args`` are the kernel's runtime arguments in signature order, all positional; ``flags`` its constexprs
    and launch options (num_warps, maxnreg, ...), as keywords.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self.compiled = {}
        # Under TRITON_INTERPRET the kernel is an InterpretedFunction without these (and never launched here).
        names = getattr(kernel, "arg_names", [])
        self.constexpr_names = [names[i] for i in getattr(kernel, "constexprs", [])]

    def __getitem__(self, grid):
        return lambda *args, **flags: self.launch(grid, args, flags)

    def launch(self, grid, args, flags):
        from triton import knobs

        if not (args[0].is_cuda and _enabled()) or knobs.runtime.launch_enter_hook is not None:
            return self.kernel[grid](*args, **flags)
        device = args[0].device.index
        key = (device, tuple(flags.items()), tuple(map(_arg_key, args)))
        hit = self.compiled.get(key)
        if hit is None:  # Triton compiles (or finds) and launches; later calls of this key go direct
            compiled = self.kernel[grid](*args, **flags)
            # The launcher takes every argument in signature order, constexprs included (it skips those).
            if len(args) + len(self.constexpr_names) == len(self.kernel.arg_names) and all(
                    n in flags for n in self.constexpr_names):
                self.compiled[key] = (compiled, tuple(flags[n] for n in self.constexpr_names))
            return compiled
        compiled, tail = hit
        g = tuple(grid) + (1, 1)
        stream = torch._C._cuda_getCurrentRawStream(device)  # what Triton's own launch path asks torch for
        compiled.run(g[0], g[1], g[2], stream, compiled.function, compiled.packed_metadata, None, None, None,
                     *args, *tail)
        return compiled
