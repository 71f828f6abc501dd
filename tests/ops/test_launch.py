"""ops/_launch.py: the direct launcher must run the kernel Triton would have run for every argument set, also
when a call differs from a cached one only in what Triton specialises on (alignment, ints equal to 1 or
divisible by 16)."""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from visionssm.ops._launch import DirectLauncher, _arg_key  # noqa: E402


@triton.jit
def _affine(x_ptr, y_ptr, n, stride, shift, SCALE: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    v = tl.load(x_ptr + i * stride, mask=m, other=0.0)
    tl.store(y_ptr + i * stride, v * SCALE + shift, mask=m)


def test_arg_key_separates_what_triton_specialises():
    assert _arg_key(1) != _arg_key(2)
    assert _arg_key(16) != _arg_key(17)
    assert _arg_key(2**31) != _arg_key(2**31 - 16)
    x = torch.zeros(8)
    assert _arg_key(x) != _arg_key(x[1:])  # 4-byte offset: not 16-byte aligned
    assert _arg_key(x) != _arg_key(x.double())


@pytest.mark.gpu
def test_direct_launch_matches_triton_over_changing_arguments():
    launch = DirectLauncher(_affine)
    buf = torch.randn(4096, device="cuda")
    cases = [(0, 1000, 1), (0, 1000, 1), (1, 999, 1), (0, 512, 16), (3, 300, 3), (0, 1000, 1), (1, 64, 2)]
    for step, (offset, n, stride) in enumerate(cases * 2):
        x = buf[offset:]
        y = torch.full_like(x, float("nan"))
        shift = step - 3  # 1 and multiples of 16 excluded from nothing: a fresh value each call
        launch[(triton.cdiv(n, 128),)](x, y, n, stride, shift, SCALE=2.0, BLOCK=128, num_warps=4)
        i = torch.arange(n, device="cuda") * stride
        torch.testing.assert_close(y[i], x[i] * 2.0 + shift)
        assert torch.isnan(y[i[-1] + 1:]).all() if stride == 1 else True
    assert launch.compiled, "no key was cached: every call took Triton's path"
