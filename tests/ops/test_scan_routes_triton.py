"""Triton routed scan vs the float64 explicit-permutation reference: outputs and every gradient.

On CPU these run under TRITON_INTERPRET=1 on tiny maps; the `gpu` tests run VMamba-T stage shapes on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.scan_routes import cross_routes, routed_selective_scan
from visionssm.ops.scan_routes.triton_routed import launch_config

from .scan_cases import rel_err, run_with_grads
from .test_scan_routes import make_route_inputs, make_routes, random_routes

LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check(kind, H, W, batch, ch, nstate, device, *, u_shared=True, merge=True, dtype=torch.float32, tol=1e-4,
           use_d=True, out_dtype=None, seed=0, ref_backend="reference", output_order="map", token_major=False):
    """token_major: u and delta channel-contiguous, B and C state-contiguous (the layout SS2D passes from
    channels_last maps)."""
    index = make_routes(kind, H, W) if isinstance(kind, str) else kind
    x = make_route_inputs(batch, ch, index.shape[0], H * W, nstate, u_shared=u_shared, seed=seed)
    if not use_d:
        x["D"] = x["delta_bias"] = None
    # Low-precision inputs are rounded first, so both sides see the same numbers.
    io = {"u", "delta", "B", "C"}
    x = {k: (v.to(dtype).double() if k in io and v is not None else v) for k, v in x.items()}
    kw = dict(merge=merge, out_dtype=out_dtype, output_order=output_order)
    ref_out, ref_g = run_with_grads(
        lambda **a: routed_selective_scan(**a, index=index.to(device), backend=ref_backend, **kw),
        {k: v.to(device) if v is not None else v for k, v in x.items()}, lambda t: t,
    )
    cast = lambda t: t.to(device=device, dtype=dtype if t.dim() >= 3 else torch.float32)
    if token_major:
        plain = cast
        relayout = lambda t: t.transpose(1, -1).contiguous().transpose(1, -1) if t.dim() >= 3 else t
        cast = lambda t: relayout(plain(t))
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(
            lambda **a: routed_selective_scan(**a, index=index.to(device), backend="triton", **kw), x, cast
        )
    assert out[0].dtype == (out_dtype or dtype)
    assert rel_err(out[0], ref_out[0]) <= tol
    for name, r in ref_g.items():
        assert g[name].dtype == cast(x[name]).dtype, name
        assert rel_err(g[name], r) <= tol, (name, rel_err(g[name], r))


@pytest.mark.parametrize("kind", ["cross", "snake", "atrous", "multiscale"])
@pytest.mark.parametrize("u_shared,merge", [(True, True), (False, False)])
def test_triton_fp32_matches_reference(kind, u_shared, merge, triton_device):
    _check(kind, 2, 4, 2, 4, 3, triton_device, u_shared=u_shared, merge=merge)


@pytest.mark.parametrize("kind", ["cross", "multiscale"])
def test_triton_segmented_routes(kind, triton_device):
    """Routes long enough to be cut into segments (n_seg > 1) and several saved chunks per segment."""
    H, W = (8, 9) if kind == "cross" else (5, 5)
    K, lr = make_routes(kind, H, W).shape
    assert launch_config(1, K * 2, 2, 2, lr)[-1] > 1
    _check(kind, H, W, 1, 2, 2, triton_device, u_shared=kind == "cross", merge=True, seed=1)


@pytest.mark.parametrize("merge", [True, False])
def test_triton_arbitrary_routes(merge, triton_device):
    """Three routes of 7 steps over a 2x3 map: repeated and unvisited positions (atomics + zero fill)."""
    _check(random_routes(3, 7, 6, seed=11), 2, 3, 2, 2, 2, triton_device, u_shared=not merge, merge=merge)


@pytest.mark.parametrize("kind", ["cross", "multiscale"])
def test_triton_route_order_outputs(kind, triton_device):
    _check(kind, 2, 3, 2, 2, 2, triton_device, merge=False, output_order="route")


def test_triton_without_skip_and_bias_odd_sizes(triton_device):
    _check("snake", 3, 3, 1, 3, 5, triton_device, use_d=False, merge=False)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_triton_low_precision_inputs(name, triton_device):
    _check("cross", 3, 4, 2, 2, 4, triton_device, dtype=LOW[name], tol=1e-2)


def test_triton_float32_output_from_bf16(triton_device):
    _check("atrous", 4, 4, 1, 2, 2, triton_device, dtype=torch.bfloat16, out_dtype=torch.float32, tol=1e-2)


def test_triton_rejects_out_of_range_index_on_device(triton_device):
    index = cross_routes(2, 3).to(triton_device)
    index[1, 2] = 6
    x = {k: v.float().to(triton_device) for k, v in make_route_inputs(1, 2, 4, 6, 2).items()}
    with pytest.raises(ValueError, match="index values"):
        routed_selective_scan(**x, index=index, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("nstate", [1, 16])
@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_triton_gpu_vmamba_t_stage1(nstate, name):
    """VMamba-T stage 1: batch 8, d_inner 96, 56 x 56, K=4."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
    _check("cross", 56, 56, 8, 96, nstate, torch.device("cuda"), dtype=dtype, tol=1e-4 if name == "fp32" else 1e-2,
           ref_backend="torch")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["snake", "atrous", "multiscale"])
