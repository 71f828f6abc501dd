"""NCSSD (VSSD mixer) against a float64 re-derivation of the spec formulas, backends, init and errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.layers import NCSSD


def spec_ncssd(layer: NCSSD, u: torch.Tensor) -> torch.Tensor:
    """ssd_efficient_family.md §1.2-1.3 written out with loops over heads: KV_h = sum_t B_t^T (w_th x_th),
    y_th = C_t KV_h + D_h x_th, out = out_proj(LN(y) * z); head h reads group h % ngroups."""
    b, hgt, wid, _ = u.shape
    di, n, g, nh, p = layer.d_inner, layer.d_state, layer.ngroups, layer.nheads, layer.headdim
    proj = u @ layer.in_proj.weight.T
    z, xbc, dt = proj[..., :di], proj[..., di:2 * di + 2 * g * n], proj[..., 2 * di + 2 * g * n:]
    xbc = F.silu(F.conv2d(xbc.permute(0, 3, 1, 2), layer.conv2d.weight, layer.conv2d.bias, padding=1,
                          groups=xbc.shape[-1])).permute(0, 2, 3, 1).reshape(b, hgt * wid, -1)
    x, bmat, cmat = xbc[..., :di], xbc[..., di:di + g * n], xbc[..., di + g * n:]
    sign = 1.0 if layer.positive_dA else -1.0
    w = F.softplus(dt.reshape(b, hgt * wid, nh) + layer.dt_bias) * sign * torch.exp(layer.A_log)
    ys = []
    for h in range(nh):
        grp = h % g
        bh, ch = bmat[..., grp * n:(grp + 1) * n], cmat[..., grp * n:(grp + 1) * n]
        xh = x[..., h * p:(h + 1) * p]
        kv = bh.transpose(1, 2) @ (w[..., h:h + 1] * xh)  # (b, N, P): one global state per head
        ys.append(ch @ kv + layer.D[h] * xh)
    y = torch.cat(ys, dim=-1).reshape(b, hgt, wid, di)
    y = F.layer_norm(y, (di,), layer.norm.weight, layer.norm.bias, layer.norm.eps) * z
    return y @ layer.out_proj.weight.T


@pytest.mark.parametrize("ngroups,positive", [(1, True), (2, True), (1, False)])
def test_matches_spec_formula_float64(ngroups, positive):
    torch.manual_seed(ngroups)
    layer = NCSSD(12, num_heads=4, d_state=6, ngroups=ngroups, positive_dA=positive, backend="torch").double()
    with torch.no_grad():
        for prm in (layer.norm.weight, layer.norm.bias, layer.D):
            prm.normal_()
    u = torch.randn(2, 3, 5, 12, dtype=torch.float64)
    torch.testing.assert_close(layer(u), spec_ncssd(layer, u), rtol=1e-10, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(heads_per_group=st.integers(1, 3), groups=st.integers(1, 2), d_state=st.integers(1, 6),
       height=st.integers(1, 5), width=st.integers(1, 5), positive=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_spec_formula_any_shape(heads_per_group, groups, d_state, height, width, positive, seed):
    torch.manual_seed(seed)
    heads = heads_per_group * groups
    layer = NCSSD(2 * heads, num_heads=heads, d_state=d_state, ngroups=groups, positive_dA=positive,
                  backend="torch").double()
    u = torch.randn(2, height, width, 2 * heads, dtype=torch.float64)
    torch.testing.assert_close(layer(u), spec_ncssd(layer, u), rtol=1e-10, atol=1e-12)


def test_torch_and_reference_backends_agree_with_grads():
    torch.manual_seed(0)
    ref = NCSSD(8, num_heads=2, d_state=4, backend="reference").double()
    fast = NCSSD(8, num_heads=2, d_state=4, backend="torch").double()
    fast.load_state_dict(ref.state_dict())
    u = torch.randn(2, 4, 3, 8, dtype=torch.float64)
    y_ref, y = ref(u), fast(u)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), fast.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_mamba2_init_and_shapes():
    torch.manual_seed(0)
    layer = NCSSD(64, num_heads=2, d_state=64)
    assert layer.in_proj.weight.shape == (2 * 128 + 2 * 64 + 2, 64)  # [z, x, B, C, dt]
    assert layer.conv2d.weight.shape == (256, 1, 3, 3) and layer.headdim == 64
    A = torch.exp(layer.A_log)
    assert ((A >= 1) & (A <= 16)).all()
    dt = F.softplus(layer.dt_bias)
    assert ((dt >= 1e-3 - 1e-7) & (dt <= 0.1 + 1e-7)).all()
    assert torch.equal(layer.D, torch.ones(2))
    assert all(getattr(p, "_no_weight_decay", False) for p in (layer.A_log, layer.D, layer.dt_bias))


def test_bad_config_names_the_culprit():
    with pytest.raises(ValueError, match="num_heads=3"):
        NCSSD(8, num_heads=3)
    with pytest.raises(ValueError, match="ngroups=3"):
        NCSSD(12, num_heads=4, ngroups=3)


def test_global_state_is_unnormalised():
    """Doubling the map (same content tiled) doubles the global term: VSSD sums, it does not average."""
    torch.manual_seed(1)
    layer = NCSSD(8, num_heads=2, d_state=4, d_conv=1, backend="torch").double()  # 1x1 conv: no border effects
    with torch.no_grad():
        layer.D.zero_()
    layer.norm = torch.nn.Identity()
    u = torch.randn(1, 2, 2, 8, dtype=torch.float64)
    y1, y2 = layer(u), layer(torch.cat([u, u], dim=1))
    torch.testing.assert_close(y2[:, :2], 2 * y1, rtol=1e-10, atol=1e-12)
    assert math.isfinite(y2.abs().max().item())
