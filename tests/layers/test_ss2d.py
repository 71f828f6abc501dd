"""SS2D (VMamba / EfficientVMamba) and MS2D (MSVMamba) mixers against explicit float64 re-statements of the
official computations (permuted copies per route, one plain selective scan each, un-permute, merge), on
outputs and every parameter gradient; official parameter names/shapes; torch vs Triton paths."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from visionssm.layers.ms2d import MS2D
from visionssm.layers.ss2d import SS2D
from visionssm.ops.selective_scan import selective_scan_reference


def _route_scan(m, k, xs):
    """Plain selective scan of the sequences xs (B, D, L) with parameter set k (official per-route recipe)."""
    x_dbl = torch.einsum("bdl,cd->bcl", xs, m.x_proj_weight[k])
    dt, b, c = x_dbl.split([m.dt_rank, m.d_state, m.d_state], dim=1)
    delta = torch.einsum("brl,dr->bdl", dt, m.dt_projs_weight[k])
    rows = slice(k * m.d_inner, (k + 1) * m.d_inner)
    return selective_scan_reference(xs, delta, -torch.exp(m.A_logs[rows]), b, c, m.Ds[rows],
                                     delta_bias=m.dt_projs_bias[k], delta_softplus=True)


def cross_reference(m, x):
    """Official SS2D: cross-scan copies (row, col, reversed), scan each, merge by summing un-permuted outputs."""
    H, W = x.shape[-2:]
    row, col = x.flatten(2), x.transpose(2, 3).flatten(2)
    ys = [_route_scan(m, k, s) for k, s in enumerate([row, col, row.flip(-1), col.flip(-1)])]
    untranspose = lambda y: y.view(*y.shape[:2], W, H).transpose(2, 3).reshape(y.shape)
    return (ys[0] + ys[2].flip(-1) + untranspose(ys[1]) + untranspose(ys[3].flip(-1))).view(x.shape)


def atrous_reference(m, x):
    """Official EfficientScan/EfficientMerge: pad to even; routes over the 2x2 sub-grids (0,0) rows, (1,0)
    columns, (0,1) rows, (1,1) columns; each pixel receives its own route's output; crop."""
    H, W = x.shape[-2:]
    x = F.pad(x, (0, W % 2, 0, H % 2))
    y = torch.zeros_like(x)
    for k, (ph, pw, by_col) in enumerate([(0, 0, False), (1, 0, True), (0, 1, False), (1, 1, True)]):
        sub = x[..., ph::2, pw::2]
        seq = sub.transpose(2, 3) if by_col else sub
        out = _route_scan(m, k, seq.flatten(2)).view(seq.shape)
        y[..., ph::2, pw::2] = out.transpose(2, 3) if by_col else out
    return y[..., :H, :W]


def ss2d_reference(m, x):
    x = m.in_proj(x)
    if m.gate:
        x, z = x.chunk(2, dim=1)
    x = F.silu(m.conv2d(x) if m.conv2d is not None else x)
    y = m.out_norm((cross_reference if m.routes == "cross" else atrous_reference)(m, x))
    return m.out_proj(y * F.silu(z) if m.gate else y)


def ms2d_reference(m, x):
    """Official MS2D: full-res row-major scan (set 1); half-res concatenated [row reversed, col, col reversed]
    scan (set 0), out_norm on each visit, parts summed, bilinear up; SE; SiLU(z) gate."""
    x, z = m.in_proj(x).chunk(2, dim=1)
    full, low = F.silu(m.conv2d(x)), F.silu(m.conv2d_b1(x))
    (H, W), (h, w), n = full.shape[-2:], low.shape[-2:], low.shape[-1] * low.shape[-2]
    row, col = low.flatten(2), low.transpose(2, 3).flatten(2)
    y = _route_scan(m, 0, torch.cat([row.flip(-1), col, col.flip(-1)], -1))
    y = m.out_norm(y[..., None])[..., 0]  # LayerNorm over channels, per visit
    parts = y[..., :n].flip(-1), y[..., n:2 * n], y[..., 2 * n:].flip(-1)
    low_y = parts[0].view(low.shape) + sum(p.view(*p.shape[:2], w, h).transpose(2, 3) for p in parts[1:])
    full_y = m.out_norm(_route_scan(m, 1, full.flatten(2)).view(full.shape))
    y = full_y + F.interpolate(low_y, size=(H, W), mode="bilinear", align_corners=False)
    return m.out_proj(m.se(y) * F.silu(z))


V0 = dict(d_state=4, ssm_ratio=2.0, conv_bias=True, gate=True, force_fp32=True)
V2 = dict(d_state=1, ssm_ratio=1.0, conv_bias=False, gate=False)
CASES = [("v0-cross", V0, "cross", (6, 5)), ("v2-cross", V2, "cross", (4, 7)),
         ("v0-atrous", V0, "atrous", (6, 4)), ("v0-atrous-odd", V0, "atrous", (5, 7))]