def test_triton_gpu_other_routes(kind):
    _check(kind, 28, 28, 4, 96, 16, torch.device("cuda"), u_shared=kind != "atrous", merge=kind != "snake",
           ref_backend="torch")


def test_route_kind_is_cached_per_index_tensor_and_sees_inplace_edits():
    from visionssm.ops.scan_routes.triton_routed import _route_kind

    index = cross_routes(2, 3)
    first = _route_kind(index, 6, torch.device("cpu"))
    assert first[0].dtype == torch.int32 and first[1] and first[2]
    assert _route_kind(index, 6, torch.device("cpu"))[0] is first[0]
    index[0, 0] = 1  # now route 0 visits position 1 twice
    idx, injective, covers = _route_kind(index, 6, torch.device("cpu"))
    assert idx[0, 0] == 1 and not injective and not covers
    assert not _route_kind(torch.tensor([[0, 2]]), 4, torch.device("cpu"))[2]  # injective, not covering


def test_triton_under_inference_mode(triton_device):
    with torch.inference_mode():
        index = cross_routes(2, 3).to(triton_device)
        x = {k: v.float().to(triton_device) for k, v in make_route_inputs(1, 2, 4, 6, 2, seed=5).items()}
        y = routed_selective_scan(**x, index=index, backend="triton")
        ref = routed_selective_scan(**x, index=index, backend="reference")
    assert rel_err(y, ref) < 1e-5


@pytest.mark.parametrize("H,W", [(28, 28), (4, 6)])
def test_smalln_routes_inference_config(H, W, triton_device):
    # No grad, token-major inputs (SS2D in eval): one-warp tiles, 32 channels x 16 steps on long routes,
    # 16 x 32 on short ones; outputs as the reference.
    from visionssm.ops.scan_routes.triton_routed_smalln import routed_smalln_config

    cfg = routed_smalln_config(1, 128, 32, 1, H * W, True, True)[:3]
    assert cfg == ((32, 16, 1) if H * W >= 784 else (16, 32, 1))
    index = cross_routes(H, W).to(triton_device)
    x = make_route_inputs(1, 32, 4, H * W, 1, seed=7)
    token_major = lambda t: t.transpose(1, -1).contiguous().transpose(1, -1) if t.dim() >= 3 else t
    with torch.no_grad():
        ref = routed_selective_scan(**{k: v.double() for k, v in x.items()}, index=index.cpu(), backend="reference")
        with _alloc.poisoned_outputs():
            y = routed_selective_scan(**{k: token_major(v.float().to(triton_device)) for k, v in x.items()},
                                      index=index, backend="triton")
    assert rel_err(y, ref.to(y.device)) <= 1e-4


# --- time-parallel small-N path (triton_routed_smalln.py, N <= 4) --------------------------------------------
@pytest.fixture
def routed_smalln_calls(monkeypatch):
    """Counts the routed small-N kernel's launches; small tiles (16 steps, 2 channels) so that tiny maps span
    several tiles and, on longer routes, several segments."""
    from visionssm.ops.scan_routes import triton_routed_smalln

    calls = []
    real = triton_routed_smalln.RoutedSmallNScan

    class Spy(real):
        @staticmethod
        def forward(ctx, *args):
            calls.append(args[2].shape[1])  # N, from A (K*C, N)
            return real.forward(ctx, *args)

    monkeypatch.setattr(triton_routed_smalln, "RoutedSmallNScan", Spy)
    monkeypatch.setenv("VISIONSSM_ROUTES_SMALLN_CFG", "2,16,1")
    return calls


