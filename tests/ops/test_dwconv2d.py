"""Triton depthwise conv (+ bias, SiLU) vs the float64 F.conv2d reference: outputs and every gradient, outputs
poisoned with NaN, channels_last and NCHW maps, odd sizes, k = 3 and 5. Interpreter on CPU; `gpu`: real sizes."""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.dwconv2d import depthwise_conv2d

from .scan_cases import rel_err, run_with_grads


def _check(B, C, H, W, k, device, *, bias=True, act="silu", fmt=torch.channels_last, dtype=torch.float32, tol=1e-5):
    g = torch.Generator().manual_seed(int(torch.seed() % 2**31))
    x = {"x": torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(dtype).double(),
         "weight": torch.randn(C, 1, k, k, generator=g, dtype=torch.float64) * 0.3,
         "bias": torch.randn(C, generator=g, dtype=torch.float64) if bias else None}
    ref_out, ref_g = run_with_grads(lambda **a: depthwise_conv2d(**a, activation=act, backend="reference"), x,
                                    lambda t: t)
    is_map = lambda t: t.dim() == 4 and t.shape[1] != 1  # x (C >= 2 here), not the (C, 1, k, k) weight
    cast = lambda t: (t.to(device=device, dtype=dtype).contiguous(memory_format=fmt) if is_map(t)
                      else t.to(device=device, dtype=torch.float32))
    with _alloc.poisoned_outputs():
        out, g_ = run_with_grads(lambda **a: depthwise_conv2d(**a, activation=act, backend="triton"), x, cast)
    # The same torch computation in the kernel's dtype bounds the rounding a draw allows (sums over the batch and
    # map, as in the weight and bias grads, can cancel).
    out32, g32 = run_with_grads(lambda **a: depthwise_conv2d(**a, activation=act, backend="torch"), x,
                                lambda t: t.to(dtype if is_map(t) else torch.float32))
    bound = lambda a, b: max(tol, 20 * rel_err(a.cpu(), b))
    assert out[0].dtype == dtype
    assert out[0].is_contiguous(memory_format=fmt)
    assert rel_err(out[0].cpu(), ref_out[0]) <= bound(out32[0], ref_out[0])
    for name, r in ref_g.items():
        assert rel_err(g_[name].cpu(), r) <= bound(g32[name], r), (name, rel_err(g_[name].cpu(), r))


@pytest.mark.parametrize("H,W,C", [(5, 7, 4), (1, 9, 3), (8, 1, 2), (6, 6, 70)])
@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
def test_dwconv_matches_reference(H, W, C, fmt, triton_device):
    _check(2, C, H, W, 3, triton_device, fmt=fmt)


@pytest.mark.parametrize("k,bias,act", [(5, True, None), (3, False, "silu"), (1, True, "silu")])
def test_dwconv_kernel_sizes_and_options(k, bias, act, triton_device):
    _check(1, 6, 7, 5, k, triton_device, bias=bias, act=act)


def test_dwconv_bf16(triton_device):
    _check(2, 16, 6, 5, 3, triton_device, dtype=torch.bfloat16, tol=1e-2)


def test_dwconv_bad_input_is_one_line_error():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match="weight must be \\(4, 1, k, k\\) with odd k"):
        depthwise_conv2d(x, torch.randn(4, 1, 2, 2))
    with pytest.raises(ValueError, match="activation must be one of"):
        depthwise_conv2d(x, torch.randn(4, 1, 3, 3), activation="gelu")


@pytest.mark.gpu
@pytest.mark.parametrize("C,H,W", [(96, 56, 56), (768, 7, 7)])
def test_dwconv_gpu_vmamba_sizes(C, H, W):
    _check(4, C, H, W, 3, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2)
