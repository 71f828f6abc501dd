"""Triton Linear + GELU (GEMM with the erf-GELU epilogue) vs the float64 F.linear + F.gelu reference: outputs
and every gradient, outputs poisoned with NaN. Interpreter on CPU; `gpu`: a VMamba-T stage-1 MLP."""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.linear_gelu import linear_gelu

from .scan_cases import rel_err, run_with_grads


def _check(lead, K, N, device, *, bias=True, dtype=torch.float32, tol=1e-5, cfg=None, monkeypatch=None):
    g = torch.Generator().manual_seed(int(torch.seed() % 2**31))
    x = {"x": torch.randn(*lead, K, generator=g, dtype=torch.float64).to(dtype).double(),
         "weight": torch.randn(N, K, generator=g, dtype=torch.float64) * K**-0.5,
         "bias": torch.randn(N, generator=g, dtype=torch.float64) if bias else None}
    ref_out, ref_g = run_with_grads(lambda **a: linear_gelu(**a, backend="reference"), x, lambda t: t)
    if cfg:
        monkeypatch.setenv("VISIONSSM_LINEAR_CFG", cfg)
    cast = lambda t: t.to(device=device, dtype=dtype if t.shape[-1] == K and t.dim() > 2 else torch.float32)
    with _alloc.poisoned_outputs():
        out, g_ = run_with_grads(lambda **a: linear_gelu(**a, backend="triton"), x, cast)
    # torch's float32 (or 16-bit) run of the same draw bounds the rounding it allows (bias grads are sums)
    out32, g32 = run_with_grads(lambda **a: linear_gelu(**a, backend="torch"), x, lambda t: cast(t).cpu())
    bound = lambda a, b: max(tol, 20 * rel_err(a, b))
    assert out[0].dtype == dtype and out[0].shape == (*lead, N)
    assert rel_err(out[0].cpu(), ref_out[0]) <= bound(out32[0], ref_out[0])
    for name, r in ref_g.items():
        assert rel_err(g_[name].cpu(), r) <= bound(g32[name], r), (name, rel_err(g_[name].cpu(), r))


@pytest.mark.parametrize("lead,K,N", [((2, 3, 5), 8, 32), ((1, 1, 7), 24, 40), ((3, 50), 16, 16)])
def test_linear_gelu_matches_reference(lead, K, N, triton_device):
    _check(lead, K, N, triton_device)


@pytest.mark.parametrize("cfg", ["16,16,16,1,1", "32,64,16,4,2"])
def test_linear_gelu_tiles_and_k_loop(cfg, triton_device, monkeypatch):
    # K = 40 over 16-wide steps (a masked last step), M and N not multiples of the tiles.
    _check((3, 37), 40, 72, triton_device, bias=False, cfg=cfg, monkeypatch=monkeypatch)


def test_linear_gelu_bf16(triton_device):
    _check((2, 33), 32, 64, triton_device, dtype=torch.bfloat16, tol=1e-2)


def test_linear_gelu_bad_shapes():
    with pytest.raises(ValueError, match="weight must be \\(N, K=8\\)"):
        linear_gelu(torch.randn(2, 8), torch.randn(4, 6))


@pytest.mark.gpu
def test_linear_gelu_gpu_vmamba_mlp():
    _check((8, 56, 56), 96, 384, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2)