@pytest.mark.parametrize(
    "kind,H,W,nstate,u_shared,merge",
    [("cross", 4, 5, 1, True, True), ("snake", 3, 6, 1, False, False), ("atrous", 4, 4, 2, False, True),
     ("multiscale", 4, 4, 3, True, True), ("cross", 8, 9, 1, True, True), ("cross", 1, 1, 4, False, False)],
)
def test_smalln_routes_fp32_matches_reference(kind, H, W, nstate, u_shared, merge, routed_smalln_calls,
                                              triton_device):
    # 8 x 9 cross: 72-step routes = 2 segments of 3 tiles; 1 x 1: one-step routes.
    _check(kind, H, W, 2, 4, nstate, triton_device, u_shared=u_shared, merge=merge)
    assert routed_smalln_calls == [nstate]


@pytest.mark.parametrize("merge", [True, False])
def test_smalln_arbitrary_routes(merge, routed_smalln_calls, triton_device):
    """Repeated and unvisited positions (atomics + zero fill), routes of 19 steps (two tiles)."""
    _check(random_routes(3, 19, 6, seed=3), 2, 3, 2, 2, 1, triton_device, u_shared=not merge, merge=merge)
    assert routed_smalln_calls == [1]


def test_smalln_route_order_outputs_without_skip(routed_smalln_calls, triton_device):
    _check("cross", 3, 6, 2, 2, 1, triton_device, merge=False, output_order="route", use_d=False)
    assert routed_smalln_calls == [1]


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_smalln_routes_low_precision_inputs(name, routed_smalln_calls, triton_device):
    _check("cross", 3, 6, 2, 2, 1, triton_device, dtype=LOW[name], tol=1e-2)
    assert routed_smalln_calls == [1]


@pytest.mark.parametrize("kind,merge", [("cross", True), ("multiscale", False), ("snake", False)])
def test_smalln_routes_token_major_inputs(kind, merge, routed_smalln_calls, triton_device):
    """Channel-contiguous inputs take token-major outputs (and the token-major route sum)."""
    _check(kind, 3, 6, 2, 4, 1, triton_device, merge=merge, token_major=True,
           output_order="route" if kind == "multiscale" else "map")
    assert routed_smalln_calls == [1]


@pytest.mark.parametrize("kind", ["cross", "atrous"])
@pytest.mark.parametrize("merge_mode", ["atomic", "sum"])
def test_smalln_routes_token_major_merge_modes(kind, merge_mode, routed_smalln_calls, monkeypatch, triton_device):
    """atomic (default): the routes add into one zeroed map inside the kernel; sum: K maps, summed after."""
    monkeypatch.setenv("VISIONSSM_ROUTES_MERGE", merge_mode)
    _check(kind, 4, 6, 2, 4, 1, triton_device, token_major=True, out_dtype=torch.float32)
    assert routed_smalln_calls == [1]


def test_smalln_routes_switch_keeps_old_path(routed_smalln_calls, monkeypatch, triton_device):
    """VISIONSSM_ROUTES_SMALLN=0 runs the one-step-per-iteration kernel for N <= 4 (both paths stay tested)."""
    monkeypatch.setenv("VISIONSSM_ROUTES_SMALLN", "0")
    _check("cross", 3, 4, 2, 2, 1, triton_device)
    assert routed_smalln_calls == []


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["cross", "snake", "atrous", "multiscale"])
def test_smalln_routes_gpu_vmamba_v2(kind, name):
    """VMamba v2 (N = 1) at stage-1 size; other route kinds at 28 x 28."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
    H = 56 if kind == "cross" else 28
    _check(kind, H, H, 4, 96, 1, torch.device("cuda"), u_shared=kind != "atrous", merge=kind != "snake",
           dtype=dtype, tol=1e-4 if name == "fp32" else 1e-2, ref_backend="torch")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_smalln_routes_gpu_token_major(name):
    """VMamba-T stage 1 in the model's layout (channels_last maps)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
    _check("cross", 56, 56, 4, 96, 1, torch.device("cuda"), dtype=dtype, tol=1e-4 if name == "fp32" else 1e-2,
           ref_backend="torch", token_major=True)


@pytest.mark.gpu
def test_smalln_routes_gpu_segments():
    """Batch 1: few programs, so routes are cut into segments."""
    _check("cross", 56, 56, 1, 96, 1, torch.device("cuda"), ref_backend="torch")
