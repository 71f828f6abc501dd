"""causal_conv1d on token-major memory (the (batch, dim, L) transposed views vision mixers pass) vs the reference:
outputs (the inference path) and all gradients (the training path), both directions, widths longer than the
sequence."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops.conv1d import causal_conv1d, causal_conv1d_reference


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    dim=st.integers(2, 9),
    length=st.integers(1, 12),
    width=st.integers(1, 5),
    bias=st.booleans(),
    activation=st.sampled_from([None, "silu"]),
    reverse=st.booleans(),
)
def test_token_major_matches_reference_and_grads(batch, dim, length, width, bias, activation, reverse):
    g = torch.Generator().manual_seed(batch * 1000 + dim * 100 + length * 10 + width)
    x = torch.randn(batch, length, dim, generator=g, dtype=torch.float64).transpose(1, 2)  # token-major memory
    assert x.stride(1) == 1
    w = torch.randn(dim, width, generator=g, dtype=torch.float64)
    b = torch.randn(dim, generator=g, dtype=torch.float64) if bias else None
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in (x, w, b)]
    ref_leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, w, b)]
    with torch.no_grad():
        y0 = causal_conv1d(x, w, b, activation=activation, reverse=reverse)
    y = causal_conv1d(leaves[0], leaves[1], leaves[2], activation=activation, reverse=reverse)
    ref = causal_conv1d_reference(ref_leaves[0].contiguous(), ref_leaves[1], ref_leaves[2], activation, reverse)
    assert y0.shape == ref.shape and (y0.stride(1) == 1 or length == 1)  # token-major: no copy for the next op
    assert _rel(y0, ref) < 1e-13 and _rel(y, ref) < 1e-13
    cot = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((y * cot).sum(), [t for t in leaves if t is not None])
    ref_grads = torch.autograd.grad((ref * cot).sum(), [t for t in ref_leaves if t is not None])
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-13


@pytest.mark.parametrize("reverse", [False, True])
def test_token_major_equals_channel_major(reverse):
    x = torch.randn(2, 9, 16)  # (batch, L, dim)
    w, b = torch.randn(16, 4), torch.randn(16)
    with torch.no_grad():
        y_tm = causal_conv1d(x.transpose(1, 2), w, b, activation="silu", reverse=reverse)
        y_cm = causal_conv1d(x.transpose(1, 2).contiguous(), w, b, activation="silu", reverse=reverse)
    assert y_tm.stride(1) == 1 and y_cm.is_contiguous()
    torch.testing.assert_close(y_tm, y_cm, rtol=1e-5, atol=1e-6)