def _randomise(m):
    """Non-default values everywhere (D != 1, spread A), so every parameter matters in the comparison."""
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))


@pytest.mark.parametrize("label,kwargs,routes,hw", CASES, ids=[c[0] for c in CASES])
def test_ss2d_matches_official_recipe_and_gradients(label, kwargs, routes, hw):
    torch.manual_seed(0)
    m = SS2D(8, routes=routes, backend="torch", **kwargs).double()
    _randomise(m)
    x = torch.randn(2, 8, *hw, dtype=torch.float64, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape and y.dtype == torch.float64
    y_ref = ss2d_reference(m, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-11)
    g = torch.randn_like(y)
    params = [x, *m.parameters()]
    grads = torch.autograd.grad(y, params, g)
    grads_ref = torch.autograd.grad(y_ref, params, g)
    for (name, _), a, b in zip([("x", None), *m.named_parameters()], grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)


@settings(max_examples=12, deadline=None)
@given(H=st.integers(1, 7), W=st.integers(1, 7), n=st.integers(1, 5), gate=st.booleans(),
       routes=st.sampled_from(["cross", "atrous"]), seed=st.integers(0, 2**16))
def test_ss2d_any_map_size_matches_official_recipe(H, W, n, gate, routes, seed):
    torch.manual_seed(seed)
    m = SS2D(8, d_state=n, ssm_ratio=1.5, gate=gate, conv_bias=gate, routes=routes, backend="torch").double()
    _randomise(m)
    x = torch.randn(1, 8, H, W, dtype=torch.float64)
    torch.testing.assert_close(m(x), ss2d_reference(m, x), rtol=1e-9, atol=1e-11)


def test_ms2d_matches_official_recipe_and_gradients():
    torch.manual_seed(1)
    m = MS2D(8, d_state=2, backend="torch").double()
    _randomise(m)
    x = torch.randn(2, 8, 7, 6, dtype=torch.float64, requires_grad=True)  # odd: half-res map is 4 x 3
    y, y_ref = m(x), ms2d_reference(m, x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-11)
    params = [x, *m.parameters()]
    for a, b, name in zip(torch.autograd.grad(y.sum(), params), torch.autograd.grad(y_ref.sum(), params),
                          ["x"] + [n for n, _ in m.named_parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)


def test_official_parameter_names_and_shapes():
    """VMamba-T[s1l8] stage-1 block (spec §1.4): C=96, D=96, R=6, N=1; and a v0 mixer (C=96, D=192, N=16)."""
    shapes = {n: tuple(p.shape) for n, p in SS2D(96, d_state=1, ssm_ratio=1.0).named_parameters()}
    assert shapes == {
        "in_proj.weight": (96, 96), "conv2d.weight": (96, 1, 3, 3), "x_proj_weight": (4, 8, 96),
        "dt_projs_weight": (4, 96, 6), "dt_projs_bias": (4, 96), "A_logs": (384, 1), "Ds": (384,),
        "out_norm.weight": (96,), "out_norm.bias": (96,), "out_proj.weight": (96, 96),
    }
    v0 = {n: tuple(p.shape) for n, p in SS2D(96, d_state=16, ssm_ratio=2.0, gate=True, conv_bias=True)
          .named_parameters()}
    assert v0["in_proj.weight"] == (384, 96) and v0["conv2d.bias"] == (192,) and v0["A_logs"] == (768, 16)
    assert v0["x_proj_weight"] == (4, 38, 192)


def test_init_follows_mamba_init():
    m = SS2D(32, d_state=4, ssm_ratio=2.0)
    torch.testing.assert_close(m.A_logs, torch.log(torch.arange(1.0, 5.0)).expand(256, 4))
    assert torch.equal(m.Ds, torch.ones(256)) and m.A_logs._no_weight_decay and m.Ds._no_weight_decay
    dt = F.softplus(m.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert m.dt_projs_weight.abs().max() <= 2**-0.5  # dt_rank 2: U(-R^-1/2, R^-1/2)


def test_bf16_autocast_runs_scan_in_float32_out():
    m = SS2D(8, routes="cross")
    x = torch.randn(1, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), m(x), rtol=0.05, atol=0.05)


def test_bad_routes_name_is_one_line_error():
    with pytest.raises(ValueError, match="unknown routes 'zigzag'"):
        SS2D(8, routes="zigzag")


@pytest.mark.parametrize("routes,gate,fmt", [
    ("cross", False, torch.channels_last), ("atrous", True, torch.channels_last),
    ("cross", True, torch.contiguous_format),
])
def test_torch_and_triton_paths_agree(routes, gate, fmt, triton_device):
    """channels_last maps reach the scan channel-contiguous (u, delta strided views), NCHW ones L-contiguous."""
    torch.manual_seed(2)
    m = SS2D(16, d_state=2, ssm_ratio=1.0, routes=routes, gate=gate, backend="torch").to(triton_device)
    x = torch.randn(2, 16, 6, 6, device=triton_device).contiguous(memory_format=fmt).requires_grad_()
    y = m(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    m.backend = "triton"
    y_t = m(x)
    (gx_t,) = torch.autograd.grad(y_t.square().sum(), x)
    torch.testing.assert_close(y_t, y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx_t, gx, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
def test_v2_inference_takes_the_fused_cross_scan(fmt, triton_device, monkeypatch):
    """By default, under no_grad a v2 SS2D (cross, N = 1) on the Triton path runs fused_cross_scan (dt
    projection in the kernel); it matches the float64 official recipe, training (grad enabled) keeps the routed
    scan, and VISIONSSM_CROSS_FUSED=0 turns it off."""
    import visionssm.layers.ss2d as ss2d_mod

    monkeypatch.delenv("VISIONSSM_CROSS_FUSED", raising=False)
    torch.manual_seed(3)
    m = SS2D(16, **V2, backend="triton").to(triton_device)
    _randomise(m)
    x = torch.randn(2, 16, 5, 7, device=triton_device).contiguous(memory_format=fmt)
    calls = []
    fused = ss2d_mod.fused_cross_scan
    monkeypatch.setattr(ss2d_mod, "fused_cross_scan", lambda *a, **k: calls.append(1) or fused(*a, **k))
    with torch.no_grad():
        y = m(x)
    assert calls == [1]
    m_ref = SS2D(16, **V2, backend="torch").double()
    m_ref.load_state_dict(m.state_dict())
    y_ref = ss2d_reference(m_ref, x.cpu().double())
    torch.testing.assert_close(y.cpu().double(), y_ref, rtol=1e-4, atol=1e-5)
    m.train()
    y_train = m(x.requires_grad_())
    assert calls == [1] and y_train.requires_grad
    monkeypatch.setenv("VISIONSSM_CROSS_FUSED", "0")
    with torch.no_grad():
        m(x)
    assert calls == [1]
    monkeypatch.delenv("VISIONSSM_CROSS_FUSED")
    with torch.no_grad(), FlopCounterMode(display=False):
        m(x)
    assert calls == [1]  # counting FLOPs keeps the dt projection an aten GEMM the counter sees


@pytest.mark.parametrize("conv_bias", [False, True])
def test_triton_depthwise_conv_option_matches(conv_bias, triton_device, monkeypatch):
    """VISIONSSM_DWCONV=triton runs SS2D's conv + SiLU as one Triton kernel; output and grads match cuDNN/torch."""
    torch.manual_seed(5)
    m = SS2D(16, **{**V2, "conv_bias": conv_bias}, backend="triton").to(triton_device)
    x = torch.randn(2, 16, 5, 6, device=triton_device).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = m(x)
    grads = torch.autograd.grad(y.square().sum(), [x, m.conv2d.weight])
    monkeypatch.setenv("VISIONSSM_DWCONV", "triton")
    calls = []
    import visionssm.layers.ss2d as ss2d_mod

    real = ss2d_mod.depthwise_conv2d
    monkeypatch.setattr(ss2d_mod, "depthwise_conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    y_t = m(x)
    grads_t = torch.autograd.grad(y_t.square().sum(), [x, m.conv2d.weight])
    assert calls == [1]
    torch.testing.assert_close(y_t, y, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_t, grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_triton_mlp_option_matches(triton_device, monkeypatch):
    """VISIONSSM_MLP=triton runs a VSS block's fc1 + GELU as one Triton kernel on channels_last maps; the block's
    output and grads match the default path."""
    from visionssm.layers.vss_block import VSSBlock

    torch.manual_seed(6)
    blk = VSSBlock(16, **V2, backend="triton").to(triton_device)
    x = torch.randn(2, 16, 4, 5, device=triton_device).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = blk(x)
    grads = torch.autograd.grad(y.square().sum(), [x, blk.mlp.fc1.weight, blk.mlp.fc1.bias])
    monkeypatch.setenv("VISIONSSM_MLP", "triton")
    import visionssm.layers.vss_block as vb

    calls = []
    real = vb.linear_gelu
    monkeypatch.setattr(vb, "linear_gelu", lambda *a, **k: calls.append(1) or real(*a, **k))
    y_t = blk(x)
    grads_t = torch.autograd.grad(y_t.square().sum(), [x, blk.mlp.fc1.weight, blk.mlp.fc1.bias])
    assert calls == [1]
    torch.testing.assert_close(y_t, y, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_t, grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_dt_proj_block_diagonal_gemm_matches_einsum(monkeypatch):
    # The block-diagonal GEMM (default) and the per-route einsum give the same token-major delta.
    from visionssm.layers.ss2d import RoutedSSM

    g = torch.Generator().manual_seed(5)
    dts = torch.randn(2, 7, 4, 3, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    fast = RoutedSSM._dt_proj(dts, weight)
    monkeypatch.setenv("VISIONSSM_DT_PROJ", "einsum")
    slow = RoutedSSM._dt_proj(dts, weight)
    assert fast.shape == slow.shape == (2, 7, 20) and fast.is_contiguous()
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
