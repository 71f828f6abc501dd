"""Relaunching a compiled Triton kernel without redoing ``JITFunction.run``'s per-call work.

``kernel[grid](*args, **constexprs)`` binds and specialises every argument, builds a cache key from them and the
options, and its launcher asks the CUDA driver about every tensor pointer (cuPointerGetAttribute). With ~45
arguments that is tens of microseconds per launch, and more on a slow host; the scan's forward+backward makes
four to eight launches, and small problems are host-bound. Here the compiled kernel is looked up on what
decides Triton's specialisation -- each tensor's dtype, device and 16-byte alignment, each scalar's exact value
(a superset of its ``== 1`` / ``% 16`` / bit-width classes), the constexprs -- and launched with raw pointers.
A miss goes through ``kernel[grid]`` (which compiles, checks and launches) and remembers what it returned.

Off (every launch through ``kernel[grid]``) under the interpreter, while Triton launch hooks are set (profilers
such as proton use them), and with ``VISIONSSM_FAST_LAUNCH=0``.
"""

from __future__ import annotations

from ._host import env_get

_MAX_ENTRIES = 4096  # distinct (kernel, flags, shape, dtype, alignment) combinations kept; then start over
_cache: dict = {}
_runtime = None  # (current_device, current_stream, triton.knobs.runtime), set on the first fast launch


def _triton_runtime():
    global _runtime
    if _runtime is None:
        import triton
        from triton.runtime import driver

        _runtime = (driver.active.get_current_device, driver.active.get_current_stream, triton.knobs.runtime)
    return _runtime


def _hooked(rt) -> bool:
    """A Triton launch hook is set (a plain callable, or a non-empty HookChain in Triton >= 3.5)."""
    for hook in (rt.launch_enter_hook, rt.launch_exit_hook):
        if hook is not None and getattr(hook, "calls", True):
            return True
    return False


def _fast(kernel) -> bool:
    # a JITFunction (the interpreter's InterpretedFunction has no device_caches) on a GPU
    return hasattr(kernel, "device_caches") and env_get("VISIONSSM_FAST_LAUNCH", "1") != "0"


_NO_FLAGS: dict = {}


def launch(kernel, grid: tuple, tensors: tuple, scalars: tuple, flags: dict = _NO_FLAGS, **extra) -> None:
    """``kernel[grid](*tensors, *scalars, **flags, **extra)``: the kernel's leading parameters are ``tensors``,
    then ``scalars``. ``flags`` (constexprs and launch options) is keyed by identity, so it must be a dict that
    is kept and never mutated (the callers' cached ones); per-call constexprs go in ``extra``, keyed by value."""
    if not _fast(kernel):
        kernel[grid](*tensors, *scalars, **flags, **extra)
        return
    current_device, current_stream, rt = _triton_runtime()
    if _hooked(rt):
        kernel[grid](*tensors, *scalars, **flags, **extra)
        return
    device = current_device()
    ptrs = [t.data_ptr() for t in tensors]
    key = (kernel, id(flags), tuple(extra.items()), device, scalars, tuple([t.dtype for t in tensors]),
           tuple([t.get_device() for t in tensors]), tuple([p & 15 for p in ptrs]))
    entry = _cache.get(key)
    if entry is None:
        compiled = kernel[grid](*tensors, *scalars, **flags, **extra)  # compiles if new, validates, launches
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        consts = {**flags, **extra}
        params = list(kernel.signature.parameters.values())[len(tensors) + len(scalars):]
        # flags kept alive with the entry, so its id() in the key cannot be reused by another dict
        _cache[key] = (compiled, tuple(consts.get(p.name, p.default) for p in params), flags)
        return
    compiled, consts, _ = entry
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    compiled.run(grid[0], g1, g2, current_stream(device), compiled.function, compiled.packed_metadata, None, None,
                 None, *ptrs, *scalars, *consts)


def clear_cache() -> None:
    """Forget the compiled kernels looked up so far (tests)."""
    _cache.clear()


