"""Triton selective scan vs the float64 reference: outputs and every gradient, poisoned outputs.

On CPU these run under TRITON_INTERPRET=1 on small shapes; the `gpu` tests run real sizes on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.selective_scan import selective_scan

from .scan_cases import make_inputs, rel_err, run_with_grads

LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check(shape, groups, reverse, last_state, device, dtype=torch.float32, tol=1e-4, ref_backend="reference",
           use_z=True, seed=None):
    batch, dim, length, nstate = shape
    x = make_inputs(batch, dim, length, nstate, groups, seed=seed)
    if not use_z:
        x["z"] = None
        x["D"] = None
    kw = dict(delta_softplus=True, reverse=reverse, return_last_state=last_state)
    # Low-precision inputs are rounded first, so both sides see the same numbers.
    io = {"u", "delta", "B", "C", "z"}
    x = {k: (v.to(dtype).double() if (k in io and v is not None) else v) for k, v in x.items()}
    ref_out, ref_g = run_with_grads(
        lambda **a: selective_scan(**a, backend=ref_backend, **kw), {k: v.to(device) if v is not None else v
                                                                      for k, v in x.items()}, lambda t: t
    )
    cast = lambda t: t.to(device=device, dtype=dtype if t.dim() >= 3 else torch.float32)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: selective_scan(**a, backend="triton", **kw), x, cast)
    for o, r in zip(out, ref_out):
        assert rel_err(o, r) <= tol
    for name, r in ref_g.items():
        assert g[name].dtype == cast(x[name]).dtype, name
        assert rel_err(g[name], r) <= tol, (name, rel_err(g[name], r))


@pytest.mark.parametrize(
    "shape,groups",
    [((2, 4, 1, 16), 1), ((2, 4, 37, 16), 1), ((1, 8, 70, 16), 2), ((2, 6, 23, 1), 3), ((1, 4, 19, 64), 1),
     ((1, 2, 131, 4), 1)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_fp32_matches_reference(shape, groups, reverse, triton_device):
    _check(shape, groups, reverse, True, triton_device)


@pytest.mark.parametrize("tiles", ["l", "s", "ls"])
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_token_tile_io(tiles, reverse, monkeypatch, triton_device):
    # The forward's optional (BD, 8) token-tile loads/stores (a tuning switch) compute the same function.
    monkeypatch.setenv("VISIONSSM_SCAN_TILES", tiles)
    _check((2, 4, 29, 16), 2, reverse, True, triton_device)


def test_triton_without_gate_and_skip(triton_device):
    _check((2, 4, 29, 8), 1, False, False, triton_device, use_z=False)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_triton_low_precision_inputs(name, triton_device):
    _check((2, 4, 45, 16), 1, True, False, triton_device, dtype=LOW[name], tol=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("nstate", [1, 16, 64])
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_gpu_real_sizes_fp32(nstate, reverse):
    _check((4, 128, 1000, nstate), 1, reverse, True, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_triton_gpu_real_sizes_low_precision(name):
    _check((8, 384, 197, 16), 2, False, True, torch.device("cuda"), dtype=LOW[name], tol=1e-2)


@pytest.mark.gpu
def test_triton_gpu_long_sequence():
    _check((1, 64, 6085, 16), 1, True, True, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2, ref_backend="torch")
