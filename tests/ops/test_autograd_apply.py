"""ops._autograd.apply: the Function's forward as a plain call when no gradient is needed, apply otherwise."""

from __future__ import annotations

import torch

from visionssm.ops import _autograd


class _Scale(torch.autograd.Function):
    calls = []

    @staticmethod
    def forward(ctx, x, k):
        _Scale.calls.append(type(ctx).__name__)
        ctx.save_for_backward(x)
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, g):
        return g * ctx.k, None


def test_plain_call_without_grad_and_graph_with_it():
    _Scale.calls.clear()
    x = torch.randn(3)
    assert torch.equal(_autograd.apply(_Scale, x, 2.0), x * 2)  # no input needs grad
    with torch.no_grad():
        y = _autograd.apply(_Scale, x.requires_grad_(), 3.0)  # grad mode off
    assert not y.requires_grad and torch.equal(y, x.detach() * 3)
    assert _Scale.calls == ["_NoGradCtx", "_NoGradCtx"]
    y = _autograd.apply(_Scale, x, 4.0)
    assert _Scale.calls[-1] != "_NoGradCtx" and y.grad_fn is not None
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 4.0))
