"""Fused four-route cross scan (dt projection inside the kernels) vs the float64 reference.

The reference forms delta explicitly and runs the explicit-permutation routed scan. The Triton path is
forward-only, so outputs are compared (there are no gradients to check); its training counterpart,
routed_selective_scan, is tested with every gradient in test_scan_routes_triton.py. On CPU the kernels
run under TRITON_INTERPRET=1 on small maps; the `gpu` tests run VMamba-T stage shapes.
"""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.scan_routes.cross_fused import fused_cross_scan, fused_cross_scan_reference

from .scan_cases import rel_err


def make_cross_inputs(batch, ch, H, W, R, *, nstate=1, seed=None, channels_last=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % (2**31))
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    L = H * W
    u = r(batch, L, ch).transpose(1, 2) if channels_last else r(batch, ch, L)
    x_dbl = r(batch, L, 4, R + 2 * nstate)
    return {
        "u": u.to(dtype),
        "x_dbl": x_dbl.to(dtype),
        "dt_weight": r(4, ch, R) * R**-0.5,
        "A": -torch.rand(4 * ch, nstate, generator=g, dtype=torch.float64) * 3 - 0.1,
        "D": r(4 * ch),
        "delta_bias": r(4 * ch) * 0.5 - 1.0,
    }


def _check(batch, ch, H, W, R, device, *, dtype=torch.float32, tol=1e-4, use_bias=True, use_d=True,
           channels_last=True, nstate=1):
    x = make_cross_inputs(batch, ch, H, W, R, channels_last=channels_last, dtype=dtype, nstate=nstate)
    if not use_bias:
        x["delta_bias"] = None
    if not use_d:
        x["D"] = None
    ref = fused_cross_scan_reference(**{k: v.double() if v is not None else v for k, v in x.items()}, H=H, W=W)
    on_dev = {k: v.to(device) if v is not None else v for k, v in x.items()}
    if channels_last:  # .to(device) keeps the strides; checked here so the layout under test is the intended one
        assert on_dev["u"].stride(1) == 1
    with _alloc.poisoned_outputs(), torch.no_grad():
        out = fused_cross_scan(**on_dev, H=H, W=W, backend="triton")
    assert out.dtype == torch.float32 and out.shape == (batch, ch, H * W)
    out = out.cpu()
    assert rel_err(out, ref) <= tol, rel_err(out, ref)


@pytest.mark.parametrize("H,W", [(3, 5), (1, 7), (6, 1), (1, 1), (7, 6)])
def test_fused_cross_matches_reference(H, W, triton_device):
    _check(2, 4, H, W, 2, triton_device)


@pytest.mark.parametrize("cfg", ["4,16,1", "2,16,1", "16,32,2"])
@pytest.mark.parametrize("H,W,ch,nstate", [(9, 5, 6, 1), (13, 3, 4, 2), (7, 6, 8, 1)])
def test_fused_cross_tiles_and_segments(cfg, H, W, ch, nstate, triton_device, monkeypatch):
    # Tiles of the routed kernel shorter than the routes, routes cut into segments (few programs here), and
    # channel blocks narrower than C: every carry path of the kernel is used.
    monkeypatch.setenv("VISIONSSM_ROUTES_SMALLN_CFG", cfg)
    _check(2, ch, H, W, 3, triton_device, nstate=nstate)


@pytest.mark.parametrize("use_bias,use_d,channels_last", [(False, True, True), (True, False, False),
                                                           (False, False, False)])
def test_fused_cross_optional_terms_and_layout(use_bias, use_d, channels_last, triton_device):
    _check(1, 4, 5, 4, 2, triton_device, use_bias=use_bias, use_d=use_d, channels_last=channels_last)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_cross_low_precision_inputs(dtype, triton_device):
    _check(2, 8, 6, 5, 3, triton_device, dtype=dtype, tol=1e-2)


def test_fused_cross_torch_path_matches_reference():
    x = make_cross_inputs(2, 4, 5, 3, 2)
    ref = fused_cross_scan_reference(**x, H=5, W=3)
    out = fused_cross_scan(**{k: v.float() for k, v in x.items()}, H=5, W=3, backend="torch")
    assert rel_err(out, ref) <= 1e-5


def test_fused_cross_rejects_bad_input(triton_device):
    x = make_cross_inputs(1, 4, 3, 3, 2, dtype=torch.float32)
    x = {k: v.float().to(triton_device) for k, v in x.items()}
    with pytest.raises(ValueError, match="x_dbl must be"):
        fused_cross_scan(**{**x, "x_dbl": x["x_dbl"][..., 1:]}, H=3, W=3, backend="triton")
    with pytest.raises(ValueError, match="H\\*W=12"):
        fused_cross_scan(**x, H=3, W=4, backend="triton")
    with pytest.raises(ValueError, match="d_state <= 4"):
        y = make_cross_inputs(1, 4, 3, 3, 2, nstate=5)
        fused_cross_scan(**{k: v.float().to(triton_device) for k, v in y.items()}, H=3, W=3, backend="triton")
    with pytest.raises(RuntimeError, match="forward-only"):
        fused_cross_scan(**{**x, "u": x["u"].requires_grad_()}, H=3, W=3, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("H,W,ch,R", [(56, 56, 96, 6), (28, 28, 192, 12), (14, 14, 384, 24), (7, 7, 768, 48)])
def test_fused_cross_gpu_vmamba_stages(H, W, ch, R):
    _check(2, ch, H, W, R, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2)
    _check(1, ch, H, W, R, torch.device("cuda"))
