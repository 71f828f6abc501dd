"""The PTX warp reduce-scatter behind the scan backward's dB/dC sums (CUDA only: inline assembly does not run
in the interpreter; tests/ops/test_scan_kernels_compile.py assembles it on CPU)."""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from visionssm.ops._warp_reduce import warp_reduce_scatter32  # noqa: E402


@triton.jit
def _column_sums(x_ptr, out_ptr):
    lanes = tl.arange(0, 32)  # one warp: lane l holds row l of x
    vals = ()
    for j in tl.static_range(32):
        vals = vals + (tl.load(x_ptr + lanes * 32 + j),)
    tl.store(out_ptr + lanes, warp_reduce_scatter32(vals))


@pytest.mark.gpu
def test_warp_reduce_scatter_gives_lane_l_the_sum_of_value_l():
    x = torch.randn(32, 32, device="cuda")
    out = torch.full((32,), float("nan"), device="cuda")
    _column_sums[(1,)](x, out, num_warps=1)
    torch.testing.assert_close(out, x.sum(0), rtol=1e-5, atol=1e-5)
