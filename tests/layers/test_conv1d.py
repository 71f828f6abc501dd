"""causal_conv1d vs an element-wise loop, the flip->conv->flip definition of reverse, and gradients."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops.conv1d import causal_conv1d, causal_conv1d_reference


def naive(x, w, b, activation, reverse):
    """One output element at a time, straight from the definition."""
    batch, dim, length = x.shape
    width = w.shape[1]
    y = torch.zeros_like(x)
    for n in range(batch):
        for c in range(dim):
            for t in range(length):
                acc = b[c].clone() if b is not None else x.new_zeros(())
                for k in range(width):
                    s = t + (width - 1 - k) if reverse else t - (width - 1) + k
                    if 0 <= s < length:
                        acc = acc + w[c, k] * x[n, c, s]
                y[n, c, t] = acc
    return F.silu(y) if activation == "silu" else y


def make(batch, dim, length, width, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, length, generator=g, dtype=torch.float64)
    w = torch.randn(dim, width, generator=g, dtype=torch.float64)
    b = torch.randn(dim, generator=g, dtype=torch.float64) if bias else None
    return x, w, b


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_matches_elementwise_loop(reverse, activation):
    x, w, b = make(2, 3, 7, 4, True)
    want = naive(x, w, b, activation, reverse)
    torch.testing.assert_close(causal_conv1d(x, w, b, activation, reverse), want)
    torch.testing.assert_close(causal_conv1d_reference(x, w, b, activation, reverse), want)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3), dim=st.integers(1, 6), length=st.integers(1, 20), width=st.integers(1, 5),
    bias=st.booleans(), activation=st.sampled_from([None, "silu"]), reverse=st.booleans(),
)
def test_matches_reference_and_grads(batch, dim, length, width, bias, activation, reverse):
    x, w, b = make(batch, dim, length, width, bias, seed=length * 31 + dim)
    leaves = [t.requires_grad_() for t in (x, w, b) if t is not None]
    y = causal_conv1d(x, w, b, activation, reverse)
    y_ref = causal_conv1d_reference(x, w, b, activation, reverse)
    torch.testing.assert_close(y, y_ref)
    gy = torch.randn_like(y)
    for g, g_ref in zip(torch.autograd.grad(y, leaves, gy), torch.autograd.grad(y_ref, leaves, gy)):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("width", [1, 4])
def test_reverse_is_flip_conv_flip(width):
    x, w, b = make(2, 5, 11, width, True, seed=3)
    want = causal_conv1d(x.flip(-1), w, b, "silu").flip(-1)
    torch.testing.assert_close(causal_conv1d(x, w, b, "silu", reverse=True), want)


def test_matches_conv1d_module_and_gradcheck():
    """Same as nn.Conv1d(padding=width-1)[..., :L] the way Mamba applies it; gradcheck in float64."""
    x, w, b = make(2, 4, 9, 4, True, seed=5)
    conv = torch.nn.Conv1d(4, 4, 4, groups=4, padding=3).double()
    with torch.no_grad():
        conv.weight.copy_(w[:, None])
        conv.bias.copy_(b)
    torch.testing.assert_close(causal_conv1d(x, w, b), conv(x)[..., :9])
    args = tuple(t.clone().requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda *a: causal_conv1d(*a, activation="silu", reverse=True), args)


def test_rejects_bad_arguments():
    x, w, b = make(1, 3, 5, 4, True)
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, w, b, activation="relu")
    with pytest.raises(ValueError, match="weight"):
        causal_conv1d(x, w[:2], b)
