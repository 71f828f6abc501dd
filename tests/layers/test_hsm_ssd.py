"""HSMSSD (EfficientViM mixer) against a float64 re-derivation of the spec, the inert A, grids, backends."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.layers import HSMSSD


def spec_hsmssd(layer: HSMSSD, x: torch.Tensor, size):
    """ssd_efficient_family.md §2.2 steps 1-6, with A added before the softmax as the official code does."""
    n = layer.state_dim
    bcdt = torch.einsum("oc,bcl->bol", layer.BCdt_proj.conv.weight[..., 0], x)
    bcdt = F.conv2d(bcdt.unflatten(2, size), layer.dw.conv.weight, padding=1, groups=3 * n).flatten(2)
    bmat, cmat, dt = bcdt[:, :n], bcdt[:, n:2 * n], bcdt[:, 2 * n:]
    a = torch.softmax(dt + layer.A[:, None], dim=-1)
    h = torch.einsum("bdl,bnl->bdn", x, a * bmat)
    hz = torch.einsum("oc,bcn->bon", layer.hz_proj.conv.weight[..., 0], h)
    h1, z = hz[:, :layer.d_inner], hz[:, layer.d_inner:]
    h2 = torch.einsum("oc,bcn->bon", layer.out_proj.conv.weight[..., 0], h1 * F.silu(z) + layer.D * h1)
    return torch.einsum("bdn,bnl->bdl", h2, cmat).unflatten(2, size), h2


@pytest.mark.parametrize("size", [(4, 4), (3, 5)])
def test_matches_spec_formula_float64(size):
    torch.manual_seed(0)
    layer = HSMSSD(10, state_dim=6, backend="torch").double()
    with torch.no_grad():
        layer.D.fill_(0.7)
    x = torch.randn(2, 10, size[0] * size[1], dtype=torch.float64)
    y, h = layer(x, size)
    y_ref, h_ref = spec_hsmssd(layer, x, size)
    assert y.shape == (2, 10, *size) and h.shape == (2, 10, 6)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(dim=st.integers(1, 9), state=st.integers(1, 7), expand=st.sampled_from([1.0, 2.0]), height=st.integers(1, 5),
       width=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_matches_spec_formula_any_shape(dim, state, expand, height, width, seed):
    torch.manual_seed(seed)
    layer = HSMSSD(dim, state_dim=state, ssd_expand=expand, backend="torch").double()
    x = torch.randn(2, dim, height * width, dtype=torch.float64)
    (y, h), (y_ref, h_ref) = layer(x, (height, width)), spec_hsmssd(layer, x, (height, width))
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)


def test_A_is_inert():
    """A is constant along the softmax axis (tokens): no effect on the output, zero gradient (spec §2.2)."""
    torch.manual_seed(0)
    layer = HSMSSD(8, state_dim=4, backend="reference").double()
    x = torch.randn(2, 8, 9, dtype=torch.float64)
    y, h = layer(x, (3, 3))
    (y.square().sum() + h.sum()).backward()
    assert layer.A.grad is not None and layer.A.grad.abs().max() < 1e-10
    assert layer.BCdt_proj.conv.weight.grad.abs().max() > 1e-6
    with torch.no_grad():
        layer.A.add_(torch.randn(4, dtype=torch.float64))
    torch.testing.assert_close(layer(x, (3, 3))[0], y, rtol=1e-10, atol=1e-12)


def test_torch_and_reference_backends_agree_with_grads():
    torch.manual_seed(1)
    ref = HSMSSD(8, state_dim=5, ssd_expand=2, backend="reference").double()
    fast = HSMSSD(8, state_dim=5, ssd_expand=2, backend="torch").double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, 12, dtype=torch.float64)
    (y_ref, h_ref), (y, h) = ref(x, (3, 4)), fast(x, (3, 4))
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)
    (y_ref.sum() + h_ref.square().sum()).backward()
    (y.sum() + h.square().sum()).backward()
    for (name, p_ref), p in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_official_keys_and_bad_grid():
    layer = HSMSSD(8, state_dim=4)
    assert sorted(layer.state_dict()) == sorted([
        "A", "D", "BCdt_proj.conv.weight", "dw.conv.weight", "hz_proj.conv.weight", "out_proj.conv.weight"])
    assert layer.D.shape == (1,) and getattr(layer.D, "_no_weight_decay", False)
    with pytest.raises(ValueError, match="3x3 grid"):
        layer(torch.randn(1, 8, 10), (3, 3))
