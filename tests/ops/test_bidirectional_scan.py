"""Bidirectional selective scan (Vim's two directions in one Triton launch) vs the float64 reference, which
runs one reference scan per direction (the second with reverse=True): outputs, last states and every
gradient, outputs poisoned with NaN. CPU: TRITON_INTERPRET=1 on small shapes; `gpu` tests: real sizes."""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.selective_scan import bidirectional_selective_scan

from .scan_cases import make_inputs, rel_err, run_with_grads

PAIRED = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def bidir_inputs(batch, dim, length, nstate, groups, seed=None, bc3d=False):
    """Independent random tensors per direction (prefixed f_ / b_), one shared z; bc3d: B, C (batch, N, L)."""
    f, b = (make_inputs(batch, dim, length, nstate, groups, seed=s, with_bc_groups_dim=not bc3d) for s in (seed, None))
    x = {f"{p}_{k}": src[k] for k in PAIRED for p, src in (("f", f), ("b", b))}
    x["z"] = f["z"]
    return x


def call(backend, use_z=True, use_d=True, **kw):
    def fn(**a):
        pair = lambda k: (a[f"f_{k}"], a[f"b_{k}"]) if f"f_{k}" in a else None
        return bidirectional_selective_scan(
            pair("u"), pair("delta"), pair("A"), pair("B"), pair("C"), D=pair("D") if use_d else None,
            z=a.get("z") if use_z else None, delta_bias=pair("delta_bias"), delta_softplus=True,
            return_last_state=True, backend=backend, **kw)
    return fn


def _check(shape, groups, device, *, dtype=torch.float32, tol=1e-4, use_z=True, use_d=True, ref="reference",
           bc3d=False):
    batch, dim, length, nstate = shape
    x = bidir_inputs(batch, dim, length, nstate, groups, bc3d=bc3d)
    if not use_z:
        x["z"] = None
    if not use_d:
        x["f_D"] = x["b_D"] = None
    io = {"f_u", "b_u", "f_delta", "b_delta", "f_B", "b_B", "f_C", "b_C", "z"}
    x = {k: (v.to(dtype).double() if (k in io and v is not None) else v) for k, v in x.items()}
    def ref_fn(**a):
        # y rounded to the kernel's output dtype: both backwards then get the same rounded cotangent (as in
        # test_selective_scan_triton.py; unrounded, the delta_bias grad, a sum with cancellation, missed 1e-2).
        y, last = call(ref, use_z, use_d)(**a)
        return y.to(dtype), last

    ref_out, ref_g = run_with_grads(ref_fn, {k: v.to(device) if v is not None else v for k, v in x.items()},
                                    lambda t: t)
    cast = lambda t: t.to(device=device, dtype=dtype if t.dim() >= 3 else torch.float32)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(call("triton", use_z, use_d), x, cast)
    assert out[0].shape == (batch, 2, dim, length) and out[1].shape == (batch, 2, dim, nstate)
    for o, r in zip(out, ref_out):
        assert rel_err(o, r) <= tol, rel_err(o, r)
    for name, r in ref_g.items():
        assert g[name].shape == r.shape, name
        assert rel_err(g[name], r) <= tol, (name, rel_err(g[name], r))


@pytest.mark.parametrize("shape,groups", [((2, 4, 1, 16), 1), ((2, 4, 37, 16), 1), ((1, 8, 70, 16), 2),
                                          ((1, 4, 19, 64), 1), ((2, 6, 23, 1), 3)])
def test_bidirectional_matches_reference(shape, groups, triton_device):
    _check(shape, groups, triton_device)


def test_bidirectional_3d_bc(triton_device):
    # (batch, N, L) B and C for both directions: the group axis is added inside the op; grads come back 3-D
    _check((2, 4, 37, 16), 1, triton_device, bc3d=True)


@pytest.mark.parametrize("cfg", ["2,16,1", "4,32,1"])
def test_bidirectional_blocks_and_segments(cfg, triton_device, monkeypatch):
    # Several channel blocks per direction and, at L = 150 with few programs, several time segments.
    monkeypatch.setenv("VISIONSSM_SCAN_CFG", cfg)
    _check((1, 8, 150, 16), 1, triton_device)


def test_bidirectional_without_gate_or_skip(triton_device):
    _check((2, 4, 29, 16), 1, triton_device, use_z=False, use_d=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bidirectional_low_precision(dtype, triton_device):
    _check((2, 4, 33, 16), 1, triton_device, dtype=dtype, tol=1e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("groups", [1, 2])
def test_bidirectional_no_grad_low_precision(dtype, groups, triton_device):
    # No backward follows: the four 16-bit B/C tensors are packed 16-bit (one launch) and each direction's A, D,
    # delta_bias read through its own pointers; outputs and last states vs the float64 reference.
    x = bidir_inputs(2, 8, 37, 16, groups, seed=5)
    io = {"f_u", "b_u", "f_delta", "b_delta", "f_B", "b_B", "f_C", "b_C", "z"}
    x = {k: v.to(dtype) if k in io else v for k, v in x.items()}
    ref = call("reference")(**{k: v.double() for k, v in x.items()})
    dev = {k: v.to(triton_device) for k, v in x.items()}
    with torch.no_grad(), _alloc.poisoned_outputs():
        out, last = call("triton")(**dev)
    assert out.dtype == dtype and out.shape == ref[0].shape and last.shape == ref[1].shape
    assert rel_err(out.double().cpu(), ref[0]) <= 1e-2
    assert rel_err(last.double().cpu(), ref[1]) <= 1e-4


def test_bidirectional_torch_path_matches_reference():
    x = bidir_inputs(2, 4, 21, 8, 1)
    ref = call("reference")(**x)
    out = call("torch")(**{k: v.float() for k, v in x.items()})
    for o, r in zip(out, ref):
        assert rel_err(o, r) <= 1e-5


def test_bidirectional_rejects_bad_pairs():
    x = bidir_inputs(1, 4, 5, 2, 1)
    with pytest.raises(ValueError, match="u must be a \\(forward, backward\\) pair"):
        bidirectional_selective_scan(x["f_u"], (x["f_delta"], x["b_delta"]), (x["f_A"], x["b_A"]),
                                     (x["f_B"], x["b_B"]), (x["f_C"], x["b_C"]))
    y = bidir_inputs(1, 4, 5, 3, 1)  # consistent on its own, but N = 3 against the forward's N = 2
    with pytest.raises(ValueError, match="same shapes"):
        bidirectional_selective_scan((x["f_u"], y["b_u"]), (x["f_delta"], y["b_delta"]), (x["f_A"], y["b_A"]),
                                     (x["f_B"], y["b_B"]), (x["f_C"], y["b_C"]))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(8, 384, 197, 16), (2, 768, 1025, 16)])
def test_bidirectional_gpu_vim_sizes(shape):
    _check(shape, 1, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2, ref="torch")
