"""ops.layer_norm: the Triton kernel vs the float64 reference, outputs and every gradient.

On CPU the kernel runs under TRITON_INTERPRET=1 on small maps; the `gpu` tests use VMamba-T sizes."""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.layer_norm import layer_norm, layer_norm_reference

from .scan_cases import rel_err


def _inputs(rows_shape, C, dtype, device, seed=0, token_major_map=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*rows_shape, C, generator=g, dtype=torch.float64) * 2 + 0.5
    w = torch.randn(C, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64)
    x = x.to(device=device, dtype=dtype)
    if token_major_map:  # (B, H, W, C) view of a channels_last NCHW map, as LayerNorm2d passes it
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    return x, w.to(device=device, dtype=torch.float32), b.to(device=device, dtype=torch.float32)


def _check(rows_shape, C, dtype, device, out_dtype=None, tol=1e-4, affine=True, token_major_map=False):
    x, w, b = _inputs(rows_shape, C, dtype, device, token_major_map=token_major_map)
    if not affine:
        w = b = None
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b)]
    with _alloc.poisoned_outputs():
        y = layer_norm(*leaves, eps=1e-5, out_dtype=out_dtype, backend="triton")
    assert y.dtype == (out_dtype or dtype) and y.shape == x.shape
    ref_leaves = [t.detach().double().requires_grad_() if t is not None else None for t in (x, w, b)]
    ref = layer_norm_reference(*ref_leaves, eps=1e-5)
    assert rel_err(y, ref) <= tol
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], dy.to(device=device, dtype=y.dtype))
    ref_grads = torch.autograd.grad(ref, [t for t in ref_leaves if t is not None], dy.to(device))
    for name, got, want in zip("xwb", grads, ref_grads):
        assert got.dtype == leaves["xwb".index(name)].dtype
        assert rel_err(got, want) <= tol, (name, rel_err(got, want))


@pytest.mark.parametrize("rows_shape,C", [((5,), 20), ((3, 7), 48), ((2, 3), 3), ((37,), 96)])
def test_triton_matches_reference_fp32(rows_shape, C, triton_device):
    _check(rows_shape, C, torch.float32, triton_device)


def test_triton_token_major_map_and_no_affine(triton_device):
    _check((2, 3, 5), 12, torch.float32, triton_device, token_major_map=True)
    _check((4, 3), 10, torch.float32, triton_device, affine=False)


@pytest.mark.parametrize("dtype,out_dtype", [(torch.bfloat16, None), (torch.float32, torch.bfloat16),
                                             (torch.float16, torch.float32)])
def test_triton_low_precision(dtype, out_dtype, triton_device):
    _check((3, 5), 24, dtype, triton_device, out_dtype=out_dtype, tol=1e-2)


def test_rejects_wrong_weight_shape():
    x, w, b = _inputs((2,), 8, torch.float32, "cpu")
    with pytest.raises(ValueError, match="weight must be \\(8,\\)"):
        layer_norm(x, w[:4], b)


@pytest.mark.gpu
@pytest.mark.parametrize("C,hw", [(48, 112), (96, 56), (768, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_gpu_vmamba_sizes(C, hw, dtype):
    _check((8, hw, hw), C, dtype, torch.device("cuda"), token_major_map=True,
           tol=1e-4 if dtype == torch.float32 else 1e-2)
