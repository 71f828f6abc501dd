"""ops/_launch.py: the compiled-kernel cache relaunches only what Triton would have specialised the same way.

On CPU a stand-in kernel records what reaches Triton's path and what reaches the compiled launcher; the `gpu`
test checks real kernels give the same results through both paths.
"""

from __future__ import annotations

import inspect
import types

import pytest
import torch

from visionssm.ops import _launch


class _Compiled:
    def __init__(self, log):
        self.log, self.function, self.packed_metadata = log, "fn", "meta"

    def run(self, *args):
        self.log.append(("fast", args))


class _Kernel:
    """Stands in for a JITFunction: ``[grid](...)`` is Triton's path (compile if new, launch)."""

    device_caches = {}

    def __init__(self):
        self.log = []
        self.compiled = _Compiled(self.log)

        def fn(x_ptr, y_ptr, n, stride, MODE, FLAG, OPT=7):
            pass

        self.signature = inspect.signature(fn)

    def __getitem__(self, grid):
        def runner(*args, **kwargs):
            self.log.append(("triton", grid, args, kwargs))
            return self.compiled

        return runner


@pytest.fixture
def fake_runtime(monkeypatch):
    knobs = types.SimpleNamespace(launch_enter_hook=types.SimpleNamespace(calls=[]), launch_exit_hook=None)
    monkeypatch.setattr(_launch, "_runtime", (lambda: 0, lambda device: 1234, knobs))
    monkeypatch.delenv("VISIONSSM_FAST_LAUNCH", raising=False)
    _launch.clear_cache()
    yield knobs
    _launch.clear_cache()


def test_hit_launches_compiled_kernel_with_pointers_and_constexprs(fake_runtime):
    k, flags = _Kernel(), dict(FLAG=True, num_warps=1)
    x, y = torch.zeros(64), torch.ones(64)
    _launch.launch(k, (3, 2), (x, y), (64, 1), flags, MODE=0)
    assert [e[0] for e in k.log] == ["triton"]
    assert k.log[0][2] == (x, y, 64, 1) and k.log[0][3] == dict(FLAG=True, num_warps=1, MODE=0)
    _launch.launch(k, (3, 2), (x, y), (64, 1), flags, MODE=0)
    kind, args = k.log[1]
    assert kind == "fast"
    # grid padded to 3-D, the current stream, no launch hooks; pointers as ints, then scalars, then the
    # constexprs in signature order (MODE, FLAG, OPT's default); launch options (num_warps) are not arguments
    assert args == (3, 2, 1, 1234, "fn", "meta", None, None, None, x.data_ptr(), y.data_ptr(), 64, 1, 0, True, 7)


def test_what_triton_specialises_on_misses_the_cache(fake_runtime):
    k, flags = _Kernel(), dict(FLAG=True)
    x, y = torch.zeros(64), torch.ones(64)
    calls = [
        ((x, y), (64, 1), {}),
        ((x, y), (64, 1), dict(MODE=1)),  # another constexpr
        ((x, y), (16, 1), {}),  # another scalar value (== 1, % 16 and bit width are value classes)
        ((x[1:], y[1:]), (64, 1), {}),  # pointers no longer 16-byte aligned
        ((x.double(), y), (64, 1), {}),  # another dtype
    ]
    for tensors, scalars, extra in calls:
        _launch.launch(k, (1,), tensors, scalars, flags, **{"MODE": 0, **extra})
    assert [e[0] for e in k.log] == ["triton"] * len(calls)
    assert len(_launch._cache) == len(calls)
    _launch.launch(k, (1,), (x, y), (64, 1), dict(FLAG=True), MODE=0)  # an equal but other flags dict
    assert k.log[-1][0] == "triton"
    x2 = torch.zeros(64)  # another aligned tensor of the same kind: the same compiled kernel
    _launch.launch(k, (1,), (x2, y), (64, 1), flags, MODE=0)
    assert k.log[-1][0] == "fast" and k.log[-1][1][9] == x2.data_ptr()


def test_hooks_or_opt_out_take_tritons_path(fake_runtime, monkeypatch):
    k, flags = _Kernel(), dict(FLAG=False)
    x = torch.zeros(8)
    for _ in range(2):
        _launch.launch(k, (1,), (x, x), (8, 1), flags, MODE=0)
    assert [e[0] for e in k.log] == ["triton", "fast"]
    fake_runtime.launch_enter_hook.calls.append(print)  # e.g. a profiler's hook
    _launch.launch(k, (1,), (x, x), (8, 1), flags, MODE=0)
    fake_runtime.launch_enter_hook.calls.clear()
    monkeypatch.setenv("VISIONSSM_FAST_LAUNCH", "0")
    _launch.launch(k, (1,), (x, x), (8, 1), flags, MODE=0)
    assert [e[0] for e in k.log] == ["triton", "fast", "triton", "triton"]


def test_interpreted_kernels_take_tritons_path(fake_runtime):
    # the interpreter's InterpretedFunction, like any object without a JITFunction's device_caches
    k = type("Interpreted", (), {"__init__": _Kernel.__init__, "__getitem__": _Kernel.__getitem__})()
    x = torch.zeros(8)
    for _ in range(2):
        _launch.launch(k, (1,), (x, x), (8, 1), MODE=0, FLAG=True)
    assert [e[0] for e in k.log] == ["triton", "triton"] and not _launch._cache


@pytest.mark.gpu
def test_scan_same_results_through_both_paths(monkeypatch):
    from visionssm.ops.selective_scan import selective_scan

    from .scan_cases import make_inputs, rel_err

    for shape in [(2, 64, 33, 16), (1, 64, 4000, 16)]:  # one launch; segments (segment_carry)
        x = {k: v.cuda() for k, v in make_inputs(*shape, 1, dtype=torch.float32, seed=0).items()}
        outs = []
        for fast in ("0", "1", "1"):  # Triton's path, the miss, the hit
            monkeypatch.setenv("VISIONSSM_FAST_LAUNCH", fast)
            leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
            o = selective_scan(**leaves, delta_softplus=True, backend="triton")
            o.backward(torch.ones_like(o))
            outs.append([o] + [v.grad for v in leaves.values()])
        for got in outs[1:]:
            assert torch.equal(got[0], outs[0][0])  # the forward has no atomics: bitwise
            for a, b in zip(got[1:], outs[0][1:]):  # grads are atomic float32 sums: their order may differ
                assert rel_err(a, b) <= 1e-5
